#!/usr/bin/env python3
"""Lifecycle through nginx (issue 4, "Lifecycle"), with pvgate as it runs in production:
`spawn-fcgi -n -- multiwatch -f 4 -- pvgate ...` (4 workers on one socket, restarted by
multiwatch when one dies), a local (LMDB) throttle store and the secret in api_secret_file.

- SIGHUP with a valid new config takes effect for new requests in every worker while a slow
  request (mock-slow-2000) in flight completes normally;
- an invalid config is rejected, its errors logged with file:line, and the old one keeps serving;
- a secret file readable by others, and a config holding an inline secret readable by others,
  are warned about (on reload and at start-up);
- under load (wrk through nginx, 256 connections) SIGKILL of one worker fails only few requests
  (at most that worker's threads plus the connections it had queued), multiwatch starts a new
  worker, and the throttle state is intact (a phone armed before the kill is still refused).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import itest
from itest import Background, check, expect, wait_until

WORKERS = 4
THREADS = 4
RULES = """rules:
  - name: phone-cooldown
    actions: [send-token]
    key: [merchant, phone]
    limit: 1
    period: 60s
"""
ONLY_65 = RULES + "countries:\n  allow: [65]\n"

WRK_SCRIPT = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  counts = {}
end
function request()
  counter = counter + 1
  -- +60 11-1T CCCCCC: a valid Malaysian mobile per thread T and count C (pvgate refuses
  -- numbers libphonenumber does not know as valid).
  local body = string.format(
    '{"user_id":"load-%d","contact_no_country_dialing_code":"60","contact_no":"111%d%06d"}',
    tid, tid, counter % 1000000)
  return wrk.format("POST", "/pvgate/send-token",
                    {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[tostring(k)] = (total[tostring(k)] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format('WRKRESULT {"status":{%s},"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"requests":%d}\n', table.concat(parts, ","), e.connect, e.read, e.write,
    e.timeout, summary.requests))
end
"""


def fields(ctx, user_id=None, dial="60", contact=None):
    return {"user_id": user_id or ctx.unique("l"), "contact_no_country_dialing_code": dial,
            "contact_no": contact or ctx.phone_in(dial)}


def log_text(ctx):
    return ctx.stack.pvgate_log.read_text(errors="replace")


def pids(ctx):
    return sorted(p for p, _ in ctx.stack.worker_pids())


def sighup_all(ctx):
    """SIGHUP to every worker without rewriting the config; returns how many were signalled."""
    n = 0
    for pid, st in ctx.stack.worker_pids():
        n += bool(itest.stacklib.signal_verified(pid, st, signal.SIGHUP))
    return n


def wait_log_count(ctx, pattern, want, what):
    wait_until(lambda: len(re.findall(pattern, log_text(ctx))) >= want, what, timeout=15)


def workers_up(ctx):
    wait_until(lambda: len(pids(ctx)) == WORKERS, f"{WORKERS} pvgate workers", timeout=20)
    mw = ctx.stack.procs["pvgate"]
    check(mw.poll() is None, "multiwatch exited")
    check("multiwatch" in " ".join(itest.stacklib.proc_cmdline(mw.pid) or []),
          "the supervisor is not multiwatch")
    for _ in range(2 * WORKERS):
        expect(ctx.post_json("send-token", fields(ctx)), 200, 200)
    check(not re.search(r"readable by other", log_text(ctx)), "unexpected permission warning")


def reload_during_slow(ctx):
    slow = Background(lambda: ctx.post_json("send-token", fields(ctx, "mock-slow-2000")))
    wait_until(lambda: ctx.stack.mock_stats()["by_user"].get("mock-slow-2000", 0) >= 1,
               "the slow request to reach the mock", timeout=10)
    t0 = time.monotonic()
    ctx.stack.reload_pvgate(throttle=ONLY_65)
    check(not slow.done, "the slow request finished before the reload (test too slow?)")
    for _ in range(2 * WORKERS):   # new requests, every worker: 60 is now refused
        r = ctx.not_forwarded(lambda: ctx.post_json("send-token", fields(ctx, dial="60")))
        expect(r, 403, 5001)
        expect(ctx.post_json("send-token", fields(ctx, dial="65")), 200, 200)
    r = slow.result()
    expect(r, 200, 200)
    check(time.monotonic() - t0 < 5, "the slow request took too long")


def invalid_rejected(ctx):
    bad = ("upstream:\n  url: ftp://nowhere.example/x\n  timeout_ms: 5\n"
           "merchants:\n  shop-a:\n    api_key: k\n    nonsense: 1\nbogus_key: 1\n")
    cfg = ctx.stack.pvgate_config
    good = cfg.read_text()
    marker = "reload rejected: keeping the previous configuration"
    before = log_text(ctx).count(marker)
    fd = os.open(cfg, os.O_WRONLY | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        f.write(bad)
    try:
        n = sighup_all(ctx)
        wait_until(lambda: log_text(ctx).count(marker) >= before + n,
                   f"{n} workers to reject the reload", timeout=15)
        errors = [l for l in log_text(ctx).splitlines() if "reload rejected:" in l
                  and marker not in l]
        located = [l for l in errors if re.search(re.escape(str(cfg)) + r":\d+:", l)]
        for key in ("upstream.url", "upstream.timeout_ms", "bogus_key", "nonsense"):
            check(any(key in l for l in located), f"no file:line error naming {key}:\n"
                  + "\n".join(errors[-12:]))
        # The old configuration keeps serving, in every worker.
        for _ in range(2 * WORKERS):
            expect(ctx.post_json("send-token", fields(ctx, dial="60")), 403, 5001)
            expect(ctx.post_json("send-token", fields(ctx, dial="65")), 200, 200)
        check(len(pids(ctx)) == WORKERS, "a worker died on the invalid config")
        r = subprocess.run([str(ctx.stack.pvgate), "--check-config", "--config", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and re.search(re.escape(str(cfg)) + r":\d+:", r.stderr),
              f"--check-config: exit {r.returncode}, {r.stderr!r}")
    finally:
        fd = os.open(cfg, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as f:
            f.write(good)
    ctx.stack.reload_pvgate(throttle=RULES)
    expect(ctx.post_json("send-token", fields(ctx, dial="60")), 200, 200)


def secret_file_readable(ctx):
    sf = ctx.stack.run_dir / "api_secret"
    check(sf.is_file(), "no api_secret file")
    pat = r"warn.*api_secret_file.*readable by other users"
    before = len(re.findall(pat, log_text(ctx)))
    os.chmod(sf, 0o644)
    try:
        n = ctx.stack.reload_pvgate()
        wait_log_count(ctx, pat, before + n, "a warning per worker")
        line = [l for l in log_text(ctx).splitlines() if re.search(pat, l)][-1]
        check(ctx.stack.api_secret not in line, "the warning holds the secret")
        r = subprocess.run([str(ctx.stack.pvgate), "--check-config", "--config",
                            str(ctx.stack.pvgate_config)], capture_output=True, text=True,
                           timeout=30)
        check("readable by other users" in r.stderr, f"no start-up warning: {r.stderr!r}")
    finally:
        os.chmod(sf, 0o600)
    n = ctx.stack.reload_pvgate()
    r = subprocess.run([str(ctx.stack.pvgate), "--check-config", "--config",
                        str(ctx.stack.pvgate_config)], capture_output=True, text=True, timeout=30)
    check("readable" not in r.stderr, f"warning with a 0600 file: {r.stderr!r}")


def inline_secret_readable(ctx):
    st = ctx.stack
    pat = r"warn.*holds an inline api_secret and is readable"
    before = len(re.findall(pat, log_text(ctx)))
    st.write_pvgate_config(secret_in_file=False)
    os.chmod(st.pvgate_config, 0o644)
    try:
        n = sighup_all(ctx)
        wait_log_count(ctx, pat, before + n, "an inline-secret warning per worker")
        r = subprocess.run([str(st.pvgate), "--check-config", "--config", str(st.pvgate_config)],
                           capture_output=True, text=True, timeout=30)
        check(re.search(r"inline api_secret and is readable", r.stderr),
              f"no start-up warning: {r.stderr!r}")
        check(st.api_secret not in r.stderr + r.stdout + log_text(ctx), "secret printed")
        expect(ctx.post_json("send-token", fields(ctx)), 200, 200)
    finally:
        st.reload_pvgate(secret_in_file=True)   # rewritten 0600


def fastcgi_connections(pid):
    """Accepted FastCGI connections the process holds (its socket fds but the listener)."""
    n = 0
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd).startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        return None
    return n - 1   # the listening socket (fd 0)


def kill_under_load(ctx):
    st = ctx.stack
    wrk = shutil.which("wrk")
    check(wrk, "wrk not installed (scripts/install-deps)")
    armed = fields(ctx, dial="60")
    expect(ctx.post_json("send-token", armed), 200, 200)
    expect(ctx.post_json("send-token", dict(armed)), 429, 5002)
    script = st.run_dir / "load.lua"
    script.write_text(WRK_SCRIPT)
    before = pids(ctx)
    check(len(before) == WORKERS, f"workers before: {before}")
    p = subprocess.Popen([wrk, "-t4", "-c256", "-d8s", "--timeout", "10s", "-s", str(script),
                          st.url("/")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        victim = before[0]
        # Kill once the load is really on: the victim holds FastCGI connections and the mock
        # has seen forwarded requests from this run (not after a fixed delay).
        sent_before = ctx.upstream_requests()
        wait_until(lambda: (fastcgi_connections(victim) or 0) > 0
                   and ctx.upstream_requests() - sent_before >= 200,
                   "wrk's load to reach the workers", timeout=10, poll=0.05)
        vst = itest.stacklib.proc_starttime(victim)
        held = fastcgi_connections(victim)
        check(itest.stacklib.signal_verified(victim, vst, signal.SIGKILL), "kill failed")
        new = wait_until(lambda: (lambda now: now if len(now) == WORKERS and victim not in now
                                  else None)(pids(ctx)), "multiwatch to start a new worker",
                         timeout=10)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"WRKRESULT (\{.*\})", out)
    check(m, f"no result from wrk:\n{out}")
    res = json.loads(m.group(1))
    status = {int(k): v for k, v in res["status"].items()}
    bad = sum(v for k, v in status.items() if not (200 <= k < 300 or k == 429))
    socket_errors = res["connect"] + res["read"] + res["write"] + res["timeout"]
    failed = bad + socket_errors
    print(f"# wrk: {res['requests']} requests, statuses {status}, socket errors "
          f"{socket_errors}; killed {victim} holding {held} FastCGI connections "
          f"(+ upstream ones), workers now {new}", flush=True)
    check(status.get(200, 0) > 500, f"too little load got through: {status}")
    ctx.kill_result = (failed, status, socket_errors, held)
    # (held is read just before the kill; the worker may accept a few more in between)
    check(held is not None and failed <= held + THREADS, f"{failed} requests failed, more "
          f"than the {held} connections the killed worker held (statuses {status})")
    added = sorted(set(new) - set(before))
    check(len(added) == 1, f"want exactly one new worker: {before} -> {new}")
    # wrk's last requests may still be on their way to the mock: wait until it is quiet.
    settle = {"n": -1, "t": time.monotonic()}

    def quiet():
        n = ctx.upstream_requests()
        if n != settle["n"]:
            settle.update(n=n, t=time.monotonic())
        return time.monotonic() - settle["t"] > 1.0
    wait_until(quiet, "the mock to see no more requests", timeout=30, poll=0.1)
    # Throttle state intact: the phone armed before the kill is still refused, by every worker.
    for _ in range(2 * WORKERS):
        r = ctx.not_forwarded(lambda: ctx.post_json("send-token", dict(armed)))
        expect(r, 429, 5002)
    expect(ctx.post_json("send-token", fields(ctx)), 200, 200)
    log = log_text(ctx)
    for bad_word in ("throttle store failed", "MDB_", "terminate called"):
        check(bad_word not in log, f"pvgate.log has {bad_word!r}")


CASES = [
    (f"multiwatch runs {WORKERS} workers, all serving", workers_up),
    ("SIGHUP: valid config for new requests, slow request in flight completes",
     reload_during_slow),
    ("SIGHUP: invalid config rejected with file:line, old one keeps serving", invalid_rejected),
    ("api_secret_file readable by others -> warning", secret_file_readable),
    ("config with inline secret readable by others -> warning", inline_secret_readable),
    ("SIGKILL a worker under load: only its requests fail, restarted, throttle intact",
     kill_under_load),
]

if __name__ == "__main__":
    itest.run(CASES, {"supervisor": WORKERS, "threads": THREADS, "secret_in_file": True,
                      "throttle": RULES, "timeout_ms": 5000, "nginx_keepalive": 32}, __doc__)
