#!/usr/bin/env python3
"""The merchant's api_secret and api_key never leave pvgate towards the browser or its log.

Drives every kind of outcome (success, local rejects, passed-through upstream errors, hidden
upstream errors, an upstream echoing the credentials, broken upstream answers, 429, 504,
unknown merchant), with the secret read from api_secret_file, then checks every response body
and header, pvgate.log and nginx's logs for the key and the secret, and that the mock never
received api_secret.
"""

import json

import itest
from itest import check

EXTRA_LOCATIONS = """
        location /nosuch/ {
            fastcgi_pass pvgate;
            include fastcgi_params;
            fastcgi_param PVGATE_MERCHANT nosuch;
        }
"""


def fields(ctx, user_id=None, **kw):
    f = {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
         "contact_no": ctx.phone()}
    f.update(kw)
    return f


def drive_everything(ctx):
    f = fields(ctx)
    r = ctx.post_json("send-token", f)
    check(r.status == 200, r.describe())
    ctx.post_json("verify-token-answer", dict(f, reference=r.json["reference"], answer="123456"))
    ctx.post_json("verify-token-answer", dict(f, reference=r.json["reference"], answer="000000"))
    for user in ("mock-echo", "mock-status-401", "mock-status-403", "mock-status-5004",
                 "mock-status-9001", "mock-status-5002", "mock-garbage", "mock-html",
                 "mock-http500", "mock-array", "mock-close", "mock-ctrl", "mock-slow-2500"):
        ctx.post_json("send-token", fields(ctx, user))
        ctx.post_json("verify-token-answer", fields(ctx, user, reference="5", answer="1"))
    ctx.post_json("send-token", fields(ctx, api_key="guess"))
    ctx.post_json("send-token", fields(ctx, api_secret="guess"))
    ctx.post_json("send-token", fields(ctx, user_id="bad user"))
    ctx.post_json("send-token", "{")
    ctx.request("GET", "/pvgate/send-token")
    ctx.request("POST", "/pvgate/nope", "{}", {"Content-Type": "application/json"})
    ctx.request("POST", "/pvgate/send-token", "x", {"Content-Type": "text/plain"})
    ctx.request("POST", "/nosuch/send-token", json.dumps(fields(ctx)),
                {"Content-Type": "application/json"})
    check(len(ctx.responses) > 30, "test bug: too few responses")


def responses_clean(ctx):
    for needle in (ctx.stack.api_secret, ctx.stack.api_key):
        for r in ctx.responses:
            hdrs = "\n".join(f"{k}: {v}" for k, v in r.header_list)
            check(needle.encode() not in r.body and needle not in hdrs,
                  f"{'api_secret' if needle == ctx.stack.api_secret else 'api_key'} "
                  f"in a response\n      " + r.describe())


def mock_never_got_secret(ctx):
    check(ctx.stack.mock_stats()["secret_leaks"] == 0, "api_secret was sent upstream")


def logs_clean(stack, ctx):
    def check_logs():
        names = ["pvgate.log", "nginx-error.log", "nginx-access.log", "nginx-stderr.log"]
        found = []
        for name in names:
            path = stack.run_dir / name
            text = path.read_text(errors="replace") if path.exists() else ""
            for label, needle in (("api_secret", stack.api_secret), ("api_key", stack.api_key)):
                if needle in text:
                    line = next(l for l in text.splitlines() if needle in l)
                    found.append(f"{label} in {name}: {line[:200]!r}")
        check(not found, "; ".join(found))
        check((stack.run_dir / "pvgate.log").exists(), "no pvgate.log")
    return [("api_secret/api_key absent from pvgate.log and nginx logs", check_logs)]


CASES = [
    ("drive every outcome", drive_everything),
    ("no api_secret/api_key in any response body or header", responses_clean),
    ("mock never received api_secret", mock_never_got_secret),
]

if __name__ == "__main__":
    itest.run(CASES, {"secret_in_file": True, "timeout_ms": 1500,
                      "extra_locations": EXTRA_LOCATIONS}, __doc__, after_stop=logs_clean)
