#!/usr/bin/env python3
"""A challenge before any SMS (issue 14), through nginx + pvgate (2 processes) + the mock Pipwave.

ALTCHA (protocol v2 of the widget altcha 3.x and altcha-lib 2.x, deterministic SHA-256):
- GET /pvgate/challenge issues a signed challenge; a send-token without the `altcha` field is
  403 with body status 403 and `"challenge": "altcha"`, never forwarded and never counted (the
  phone's 1-a-minute rule still lets the solved send through);
- a challenge fetched through nginx and solved by the npm reference library (altcha-lib's
  solveChallenge, tests/interop/altcha) is accepted, and so is one solved here in Python;
- one solution is accepted once: a replay is refused, also when it reaches the other pvgate
  process (spawn-fcgi -F 2: one LMDB store) and, with the Redis store, another host;
- forged (wrong secret, tampered parameters), expired and too-easy solutions are refused
  (made here with the merchant's secrets derived from the key file, as the README documents);
- `when: pressure`: no challenge until a phone has had a code, then one is required;
- every refusal leaves the mock's request count unchanged; pvgate_challenges_total counts them.

CAPTCHA (turnstile, hcaptcha, recaptcha) against tests/mock/mock_siteverify.py, a stand-in for
each provider's documented siteverify API: success (forwarded), failure (403 naming the kind,
not forwarded), timeout and garbage (503 with on_error: deny; forwarded with allow); the
provider gets the secret from secret_file, a form body and no x-api-key; pvgate never sends
the customer's address.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import itest
import stack as stacklib
from itest import check, expect

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INTEROP = REPO / "tests" / "interop" / "altcha"
SEND = "send-token"
KEY = "integration-test-altcha-key-0123456789abcdef"
MERCHANT = "shop-a"
DIFFICULTY = 2000


# -- ALTCHA v2, independently of pvgate (the README's derivation of the merchant's secrets) --


def secrets_for(key=KEY, merchant=MERCHANT):
    sig = hmac.new(key.encode(), b"pvgate-altcha-signature:" + merchant.encode(),
                   hashlib.sha256).hexdigest()
    key_sig = hmac.new(key.encode(), b"pvgate-altcha-key-signature:" + merchant.encode(),
                       hashlib.sha256).hexdigest()
    return sig, key_sig


def derive(p, counter):
    return hashlib.sha256(bytes.fromhex(p["salt"]) + bytes.fromhex(p["nonce"]) +
                          counter.to_bytes(4, "big")).digest()


def canonical(p):
    return json.dumps(p, sort_keys=True, separators=(",", ":"))


def make_challenge(counter, expires_at, secrets=None):
    """A challenge as altcha-lib's createChallenge makes it in deterministic mode."""
    sig_secret, key_secret = secrets or secrets_for()
    p = {"algorithm": "SHA-256", "cost": 1, "expiresAt": expires_at, "keyLength": 32,
         "nonce": os.urandom(16).hex(), "salt": os.urandom(16).hex()}
    key = derive(p, counter)
    p["keyPrefix"] = key[:16].hex()
    p["keySignature"] = hmac.new(key_secret.encode(), key, hashlib.sha256).hexdigest()
    signature = hmac.new(sig_secret.encode(), canonical(p).encode(), hashlib.sha256).hexdigest()
    return {"parameters": p, "signature": signature}


def solve(challenge):
    """The widget's search: counters from 0 until the derived key starts with keyPrefix."""
    p = challenge["parameters"]
    prefix = bytes.fromhex(p["keyPrefix"])
    for n in range(1 << 32):
        key = derive(p, n)
        if key.startswith(prefix):
            return payload(challenge, n, key.hex())


def payload(challenge, counter, derived_hex):
    """The `altcha` field as the widget fills it: base64 of the challenge and the solution."""
    obj = {"challenge": {"parameters": challenge["parameters"],
                         "signature": challenge["signature"]},
           "solution": {"counter": counter, "derivedKey": derived_hex, "time": 31.4}}
    return base64.b64encode(json.dumps(obj).encode()).decode()


# -- helpers -----------------------------------------------------------------------------


def challenge_yaml(kind="altcha", key_file=None, **settings):
    lines = ["    challenge:", f"      kind: {kind}"]
    if key_file:
        lines.append(f"      key_file: {key_file}")
    for k, v in settings.items():
        lines.append(f"      {k}: {v}")
    return "\n".join(lines) + "\n"


def key_file(stack):
    path = stack.run_dir / "altcha.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(KEY + "\n")
    return path


def use_altcha(ctx, **settings):
    settings.setdefault("difficulty", DIFFICULTY)
    settings.setdefault("hard_difficulty", DIFFICULTY)
    ctx.stack.reload_pvgate(
        extra_pvgate_config=challenge_yaml("altcha", key_file(ctx.stack), **settings))


def fetch(ctx, ip="203.0.113.50"):
    r = ctx.request("GET", "/pvgate/challenge", headers={"X-Forwarded-For": ip})
    check(r.status == 200, "GET /pvgate/challenge:\n      " + r.describe())
    return json.loads(r.body)


def fields(ctx, phone=None, **extra):
    f = {"user_id": ctx.unique("ch"), "contact_no_country_dialing_code": "60",
         "contact_no": phone or ctx.phone()}
    f.update(extra)
    return f


def send(ctx, f, ip="203.0.113.50"):
    return ctx.post_json(SEND, f, headers={"X-Forwarded-For": ip})


def refused_403(ctx, f, kind, says=None, ip="203.0.113.50"):
    r = ctx.not_forwarded(lambda: send(ctx, f, ip))
    j = expect(r, 403, 403)
    check(j.get("challenge") == kind, f"challenge member {j.get('challenge')!r}, want {kind!r}"
          "\n      " + r.describe())
    if says:
        check(says in j["message"], f"message {j['message']!r} lacks {says!r}")
    return j


def sent(ctx, f, ip="203.0.113.50"):
    return expect(ctx.forwarded_once(lambda: send(ctx, f, ip)), 200, 200)


def counted(ctx, kind, event):
    r = ctx.request("GET", "/pvgate/metrics")
    want = f'pvgate_challenges_total{{kind="{kind}",event="{event}"}} '
    for line in r.body.decode().splitlines():
        if line.startswith(want):
            return int(float(line[len(want):]))
    return 0


def node_solver():
    """tests/interop/altcha's altcha-lib (npm ci there when missing), or None without node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    if not (INTEROP / "node_modules" / "altcha-lib").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(INTEROP), "--no-audit", "--no-fund"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
    return INTEROP


# -- ALTCHA cases ----------------------------------------------------------------------------


def altcha_required(ctx):
    use_altcha(ctx)
    phone = ctx.phone()
    refused_403(ctx, fields(ctx, phone), "altcha", "Solve the challenge first")
    check(counted(ctx, "altcha", "missing") >= 1, "missing not counted")
    # Never counted: the phone's 1-a-minute rule still lets the solved send through.
    sent(ctx, fields(ctx, phone, altcha=solve(fetch(ctx))))


def challenge_shape(ctx):
    c = fetch(ctx)
    p = c["parameters"]
    check(p["algorithm"] == "SHA-256" and p["cost"] == 1 and p["keyLength"] == 32,
          f"parameters {p}")
    check(abs(p["expiresAt"] - (time.time() + 600)) < 30, f"expiresAt {p['expiresAt']}")
    check(len(p["keyPrefix"]) == 32 and len(c["signature"]) == 64, f"challenge {c}")
    # Signed with the merchant's secret as the README derives it.
    sig, _ = secrets_for()
    want = hmac.new(sig.encode(), canonical(p).encode(), hashlib.sha256).hexdigest()
    check(c["signature"] == want, "the signature is not HMAC-SHA256 of the canonical parameters")
    # The secret counter lies in [difficulty/2, difficulty].
    counter = json.loads(base64.b64decode(solve(c)))["solution"]["counter"]
    check(DIFFICULTY // 2 <= counter <= DIFFICULTY, f"counter {counter} outside the difficulty")


def reference_solver_accepted(ctx):
    where = node_solver()
    check(where is not None, "node/npm not found: cannot run altcha-lib")
    c = fetch(ctx)
    script = ("import {solveChallenge} from 'altcha-lib';"
              "import {deriveKey} from 'altcha-lib/algorithms/sha';"
              "const c = JSON.parse(process.argv[1]);"
              "const s = await solveChallenge({challenge: c, deriveKey});"
              "process.stdout.write(btoa(JSON.stringify({challenge: {parameters: c.parameters,"
              " signature: c.signature}, solution: s})));")
    out = subprocess.run(["node", "--input-type=module", "-e", script, json.dumps(c)],
                         cwd=where, capture_output=True, text=True, timeout=120)
    check(out.returncode == 0, f"altcha-lib failed: {out.stderr[-500:]}")
    sent(ctx, fields(ctx, altcha=out.stdout.strip()))


def once_across_processes(ctx):
    solution = solve(fetch(ctx))
    sent(ctx, fields(ctx, altcha=solution))
    # Both worker processes get several tries at the replay: every one refused.
    for _ in range(6):
        refused_403(ctx, fields(ctx, altcha=solution), "altcha", "already used")
    check(counted(ctx, "altcha", "replayed") >= 1, "replays not counted")


def forged_expired_too_easy(ctx):
    now = int(time.time())
    good = make_challenge(DIFFICULTY - 1, now + 300)
    # An independent implementation's challenge with the right secrets: accepted.
    sent(ctx, fields(ctx, altcha=solve(good)))
    wrong_secret = make_challenge(DIFFICULTY - 1, now + 300, secrets_for(key="x" * 40))
    refused_403(ctx, fields(ctx, altcha=solve(wrong_secret)), "altcha", "not solved")
    tampered = make_challenge(DIFFICULTY - 1, now + 300)
    tampered["parameters"]["expiresAt"] += 3600
    refused_403(ctx, fields(ctx, altcha=solve(tampered)), "altcha", "not solved")
    expired = make_challenge(DIFFICULTY - 1, now - 5)
    refused_403(ctx, fields(ctx, altcha=solve(expired)), "altcha", "expired")
    easy = make_challenge(5, now + 300)   # far below difficulty / 2
    refused_403(ctx, fields(ctx, altcha=solve(easy)), "altcha", "harder")
    c = fetch(ctx)
    bad = json.loads(base64.b64decode(solve(c)))
    bad["solution"]["counter"] += 1
    refused_403(ctx, fields(ctx, altcha=base64.b64encode(json.dumps(bad).encode()).decode()),
                "altcha", "not solved")
    refused_403(ctx, fields(ctx, altcha="garbage"), "altcha", "not solved")
    check(counted(ctx, "altcha", "too_easy") >= 1 and counted(ctx, "altcha", "expired") >= 1,
          "too_easy / expired not counted")


def pressure_mode(ctx):
    use_altcha(ctx, when="pressure",
               pressure="{phone: {sends: 1, period: 1h}}")
    try:
        phone = ctx.phone()
        sent(ctx, fields(ctx, phone), ip="203.0.113.61")        # no challenge yet
        ctx.stack.reload_pvgate(throttle="rules: []")             # lift the 60 s cooldown
        refused_403(ctx, fields(ctx, phone), "altcha", ip="203.0.113.61")
        sent(ctx, fields(ctx), ip="203.0.113.61")                 # another phone: none
        sent(ctx, fields(ctx, phone, altcha=solve(fetch(ctx))), ip="203.0.113.61")
    finally:
        ctx.stack.reload_pvgate(throttle=THROTTLE)
        use_altcha(ctx)


def redis_two_hosts(ctx):
    """With the Redis store, a solution used at one host is refused at another."""
    run = ctx.stack.run_dir.parent
    key = key_file(ctx.stack)
    extra = challenge_yaml("altcha", key, difficulty=DIFFICULTY, hard_difficulty=DIFFICULTY)
    a = stacklib.Stack(run / "redis-a", pvgate=ctx.stack.pvgate, redis=True, real_ip=True,
                       throttle="store: redis\nrules: []", extra_pvgate_config=extra,
                       merchant=MERCHANT)
    b = None
    try:
        a.start()
        b = stacklib.Stack(run / "redis-b", pvgate=ctx.stack.pvgate, redis=a.redis,
                           real_ip=True, throttle="store: redis\nrules: []",
                           extra_pvgate_config=extra, merchant=MERCHANT)
        b.start()
        actx, bctx = itest.Ctx(a), itest.Ctx(b)
        solution = solve(fetch(actx))      # issued by host A
        r = bctx.forwarded_once(lambda: send(bctx, fields(bctx, altcha=solution)))
        expect(r, 200, 200)                # accepted at host B
        refused_403(actx, fields(actx, altcha=solution), "altcha", "already used")
    finally:
        if b is not None:
            b.stop()
        a.stop()


# -- CAPTCHA cases ---------------------------------------------------------------------------

FIELD = {"turnstile": "cf-turnstile-response", "hcaptcha": "h-captcha-response",
         "recaptcha": "g-recaptcha-response"}


def use_captcha(ctx, kind, on_error="deny"):
    st = ctx.stack
    ctx.stack.reload_pvgate(extra_pvgate_config=challenge_yaml(
        kind, secret_file=st.siteverify_secret_file, siteverify_url=st.siteverify_url(kind),
        ca_file=st.certs / "ca.pem", timeout="2s", on_error=on_error))


def captcha_kinds(ctx):
    st = ctx.stack
    for kind, field in FIELD.items():
        use_captcha(ctx, kind)
        before = st.siteverify_stats()
        refused_403(ctx, fields(ctx), kind, "Solve the challenge first")
        sent(ctx, fields(ctx, **{field: ctx.unique("pass-")}))
        refused_403(ctx, fields(ctx, **{field: ctx.unique("fail-")}), kind, "not accepted")
        for bad in ("slow-", "garbage-", "http500-"):
            r = ctx.not_forwarded(lambda: send(ctx, fields(ctx, **{field: ctx.unique(bad)})))
            expect(r, 503, 500)
        after = st.siteverify_stats()
        last = after["last"]
        check(last["content_type"].startswith("application/x-www-form-urlencoded"),
              f"{kind}: siteverify got {last['content_type']!r}")
        check(not last["x_api_key"], f"{kind}: siteverify got an x-api-key header")
        check(last["secret_ok"] and last["fields"] == ["response", "secret"],
              f"{kind}: siteverify got fields {last['fields']} (secret ok: {last['secret_ok']});"
              " want the secret and the token only, never the customer's address")
        check(after["requests"] - before["requests"] == 5, f"{kind}: siteverify saw "
              f"{after['requests'] - before['requests']} calls, want 5")
    # on_error: allow lets a provider fault through (counted as bypassed).
    use_captcha(ctx, "turnstile", on_error="allow")
    sent(ctx, fields(ctx, **{FIELD["turnstile"]: ctx.unique("garbage-")}))
    check(counted(ctx, "turnstile", "bypassed") == 1, "bypass not counted")
    use_altcha(ctx)


THROTTLE = ("rules:\n  - name: phone-cooldown\n    actions: [send-token]\n"
            "    key: [merchant, phone]\n    limit: 1\n    period: 60s\n")

CASES = [
    ("altcha: no solution is 403 challenge altcha, not forwarded, not counted", altcha_required),
    ("altcha: the challenge route's v2 challenge, signed with the documented secret",
     challenge_shape),
    ("altcha: altcha-lib (npm reference) solves pvgate's challenge; accepted",
     reference_solver_accepted),
    ("altcha: a solution is accepted once, across both worker processes", once_across_processes),
    ("altcha: forged, tampered, expired, too easy, wrong counter, garbage: 403",
     forged_expired_too_easy),
    ("altcha: when: pressure asks only after a phone had a code", pressure_mode),
    ("altcha: Redis store, two hosts: used at B after issued at A, replay at A refused",
     redis_two_hosts),
    ("captcha: turnstile, hcaptcha, recaptcha: pass, fail, timeout, garbage, 500; allow",
     captcha_kinds),
]


if __name__ == "__main__":
    itest.run(CASES, {"workers": 2, "real_ip": True, "throttle": THROTTLE, "siteverify": True,
                      "allow_missing_origin": True},
              __doc__.split("\n\n")[0])
