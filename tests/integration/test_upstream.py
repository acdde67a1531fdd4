#!/usr/bin/env python3
"""Through nginx: how pvgate maps every kind of upstream answer (mock Pipwave, magic user_ids).

Upstream 400-group statuses pass through as HTTP 400; 5002 becomes 429 + Retry-After; merchant
setup errors (401/403/404/500/5004/5005/5006), unparseable, non-JSON, oversized, truncated and
array answers become 502 with a generic message; an upstream slower than timeout_ms becomes 504;
string statuses are accepted; extra members are dropped; control characters are removed from
messages, which are cut to 255 bytes; a dead upstream is a 502.
"""

import re
import time

import itest
from itest import check, expect

SEND = "send-token"
VERIFY = "verify-token-answer"
TIMEOUT_MS = 1500          # pvgate's upstream timeout_ms in this stack
COOLDOWN_S = 60            # the mock's resend cooldown in this stack

PASS_THROUGH = (400, 5001, 5003, 5051, 5052, 9001)
HIDDEN = (401, 403, 404, 500, 5004, 5005, 5006)
BROKEN = ("mock-garbage", "mock-html", "mock-http500", "mock-big", "mock-close", "mock-array",
          "mock-endless")


def fields(ctx, user_id=None, **over):
    f = {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
         "contact_no": ctx.phone()}
    f.update(over)
    return f


def verify_fields(ctx, user_id=None):
    return fields(ctx, user_id, reference="1001", answer="123456")


def upstream_request_shape(ctx):
    f = fields(ctx)
    t0 = int(time.time())
    expect(ctx.forwarded_once(lambda: ctx.post_json(SEND, f)), 200, 200)
    st = ctx.stack.mock_stats()
    last, hdrs = st["last"], st["last_headers"]
    check(hdrs.get("x-api-key") == ctx.stack.api_key, f"x-api-key header: {hdrs}")
    check((hdrs.get("content-type") or "").startswith("application/json"),
          f"upstream Content-Type: {hdrs.get('content-type')!r}")
    check("mozilla" not in (hdrs.get("user-agent") or "").lower(),
          f"fake browser User-Agent: {hdrs.get('user-agent')!r}")
    check(last.get("api_key") == ctx.stack.api_key, f"body api_key: {last.get('api_key')!r}")
    check(re.fullmatch(r"[0-9a-f]{40}", str(last.get("signature"))) is not None,
          f"signature: {last.get('signature')!r}")
    check(abs(int(last.get("timestamp")) - t0) <= 5, f"timestamp: {last.get('timestamp')!r}")
    check(set(last) == {"action", "timestamp", "api_key", "signature", "user_id",
                        "contact_no_country_dialing_code", "contact_no"},
          f"upstream body fields: {sorted(last)}")
    check(st["secret_leaks"] == 0, "api_secret was sent upstream")


def extra_members_dropped(ctx):
    r = ctx.post_json(SEND, fields(ctx))
    j = expect(r, 200, 200)
    check(set(j) <= {"status", "message", "reference"}, f"members: {sorted(j)}")
    check(b"internal_cost" not in r.body and b"provider_detail" not in r.body,
          "upstream's extra members reached the browser: " + r.describe())


def pass_through(n, route):
    def case(ctx):
        make = fields if route == SEND else verify_fields
        r = ctx.forwarded_once(lambda: ctx.post_json(route, make(ctx, f"mock-status-{n}")))
        j = expect(r, 400, n)
        check(j["message"] == f"mock status {n}",
              f"upstream message not passed through: {j['message']!r}")
    return case


def string_status(ctx):
    r = ctx.post_json(SEND, fields(ctx, "mock-strstatus-5052"))
    expect(r, 400, 5052)
    r = ctx.post_json(VERIFY, verify_fields(ctx, "mock-strstatus-200"))
    expect(r, 200, 200)
    r = ctx.post_json(SEND, fields(ctx, "mock-strstatus-5002"))
    expect(r, 429, 5002)
    r = ctx.post_json(SEND, fields(ctx, "mock-strstatus-401"))
    expect(r, 502, 500, message_lacks=("mock status",))


def verify_ok_status(ctx):
    r = ctx.post_json(VERIFY, verify_fields(ctx, "mock-status-200"))
    expect(r, 200, 200)


def too_frequent_magic(ctx):
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, fields(ctx, "mock-status-5002")))
    j = expect(r, 429, 5002)
    check(j.get("seconds_till_resend") == 42, f"seconds_till_resend: {r.describe()}")
    check(r.header("Retry-After") == "42", f"Retry-After: {r.describe()}")


def too_frequent_cooldown(ctx):
    f = fields(ctx)
    expect(ctx.post_json(SEND, f), 200, 200)
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, dict(f)))
    j = expect(r, 429, 5002)
    s = j.get("seconds_till_resend")
    check(isinstance(s, int) and 1 <= s <= COOLDOWN_S, f"seconds_till_resend {s!r}")
    check(r.header("Retry-After") == str(s),
          f"Retry-After {r.header('Retry-After')!r} != seconds_till_resend {s}")


def hidden(n):
    def case(ctx):
        r = ctx.forwarded_once(lambda: ctx.post_json(SEND, fields(ctx, f"mock-status-{n}")))
        expect(r, 502, 500, message_lacks=("mock status",))
    return case


def broken(user):
    def case(ctx):
        t0 = time.monotonic()
        r = ctx.post_json(SEND, fields(ctx, user))
        expect(r, 502, 500, message_lacks=("boom", "html", "bad gateway"))
        check(time.monotonic() - t0 < TIMEOUT_MS / 1000 + 10, "took far longer than timeout")
    return case


def slow_timeout(ctx):
    r = ctx.forwarded_once(lambda: ctx.post_json(SEND, fields(ctx, f"mock-slow-{TIMEOUT_MS + 3000}")))
    expect(r, 504, 500)


def drip_timeout(ctx):
    # Headers at once, then one byte every 0.5 s: the total timeout must still fire.
    r = ctx.post_json(SEND, fields(ctx, "mock-drip"))
    expect(r, 504, 500)


def slow_within_timeout(ctx):
    r = ctx.post_json(SEND, fields(ctx, f"mock-slow-{TIMEOUT_MS // 3}"))
    expect(r, 200, 200)


def control_chars(ctx):
    for route, make in ((SEND, fields), (VERIFY, verify_fields)):
        r = ctx.post_json(route, make(ctx, "mock-ctrl"))
        j = expect(r, 400, 400)  # envelope check: no control chars, <= 255 bytes
        check("ctrl:" in j["message"] and "red" in j["message"],
              f"message lost its printable text: {j['message']!r}")
        check(len(j["message"].encode()) >= 100, f"message cut too short: {j['message']!r}")
        check(r.header("Set-Cookie") is None, "upstream message became a header: "
              + r.describe())


def echo_hides_credentials(ctx):
    r = ctx.post_json(SEND, fields(ctx, "mock-echo"))
    check(r.status == 400, r.describe())
    itest.check_envelope(r)
    check(ctx.stack.api_key.encode() not in r.body, "api_key reached the browser: "
          + r.describe())
    check(ctx.stack.api_secret.encode() not in r.body, "api_secret reached the browser")
    check(b'"signature"' not in r.body, "signature member reached the browser")


def still_serving(ctx):
    expect(ctx.post_json(SEND, fields(ctx)), 200, 200)


def upstream_down(ctx):
    # Last case: stop the mock; a connection refused is a transport error -> 502.
    mock = ctx.stack.procs["mock"]
    mock.terminate()
    mock.wait(timeout=15)
    r = ctx.post_json(SEND, fields(ctx))
    expect(r, 502, 500)


CASES = [
    ("upstream request: x-api-key, JSON, signature, no secret", upstream_request_shape),
    ("extra upstream members dropped", extra_members_dropped),
]
for _n in PASS_THROUGH:
    for _route in (SEND, VERIFY):
        CASES.append((f"upstream {_n} ({_route}) -> 400/{_n}, message passed",
                      pass_through(_n, _route)))
CASES += [
    ("upstream verify 200 -> 200", verify_ok_status),
    ("status as a string", string_status),
    ("upstream 5002 -> 429 + Retry-After (magic)", too_frequent_magic),
    ("upstream 5002 -> 429 + Retry-After (resend cooldown)", too_frequent_cooldown),
]
for _n in HIDDEN:
    CASES.append((f"upstream {_n} -> 502/500 generic", hidden(_n)))
for _u in BROKEN:
    CASES.append((f"{_u} -> 502/500", broken(_u)))
CASES += [
    (f"upstream slower than timeout_ms={TIMEOUT_MS} -> 504", slow_timeout),
    ("upstream dripping bytes -> 504", drip_timeout),
    ("upstream slow but within timeout -> 200", slow_within_timeout),
    ("control characters removed, message <= 255 bytes", control_chars),
    ("echoed api_key/signature/api_secret never reach the browser", echo_hides_credentials),
    ("still serving", still_serving),
    ("upstream down -> 502", upstream_down),
]

if __name__ == "__main__":
    itest.run(CASES, {"timeout_ms": TIMEOUT_MS,
                      "mock_args": ["--resend-cooldown", str(COOLDOWN_S)]}, __doc__)
