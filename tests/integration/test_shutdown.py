#!/usr/bin/env python3
"""SIGTERM/SIGINT: pvgate stops accepting, finishes requests in flight and exits 0 in bounded
time, also when idle with nginx holding kept-alive FastCGI connections open to it.
"""

import signal
import time

import itest
from itest import Background, check, expect, wait_until

EXIT_BOUND_S = 10   # "exit within a bounded time"; the stack kills it after 15 s


def fields(ctx, user_id=None):
    return {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def warm(ctx):
    # Several requests so nginx holds kept-alive FastCGI connections to pvgate.
    for _ in range(5):
        expect(ctx.post_json("send-token", fields(ctx)), 200, 200)


def stop_and_check(ctx, sig):
    t0 = time.monotonic()
    rc = ctx.stack.stop_pvgate(sig, timeout=EXIT_BOUND_S)
    took = time.monotonic() - t0
    check(rc is not None, f"pvgate still running {EXIT_BOUND_S}s after {sig.name} (killed)")
    check(rc == 0, f"pvgate exited with {rc} after {sig.name}")
    return took


def in_flight(ctx):
    warm(ctx)
    user = "mock-slow-2000"
    slow = Background(lambda: ctx.post_json("send-token", fields(ctx, user)))
    wait_until(lambda: ctx.stack.mock_stats()["by_user"].get(user, 0) >= 1,
               "the slow request to reach the mock")
    stop_and_check(ctx, signal.SIGTERM)
    expect(slow.result(), 200, 200)


def restart(ctx):
    ctx.stack.start_pvgate()
    wait_until(lambda: ctx.post_json("send-token", fields(ctx)).status == 200,
               "pvgate to answer after restart")


def idle_sigterm(ctx):
    restart(ctx)
    warm(ctx)
    stop_and_check(ctx, signal.SIGTERM)


def idle_sigint(ctx):
    restart(ctx)
    warm(ctx)
    stop_and_check(ctx, signal.SIGINT)


def fresh_idle_sigterm(ctx):
    # Never served a request at all.
    ctx.stack.start_pvgate()
    stop_and_check(ctx, signal.SIGTERM)


def pvgate_down(ctx):
    # pvgate stopped (previous case): nginx's own 502, as JSON via nginx/pvgate.conf's error_page.
    check(ctx.stack.procs["pvgate"].poll() is not None, "test bug: pvgate still running")
    r = ctx.post_json("send-token", fields(ctx))
    expect(r, 502, 500)


def serving_again(ctx):
    restart(ctx)
    warm(ctx)


CASES = [
    ("SIGTERM with a request in flight: it completes, exit 0", in_flight),
    ("SIGTERM when idle with kept-alive connections: exit 0", idle_sigterm),
    ("SIGINT when idle: exit 0", idle_sigint),
    ("SIGTERM right after start: exit 0", fresh_idle_sigterm),
    ("pvgate down: nginx answers a JSON 502", pvgate_down),
    ("restarted pvgate serves again", serving_again),
]

if __name__ == "__main__":
    itest.run(CASES, {}, __doc__)
