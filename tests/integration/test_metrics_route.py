#!/usr/bin/env python3
"""The metrics route through nginx (issue 11, part 5): pvgate answers it only where nginx sets
`fastcgi_param PVGATE_METRICS on` (nginx/pvgate.conf's `location = /pvgate/metrics` alone) and
only to client addresses inside `metrics.allow` (default 127.0.0.0/8 and ::1/128).

- `/pvgate/metrics` from loopback: 200, Prometheus text;
- `/pvgate/x/metrics` (the route is the last path segment, so it reaches pvgate through
  `location /pvgate/`, which does not set the param): 404, nothing of the metrics;
- a location that passes to pvgate without the param: 404;
- a location that sets the param but lets any client through (nginx's realip poses as
  203.0.113.9): pvgate's own 404 for that address, 200 for loopback; after a reload to
  `metrics.allow: [203.0.113.0/24]` the other way round;
- healthz is unaffected by all of this.
"""

import itest
from itest import check

# Test-only locations: one that reaches pvgate without PVGATE_METRICS, and one with it but no
# nginx address filter, so pvgate's own metrics.allow is what decides.
EXTRA = """
        location = /direct/metrics {
            fastcgi_pass pvgate;
            fastcgi_keep_conn on;
            include fastcgi_params;
        }

        location = /open/metrics {
            fastcgi_pass pvgate;
            fastcgi_keep_conn on;
            include fastcgi_params;
            fastcgi_param PVGATE_METRICS on;
        }
"""

OUTSIDE = {"X-Forwarded-For": "203.0.113.9"}


def is_metrics(r):
    return r.status == 200 and b"pvgate_requests_total" in r.body and \
        (r.header("Content-Type") or "").startswith("text/plain")


def is_not_found(r):
    return r.status == 404 and r.json is not None and r.json.get("status") == 404 and \
        b"pvgate_" not in r.body


def metrics_location(ctx):
    r = ctx.request("GET", "/pvgate/metrics")
    check(is_metrics(r), "the metrics location answers loopback:\n      " + r.describe())


def other_paths(ctx):
    for path in ("/pvgate/x/metrics", "/pvgate/send-token/metrics", "/pvgate/metrics/"):
        r = ctx.request("GET", path)
        check(is_not_found(r), f"{path} must be 404 without metrics:\n      " + r.describe())


def param_unset(ctx):
    r = ctx.request("GET", "/direct/metrics")
    check(is_not_found(r), "PVGATE_METRICS unset must be 404:\n      " + r.describe())


def allow_list(ctx):
    r = ctx.request("GET", "/open/metrics")
    check(is_metrics(r), "loopback through the open location:\n      " + r.describe())
    r = ctx.request("GET", "/open/metrics", headers=OUTSIDE)
    check(is_not_found(r), "203.0.113.9 is outside the default allow list:\n      "
          + r.describe())
    # nginx's own guard still holds in the shipped location.
    r = ctx.request("GET", "/pvgate/metrics", headers=OUTSIDE)
    check(r.status == 403, "nginx denies 203.0.113.9 the shipped location:\n      "
          + r.describe())
    ctx.stack.reload_pvgate(extra_pvgate_config="metrics:\n  allow: [203.0.113.0/24]\n")
    try:
        r = ctx.request("GET", "/open/metrics", headers=OUTSIDE)
        check(is_metrics(r), "203.0.113.9 inside metrics.allow:\n      " + r.describe())
        r = ctx.request("GET", "/open/metrics")
        check(is_not_found(r), "loopback is no longer allowed:\n      " + r.describe())
    finally:
        ctx.stack.reload_pvgate(extra_pvgate_config="")
    r = ctx.request("GET", "/open/metrics")
    check(is_metrics(r), "the default again:\n      " + r.describe())


def healthz(ctx):
    for headers in ({}, OUTSIDE):
        r = ctx.request("GET", "/pvgate/healthz", headers=headers)
        check(r.status == 200 and r.json == {"message": "ok", "status": 200},
              "healthz answers everyone:\n      " + r.describe())
    r = ctx.request("GET", "/pvgate/x/healthz")
    check(r.status == 200, "healthz by last segment, as before:\n      " + r.describe())


CASES = [
    ("GET /pvgate/metrics from loopback: 200", metrics_location),
    ("GET /pvgate/x/metrics and friends: 404, no metrics", other_paths),
    ("PVGATE_METRICS unset: 404", param_unset),
    ("metrics.allow decides by address; reload changes it", allow_list),
    ("healthz unaffected", healthz),
]

if __name__ == "__main__":
    itest.run(CASES, {"extra_locations": EXTRA, "real_ip": True}, description=__doc__)
