#!/usr/bin/python3
"""The demo shop's own server: it checks pvgate's verification token (issue 12, "the shop's side").

    /usr/bin/python3 scripts/demo_shop.py --port 0 --port-file F \
        --jwks-url http://127.0.0.1:8080/pvgate/jwks.json \
        --issuer http://127.0.0.1:8080/pvgate --audience shop-a

scripts/stack.py starts it with shop=True (`stack.py start --shop`, as scripts/demo does), on
loopback, behind the stack's nginx at /shop/ (same origin as the page and /pvgate/). It stands for
the merchant's own backend, the one that knows who is logged in, and is the working example of
the README's "The shop's side: checking the token". Debian packages only: the standard library's
http.server and PyJWT (python3-jwt, python3-cryptography), so it runs under Debian's
/usr/bin/python3, whose dist-packages hold them.

Routes (JSON in and out, `Cache-Control: no-store`):

    POST /shop/login            "logs in": a new user id (demo-<hex>, valid as pvgate's user_id)
                                in an HttpOnly, SameSite=Strict cookie signed with an HMAC key
                                made at start; with a valid cookie already, the same user again.
                                -> 200 {"user_id"}
    GET  /shop/me               -> 200 {"user_id", "verified_phones": [{phone_number, jti, at}]}
                                   401 when not logged in
    POST /shop/verified-phone   {"token": "<pvgate's verification_token>"}
                                -> 200 {"user_id", "phone_number", "message"}
                                   400 body not a JSON object with a string "token"
                                   401 not logged in; token not valid (signature, alg, iss, aud,
                                       exp, claims) or for another user (sub != the cookie's)
                                   409 token already used (its jti was seen before)
                                   413 body over 8 KiB, 415 not application/json

What a token must pass, in this order: signature by a key of pvgate's JWKS (PyJWKClient, the set
cached 5 minutes as pvgate's Cache-Control says), alg ES256 or EdDSA only, iss and aud equal to
the configured ones, exp in the future, every claim present, phone_number_verified true and
phone_number E.164; then sub equal to the logged-in user; then its jti not seen before (kept in
memory until the token's exp, after which the token is refused for its exp anyway).

Everything is in memory: a restart logs everyone out (new HMAC key) and forgets what was
verified. One log line per request on stderr; tokens and cookies are never logged.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from http import cookies

try:
    import jwt
except ImportError as e:
    sys.exit(f"demo_shop.py: cannot import PyJWT ({e}): install python3-jwt and "
             f"python3-cryptography (scripts/install-deps) and run with /usr/bin/python3, "
             f"not {sys.executable}")

COOKIE = "shop_session"
MAX_BODY = 8 * 1024
ALGORITHMS = ["ES256", "EdDSA"]      # what pvgate signs with; never HS*, never none
REQUIRED = ["iss", "aud", "sub", "exp", "iat", "jti", "phone_number"]
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
JWKS_FETCH_TIMEOUT_S = 5             # PyJWKClient's urlopen has no timeout of its own


class Refusal(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class Shop:
    """The shop's state: sessions (signed cookies), used token ids, verified phones."""

    def __init__(self, jwks_url, issuer, audience):
        self.jwks = jwt.PyJWKClient(jwks_url)     # caches the key set (lifespan 300 s)
        self.issuer, self.audience = issuer, audience
        self.key = secrets.token_bytes(32)        # HMAC key for the session cookie
        self.lock = threading.Lock()
        self.used = {}        # jti -> exp (seconds), until exp
        self.verified = {}    # user id -> [{"phone_number", "jti", "at"}]

    # -- sessions: "<user id>.<base64url HMAC-SHA256(key, user id)>" -----------------------------

    def cookie_for(self, user):
        mac = hmac.new(self.key, user.encode(), hashlib.sha256).digest()
        return user + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def user_of(self, cookie_value):
        user, _, _ = (cookie_value or "").rpartition(".")
        if user and hmac.compare_digest(self.cookie_for(user), cookie_value):
            return user
        return None

    def new_user(self):
        return "demo-" + secrets.token_hex(6)    # 17 characters of pvgate's user_id alphabet

    # -- the token ------------------------------------------------------------------------------

    def check_token(self, token, user):
        """The claims of a token that passes every check for `user`, recorded as used; else
        raises Refusal."""
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.audience,
                                issuer=self.issuer, options={"require": REQUIRED})
        except jwt.PyJWKClientError as e:
            raise Refusal(401, f"token not accepted: no key for it ({e})") from None
        except jwt.ExpiredSignatureError:
            raise Refusal(401, "token not accepted: expired") from None
        except jwt.InvalidTokenError as e:
            raise Refusal(401, f"token not accepted: {e}") from None
        if claims.get("phone_number_verified") is not True:
            raise Refusal(401, "token not accepted: phone_number_verified is not true")
        phone = claims["phone_number"]
        if not isinstance(phone, str) or not E164.match(phone):
            raise Refusal(401, "token not accepted: phone_number is not E.164")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise Refusal(401, "token not accepted: no jti")
        if claims["sub"] != user:
            raise Refusal(401, "token not accepted: it is for another user than the one "
                               "logged in")
        now = time.time()
        with self.lock:
            for jti in [j for j, exp in self.used.items() if exp <= now]:
                del self.used[jti]     # expired: refused for its exp from now on
            if claims["jti"] in self.used:
                raise Refusal(409, "token already used")
            self.used[claims["jti"]] = claims["exp"]
            self.verified.setdefault(user, []).append(
                {"phone_number": phone, "jti": claims["jti"], "at": int(now)})
        return claims


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "demo-shop"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    shop = None   # set by main()

    def log_message(self, fmt, *args):   # the request line only: no token, no cookie
        sys.stderr.write("%s demo_shop %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"),
                                                fmt % args))

    def reply(self, status, body, headers=()):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def refuse(self, status, message):
        self.reply(status, {"status": status, "message": message})

    def user(self):
        jar = cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except cookies.CookieError:
            return None
        return self.shop.user_of(jar[COOKIE].value) if COOKIE in jar else None

    def json_body(self):
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refusal(415, "send application/json")
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Refusal(411, "Content-Length required") from None
        if n < 0 or n > MAX_BODY:
            raise Refusal(413, f"body over {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(n))
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "body is not a JSON object")
        return body

    def do_GET(self):
        if self.path != "/shop/me":
            return self.refuse(404, "unknown route")
        user = self.user()
        if user is None:
            return self.refuse(401, "not logged in")
        with self.shop.lock:
            phones = list(self.shop.verified.get(user, []))
        self.reply(200, {"user_id": user, "verified_phones": phones})

    def do_POST(self):
        try:
            if self.path == "/shop/login":
                user = self.user() or self.shop.new_user()
                cookie = (f"{COOKIE}={self.shop.cookie_for(user)}; Path=/shop/; HttpOnly; "
                          "SameSite=Strict")    # add Secure on https (the demo is plain http)
                return self.reply(200, {"user_id": user}, [("Set-Cookie", cookie)])
            if self.path != "/shop/verified-phone":
                return self.refuse(404, "unknown route")
            body = self.json_body()
            user = self.user()
            if user is None:
                raise Refusal(401, "not logged in")
            token = body.get("token")
            if not isinstance(token, str) or not token or set(body) != {"token"}:
                raise Refusal(400, 'want {"token": "<verification_token>"}')
            claims = self.shop.check_token(token, user)
            self.log_message("verified %s for %s (jti %s)", claims["phone_number"], user,
                             claims["jti"])
            self.reply(200, {"status": 200, "user_id": user, "phone_number": claims["phone_number"],
                             "message": f"The shop verified {claims['phone_number']} for user "
                                        f"{user}."})
        except Refusal as r:
            self.log_message("refused %d: %s", r.status, r.message)
            self.refuse(r.status, r.message)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free one (see --port-file)")
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--jwks-url", required=True, help="pvgate's .../jwks.json")
    ap.add_argument("--issuer", required=True, help="pvgate's verification.issuer")
    ap.add_argument("--audience", required=True, help="the merchant's audience (its name)")
    a = ap.parse_args(argv)

    socket.setdefaulttimeout(JWKS_FETCH_TIMEOUT_S)   # for PyJWKClient's fetch
    Handler.shop = Shop(a.jwks_url, a.issuer, a.audience)
    server = http.server.ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"demo_shop: listening on {a.host}:{port}; iss {a.issuer}, aud {a.audience}, "
          f"keys {a.jwks_url}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
