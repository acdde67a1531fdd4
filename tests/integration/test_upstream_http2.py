#!/usr/bin/env python3
"""HTTP/2 to the upstream (issue 16 item 3): calls are multiplexed where the server offers h2.

Two extra upstreams beside the stack's mock, both scripts/bench_lib/fastmock.py (nginx + echo
module, HTTPS with the stack's test certificate, every POST answered 200 after DELAY_S): one
offering h2 through ALPN (`listen ... ssl http2`), one HTTP/1.1 only. Each logs one line per
request with nginx's $connection (the TCP connection's serial) and $server_protocol: the
server's own witness of how many connections carried the calls and in which protocol.

For each case pvgate is restarted (upstream.http2 takes effect only on restart, and a fresh
process has no warm connection) and CALLS send-tokens are sent at once through nginx. Each case
first waits until pvgate has all CALLS upstream at once (pvgate_upstream_in_flight), counting
meanwhile the established TCP connections to the mock (`ss`, when installed), then requires
every answer to be Pipwave's 200 and checks the mock's log and
pvgate_upstream_connections_opened_total:

- http2 auto (the default), h2 mock: every request HTTP/2.0, at most MAX_H2_CONNECTIONS
  connections opened (the mock's log, pvgate's counter and `ss` agree);
- http2 off, the same h2 mock: every request HTTP/1.1, one connection per call in flight;
- http2 auto, HTTP/1.1-only mock: every request HTTP/1.1, all answered, and more connections
  than the h2 bound (pvgate falls back to one connection per call, not to a squeezed pool);
- a SIGHUP that changes upstream.http2 says it takes effect only on restart.

Loopback only; every wait has a deadline; the mocks are stopped at the end whatever happens.
"""

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import itest
from itest import check, wait_until

sys.path.insert(0, str(itest.REPO_DIR / "scripts"))
from bench_lib.fastmock import FastMock  # noqa: E402

CALLS = 256               # in flight at once: pvgate's default upstream.max_connections
MAX_H2_CONNECTIONS = 8    # the bound for CALLS in flight over h2
DELAY_S = 1.0             # each mock answer's delay: long enough for CALLS to overlap
BURST_TIMEOUT_S = 60

MOCKS = {}                # "h2" / "h1" -> FastMock, started by the first case
MOCK_DIR = Path(tempfile.mkdtemp(prefix="pvgate-it-h2mock-"))


def metrics(ctx):
    r = ctx.request("GET", "/pvgate/metrics")
    check(r.status == 200, "/pvgate/metrics:\n      " + r.describe())
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})?\s+([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def established_to(port):
    """TCP connections established to 127.0.0.1:port from this host, or None without ss."""
    ss = shutil.which("ss")
    if not ss:
        return None
    r = subprocess.run([ss, "-Htn", "state", "established", f"( dport = :{port} )"],
                       capture_output=True, text=True, timeout=10)
    return len([line for line in r.stdout.splitlines() if line.strip()])


def restart(ctx, mock, http2):
    """pvgate afresh, calling `mock` with upstream.http2 `http2` (None: not written)."""
    st = ctx.stack
    check(st.stop_pvgate() is not None, "pvgate did not stop on SIGTERM")
    st.write_pvgate_config(upstream_url=mock.url, http2=http2)
    st.start_pvgate()
    wait_until(lambda: ctx.request("GET", "/pvgate/send-token").status == 405,
               "pvgate answering after its restart")


def burst(ctx, mock):
    """Sends CALLS send-tokens at once; returns (statuses, mock log lines of the burst,
    connections opened by pvgate's counter, most TCP connections seen by ss)."""
    key = "pvgate_upstream_connections_opened_total"
    m0 = metrics(ctx)
    logged = len(mock.access_lines())
    statuses = []
    lock = threading.Lock()
    go = threading.Barrier(CALLS + 1)

    def one(i):
        go.wait()
        r = ctx.post_json("send-token", {"user_id": ctx.unique("h"),
                                         "contact_no_country_dialing_code": "60",
                                         "contact_no": ctx.phone()})
        with lock:
            statuses.append((r.status, (r.json or {}).get("status")))

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(CALLS)]
    for t in threads:
        t.start()
    go.wait()
    seen = [0]

    def all_upstream():
        seen[0] = max(seen[0], established_to(mock.port) or 0)
        return metrics(ctx).get("pvgate_upstream_in_flight", 0) >= CALLS

    wait_until(all_upstream, f"{CALLS} calls upstream at once", timeout=BURST_TIMEOUT_S)
    seen[0] = max(seen[0], established_to(mock.port) or 0)
    deadline = time.monotonic() + BURST_TIMEOUT_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), "requests still running after the burst")
    wait_until(lambda: len(mock.access_lines()) >= logged + CALLS,
               f"the mock's log of {CALLS} requests")
    lines = mock.access_lines()[logged:]
    opened = metrics(ctx).get(key, 0) - m0.get(key, 0)
    return statuses, lines, opened, (seen[0] if shutil.which("ss") else None)


def all_answered(statuses):
    bad = [s for s in statuses if s != (200, 200)]
    check(len(statuses) == CALLS and not bad,
          f"{len(bad)} of {len(statuses)} answers not Pipwave's 200, e.g. {bad[:3]}")


def start_mocks(ctx):
    certs = ctx.stack.certs   # the stack's test PKI: pvgate trusts its CA (ca_file)
    for name, h2 in (("h2", True), ("h1", False)):
        MOCKS[name] = FastMock(MOCK_DIR / name, certs / "server.pem", certs / "server.key",
                               delay=DELAY_S, http2=h2, access_log=True).start()


def h2_multiplexed(ctx):
    mock = MOCKS["h2"]
    restart(ctx, mock, None)   # upstream.http2 not set: auto
    statuses, lines, opened, seen = burst(ctx, mock)
    all_answered(statuses)
    protocols = {p for _, p, _ in lines}
    conns = {c for c, _, _ in lines}
    check(protocols == {"HTTP/2.0"}, f"the mock saw {protocols}, want HTTP/2.0 only")
    check(len(conns) <= MAX_H2_CONNECTIONS,
          f"{CALLS} calls in flight came on {len(conns)} connections (mock's log), want <= "
          f"{MAX_H2_CONNECTIONS}")
    check(opened == len(conns), f"pvgate counted {opened:.0f} connections opened, the mock "
          f"saw {len(conns)}")
    check(seen is None or seen <= MAX_H2_CONNECTIONS,
          f"ss saw {seen} connections to the mock at once, want <= {MAX_H2_CONNECTIONS}")
    print(f"     h2 auto: {CALLS} calls on {len(conns)} connection(s) (ss: {seen})", flush=True)


def burst_with(ctx, mock, http2):
    """pvgate restarted with upstream.http2 `http2` against `mock`, one burst, every call
    answered: (protocols the mock saw, its connections, pvgate's count of connections opened,
    ss's count)."""
    restart(ctx, mock, http2)
    statuses, lines, opened, seen = burst(ctx, mock)
    all_answered(statuses)
    return {p for _, p, _ in lines}, {c for c, _, _ in lines}, opened, seen


def h2_off(ctx):
    protocols, conns, opened, seen = burst_with(ctx, MOCKS["h2"], "off")
    check(protocols == {"HTTP/1.1"}, f"the mock saw {protocols}, want HTTP/1.1 only")
    check(len(conns) == CALLS, f"{CALLS} calls in flight at once on {len(conns)} connections, "
          "want one each (HTTP/1.1)")
    check(opened == CALLS, f"pvgate counted {opened:.0f} connections opened, want {CALLS}")
    print(f"     http2 off: {CALLS} calls on {len(conns)} connections (ss: {seen})", flush=True)


def h1_fallback(ctx):
    protocols, conns, opened, seen = burst_with(ctx, MOCKS["h1"], "auto")
    check(protocols == {"HTTP/1.1"}, f"the mock saw {protocols}, want HTTP/1.1 only")
    check(len(conns) > MAX_H2_CONNECTIONS,
          f"{CALLS} HTTP/1.1 calls came on only {len(conns)} connections: the h2 bound was "
          "not lifted for a server without h2")
    check(opened == len(conns), f"pvgate counted {opened:.0f} connections opened, the mock "
          f"saw {len(conns)}")
    print(f"     auto, h1-only mock: {CALLS} calls on {len(conns)} connections", flush=True)


def reload_is_restart_only(ctx):
    st = ctx.stack
    st.reload_pvgate(http2="off")
    wait_until(lambda: "upstream.http2 takes effect only on restart"
               in st.pvgate_log.read_text(errors="replace"), "the reload warning in the log")
    # Still auto: the running client keeps multiplexing.
    mock = MOCKS["h1"]
    logged = len(mock.access_lines())
    r = ctx.post_json("send-token", {"user_id": ctx.unique("r"),
                                     "contact_no_country_dialing_code": "60",
                                     "contact_no": ctx.phone()})
    itest.expect(r, 200, 200)
    check(len(mock.access_lines()) == logged + 1, "the call after the reload did not arrive")


CASES = [
    ("start the h2 and HTTP/1.1-only mocks", start_mocks),
    (f"http2 auto: {CALLS} calls in flight on <= {MAX_H2_CONNECTIONS} h2 connections",
     h2_multiplexed),
    ("http2 off: HTTP/1.1 to the same mock, one connection per call", h2_off),
    ("http2 auto, a server without h2: HTTP/1.1, one connection per call", h1_fallback),
    ("SIGHUP does not change upstream.http2 (restart only) and says so",
     reload_is_restart_only),
]

if __name__ == "__main__":
    try:
        itest.run(CASES, {"nginx_keepalive": 16}, __doc__)
    finally:
        for m in MOCKS.values():
            m.stop()
        shutil.rmtree(MOCK_DIR, ignore_errors=True)
