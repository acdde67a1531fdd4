#!/usr/bin/env python3
"""A slow upstream call does not hold up other requests.

With one or more mock-slow-3000 send-tokens in flight (seen arriving at the mock), a normal
send-token, a verify-token-answer and a locally rejected request each complete while the slow
ones are still pending; then the slow ones complete with 200. Asserts ordering, not timings.
"""

import itest
from itest import check, expect, finish_slow, start_slow

SLOW_MS = 3000


def fields(ctx, user_id=None):
    return {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def fast_while_slow(ctx, n_slow, fast):
    slow = start_slow(ctx, n_slow, lambda user: fields(ctx, user), SLOW_MS)
    fast(ctx)
    pending = sum(1 for b in slow if not b.done)
    check(pending == n_slow, f"the fast request finished only after {n_slow - pending} of "
          f"{n_slow} slow ones: a slow upstream call held it up")
    finish_slow(slow)


def fast_send(ctx):
    expect(ctx.post_json("send-token", fields(ctx)), 200, 200)


def fast_verify(ctx):
    f = fields(ctx)
    j = expect(ctx.post_json("send-token", f), 200, 200)
    expect(ctx.post_json("verify-token-answer", dict(f, reference=j["reference"], answer="123456")),
           200, 200)


def fast_reject(ctx):
    expect(ctx.post_json("send-token", dict(fields(ctx), contact_no="x")), 400, 9001,
           message_contains="contact_no")


CASES = [
    ("send-token completes while a slow one is pending", lambda c: fast_while_slow(c, 1, fast_send)),
    ("send + verify complete while a slow one is pending",
     lambda c: fast_while_slow(c, 1, fast_verify)),
    ("local reject completes while a slow one is pending",
     lambda c: fast_while_slow(c, 1, fast_reject)),
    ("send-token completes while 8 slow ones are pending",
     lambda c: fast_while_slow(c, 8, fast_send)),
]

if __name__ == "__main__":
    itest.run(CASES, {"timeout_ms": 10000}, __doc__)
