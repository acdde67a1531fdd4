#!/usr/bin/env python3
"""Through nginx: the happy path and every locally decided row of the HTTP table.

Happy send-token + verify-token-answer (JSON and form), invalid input per field (400/9001 naming
the field), duplicate / unknown / reserved fields, 405 with Allow, 404, 413 at 4097 bytes while
4096 pass, nginx's own JSON 413, 415, 500 for an unknown merchant. Every locally rejected request
is checked not to reach the mock upstream.
"""

import json

import itest
from itest import check, expect

SEND = "send-token"
VERIFY = "verify-token-answer"
BODY_LIMIT = 4096

# A second location naming a merchant pvgate does not know (server misconfiguration), and one
# without PVGATE_MERCHANT at all (one merchant configured -> that one is used).
EXTRA_LOCATIONS = """
        location /nosuch/ {
            fastcgi_pass pvgate;
            fastcgi_keep_conn on;
            include fastcgi_params;
            fastcgi_param PVGATE_MERCHANT nosuch;
        }
        location /default/ {
            fastcgi_pass pvgate;
            fastcgi_keep_conn on;
            include fastcgi_params;
        }
"""


def fields(ctx, **over):
    f = {"user_id": ctx.unique(), "contact_no_country_dialing_code": "60",
         "contact_no": ctx.phone()}
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


def verify_fields(ctx, **over):
    f = fields(ctx, reference="1001", answer="123456")
    f.update(over)
    return {k: v for k, v in f.items() if v is not None}


# -- happy paths ------------------------------------------------------------------------------


def happy_json(ctx):
    f = fields(ctx)
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, f))
    j = expect(r, 200, 200)
    check(isinstance(j.get("reference"), int) and j["reference"] > 0,
          f"send-token: no positive integer reference: {r.describe()}")
    last = ctx.stack.mock_stats()["last"]
    for k in ("user_id", "contact_no_country_dialing_code", "contact_no"):
        check(str(last.get(k)) == f[k], f"upstream got {k}={last.get(k)!r}, sent {f[k]!r}")
    check(last.get("action") == SEND, f"upstream action {last.get('action')!r}")
    v = dict(f, reference=str(j["reference"]), answer="123456")
    r2 = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, v))
    expect(r2, 200, 200)
    check(ctx.stack.mock_stats()["last"].get("action") == VERIFY, "upstream action not verify")


def happy_form(ctx):
    f = fields(ctx)
    r = ctx.forwarded_once(lambda: ctx.post_form(SEND, f))
    j = expect(r, 200, 200)
    ref = j.get("reference")
    check(isinstance(ref, int), f"no reference: {r.describe()}")
    r2 = ctx.forwarded_once(lambda: ctx.post_form(VERIFY, dict(f, reference=ref,
                                                                answer="123456")))
    expect(r2, 200, 200)


def without_contact_no(ctx):
    # Pipwave would text a number pvgate cannot see: refused unless the merchant sets
    # allow_stored_number (test_phone_numbers covers the opt-in).
    f = fields(ctx, contact_no=None)
    r = ctx.not_forwarded(lambda: ctx.post_json(SEND, f))
    j = expect(r, 400, 9001)
    check("contact_no" in j["message"], f"message does not name contact_no: {j}")


def reference_as_json_number(ctx):
    # The browser gets `reference` as a JSON integer and naturally sends it back as one.
    f = fields(ctx)
    j = expect(ctx.post_json(SEND, f), 200, 200)
    r = ctx.post_json(VERIFY, dict(f, reference=j["reference"], answer="123456"))
    expect(r, 200, 200)


def json_charset_param(ctx):
    f = fields(ctx)
    r = ctx.request("POST", "/pvgate/send-token", json.dumps(f),
                    {"Content-Type": "application/json; charset=utf-8"})
    expect(r, 200, 200)


def limits_accepted(ctx):
    # Upper bounds of every field rule pass validation: the longest user id and answer are
    # forwarded; the longest dialing code and number are well-formed fields but no country's
    # number, so the phone stage refuses them (400/5001), unforwarded.
    f = fields(ctx, user_id="Aa0._@-" + "z" * 25)
    check(len(f["user_id"]) == 32, "test bug")
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, f))
    expect(r, 200, 200)
    r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, dict(f, reference="1", answer="aB3dE6")))
    expect(r, 400, 5051)   # well-formed, unknown reference: the upstream's answer
    r = ctx.not_forwarded(lambda: ctx.post_json(SEND, fields(
        ctx, user_id="x", contact_no_country_dialing_code="12345", contact_no="9" * 32)))
    expect(r, 400, 5001)
    r = ctx.not_forwarded(lambda: ctx.post_json(SEND, fields(
        ctx, user_id="x", contact_no_country_dialing_code="1", contact_no="5")))
    expect(r, 400, 5001)


def wrong_answer(ctx):
    f = fields(ctx)
    j = expect(ctx.post_json(SEND, f), 200, 200)
    r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, dict(
        f, reference=str(j["reference"]), answer="654321")))
    expect(r, 400, 5052)


def unknown_reference(ctx):
    r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, verify_fields(ctx,
                                                                       reference="99999999")))
    expect(r, 400, 5051)


def default_merchant(ctx):
    # No PVGATE_MERCHANT and exactly one merchant configured: that one signs.
    r = ctx.forwarded_once(lambda: ctx.request(
        "POST", "/default/send-token", json.dumps(fields(ctx)),
        {"Content-Type": "application/json"}))
    expect(r, 200, 200)


# -- invalid input, one field at a time ---------------------------------------------------------

BAD_SEND = [
    ("user_id", None), ("user_id", ""), ("user_id", "a" * 33), ("user_id", "a b"),
    ("user_id", "a+b"), ("user_id", "<script>"), ("user_id", "caf\u00e9"), ("user_id", "a/b"),
    ("user_id", "a:b"), ("user_id", "a\nb"),
    ("contact_no_country_dialing_code", None), ("contact_no_country_dialing_code", ""),
    ("contact_no_country_dialing_code", "+60"), ("contact_no_country_dialing_code", "123456"),
    ("contact_no_country_dialing_code", "6a"), ("contact_no_country_dialing_code", " 60"),
    ("contact_no_country_dialing_code", "\u0666\u0660"),  # Arabic-Indic digits
    ("contact_no", "1" * 33), ("contact_no", "12-34"), ("contact_no", "+123"),
    ("contact_no", "12 34"), ("contact_no", "abc"),
]
BAD_VERIFY = [
    ("reference", None), ("reference", ""), ("reference", "0"), ("reference", "-5"),
    ("reference", "abc"), ("reference", "1.5"), ("reference", "0x10"), ("reference", " 7"),
    ("answer", None), ("answer", ""), ("answer", "1234567"), ("answer", "12-45"),
    ("answer", "12 45"), ("answer", "\u00e9"),
]


def bad_field_case(route, field, value, form):
    def case(ctx):
        make = fields if route == SEND else verify_fields
        f = make(ctx, **{field: value})
        if value is None:
            f.pop(field, None)
        post = ctx.post_form if form else ctx.post_json
        r = ctx.not_forwarded(lambda: post(route, f))
        expect(r, 400, 9001, message_contains=field)
    return case


def bad_json_types(ctx):
    for value in ({"a": 1}, [1], True, None, 1.5):
        f = fields(ctx)
        f["user_id"] = value
        r = ctx.not_forwarded(lambda: ctx.post_json(SEND, f))
        expect(r, 400, 9001, message_contains="user_id")
    # Negative and zero references as JSON numbers.
    for ref in (0, -1):
        r = ctx.not_forwarded(lambda: ctx.post_json(VERIFY, verify_fields(ctx, reference=ref)))
        expect(r, 400, 9001, message_contains="reference")


def malformed_bodies(ctx):
    for body in ("", "{", "[]", '"x"', "null", "42", '{"user_id":"a",}', "\xff\xfe",
                 '{"user_id": "a"} trailing'):
        r = ctx.not_forwarded(lambda: ctx.post_json(SEND, body.encode("latin-1")))
        expect(r, 400, 9001)
    for body in ("user_id=%zz&contact_no_country_dialing_code=60", "%ff%fe=1"):
        r = ctx.not_forwarded(lambda: ctx.post_form(SEND, body))
        expect(r, 400, 9001)


def duplicate_field(ctx):
    for field in ("user_id", "contact_no_country_dialing_code", "contact_no"):
        # Form: the same key twice, with different and with equal values.
        f = fields(ctx)
        for second in ("other1", f[field]):
            body = "&".join(f"{k}={v}" for k, v in f.items()) + f"&{field}={second}"
            r = ctx.not_forwarded(lambda: ctx.post_form(SEND, body))
            expect(r, 400, 9001, message_contains=field)
        # JSON: a duplicate member (json.dumps cannot produce one, so by hand).
        body = json.dumps(f)[:-1] + f', "{field}": "1234"}}'
        r = ctx.not_forwarded(lambda: ctx.post_json(SEND, body))
        expect(r, 400, 9001, message_contains=field)
    f = verify_fields(ctx)
    body = "&".join(f"{k}={v}" for k, v in f.items()) + "&answer=000000"
    r = ctx.not_forwarded(lambda: ctx.post_form(VERIFY, body))
    expect(r, 400, 9001, message_contains="answer")


def unknown_field(ctx):
    for name in ("foo", "User_id", "user_id ", "callback"):
        r = ctx.not_forwarded(lambda: ctx.post_json(SEND, fields(ctx, **{name: "1"})))
        expect(r, 400, 9001, message_contains=name.strip() if name != "user_id " else None)
    # reference/answer are verify-only fields: unknown to send-token.
    for name in ("reference", "answer"):
        r = ctx.not_forwarded(lambda: ctx.post_json(SEND, fields(ctx, **{name: "1"})))
        expect(r, 400, 9001, message_contains=name)
    r = ctx.not_forwarded(lambda: ctx.post_form(SEND, "user_id=a&contact_no_country_dialing_code"
                                                "=60&x_extra=1"))
    expect(r, 400, 9001, message_contains="x_extra")


def reserved_fields(ctx):
    for name in ("api_key", "api_secret", "signature", "timestamp", "action"):
        for route, make in ((SEND, fields), (VERIFY, verify_fields)):
            r = ctx.not_forwarded(lambda: ctx.post_json(route, make(ctx, **{name: "x1"})))
            expect(r, 400, 9001, message_contains=name)
            r = ctx.not_forwarded(lambda: ctx.post_form(route, make(ctx, **{name: "x1"})))
            expect(r, 400, 9001, message_contains=name)


# -- method, route, size, type ------------------------------------------------------------------


def method_not_allowed(ctx):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for route in (SEND, VERIFY):
            body = json.dumps(fields(ctx)) if method in ("PUT", "PATCH") else None
            hdrs = {"Content-Type": "application/json"} if body else {}
            r = ctx.not_forwarded(lambda: ctx.request(method, "/pvgate/" + route, body, hdrs))
            expect(r, 405, 400)
            check(r.header("Allow") == "POST",
                  f"Allow header is {r.header('Allow')!r}, want 'POST'\n      " + r.describe())


def options_is_a_preflight(ctx):
    # OPTIONS is a CORS preflight: 204, no body. This merchant lists no
    # allowed_origins, so no Access-Control-Allow-Origin is ever granted.
    for route in (SEND, VERIFY):
        r = ctx.not_forwarded(lambda: ctx.request(
            "OPTIONS", "/pvgate/" + route, None,
            {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}))
        check(r.status == 204, "want 204\n      " + r.describe())
        check(r.header("Access-Control-Allow-Origin") is None,
              "no allowed_origins, yet ACAO granted\n      " + r.describe())


def head_not_allowed(ctx):
    r = ctx.not_forwarded(lambda: ctx.request("HEAD", "/pvgate/send-token"))
    check(r.status == 405 and r.header("Allow") == "POST", "HEAD: " + r.describe())


def unknown_route(ctx):
    for path in ("/pvgate/", "/pvgate/nope", "/pvgate/send-tokens", "/pvgate/Send-Token",
                 "/pvgate/send-token/extra", "/pvgate/verify-token", "/pvgate/phone-verify"):
        r = ctx.not_forwarded(lambda: ctx.post_json(path[len("/pvgate/"):], fields(ctx)))
        expect(r, 404, 404)


def route_by_last_segment(ctx):
    # Routing uses the last path segment, so a deeper prefix works too.
    r = ctx.forwarded_once(lambda: ctx.request("POST", "/pvgate/v1/shop/send-token",
                                               json.dumps(fields(ctx)),
                                               {"Content-Type": "application/json"}))
    expect(r, 200, 200)


def query_string_ignored_for_routing(ctx):
    r = ctx.forwarded_once(lambda: ctx.request("POST", "/pvgate/send-token?x=1",
                                               json.dumps(fields(ctx)),
                                               {"Content-Type": "application/json"}))
    expect(r, 200, 200)


def padded(ctx, size):
    raw = json.dumps(fields(ctx))
    body = raw[:-1] + " " * (size - len(raw)) + "}"
    check(len(body.encode()) == size, "test bug: padding")
    return body


def body_limit(ctx):
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, padded(ctx, BODY_LIMIT)))
    expect(r, 200, 200)
    r = ctx.not_forwarded(lambda: ctx.post_json(SEND, padded(ctx, BODY_LIMIT + 1)))
    expect(r, 413, 9001)
    form = "user_id=" + "a" * (BODY_LIMIT + 1)
    r = ctx.not_forwarded(lambda: ctx.post_form(SEND, form))
    expect(r, 413, 9001)


def nginx_body_limit(ctx):
    # Beyond nginx's client_max_body_size (16k): nginx's own 413, as JSON via error_page.
    r = ctx.not_forwarded(lambda: ctx.post_json(SEND, padded(ctx, 20000)))
    expect(r, 413, 9001)


def unsupported_media_type(ctx):
    body = json.dumps(fields(ctx))
    for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x",
                  "application/jsonx", None):
        hdrs = {"Content-Type": ctype} if ctype else {}
        r = ctx.not_forwarded(lambda: ctx.request("POST", "/pvgate/send-token", body, hdrs))
        expect(r, 415, 9001)


def unknown_merchant(ctx):
    r = ctx.not_forwarded(lambda: ctx.request("POST", "/nosuch/send-token",
                                              json.dumps(fields(ctx)),
                                              {"Content-Type": "application/json"}))
    expect(r, 500, 500, message_lacks=("nosuch",))


def still_serving(ctx):
    # After every bad request above, pvgate still answers normally.
    expect(ctx.post_json(SEND, fields(ctx)), 200, 200)


CASES = [
    ("happy send-token + verify-token-answer (JSON)", happy_json),
    ("happy send-token + verify-token-answer (form)", happy_form),
    ("send-token without contact_no -> 400/9001", without_contact_no),
    ("reference as a JSON number", reference_as_json_number),
    ("application/json; charset=utf-8", json_charset_param),
    ("field limits accepted", limits_accepted),
    ("wrong answer -> 400/5052", wrong_answer),
    ("unknown reference -> 400/5051", unknown_reference),
    ("no PVGATE_MERCHANT, one merchant -> that one", default_merchant),
]
for _route, _bad in ((SEND, BAD_SEND), (VERIFY, BAD_VERIFY)):
    for _field, _value in _bad:
        for _form in (False, True):
            CASES.append((f"{_route} {_field}={_value!r} ({'form' if _form else 'json'}) "
                          "-> 400/9001", bad_field_case(_route, _field, _value, _form)))
CASES += [
    ("non-string JSON values -> 400/9001", bad_json_types),
    ("malformed bodies -> 400/9001", malformed_bodies),
    ("duplicate field -> 400/9001 naming it", duplicate_field),
    ("unknown field -> 400/9001 naming it", unknown_field),
    ("client sends api_key/api_secret/signature/timestamp/action -> 400", reserved_fields),
    ("not POST -> 405 + Allow: POST", method_not_allowed),
    ("OPTIONS -> 204 preflight, no CORS grant without allowed_origins", options_is_a_preflight),
    ("HEAD -> 405", head_not_allowed),
    ("unknown route -> 404", unknown_route),
    ("route by last path segment", route_by_last_segment),
    ("query string ignored for routing", query_string_ignored_for_routing),
    ("4096-byte body accepted, 4097 -> 413", body_limit),
    ("nginx's own 413 is JSON", nginx_body_limit),
    ("other content type -> 415", unsupported_media_type),
    ("unknown merchant -> 500", unknown_merchant),
    ("still serving after bad requests", still_serving),
]

if __name__ == "__main__":
    itest.run(CASES, {"extra_locations": EXTRA_LOCATIONS}, __doc__)
