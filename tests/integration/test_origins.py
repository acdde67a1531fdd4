#!/usr/bin/env python3
"""Browser origin through nginx (issue 4, "Browser origin").

Merchants (one nginx location each, fastcgi_param PVGATE_MERCHANT):
  /pvgate/       shop-a       allowed_origins [https://shop.example, https://app.shop.example:8443]
  /open/         shop-open    no allowed_origins (any origin; pvgate warns at start-up)
  /missing-ok/   shop-missing allowed_origins [https://shop.example], allow_missing_origin: true
  /uid/          shop-uid     user_id_param: PVGATE_USER_ID, which this TEST nginx sets from the
                              X-Test-User request header (a real site sets it after auth_request)

A listed Origin gets 200 with Access-Control-Allow-Origin echoing it and Vary: Origin; any other
Origin (or, without Origin, Referer) gets 403 and nothing is forwarded; neither gets 403 unless
allow_missing_origin; OPTIONS preflights get 204 with the CORS headers for a listed origin and
403 otherwise; no answer ever carries `Access-Control-Allow-Origin: *`.
"""

import secrets

import itest
from itest import check, expect

ALLOWED = "https://shop.example"
ALLOWED2 = "https://app.shop.example:8443"
EVIL = "https://evil.example"

MERCHANTS = {name: ("pk" + secrets.token_hex(8), "sk" + secrets.token_hex(16))
             for name in ("shop-open", "shop-missing", "shop-uid")}

EXTRA_CONFIG = f"""    allowed_origins: [{ALLOWED}, {ALLOWED2}]
  shop-open:
    api_key: {MERCHANTS['shop-open'][0]}
    api_secret: {MERCHANTS['shop-open'][1]}
  shop-missing:
    api_key: {MERCHANTS['shop-missing'][0]}
    api_secret: {MERCHANTS['shop-missing'][1]}
    allowed_origins: [{ALLOWED}]
    allow_missing_origin: true
  shop-uid:
    api_key: {MERCHANTS['shop-uid'][0]}
    api_secret: {MERCHANTS['shop-uid'][1]}
    allowed_origins: [{ALLOWED}]
    user_id_param: PVGATE_USER_ID
"""


def location(prefix, merchant, extra=""):
    return f"""
        location /{prefix}/ {{
            fastcgi_pass pvgate;
            fastcgi_keep_conn on;
            include fastcgi_params;
            fastcgi_param PVGATE_MERCHANT {merchant};
            {extra}
        }}
"""


EXTRA_LOCATIONS = (location("open", "shop-open") + location("missing-ok", "shop-missing") +
                   location("uid", "shop-uid",
                            "fastcgi_param PVGATE_USER_ID $http_x_test_user;"))


def fields(ctx, **over):
    f = {"user_id": ctx.unique("o"), "contact_no_country_dialing_code": "60",
         "contact_no": ctx.phone()}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def post(ctx, prefix="pvgate", headers=None, route="send-token", **over):
    return ctx.request("POST", f"/{prefix}/{route}", __import__("json").dumps(fields(ctx, **over)),
                       {"Content-Type": "application/json", **(headers or {})})


def no_star(r):
    for k, v in r.header_list:
        check(not (k.lower().startswith("access-control-") and v.strip() == "*"),
              "a CORS header is '*': " + r.describe())


def cors_echo(r, origin):
    no_star(r)
    acao = [v for k, v in r.header_list if k.lower() == "access-control-allow-origin"]
    check(acao == [origin], f"Access-Control-Allow-Origin {acao}, want [{origin!r}]\n      "
          + r.describe())
    vary = ",".join(v for k, v in r.header_list if k.lower() == "vary")
    check("origin" in vary.lower(), f"Vary {vary!r} lacks Origin\n      " + r.describe())


def no_cors(r):
    no_star(r)
    check(r.header("Access-Control-Allow-Origin") is None,
          "Access-Control-Allow-Origin on an answer to an unlisted origin: " + r.describe())


def allowed(origin):
    def case(ctx):
        r = ctx.forwarded_once(lambda: post(ctx, headers={"Origin": origin}))
        expect(r, 200, 200)
        cors_echo(r, origin)
    return case


def denied(headers, prefix="pvgate"):
    def case(ctx):
        r = ctx.not_forwarded(lambda: post(ctx, prefix, headers=headers))
        expect(r, 403, 403)
        no_cors(r)
    return case


def referer_allowed(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, headers={
        "Referer": ALLOWED + "/checkout/phone?step=2"}))
    expect(r, 200, 200)
    no_star(r)


def origin_wins_over_referer(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, headers={"Origin": ALLOWED,
                                                      "Referer": EVIL + "/x"}))
    expect(r, 200, 200)
    cors_echo(r, ALLOWED)
    denied({"Origin": EVIL, "Referer": ALLOWED + "/"})(ctx)


def invalid_input_still_after_origin(ctx):
    # The origin check comes first: a bad field from a listed origin is a 400 (with CORS, so
    # the page can read it); from another origin it is a 403.
    r = ctx.not_forwarded(lambda: post(ctx, headers={"Origin": ALLOWED}, user_id="bad user"))
    expect(r, 400, 9001, "user_id")
    cors_echo(r, ALLOWED)
    r = ctx.not_forwarded(lambda: post(ctx, headers={"Origin": EVIL}, user_id="bad user"))
    expect(r, 403, 403)


def preflight_allowed(origin):
    def case(ctx):
        r = ctx.not_forwarded(lambda: ctx.request("OPTIONS", "/pvgate/send-token", None, {
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}))
        check(r.status == 204, f"HTTP {r.status}, want 204\n      " + r.describe())
        check(r.body == b"", "a 204 with a body: " + r.describe())
        cors_echo(r, origin)
        methods = (r.header("Access-Control-Allow-Methods") or "").upper()
        check("POST" in methods, "Access-Control-Allow-Methods lacks POST: " + r.describe())
        hdrs = (r.header("Access-Control-Allow-Headers") or "").lower()
        check("content-type" in hdrs, "Access-Control-Allow-Headers lacks Content-Type: "
              + r.describe())
    return case


def preflight_denied(headers):
    def case(ctx):
        r = ctx.not_forwarded(lambda: ctx.request("OPTIONS", "/pvgate/send-token", None,
                                                  {"Access-Control-Request-Method": "POST",
                                                   **headers}))
        expect(r, 403, 403)
        no_cors(r)
    return case


def missing_ok(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, "missing-ok"))
    expect(r, 200, 200)
    no_cors(r)
    denied({"Origin": EVIL}, "missing-ok")(ctx)
    r = ctx.forwarded_once(lambda: post(ctx, "missing-ok", headers={"Origin": ALLOWED}))
    expect(r, 200, 200)
    cors_echo(r, ALLOWED)


def open_merchant(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, "open", headers={"Origin": EVIL}))
    expect(r, 200, 200)
    no_star(r)
    r = ctx.forwarded_once(lambda: post(ctx, "open"))
    expect(r, 200, 200)


def open_merchant_warned(ctx):
    log = ctx.stack.pvgate_log.read_text(errors="replace")
    # Start-up warnings are log lines like any other (JSON here: "level":"warn").
    lines = [l for l in log.splitlines() if '"level":"warn"' in l and "allowed_origins" in l]
    check(any("shop-open" in l for l in lines),
          "no start-up warning about shop-open's missing allowed_origins in pvgate.log:\n"
          + "\n".join(log.splitlines()[:20]))
    for name in ("shop-a", "shop-missing", "shop-uid"):
        check(not any(f"merchants.{name}" in l for l in lines),
              f"{name} has allowed_origins but was warned about: {lines}")


def uid_from_server(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, "uid", headers={
        "Origin": ALLOWED, "X-Test-User": "srv.user-42"}, user_id=None))
    expect(r, 200, 200)
    last = ctx.stack.mock_stats()["last"]
    check(last.get("user_id") == "srv.user-42", f"forwarded user_id {last.get('user_id')!r}, "
          "want the server's srv.user-42")
    check(last.get("api_key") == MERCHANTS["shop-uid"][0], "signed by the wrong merchant")


def uid_client_refused(ctx):
    r = ctx.not_forwarded(lambda: post(ctx, "uid", headers={
        "Origin": ALLOWED, "X-Test-User": "srv.user-42"}, user_id="client-claims"))
    expect(r, 400, 9001, "user_id")


def uid_missing_param(ctx):
    # nginx sends PVGATE_USER_ID empty (no X-Test-User): a server misconfiguration, 500.
    r = ctx.not_forwarded(lambda: post(ctx, "uid", headers={"Origin": ALLOWED}, user_id=None))
    expect(r, 500, 500)
    # A client cannot set the param through a header of that name (it becomes HTTP_...).
    r = ctx.not_forwarded(lambda: post(ctx, "uid", headers={
        "Origin": ALLOWED, "Pvgate-User-Id": "evil"}, user_id=None))
    expect(r, 500, 500)
    r = ctx.not_forwarded(lambda: post(ctx, "uid", headers={
        "Origin": ALLOWED, "X-Test-User": "bad user!"}, user_id=None))
    expect(r, 500, 500)


def uid_verify(ctx):
    r = ctx.forwarded_once(lambda: post(ctx, "uid", headers={
        "Origin": ALLOWED, "X-Test-User": "srv.user-43"}, user_id=None))
    ref = expect(r, 200, 200)["reference"]
    f = {"contact_no_country_dialing_code": "60", "contact_no": ctx.stack.mock_stats()["last"]
         ["contact_no"], "reference": ref, "answer": "123456"}
    r = ctx.forwarded_once(lambda: ctx.request(
        "POST", "/uid/verify-token-answer", __import__("json").dumps(f),
        {"Content-Type": "application/json", "Origin": ALLOWED, "X-Test-User": "srv.user-43"}))
    expect(r, 200, 200)


def never_star(ctx):
    check(len(ctx.responses) > 20, "test bug: few responses")
    for r in ctx.responses:
        no_star(r)


CASES = [
    ("allowed Origin -> 200, ACAO echoes it, Vary: Origin", allowed(ALLOWED)),
    ("second allowed Origin (with port) -> 200", allowed(ALLOWED2)),
    ("other Origin -> 403, not forwarded", denied({"Origin": EVIL})),
    ("http:// of an allowed https origin -> 403", denied({"Origin": "http://shop.example"})),
    ("allowed origin as a prefix of another host -> 403",
     denied({"Origin": "https://shop.example.evil.example"})),
    ("userinfo trick -> 403", denied({"Origin": "https://shop.example@evil.example"})),
    ("Origin: null -> 403", denied({"Origin": "null"})),
    ("allowed origin, other port -> 403", denied({"Origin": "https://shop.example:8443"})),
    ("no Origin, allowed Referer -> 200", referer_allowed),
    ("no Origin, other Referer -> 403", denied({"Referer": EVIL + "/https://shop.example/"})),
    ("neither Origin nor Referer -> 403", denied({})),
    ("Origin decides over Referer", origin_wins_over_referer),
    ("origin checked before the fields", invalid_input_still_after_origin),
    ("OPTIONS preflight, allowed origin -> 204 + CORS headers", preflight_allowed(ALLOWED)),
    ("OPTIONS preflight, second allowed origin -> 204", preflight_allowed(ALLOWED2)),
    ("OPTIONS preflight, other origin -> 403", preflight_denied({"Origin": EVIL})),
    ("OPTIONS preflight, no origin -> 403", preflight_denied({})),
    ("allow_missing_origin: neither -> 200, other origin -> 403", missing_ok),
    ("no allowed_origins: any origin -> 200", open_merchant),
    ("no allowed_origins: start-up warning in pvgate.log", open_merchant_warned),
    ("user_id_param: forwarded user_id is the server's", uid_from_server),
    ("user_id_param: a client user_id -> 400, not forwarded", uid_client_refused),
    ("user_id_param: param missing or invalid -> 500, not forwarded", uid_missing_param),
    ("user_id_param: verify-token-answer with the server's user id", uid_verify),
    ("no answer ever carries a '*' CORS header", never_star),
]

if __name__ == "__main__":
    for key, secret in MERCHANTS.values():
        itest.record_credentials(key, secret)
    mock_args = []
    for key, secret in MERCHANTS.values():
        mock_args += ["--merchant", f"{key}:{secret}"]
    itest.run(CASES, {"extra_pvgate_config": EXTRA_CONFIG, "extra_locations": EXTRA_LOCATIONS,
                      "mock_args": mock_args}, __doc__)
