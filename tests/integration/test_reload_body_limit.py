#!/usr/bin/env python3
"""limits.max_body_bytes changes on SIGHUP (issue 11, part 4). Each request's body is read with
the limit of the configuration snapshot it is served under, so a reload applies to the next
request; it used to be read with the limit pvgate started with (a raised limit still cut bodies
at the old limit + 1 byte, and the request was refused or garbled).

pvgate starts with `limits.max_body_bytes: 1024`; a valid ~2000-byte body gets 413. After a
SIGHUP to 4096 (logged as loaded, with no "takes effect only on restart" warning), the same body
is read whole and forwarded (200), one of exactly 4096 bytes too, and 4097 or 5000 bytes get
pvgate's 413.
"""

import json

import itest
from itest import check, expect

LIMIT = "limits:\n  max_body_bytes: {}\n"


def body_of(ctx, size):
    """A valid send-token JSON body of exactly `size` bytes: JSON whitespace in the middle, so
    a body cut short loses the fields after it and cannot pass."""
    head = json.dumps({"user_id": ctx.unique("big")})[:-1] + ","
    tail = json.dumps({"contact_no_country_dialing_code": "60", "contact_no": ctx.phone()})[1:]
    pad = size - len(head) - len(tail)
    assert pad >= 0, size
    body = (head + " " * pad + tail).encode()
    assert len(body) == size and json.loads(body)
    return body


def post(ctx, body):
    return ctx.post_json("send-token", body)


def before_reload(ctx):
    r = ctx.not_forwarded(lambda: post(ctx, body_of(ctx, 2000)))
    expect(r, 413, 9001, message_contains="1024")
    expect(ctx.forwarded_once(lambda: post(ctx, body_of(ctx, 1024))), 200, 200)


def after_reload(ctx):
    ctx.stack.reload_pvgate(extra_pvgate_config=LIMIT.format(4096))
    for size in (2000, 4096):
        r = ctx.forwarded_once(lambda: post(ctx, body_of(ctx, size)))
        expect(r, 200, 200)
    for size in (4097, 5000):
        r = ctx.not_forwarded(lambda: post(ctx, body_of(ctx, size)))
        expect(r, 413, 9001, message_contains="4096")
    log = ctx.stack.pvgate_log.read_text(errors="replace")
    check("only on restart" not in log,
          "raising max_body_bytes must not warn about a restart:\n" + log[-2000:])


def lowered_again(ctx):
    ctx.stack.reload_pvgate(extra_pvgate_config=LIMIT.format(1024))
    expect(ctx.not_forwarded(lambda: post(ctx, body_of(ctx, 2000))), 413, 9001)
    expect(ctx.forwarded_once(lambda: post(ctx, body_of(ctx, 1024))), 200, 200)


CASES = [
    ("limit 1024 at start: 2000 bytes -> 413, 1024 -> 200", before_reload),
    ("SIGHUP to 4096: 2000 and 4096 bytes read whole and forwarded, 4097 and 5000 -> 413",
     after_reload),
    ("SIGHUP back to 1024: 2000 -> 413 again", lowered_again),
]

if __name__ == "__main__":
    itest.run(CASES, {"extra_pvgate_config": LIMIT.format(1024)}, description=__doc__)
