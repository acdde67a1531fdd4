#!/usr/bin/env python3
"""Verified phones (issue 12) through real stacks: nginx + pvgate + mock Pipwave, with
`verification:` on (scripts/stack.py verification=True: a P-256 key made in the run directory)
and `max_answer_attempts: 3`, once per throttle store:

- local: the LMDB store shared by two pvgate processes (spawn-fcgi -F 2), so a session opened
  by one worker is checked and consumed by whichever worker gets the answer;
- redis: a private redis-server, one pvgate process (so its /pvgate/metrics is the whole count).

For each store:
- /pvgate/jwks.json through nginx: the stack's public key (its x and y, RFC 7638 kid), no
  private part, cached 5 minutes;
- send-token, then verify with the mock's code (123456; any other answer gets Pipwave's 5052):
  the answer carries `verification_token`, which PyJWT verifies with the key its PyJWKClient
  fetched from jwks.json (ES256, audience shop-a, the stack's issuer), with sub, phone_number
  (+60...) and phone_number_verified;
- PyJWT refuses a tampered payload, a token signed by a foreign key (openssl genpkey) under the
  same kid, `alg: none`, HS256 keyed with the public key, an expired token, a wrong audience and
  a wrong issuer. "Expired" without waiting token_ttl (10 minutes; even the minimum, 1m, would
  cost a minute per store, and a token cannot be re-signed without the key): the real token is
  decoded with PyJWT's clock (`datetime.now` in jwt.api_jwt) moved to one second past the
  token's `exp`, so every PyJWT check runs as a shop's server would run it then, and refuses
  it as expired; the same decode at one second before `exp` passes, so the boundary is the
  token's own exp claim (iat + token_ttl). (A negative `leeway` would not do: PyJWT applies it
  to the iat check too, which would refuse the token as "not yet valid" first.)
- the stranger case: user A sends to phone P and gets reference R; user B (phone P), and A
  with phone Q, send many answers with R, the right one included: every one gets 400 / 5051
  with the same body, and the mock sees none of them. A's own 3 wrong answers then still get
  Pipwave's 5052 (forwarded), the 4th (right) answer 429 without reaching Pipwave, strangers
  still 5051, and a new send (a new reference) verifies again;
- a verified session is consumed: the same verify again gets 5051, not forwarded;
- references pvgate never issued get 5051, not forwarded;
- pvgate_verifications_total{event} from /pvgate/metrics (nginx's metrics location) against a
  tally of what the cases did, exact on both stacks: the two workers of the local one count in
  one metrics file beside the LMDB store (README, Metrics), so any scrape shows both;
- the signing key's material (PEM, private scalar) appears in no response, pvgate log or nginx
  log; it is also registered for test_zz_secret_scan, which searches every test's records.

PyJWT: Debian's python3-jwt (2.6.0) and python3-cryptography live in /usr/bin/python3's
dist-packages, which another python3 first on PATH (pyenv, a venv) does not see. So when
`import jwt` fails, this script re-executes itself with /usr/bin/python3 (once: an env marker
stops a loop); ctest can therefore run it with any python3, like the other integration tests.
"""

import os
import sys

SYSTEM_PYTHON = "/usr/bin/python3"
REEXEC_MARK = "PVGATE_TEST_VERIFICATION_REEXEC"

try:
    import jwt
    from cryptography.hazmat.primitives import serialization
except ImportError as e:
    if not os.environ.get(REEXEC_MARK) and os.access(SYSTEM_PYTHON, os.X_OK) and \
            os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON):
        os.environ[REEXEC_MARK] = "1"
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])
    print(f"FAIL PyJWT and cryptography importable ({e}): apt-get install python3-jwt "
          "python3-cryptography", flush=True)
    print("0 passed, 1 failed", flush=True)
    sys.exit(1)

import base64
import datetime
import hashlib
import hmac
import json
import re
import subprocess
import time
import unittest.mock
from pathlib import Path

import itest
import stack as stacklib
from itest import check, expect

SEND = "send-token"
VERIFY = "verify-token-answer"
CODE = "123456"            # the mock's code (tests/mock: --code); anything else gets 5052
WRONG = "654321"
AUDIENCE = "shop-a"        # the merchant's default audience: its name
MAX_ATTEMPTS = 3           # throttle.max_answer_attempts in both stacks
TOKEN_TTL_S = 600          # verification.token_ttl's default (stack.py sets no ttl)
SESSION_TTL_S = 600        # verification.session_ttl's default
STRANGER_TRIES = 6         # answers each stranger sends with another's reference
EVENTS = ("issued", "verified", "wrong_answer", "unknown_reference", "locked")
REDIS_STACK = "stack-redis"


def throttle_yaml(store):
    """The throttle: body: no rules (only the session limits are under test), 3 attempts."""
    return f"store: {store}\nrules: []\nmax_answer_attempts: {MAX_ATTEMPTS}\n"


# -- per-store state --------------------------------------------------------------------------


class Store:
    """One stack under test and what the cases did to it (the metrics tally)."""

    def __init__(self, name, exact_metrics):
        self.name = name
        self.exact_metrics = exact_metrics
        self.ctx = None
        self.stack = None
        self.tally = dict.fromkeys(EVENTS, 0)
        self.token = None      # (token, fields, reference) of the first verified answer
        self.jwk = None        # the key jwks.json served

    def count(self, event, n=1):
        self.tally[event] += n


LOCAL = Store("local", exact_metrics=True)  # both workers count in one metrics file
REDIS = Store("redis", exact_metrics=True)


# -- helpers ----------------------------------------------------------------------------------


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issuer(st):
    return f"http://127.0.0.1:{st.port}/pvgate"


def fields(ctx, user=None, phone=None):
    return {"user_id": user or ctx.unique("vu"), "contact_no_country_dialing_code": "60",
            "contact_no": phone or ctx.phone()}


def answer(f, reference, code):
    return {**f, "reference": reference, "answer": code}


def send(s, f):
    """A send-token that reaches the mock once and gets a reference: opens a session."""
    r = s.ctx.forwarded_once(lambda: s.ctx.post_json(SEND, f))
    j = expect(r, 200, 200)
    check(isinstance(j.get("reference"), int), "no reference\n      " + r.describe())
    s.count("issued")
    return j["reference"]


def verified(s, f, reference):
    """A verify with the right code: forwarded once, 200 with a token. Returns the token."""
    r = s.ctx.forwarded_once(lambda: s.ctx.post_json(VERIFY, answer(f, reference, CODE)))
    j = expect(r, 200, 200)  # the envelope every answer keeps, verification_token allowed
    check(isinstance(j, dict) and set(j) == {"status", "message", "verification_token"}
          and j["status"] == 200 and isinstance(j["verification_token"], str),
          "want exactly status 200, message, verification_token\n      " + r.describe())
    s.count("verified")
    return j["verification_token"]


def refused_5051(s, body):
    """400 / 5051, not forwarded. Returns the raw body (the same for every case)."""
    r = s.ctx.not_forwarded(lambda: s.ctx.post_json(VERIFY, body))
    expect(r, 400, 5051)
    s.count("unknown_reference")
    return r.body


def wrong_5052(s, f, reference):
    r = s.ctx.forwarded_once(lambda: s.ctx.post_json(VERIFY, answer(f, reference, WRONG)))
    expect(r, 400, 5052)
    s.count("wrong_answer")


def decode(s, token, **kw):
    """PyJWT's verification as a shop's server does it: the key from jwks.json (PyJWKClient,
    through nginx), ES256 only, our audience and issuer."""
    client = jwt.PyJWKClient(s.stack.url("/pvgate/jwks.json"), cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    opts = {"algorithms": ["ES256"], "audience": AUDIENCE, "issuer": issuer(s.stack)}
    opts.update(kw)
    return jwt.decode(token, key.key, **opts)


def at_time(unix_s, fn):
    """fn() with PyJWT's clock (jwt.api_jwt's datetime.now) reading unix_s."""
    class Clock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.fromtimestamp(unix_s, tz)

    with unittest.mock.patch("jwt.api_jwt.datetime", Clock):
        return fn()


def refuses(what, exc, fn):
    try:
        fn()
    except exc:
        return
    except Exception as e:  # the wrong refusal is a failure too
        raise AssertionError(f"{what}: PyJWT raised {type(e).__name__}: {e}, want "
                             f"{exc.__name__}") from None
    raise AssertionError(f"{what}: PyJWT accepted it")


def key_material(key_path):
    """Strings that would betray the signing key in a log: every PEM body line, and the private
    scalar in base64url, base64 and hex."""
    pem = Path(key_path).read_bytes()
    lines = [l.decode() for l in pem.splitlines() if l and not l.startswith(b"-----")]
    key = serialization.load_pem_private_key(pem, password=None)
    d = key.private_numbers().private_value.to_bytes(32, "big")
    return [l for l in lines if len(l) >= 16] + [b64u(d), base64.b64encode(d).decode(),
                                                  d.hex()]


def register_key_for_scan(st):
    """test_zz_secret_scan searches every test's records for every needle of kind
    `signing_key` too."""
    if itest.RECORDER is not None:
        with itest.RECORDER._lock:
            itest.RECORDER.credentials.extend(
                {"signing_key": m} for m in key_material(st.run_dir / "token-key.pem"))


def metrics(s):
    r = s.ctx.request("GET", "/pvgate/metrics")
    check(r.status == 200, "metrics scrape\n      " + r.describe())
    out = {}
    for m in re.finditer(rb'^pvgate_verifications_total\{event="([a-z_]+)"\} (\d+)$', r.body,
                         re.M):
        out[m.group(1).decode()] = int(m.group(2))
    check(set(out) == set(EVENTS), f"events in metrics {sorted(out)}, want {sorted(EVENTS)}")
    return out


# -- cases (each takes the Store) -------------------------------------------------------------


def jwks_route(s):
    r = s.ctx.request("GET", "/pvgate/jwks.json")
    check(r.status == 200, "jwks.json\n      " + r.describe())
    check(r.header("Content-Type") == "application/jwk-set+json",
          "Content-Type\n      " + r.describe())
    check(r.header("Cache-Control") == "public, max-age=300", "Cache-Control\n      "
          + r.describe())
    keys = json.loads(r.body)["keys"]
    check(len(keys) == 1, f"{len(keys)} keys, want the stack's one")
    k = keys[0]
    check({"kty", "crv", "x", "y", "kid", "alg", "use"} == set(k),
          f"JWK members {sorted(k)} (no private 'd')")
    check((k["kty"], k["crv"], k["alg"], k["use"]) == ("EC", "P-256", "ES256", "sig"), str(k))
    pem = (s.stack.run_dir / "token-key.pem").read_bytes()
    pub = serialization.load_pem_private_key(pem, password=None).public_key().public_numbers()
    check(b64u_decode(k["x"]) == pub.x.to_bytes(32, "big") and
          b64u_decode(k["y"]) == pub.y.to_bytes(32, "big"),
          "x, y are not the public half of the stack's token-key.pem")
    thumb = json.dumps({"crv": k["crv"], "kty": k["kty"], "x": k["x"], "y": k["y"]},
                       separators=(",", ":"), sort_keys=True).encode()
    check(k["kid"] == b64u(hashlib.sha256(thumb).digest()),
          f"kid {k['kid']} is not the RFC 7638 thumbprint")
    s.jwk = k


def token_verified_by_pyjwt(s):
    f = fields(s.ctx)
    ref = send(s, f)
    token = verified(s, f, ref)
    before = time.time()
    claims = decode(s, token)
    header = jwt.get_unverified_header(token)
    check(header == {"alg": "ES256", "kid": s.jwk["kid"], "typ": "JWT"}, f"header {header}")
    check(claims["sub"] == f["user_id"], f"sub {claims['sub']!r}, want {f['user_id']!r}")
    check(claims["phone_number"] == "+60" + f["contact_no"],
          f"phone_number {claims['phone_number']!r}")
    check(claims["phone_number_verified"] is True, f"phone_number_verified {claims}")
    check(claims["iss"] == issuer(s.stack) and claims["aud"] == AUDIENCE, str(claims))
    check(claims["exp"] - claims["iat"] == TOKEN_TTL_S, f"exp - iat != {TOKEN_TTL_S}: {claims}")
    check(abs(claims["iat"] - before) < 60, f"iat {claims['iat']} is not now ({before:.0f})")
    check(re.fullmatch(r"[A-Za-z0-9_-]{22}", claims.get("jti", "")), f"jti {claims}")
    check(set(claims) == {"iss", "aud", "sub", "phone_number", "phone_number_verified", "iat",
                          "exp", "jti"}, f"claims {sorted(claims)}")
    s.token = (token, f, ref)


def pyjwt_refuses_forgeries(s):
    token = s.token[0]
    head, payload, sig = token.split(".")
    claims = json.loads(b64u_decode(payload))

    # Another phone in the payload, the signature kept.
    forged = dict(claims, phone_number="+60999999999")
    tampered = ".".join([head, b64u(json.dumps(forged, separators=(",", ":")).encode()), sig])
    refuses("tampered payload", jwt.InvalidSignatureError, lambda: decode(s, tampered))
    # One bit of the signature flipped.
    raw = bytearray(b64u_decode(sig))
    raw[5] ^= 1
    refuses("tampered signature", jwt.InvalidSignatureError,
            lambda: decode(s, ".".join([head, payload, b64u(bytes(raw))])))

    # A foreign P-256 key signs the same claims under the stack's kid.
    foreign_path = s.stack.run_dir / "foreign-key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(foreign_path)], check=True,
                   capture_output=True)
    foreign = jwt.encode(claims, foreign_path.read_bytes(), algorithm="ES256",
                         headers={"kid": s.jwk["kid"], "typ": "JWT"})
    check(jwt.get_unverified_header(foreign)["kid"] == s.jwk["kid"], "foreign token's kid")
    refuses("foreign key, same kid", jwt.InvalidSignatureError, lambda: decode(s, foreign))
    # ... and under a kid of its own, PyJWKClient finds no key for it.
    other_kid = jwt.encode(claims, foreign_path.read_bytes(), algorithm="ES256",
                           headers={"kid": "not-" + s.jwk["kid"]})
    refuses("foreign key, own kid", jwt.PyJWKClientError, lambda: decode(s, other_kid))

    # alg none: no signature at all.
    none_head = b64u(json.dumps({"alg": "none", "kid": s.jwk["kid"], "typ": "JWT"}).encode())
    for unsigned in (f"{none_head}.{payload}.", f"{none_head}.{payload}.{sig}"):
        refuses("alg none", jwt.InvalidAlgorithmError, lambda: decode(s, unsigned))
    # HS256 keyed with the published public key (the algorithm confusion attack).
    hs_head = b64u(json.dumps({"alg": "HS256", "kid": s.jwk["kid"], "typ": "JWT"}).encode())
    public_pem = jwt.PyJWK(s.jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_sig = b64u(hmac.new(public_pem, f"{hs_head}.{payload}".encode(), "sha256").digest())
    refuses("HS256 with the public key", jwt.InvalidAlgorithmError,
            lambda: decode(s, f"{hs_head}.{payload}.{hs_sig}"))

    # Expired: PyJWT's checks with its clock moved past exp (see the module doc).
    refuses("expired (checked 1 s past exp)", jwt.ExpiredSignatureError,
            lambda: at_time(claims["exp"] + 1, lambda: decode(s, token)))
    at_time(claims["exp"] - 1, lambda: decode(s, token))   # 1 s before exp: still valid
    # Wrong audience, wrong issuer.
    refuses("audience shop-b", jwt.InvalidAudienceError,
            lambda: decode(s, token, audience="shop-b"))
    refuses("another issuer", jwt.InvalidIssuerError,
            lambda: decode(s, token, issuer="https://evil.example/pvgate"))
    # The genuine token, unchanged, still passes: the refusals above were about the changes.
    decode(s, token)


def consumed_once(s):
    f = fields(s.ctx)
    ref = send(s, f)
    verified(s, f, ref)
    refused_5051(s, answer(f, ref, CODE))
    # The first case's verified session too (another user, phone and reference).
    _, g, g_ref = s.token
    refused_5051(s, answer(g, g_ref, CODE))


def never_issued(s):
    f = fields(s.ctx)
    bodies = {refused_5051(s, answer(f, ref, CODE)) for ref in (1, 424242, 2_000_000_000)}
    check(len(bodies) == 1, f"different bodies for unknown references: {bodies}")
    # The mock issued 1001, 1002, ... through pvgate to other users: a reference that exists
    # upstream but not for this user and phone is "never issued" here too.
    refused_5051(s, answer(f, 1001, CODE))


def strangers_cannot_touch_a_session(s):
    ctx = s.ctx
    a_user, p, q = ctx.unique("alice"), ctx.phone(), ctx.phone()
    a = fields(ctx, a_user, p)
    ref = send(s, a)
    stranger_b = fields(ctx, ctx.unique("bob"), p)      # another user, A's phone
    a_other_phone = fields(ctx, a_user, q)               # A, another phone
    a_no_phone = {"user_id": a_user, "contact_no_country_dialing_code": "60"}
    unknown = refused_5051(s, answer(fields(ctx), 987654321, CODE))
    before = ctx.upstream_requests()
    # Without a number (and without allow_stored_number) a verify is refused before any
    # session is looked at: 400 / 9001 naming contact_no, never forwarded.
    j = expect(ctx.not_forwarded(lambda: ctx.post_json(VERIFY, answer(a_no_phone, ref, CODE))),
               400, 9001)
    check("contact_no" in j.get("message", ""), f"message does not name contact_no: {j}")
    bodies = set()
    for who in (stranger_b, a_other_phone):
        for i in range(STRANGER_TRIES):
            code = CODE if i == STRANGER_TRIES - 1 else f"{i:06d}"
            bodies.add(refused_5051(s, answer(who, ref, code)))
    check(ctx.upstream_requests() == before,
          f"the mock saw {ctx.upstream_requests() - before} stranger answers, want none")
    check(bodies == {unknown}, f"stranger bodies {bodies} differ from an unknown reference's "
          f"{unknown!r}: the answer must tell a prober nothing")
    # A's own wrong answers still count from zero and reach Pipwave...
    for _ in range(MAX_ATTEMPTS):
        wrong_5052(s, a, ref)
    # ... and then the session is locked, even for the right code, without reaching Pipwave.
    r = ctx.not_forwarded(lambda: ctx.post_json(VERIFY, answer(a, ref, CODE)))
    j = expect(r, 429, 5002)
    s.count("locked")
    wait = j.get("seconds_till_resend")
    check(isinstance(wait, int) and SESSION_TTL_S - 120 <= wait <= SESSION_TTL_S,
          f"seconds_till_resend {wait!r}, want the session's remaining life\n      "
          + r.describe())
    check(r.header("Retry-After") == str(wait), "Retry-After\n      " + r.describe())
    # A stranger still learns nothing: 5051 as before, not 429.
    check(refused_5051(s, answer(stranger_b, ref, CODE)) == unknown, "stranger after the lock")
    # A new code: a new reference, a fresh session, verified.
    ref2 = send(s, a)
    check(ref2 != ref, f"the new send got the same reference {ref}")
    decode(s, verified(s, a, ref2))


def metrics_match(s):
    got = metrics(s)
    want = s.tally
    if s.exact_metrics:
        check(got == want, f"pvgate_verifications_total {got}, want {want}")
    else:
        over = {e: (got[e], want[e]) for e in EVENTS if got[e] > want[e]}
        check(not over, f"one worker's counts exceed what happened (got, want): {over}")
        check(sum(got.values()) > 0, "the scraped worker counted nothing at all")


def no_key_in_logs(s):
    needles = key_material(s.stack.run_dir / "token-key.pem")
    files = [p for p in s.stack.run_dir.glob("*.log") if not p.name.startswith("mock")]
    check(any(p.name == "pvgate.log" for p in files), f"no pvgate.log in {files}")
    hits = []
    for p in files:
        data = p.read_text(errors="replace")
        hits += [f"{p.name}: {n[:8]}..." for n in needles if n in data]
    for r in s.ctx.responses:
        text = r.body.decode("utf-8", "replace")
        hits += [f"response {r.method} {r.path}: {n[:8]}..." for n in needles if n in text]
    check(not hits, f"signing key material found: {hits}")


def redis_session_keys(s):
    """Redis keeps sessions under key_prefix + '\\x02' (pvgate:), expiring with the session."""
    f = fields(s.ctx)
    send(s, f)
    keys = s.stack.redis.command("KEYS", "pvgate:\x02*")
    check(keys, "no session key under pvgate:\\x02 in Redis")
    ttls = [s.stack.redis.command("PTTL", k) for k in keys]
    check(all(0 < t <= SESSION_TTL_S * 1000 for t in ttls), f"session PTTLs {ttls}")


CASES_PER_STORE = [
    ("GET /pvgate/jwks.json: the stack's public key, RFC 7638 kid, cached 300 s", jwks_route),
    ("send, verify with the code: a token PyJWT verifies from jwks.json", token_verified_by_pyjwt),
    ("PyJWT refuses tampered, foreign-key, alg none, HS256, expired, wrong aud/iss",
     pyjwt_refuses_forgeries),
    ("a verified session is consumed: the same verify gets 5051, not forwarded", consumed_once),
    ("references never issued here get 5051, not forwarded", never_issued),
    ("the stranger case: 5051 alike and unforwarded; the owner's attempts count and lock",
     strangers_cannot_touch_a_session),
]
CLOSING = [
    ("pvgate_verifications_total matches what happened", metrics_match),
    ("no signing key material in responses or logs", no_key_in_logs),
]


def on(store, fn):
    return lambda ctx: fn(store)


def start_local(ctx):
    LOCAL.ctx, LOCAL.stack = ctx, ctx.stack
    check(len(ctx.stack.worker_pids()) == 2, f"workers {ctx.stack.worker_pids()}")
    register_key_for_scan(ctx.stack)


def start_redis(ctx):
    st = stacklib.Stack(ctx.stack.run_dir.parent / REDIS_STACK, pvgate=ctx.stack.pvgate,
                        redis=True, throttle=throttle_yaml("redis"), verification=True)
    REDIS.stack = st
    st.start()
    REDIS.ctx = itest.Ctx(st)
    register_key_for_scan(st)


def stop_redis(ctx):
    st = REDIS.stack
    if st is None:
        return
    REDIS.stack = None
    codes = st.stop()
    if itest.RECORDER is not None:
        itest.RECORDER.finish(st)   # its logs and credentials, for the suite-wide scan
    check(codes.get("pvgate") == 0, f"redis stack's pvgate exit codes {codes}")


CASES = (
    [("local (LMDB, 2 workers): stack up", start_local)]
    + [(f"local: {name}", on(LOCAL, fn)) for name, fn in CASES_PER_STORE + CLOSING]
    + [("redis (1 worker): second stack up", start_redis)]
    + [(f"redis: {name}", on(REDIS, fn)) for name, fn in CASES_PER_STORE]
    + [("redis: session keys under pvgate:\\x02 with the session's expiry",
        on(REDIS, redis_session_keys))]
    + [(f"redis: {name}", on(REDIS, fn)) for name, fn in CLOSING]
    + [("redis: stack stops cleanly, logs recorded", stop_redis)]
)


def after_stop(st, ctx):
    # The Redis stack, should a case have failed before its stop: never left running.
    if REDIS.stack is not None:
        try:
            REDIS.stack.stop()
        finally:
            if itest.RECORDER is not None:
                itest.RECORDER.finish(REDIS.stack)
    return []


if __name__ == "__main__":
    itest.run(CASES, stack_options={"workers": 2, "throttle": throttle_yaml("local"),
                                    "verification": True},
              description=__doc__.split("\n\n")[0], after_stop=after_stop)
