#!/usr/bin/env python3
"""nginx's own errors and the FastCGI socket (issue 11, part 5).

Errors nginx generates itself keep their status, each with a JSON body like pvgate's
(nginx/pvgate.conf's error_page lines; they used to turn 503 and 504 into 502):

- a FastCGI read timeout: nginx/pvgate.conf's `location /pvgate/` block, copied verbatim but for
  its prefix (/short/) and `fastcgi_read_timeout 1s`, with the mock answering after 3 s: 504;
- a 503 nginx makes itself (the same block with `return 503` in place of fastcgi_pass): 503;
- pvgate stopped (nginx gets connection refused on the socket): 502; then pvgate restarts;
- the generated config passes `nginx -t`.

The socket: spawn-fcgi makes it mode 0660 (as the package does), owned by the group nginx's
workers run as, and nginx still reaches pvgate through it.
"""

import os
import re
import stat
import json
import subprocess

import itest
import stack as stacklib
from itest import check, expect

REPO = itest.REPO_DIR
SLOW_MS = 3000


def location_copy(prefix, replace):
    """nginx/pvgate.conf's `location /pvgate/` block, verbatim but for its prefix and the
    (old, new) pairs in `replace`, each of which must be found."""
    text = (REPO / "nginx" / "pvgate.conf").read_text()
    m = re.search(r"^location /pvgate/ \{\n.*?^\}", text, re.M | re.S)
    assert m, "nginx/pvgate.conf: no `location /pvgate/ { ... }` block"
    block = m.group(0).replace("location /pvgate/ {", f"location {prefix} {{", 1)
    for old, new in replace:
        assert old in block, f"nginx/pvgate.conf's location has no {old!r}"
        block = block.replace(old, new)
    return block


EXTRA = "\n\n".join([
    location_copy("/short/", [("fastcgi_read_timeout 30s;", "fastcgi_read_timeout 1s;")]),
    location_copy("/busy/", [("fastcgi_pass pvgate;", "return 503;")]),
])


def nginx_error(r, http_status):
    expect(r, http_status, 500)
    check(r.header("Server") == "nginx" and r.header("Cache-Control") == "no-store",
          "nginx's own JSON error page:\n      " + r.describe())


def fields(ctx, user_id=None):
    return {"user_id": user_id or ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def read_timeout(ctx):
    r = ctx.request("POST", "/short/send-token", json.dumps(fields(ctx, f"mock-slow-{SLOW_MS}")),
                    {"Content-Type": "application/json"})
    nginx_error(r, 504)
    check("in time" in r.json["message"], "the timeout's message:\n      " + r.describe())
    # The prefix itself works when pvgate answers in time.
    r = ctx.post_json("send-token", fields(ctx))
    expect(r, 200, 200)
    r = ctx.request("POST", "/short/send-token", json.dumps(fields(ctx)),
                    {"Content-Type": "application/json"})
    expect(r, 200, 200)


def busy(ctx):
    r = ctx.request("POST", "/busy/send-token", json.dumps(fields(ctx)),
                    {"Content-Type": "application/json"})
    nginx_error(r, 503)


def pvgate_down(ctx):
    ctx.stack.stop_pvgate()
    try:
        r = ctx.not_forwarded(lambda: ctx.post_json("send-token", fields(ctx)))
        nginx_error(r, 502)
    finally:
        ctx.stack.start_pvgate()
    expect(ctx.post_json("send-token", fields(ctx)), 200, 200)


def nginx_t(ctx):
    run_dir = ctx.stack.run_dir
    r = subprocess.run([stacklib_tool("nginx"), "-t", "-p", str(run_dir), "-c",
                        str(run_dir / "nginx.conf"), "-e", str(run_dir / "nginx-t.log")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "test is successful" in r.stderr,
          f"nginx -t: exit {r.returncode}\n{r.stdout}{r.stderr}")


def stacklib_tool(name):
    return stacklib.find_tool(name)


def worker_gids(ctx):
    """The effective group ids of nginx's worker processes."""
    master = ctx.stack.procs["nginx"].pid
    gids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = open(f"/proc/{entry}/status").read()
        except OSError:
            continue
        if re.search(rf"^PPid:\s*{master}$", status, re.M):
            gids.add(int(re.search(r"^Gid:\s*\d+\s+(\d+)", status, re.M).group(1)))
    return gids


def socket_mode(ctx):
    st = os.stat(ctx.stack.socket_path)
    check(stat.S_ISSOCK(st.st_mode), f"{ctx.stack.socket_path} is not a socket")
    mode = stat.S_IMODE(st.st_mode)
    check(mode == 0o660, f"socket mode {mode:04o}, want 0660")
    gids = worker_gids(ctx)
    check(gids == {st.st_gid}, f"socket group {st.st_gid}, nginx workers' groups {gids}")
    expect(ctx.post_json("send-token", fields(ctx)), 200, 200)


CASES = [
    ("FastCGI socket: mode 0660, group of nginx's workers, reachable", socket_mode),
    ("fastcgi_read_timeout: nginx's 504 stays 504, JSON", read_timeout),
    ("nginx's own 503 stays 503, JSON", busy),
    ("pvgate stopped: nginx's 502, JSON; restart serves again", pvgate_down),
    ("the generated nginx.conf passes nginx -t", nginx_t),
    ("after the restart the socket is 0660 again", socket_mode),
]

if __name__ == "__main__":
    itest.run(CASES, {"extra_locations": EXTRA}, description=__doc__)
