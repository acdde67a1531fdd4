#!/usr/bin/env python3
"""The demo shop's backend (scripts/demo_shop.py) checking pvgate's verification tokens.

The stack: the shipped throttle rules, verification=True (a P-256 key in RUN_DIR/token-key.pem,
issuer http://127.0.0.1:PORT/pvgate) and shop=True (the backend under /usr/bin/python3, behind
nginx's /shop/). This test imports no JWT library, so it runs under any python3: real tokens come
from pvgate (send-token, then verify-token-answer with the mock's code 123456), and forged ones
are signed with the stack's own key through the openssl command line, so a refusal can be pinned
on the one claim that is wrong. A forged token with every claim right must be accepted: that
shows the forging itself is sound.

What the shop must do: 200 and a record for a valid token of the logged-in user; 409 for a token
seen before; 401 when not logged in (or with a forged cookie), for another user's token, a
tampered payload, a foreign key's signature, alg none, a wrong iss or aud, an expired token,
one without jti; 400 for a body that is not {"token": string}; 415 for a body that is not JSON.
"""

import base64
import json
import subprocess
import tempfile
import time
from pathlib import Path

import itest
from itest import check

PHONE_DIAL = "60"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def der_to_raw(der):
    """ECDSA-Sig-Value (DER SEQUENCE of INTEGER r, s) -> the 64-byte r||s of RFC 7518 3.4."""
    check(der[0] == 0x30, "openssl signature is not a DER sequence")
    at = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        check(der[at] == 0x02, "openssl signature: INTEGER expected")
        n = der[at + 1]
        value = der[at + 2:at + 2 + n].lstrip(b"\0")
        out += value.rjust(32, b"\0")
        at += 2 + n
    return out


def es256(key_path, header, claims):
    """A compact JWS signed with the PEM key at key_path (openssl dgst)."""
    signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64u(json.dumps(claims, separators=(",", ":")).encode()))
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path)],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    return signing_input + "." + b64u(der_to_raw(der))


class Shopper:
    """One browser's cookie jar at the shop."""

    def __init__(self, ctx):
        self.ctx = ctx
        r = ctx.request("POST", "/shop/login", b"", {"Content-Length": "0"})
        check(r.status == 200, "login: " + r.describe())
        set_cookie = r.header("Set-Cookie") or ""
        check("HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie,
              f"session cookie flags: {set_cookie}")
        self.cookie = set_cookie.split(";", 1)[0]
        self.user = json.loads(r.body)["user_id"]
        check(self.cookie == f"shop_session={self.user}." + self.cookie.rsplit(".", 1)[1],
              f"cookie {self.cookie} for {self.user}")

    def post(self, body, content_type="application/json", cookie=None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": content_type}
        if cookie is not False:
            headers["Cookie"] = cookie or self.cookie
        r = self.ctx.request("POST", "/shop/verified-phone", data, headers)
        return r, (json.loads(r.body) if r.body.strip().startswith(b"{") else None)

    def me(self):
        r = self.ctx.request("GET", "/shop/me", None, {"Cookie": self.cookie})
        check(r.status == 200, "/shop/me: " + r.describe())
        return json.loads(r.body)


def real_token(ctx, user):
    """A token pvgate signs for `user` and a fresh phone: (token, E.164 phone)."""
    contact = ctx.phone()
    fields = {"user_id": user, "contact_no_country_dialing_code": PHONE_DIAL,
              "contact_no": contact}
    r = ctx.post_json("send-token", fields)
    check(r.status == 200, "send-token: " + r.describe())
    v = ctx.post_json("verify-token-answer",
                      {**fields, "reference": r.json["reference"], "answer": "123456"})
    check(v.status == 200, "verify-token-answer: " + v.describe())
    token = json.loads(v.body).get("verification_token")
    check(isinstance(token, str) and token.count(".") == 2, "no token: " + v.describe())
    return token, f"+{PHONE_DIAL}{contact}"


def expect_refusal(shopper, token, status, words, what):
    r, body = shopper.post({"token": token})
    check(r.status == status and body and words in body.get("message", ""),
          f"{what}: want {status} '{words}', got " + r.describe())


STATE = {}


def first_shopper(ctx):
    if "a" not in STATE:
        STATE["a"] = Shopper(ctx)
        STATE["b"] = Shopper(ctx)
    return STATE["a"]


def good_claims(ctx, user, **over):
    now = int(time.time())
    claims = {"iss": f"http://127.0.0.1:{ctx.stack.port}/pvgate", "aud": ctx.stack.merchant,
              "sub": user, "phone_number": f"+{PHONE_DIAL}{ctx.phone()}",
              "phone_number_verified": True, "iat": now, "exp": now + 600,
              "jti": f"forged-{ctx.unique()}"}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def forged(ctx, user, key=None, **over):
    """A token signed with the stack's key (or `key`) under its kid, claims as given."""
    kid = STATE["header"]["kid"]
    return es256(key or ctx.stack.token_key(), {"alg": "ES256", "kid": kid, "typ": "JWT"},
                 good_claims(ctx, user, **over))


# -- cases ------------------------------------------------------------------------------------


def login_and_me(ctx):
    a = first_shopper(ctx)
    b = STATE["b"]
    check(a.user != b.user, f"two logins, two users: {a.user} {b.user}")
    check(a.me() == {"user_id": a.user, "verified_phones": []}, f"/shop/me: {a.me()}")
    r = ctx.request("GET", "/shop/me")
    check(r.status == 401, "/shop/me without a cookie: " + r.describe())


def valid_token_recorded(ctx):
    a = first_shopper(ctx)
    token, phone = real_token(ctx, a.user)
    STATE["token"], STATE["header"] = token, b64u_json(token.split(".")[0])
    r, body = a.post({"token": token})
    check(r.status == 200 and body["user_id"] == a.user and body["phone_number"] == phone,
          "valid token: " + r.describe())
    check(body["message"] == f"The shop verified {phone} for user {a.user}.", body["message"])
    phones = a.me()["verified_phones"]
    check([p["phone_number"] for p in phones] == [phone], f"/shop/me: {phones}")
    check(phones[0]["jti"] == b64u_json(token.split(".")[1])["jti"], f"jti recorded: {phones}")


def replay_409(ctx):
    a = first_shopper(ctx)
    expect_refusal(a, STATE["token"], 409, "already used", "the same token again")
    check(len(a.me()["verified_phones"]) == 1, "a replay records nothing")


def another_user_401(ctx):
    b = STATE["b"]
    token, _ = real_token(ctx, STATE["a"].user)   # fresh: not refused as a replay
    expect_refusal(b, token, 401, "another user", "user a's token presented by user b")
    check(b.me()["verified_phones"] == [], "nothing recorded for b")
    # ... and it was not spent by the refusal: its own user can still use it.
    r, _ = STATE["a"].post({"token": token})
    check(r.status == 200, "the refused token, by its own user: " + r.describe())


def not_logged_in_401(ctx):
    token, _ = real_token(ctx, STATE["a"].user)
    a = STATE["a"]
    r, body = a.post({"token": token}, cookie=False)
    check(r.status == 401 and body["message"] == "not logged in", "no cookie: " + r.describe())
    user, mac = a.cookie.split("=", 1)[1].rsplit(".", 1)
    r, body = a.post({"token": token}, cookie=f"shop_session={STATE['b'].user}.{mac}")
    check(r.status == 401 and body["message"] == "not logged in",
          "another user's id under a's HMAC: " + r.describe())


def forged_control_accepted(ctx):
    a = STATE["a"]
    r, body = a.post({"token": forged(ctx, a.user)})
    check(r.status == 200, "a forged token with every claim right (the control): " + r.describe())


def claims_refused(ctx):
    a = STATE["a"]
    port = ctx.stack.port
    cases = [
        ({"aud": "shop-b"}, "audience", "wrong aud"),
        ({"iss": f"http://127.0.0.1:{port}/other"}, "issuer", "wrong iss"),
        ({"iat": int(time.time()) - 700, "exp": int(time.time()) - 100}, "expired", "expired"),
        ({"jti": None}, "jti", "no jti"),
        ({"exp": None}, "exp", "no exp"),
        ({"phone_number_verified": False}, "phone_number_verified", "not verified"),
        ({"phone_number": "60123456789"}, "E.164", "phone not E.164"),
    ]
    for over, words, what in cases:
        expect_refusal(a, forged(ctx, a.user, **over), 401, words, what)


def signatures_refused(ctx):
    a = STATE["a"]
    token, _ = real_token(ctx, a.user)
    head, payload, sig = token.split(".")
    claims = b64u_json(payload)
    claims["phone_number"] = "+60999999999"
    tampered = head + "." + b64u(json.dumps(claims).encode()) + "." + sig
    expect_refusal(a, tampered, 401, "Signature verification failed", "tampered payload")
    none = b64u(b'{"alg":"none","typ":"JWT"}') + "." + payload + "."
    expect_refusal(a, none, 401, "not accepted", "alg none")
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(other)], check=True,
                       capture_output=True)
        expect_refusal(a, forged(ctx, a.user, key=other), 401, "Signature verification failed",
                       "a foreign key's signature under pvgate's kid")
    expect_refusal(a, "not.a.token", 401, "not accepted", "garbage")
    # The real token is still good after all that (nothing above spent it).
    r, _ = a.post({"token": token})
    check(r.status == 200, "the untampered token: " + r.describe())


def bodies_refused(ctx):
    a = STATE["a"]
    for body, status, what in [("{", 400, "not JSON"), ("[]", 400, "not an object"),
                               ({}, 400, "no token"), ({"token": 1}, 400, "token not a string"),
                               ({"token": STATE["token"], "x": 1}, 400, "another member")]:
        r, _ = a.post(body)
        check(r.status == status, f"{what}: " + r.describe())
    r, _ = a.post("token=x", content_type="application/x-www-form-urlencoded")
    check(r.status == 415, "a form body: " + r.describe())
    r, _ = a.post({"token": "x" * 9000})
    check(r.status == 413, "a body over 8 KiB: " + r.describe())


CASES = [
    ("login: two users, HttpOnly SameSite=Strict cookies; /shop/me needs one", login_and_me),
    ("a valid token of the logged-in user: 200, recorded with its jti", valid_token_recorded),
    ("the same token again: 409, nothing recorded", replay_409),
    ("another user's token: 401; its own user can still use it", another_user_401),
    ("no cookie, or a forged one: 401", not_logged_in_401),
    ("control: a token forged with pvgate's key and right claims is accepted", forged_control_accepted),
    ("wrong aud, iss, expired, no jti/exp, unverified, not E.164: 401", claims_refused),
    ("tampered, alg none, foreign key, garbage: 401", signatures_refused),
    ("bodies: 400 not {token: string}, 415 not JSON, 413 too large", bodies_refused),
]

if __name__ == "__main__":
    itest.run(CASES, {"throttle": "default", "verification": True, "shop": True}, __doc__)
