"""pvgate's verification tokens (src/jws.h) against an independent JWT implementation.

    /usr/bin/python3 tests/interop/test_jws_pyjwt.py --tool build/tests/pvgate_jws_tool

Keys are generated with the openssl command line in a temporary directory (EC P-256 three
ways: genpkey's PKCS#8, `openssl ec`'s SEC1 and `ecparam -genkey`'s parameters-then-key; and
Ed25519). pvgate_jws_tool prints the JWKS and a token; PyJWT (Debian's python3-jwt, with
python3-cryptography) reads the JWKS with PyJWKSet, as a shop's server would, and must accept
the good tokens with the right claims and refuse a tampered payload, a foreign key's signature,
`alg: none`, an expired token and a wrong audience or issuer. PyJWT 2.x reads OKP/Ed25519 JWKs
and EdDSA (bookworm ships 2.6.0), so EdDSA is checked too.

Prints one line per case and finally `N passed, M failed`; exits 0 iff M == 0.
"""

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

try:
    import jwt
    from jwt import PyJWKSet
except ImportError as e:  # run with Debian's /usr/bin/python3 (see tests/CMakeLists.txt)
    print(f"cannot import PyJWT ({e}): install python3-jwt python3-cryptography "
          f"(scripts/install-deps) and run with Debian's python3, not {sys.executable}")
    print("0 passed, 1 failed")
    sys.exit(1)

ISS = "https://pvgate.example/"
AUD = "shop-a"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Ctx:
    def __init__(self, tool: str, tmp: Path):
        self.tool, self.tmp = tool, tmp
        self.keys = {}

    def openssl(self, *args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    def make_keys(self):
        t = self.tmp
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", str(t / "ec.pem"))
        self.openssl("ec", "-in", str(t / "ec.pem"), "-out", str(t / "ec-sec1.pem"))
        self.openssl("ecparam", "-name", "prime256v1", "-genkey", "-out", str(t / "ec-param.pem"))
        self.openssl("genpkey", "-algorithm", "ED25519", "-out", str(t / "ed.pem"))
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", str(t / "foreign.pem"))
        self.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", str(t / "rsa.pem"))
        check("BEGIN EC PRIVATE KEY" in (t / "ec-sec1.pem").read_text(), "openssl ec wrote SEC1")
        check("BEGIN EC PARAMETERS" in (t / "ec-param.pem").read_text(), "ecparam wrote params")

    def run_tool(self, keys, claims=None, **claim_args):
        cmd = [self.tool]
        for k in keys:
            cmd += ["--key", str(self.tmp / k)]
        if claims is not None:
            cmd += ["--claims", json.dumps(claims)]
        for name, value in claim_args.items():
            cmd += [f"--{name}", str(value)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        return p

    def token(self, keys, claims=None, **claim_args):
        """(JWKS dict, token) from the tool; the first key signs."""
        p = self.run_tool(keys, claims, **claim_args)
        check(p.returncode == 0, f"tool exit {p.returncode}: {p.stderr}")
        lines = p.stdout.splitlines()
        check(len(lines) == 2, f"tool printed {len(lines)} lines")
        return json.loads(lines[0]), lines[1]


def claims(exp_in=600, **over):
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "demo-user", "phone_number": "+60123456789",
         "phone_number_verified": True, "iat": now, "exp": now + exp_in, "jti": "jti-1"}
    c.update(over)
    return c


def verify(jwks: dict, token: str, alg: str, audience=AUD, issuer=ISS):
    """What a shop's server does: find the key by the token's kid in the JWKS, then decode."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = PyJWKSet.from_dict(jwks)[kid]
    return jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=issuer)


def refused(fn, errors, what):
    try:
        fn()
    except errors as e:
        return e
    except Exception as e:  # refused, but not for the reason the case is about
        raise AssertionError(f"{what}: refused with {type(e).__name__}: {e}") from e
    raise AssertionError(f"{what}: PyJWT accepted it")


def rfc7638(jwk: dict) -> str:
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("crv", "kty", "x")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


# --- cases -------------------------------------------------------------------------------


def case_good_es256_tokens_verify(ctx):
    for keyfile in ("ec.pem", "ec-sec1.pem", "ec-param.pem"):
        want = claims()
        jwks, token = ctx.token([keyfile], want)
        got = verify(jwks, token, "ES256")
        check(got == want, f"{keyfile}: claims {got} != {want}")
        header = json.loads(b64u_decode(token.split(".")[0]))
        check(header == {"alg": "ES256", "kid": jwks["keys"][0]["kid"], "typ": "JWT"},
              f"header {header}")
        check(len(b64u_decode(token.split(".")[2])) == 64, "ES256 signature is 64 bytes")
    # PKCS#8 and SEC1 of one key: the same JWK.
    a, _ = ctx.token(["ec.pem"], claims())
    b, _ = ctx.token(["ec-sec1.pem"], claims())
    check(a == b, f"PKCS#8 and SEC1 JWKS differ: {a} {b}")


def case_good_eddsa_token_verifies(ctx):
    want = claims()
    jwks, token = ctx.token(["ed.pem"], want)
    check(verify(jwks, token, "EdDSA") == want, "EdDSA claims")
    check(jwt.get_unverified_header(token)["alg"] == "EdDSA", "EdDSA header")


def case_claims_built_by_pvgate_verify(ctx):
    now = int(time.time())
    jwks, token = ctx.token(["ec.pem"], iss=ISS, aud=AUD, sub='user "q"\\x',
                            phone="+60123456789", iat=now, exp=now + 300)
    got = verify(jwks, token, "ES256")
    check(got["sub"] == 'user "q"\\x' and got["phone_number"] == "+60123456789",
          f"claims {got}")
    check(got["phone_number_verified"] is True and got["exp"] == now + 300, f"claims {got}")
    check(len(got["jti"]) == 22 and len(b64u_decode(got["jti"])) == 16, f"jti {got['jti']}")
    _, again = ctx.token(["ec.pem"], iss=ISS, aud=AUD, sub="u", phone="+1", iat=now,
                         exp=now + 300)
    check(verify(jwks, again, "ES256")["jti"] != got["jti"], "jti repeats")


def case_jwks_is_public_with_rfc7638_kids(ctx):
    jwks, _ = ctx.token(["ec.pem", "ed.pem"], claims())
    keys = jwks["keys"]
    check(len(keys) == 2, f"{len(keys)} keys")
    check(set(keys[0]) == {"kty", "crv", "x", "y", "kid", "alg", "use"}, f"EC members {keys[0]}")
    check(set(keys[1]) == {"kty", "crv", "x", "kid", "alg", "use"}, f"OKP members {keys[1]}")
    for k in keys:
        check("d" not in k and k["use"] == "sig", f"private or wrong use: {k}")
        check(k["kid"] == rfc7638(k), f"kid {k['kid']} is not the RFC 7638 thumbprint")
    # Every published key is usable: the second key's tokens verify against the same JWKS.
    _, token = ctx.token(["ed.pem", "ec.pem"], claims())
    check(verify(jwks, token, "EdDSA")["sub"] == "demo-user", "second key's token")


def case_tampered_payload_refused(ctx):
    for keyfile, alg in (("ec.pem", "ES256"), ("ed.pem", "EdDSA")):
        jwks, token = ctx.token([keyfile], claims())
        h, _, s = token.split(".")
        forged = b64u(json.dumps(claims(phone_number="+60999999999")).encode())
        refused(lambda: verify(jwks, f"{h}.{forged}.{s}", alg), jwt.InvalidSignatureError,
                f"{alg} tampered payload")


def case_foreign_key_refused(ctx):
    jwks, _ = ctx.token(["ec.pem"], claims())
    _, foreign = ctx.token(["foreign.pem"], claims())
    # By kid, as a shop looks keys up: the foreign kid is not in the JWKS.
    refused(lambda: verify(jwks, foreign, "ES256"), KeyError, "foreign kid")
    # And its signature does not verify under the published key either.
    published = PyJWKSet.from_dict(jwks).keys[0].key
    refused(lambda: jwt.decode(foreign, published, algorithms=["ES256"], audience=AUD,
                               issuer=ISS), jwt.InvalidSignatureError, "foreign signature")


def case_alg_none_refused(ctx):
    jwks, token = ctx.token(["ec.pem"], claims())
    kid = jwt.get_unverified_header(token)["kid"]
    header = b64u(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    payload = token.split(".")[1]
    for crafted in (f"{header}.{payload}.", f"{header}.{payload}.{token.split('.')[2]}"):
        refused(lambda: verify(jwks, crafted, "ES256"), jwt.InvalidAlgorithmError, "alg none")


def case_expired_refused(ctx):
    jwks, token = ctx.token(["ec.pem"], claims(exp_in=-60))
    refused(lambda: verify(jwks, token, "ES256"), jwt.ExpiredSignatureError, "expired")


def case_wrong_audience_or_issuer_refused(ctx):
    jwks, token = ctx.token(["ec.pem"], claims())
    refused(lambda: verify(jwks, token, "ES256", audience="shop-b"), jwt.InvalidAudienceError,
            "wrong audience")
    refused(lambda: verify(jwks, token, "ES256", issuer="https://evil.example/"),
            jwt.InvalidIssuerError, "wrong issuer")


def case_wrong_algorithm_refused(ctx):
    jwks, token = ctx.token(["ec.pem"], claims())
    refused(lambda: verify(jwks, token, "EdDSA"), jwt.InvalidAlgorithmError, "ES256 as EdDSA")


def case_tool_refuses_rsa_without_leaking(ctx):
    p = ctx.run_tool(["rsa.pem"], claims())
    check(p.returncode == 1, f"exit {p.returncode}")
    check("an RSA private key" in p.stderr and str(ctx.tmp / "rsa.pem") in p.stderr,
          f"stderr {p.stderr!r}")
    body = [ln for ln in (ctx.tmp / "rsa.pem").read_text().splitlines() if "-----" not in ln]
    check(not any(ln[:16] in p.stderr or ln[:16] in p.stdout for ln in body), "key text leaked")
    check(p.stdout == "", "printed a token")


CASES = [
    case_good_es256_tokens_verify,
    case_good_eddsa_token_verifies,
    case_claims_built_by_pvgate_verify,
    case_jwks_is_public_with_rfc7638_kids,
    case_tampered_payload_refused,
    case_foreign_key_refused,
    case_alg_none_refused,
    case_expired_refused,
    case_wrong_audience_or_issuer_refused,
    case_wrong_algorithm_refused,
    case_tool_refuses_rsa_without_leaking,
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, help="path to pvgate_jws_tool")
    a = ap.parse_args()
    print(f"PyJWT {jwt.__version__} ({Path(jwt.__file__).parent})", flush=True)
    passed = failed = 0
    tmp = Path(tempfile.mkdtemp(prefix="pvgate-jws-"))
    try:
        ctx = Ctx(a.tool, tmp)
        try:
            ctx.make_keys()
        except Exception:
            traceback.print_exc()
            print("key generation failed")
            print(f"0 passed, {len(CASES)} failed")
            sys.exit(1)
        for case in CASES:
            name = case.__name__[len("case_"):]
            try:
                case(ctx)
            except Exception as e:
                failed += 1
                print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc()
                continue
            passed += 1
            print(f"ok   {name}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
