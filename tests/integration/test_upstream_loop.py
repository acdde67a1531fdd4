#!/usr/bin/env python3
"""Calls to Pipwave wait in the upstream's event set (the workers drive it), not on worker
threads, and are bounded.

The stack runs pvgate with --threads 2 and upstream.max_connections: 4, and one throttle rule
(1 send per phone per 10 minutes), against the mock's slow user (mock-slow-3000).

Proves: more slow calls than worker threads are in flight at once (all seen at the mock while
a further request still completes); a call over max_connections is refused at once with the
generic 502, never reaches the mock, and gives its phone's quota back; once the slow calls end,
their slots are free again; a SIGHUP that changes max_connections leaves the running limit in
place (it is read at start only) and says so in the log. Asserts ordering and counts, not
timings.
"""

import itest
from itest import check, expect, finish_slow, start_slow, wait_until

THREADS = 2
MAX_CONNECTIONS = 4
SLOW_MS = 3000
THROTTLE = """\
on_store_error: deny
rules:
  - name: it_phone
    actions: [send-token]
    key: [phone]
    limit: 1
    period: 10m
max_answer_attempts: 0
"""


def fields(ctx, user_id=None, phone=None):
    return {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": phone or ctx.phone()}


def slow_calls(ctx, n):
    return start_slow(ctx, n, lambda user: fields(ctx, user), SLOW_MS)


def more_calls_than_threads(ctx):
    # With one thread per call, only THREADS could ever reach the mock together.
    slow = slow_calls(ctx, THREADS * 2)
    expect(ctx.post_json("send-token", dict(fields(ctx), contact_no="x")), 400, 9001,
           message_contains="contact_no")
    pending = sum(1 for b in slow if not b.done)
    check(pending == THREADS * 2, f"only {pending} of {THREADS * 2} slow calls still pending "
          "after a local reject: the workers were held by them")
    finish_slow(slow)


def over_the_limit(ctx):
    slow = slow_calls(ctx, MAX_CONNECTIONS)
    phone = ctx.phone()
    user = ctx.unique()
    requests_before = ctx.stack.mock_stats()["requests"]
    r = ctx.post_json("send-token", fields(ctx, user, phone))
    expect(r, 502, 500)
    check(all(not b.done for b in slow), "a slow call finished before the refusal: the refusal "
          "waited for a slot instead of failing at once")
    stats = ctx.stack.mock_stats()
    check(stats["requests"] == requests_before and user not in stats["by_user"],
          "the refused call reached the mock")
    finish_slow(slow)
    # The refusal gave the phone's quota back: the same phone may send now (the rule allows
    # one send per 10 minutes).
    expect(ctx.post_json("send-token", fields(ctx, ctx.unique(), phone)), 200, 200)
    # And the slots are free again: MAX_CONNECTIONS calls at once still work.
    finish_slow(slow_calls(ctx, MAX_CONNECTIONS))


def reload_keeps_limit(ctx):
    st = ctx.stack
    st.max_connections = MAX_CONNECTIONS * 4
    st.reload_pvgate()
    wait_until(lambda: "upstream.max_connections takes effect only on restart"
               in st.pvgate_log.read_text(errors="replace"), "the reload warning in the log")
    slow = slow_calls(ctx, MAX_CONNECTIONS)
    expect(ctx.post_json("send-token", fields(ctx)), 502, 500)
    finish_slow(slow)


CASES = [
    ("more slow calls than worker threads are in flight at once", more_calls_than_threads),
    ("a call over upstream.max_connections: 502 at once, not sent, quota back", over_the_limit),
    ("SIGHUP does not change max_connections (restart only) and says so",
     reload_keeps_limit),
]

if __name__ == "__main__":
    itest.run(CASES, {"threads": THREADS, "max_connections": MAX_CONNECTIONS,
                      "throttle": THROTTLE, "nginx_keepalive": 16}, __doc__)
