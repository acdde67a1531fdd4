#!/usr/bin/env python3
"""Upstream fault matrix (issue 4): every fault answers within the deadline, sanitized, secret-free.

Faults of the mock's own answers (magic user_ids: slow headers, slow body drip, a body over
max_response_bytes, an endless chunked body, an HTML error page, invalid JSON, JSON echoing the
api_key / signature / secret, ...) and faults of the connection, reached by reloading pvgate
(SIGHUP) with another upstream url: a closed loopback port (refused), a host name that cannot
resolve, a mock serving a certificate of another CA, a mock whose certificate names another host,
a listener that never completes the TLS handshake, and one that closes at once.

Every case: the answer arrives within timeout_ms + 1 s, is README's sanitized JSON error (502 or
504, body status 500, generic message) unless the table says the upstream's answer passes, and
neither its body and headers nor pvgate.log contain the api_key, the api_secret or any signature
the mocks received.

DNS: pvgate runs in its own mount namespace (`unshare -m`) where /etc/nsswitch.conf says
`hosts: files` and /etc/resolv.conf names only 127.0.0.1, so resolving the test's name fails
without any packet leaving the machine. Where that namespace cannot be made (not root, no
unshare), the DNS case is skipped and says so: it never sends a query to the real resolver.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import itest
from itest import check, expect

TIMEOUT_MS = 1500
CONNECT_TIMEOUT_MS = 1000
DEADLINE_S = TIMEOUT_MS / 1000 + 1.0
NX_HOST = "pvgate-fault-test.invalid"
GENERIC = ("Phone verification is temporarily unavailable.",
           "Phone verification did not answer in time; try again.")

_extra = []        # Popen of extra mocks, stopped at exit
_listeners = []    # sockets of the stall/close listeners
_sandbox = Path(tempfile.mkdtemp(prefix="pvgate-dns-"))
atexit.register(shutil.rmtree, _sandbox, True)


# -- loopback-only DNS -------------------------------------------------------------------------

def dns_wrapper():
    """(argv prefix, None) running pvgate with resolver files that keep lookups local, or
    (None, reason) when that cannot be set up here."""
    nss = _sandbox / "nsswitch.conf"
    resolv = _sandbox / "resolv.conf"
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
    except OSError:
        lines = []
    lines = [l for l in lines if not l.startswith("hosts:")] + ["hosts: files"]
    nss.write_text("\n".join(lines) + "\n")
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare:
        return None, "needs root and unshare(1) for a private mount namespace"
    prefix = [unshare, "-m", "--", "sh", "-c",
              'mount --bind "$1" /etc/nsswitch.conf && mount --bind "$2" /etc/resolv.conf '
              '&& shift 2 && exec "$@"', "pvgate-dns-sandbox", str(nss), str(resolv)]
    try:
        r = subprocess.run(prefix + ["sh", "-c", f"grep '^hosts:' /etc/nsswitch.conf; "
                                                 f"getent hosts {NX_HOST}; echo rc=$?"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"unshare probe failed: {e}"
    if r.stdout.splitlines()[:1] != ["hosts: files"] or "rc=2" not in r.stdout:
        return None, f"unshare probe did not isolate the resolver: {r.stdout!r} {r.stderr!r}"
    return prefix, None


WRAPPER, WRAPPER_WHY = dns_wrapper()


def pvgate_sees_files_only(ctx):
    """The running pvgate's own view of /etc/nsswitch.conf (through /proc/PID/root)."""
    for pid, _ in ctx.stack.worker_pids():
        try:
            text = Path(f"/proc/{pid}/root/etc/nsswitch.conf").read_text()
        except OSError:
            return False
        hosts = [l.split() for l in text.splitlines() if l.startswith("hosts:")]
        if hosts != [["hosts:", "files"]]:
            return False
    return True


# -- helpers -----------------------------------------------------------------------------------

def fields(ctx, user_id=None):
    return {"user_id": user_id or ctx.unique("f"), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def signatures():
    path = os.environ.get("PVGATE_MOCK_SIGNATURES")
    try:
        return {l.strip() for l in Path(path).read_text().splitlines() if l.strip()}
    except (OSError, TypeError):
        return set()


def secrets_absent(ctx, r):
    needles = {"api_key": ctx.stack.api_key, "api_secret": ctx.stack.api_secret}
    for i, s in enumerate(sorted(signatures())):
        needles[f"signature #{i}"] = s
    head = "\n".join(f"{k}: {v}" for k, v in r.header_list)
    log = ctx.stack.pvgate_log.read_text(errors="replace")
    for label, n in needles.items():
        check(n.encode() not in r.body and n not in head, f"{label} in the answer: "
              + r.describe())
        if n in log:
            raise AssertionError(f"{label} in pvgate.log: "
                                 + next(l for l in log.splitlines() if n in l)[:200])


def timed_send(ctx, user_id=None):
    t0 = time.monotonic()
    r = ctx.post_json("send-token", fields(ctx, user_id))
    elapsed = time.monotonic() - t0
    check(elapsed < DEADLINE_S, f"answer took {elapsed:.2f}s, deadline "
          f"{DEADLINE_S:.1f}s (timeout_ms {TIMEOUT_MS} + 1 s)\n      " + r.describe())
    return r, elapsed


def fault(user_id, http, status=500, generic=True):
    def case(ctx):
        r, _ = timed_send(ctx, user_id)
        j = expect(r, http, status)
        if generic:
            check(j["message"] in GENERIC, f"not the generic message: {j['message']!r}")
            check(set(j) == {"status", "message"}, f"members: {sorted(j)}")
        secrets_absent(ctx, r)
    return case


def echo_case(ctx):
    # mock-echo: status 400, message with the api_key and signature, plus members api_key,
    # signature and api_secret. 400 passes through, but the message is replaced.
    before = len(signatures())
    r, _ = timed_send(ctx, "mock-echo")
    j = expect(r, 400, 400)
    check(len(signatures()) == before + 1, "the mock did not record the signature")
    check(set(j) == {"status", "message"}, f"members: {sorted(j)}")
    check("signature" not in j["message"].lower() or "api_key" not in j["message"].lower(),
          f"message still echoes: {j['message']!r}")
    secrets_absent(ctx, r)


def start_extra_mock(ctx, name, cert):
    d = ctx.stack.run_dir
    port_file = d / f"mock-{name}.port"
    port_file.unlink(missing_ok=True)
    log = open(d / f"mock-{name}.log", "ab")
    p = subprocess.Popen([sys.executable, str(itest.REPO_DIR / "tests/mock/mock_pipwave.py"),
                          "--port", "0", "--port-file", str(port_file),
                          "--cert", str(ctx.stack.certs / f"{cert}.pem"),
                          "--key", str(ctx.stack.certs / f"{cert}.key"),
                          "--merchant", f"{ctx.stack.api_key}:{ctx.stack.api_secret}"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    _extra.append(p)
    port = itest.wait_until(lambda: port_file.exists() and port_file.read_text().strip(),
                            f"mock {name} port file", timeout=20)
    return int(port)


def stop_extras():
    for p in _extra:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    _extra.clear()
    for s in _listeners:
        s.close()
    _listeners.clear()


atexit.register(stop_extras)


def listener(mode):
    """A loopback TCP listener: mode "stall" accepts and never says anything (the TLS handshake
    never completes); "close" accepts and closes at once. Returns its port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    _listeners.append(s)
    held = []

    def serve():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            if mode == "close":
                c.close()
            else:
                held.append(c)
    threading.Thread(target=serve, daemon=True).start()
    return s.getsockname()[1]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    return port


def via(url_fn, http=502):
    def case(ctx):
        ctx.stack.reload_pvgate(upstream_url=url_fn(ctx))
        try:
            before = ctx.upstream_requests()
            r, _ = timed_send(ctx)
            expect(r, http, 500)
            check(r.json["message"] in GENERIC, f"not the generic message: {r.json['message']!r}")
            check(ctx.upstream_requests() == before, "the main mock got the request")
            secrets_absent(ctx, r)
        finally:
            ctx.stack.reload_pvgate(upstream_url=None)
    return case


def dns_case(ctx):
    if WRAPPER is None:
        print(f"# SKIPPED dns failure: {WRAPPER_WHY}; no query sent to the real resolver",
              flush=True)
        return
    check(pvgate_sees_files_only(ctx), "pvgate does not run with the loopback-only resolver "
          "files; refusing to resolve a name that would leave the machine")
    via(lambda c: f"https://{NX_HOST}:{c.stack.mock_port}/phone-verify")(ctx)
    log = ctx.stack.pvgate_log.read_text(errors="replace")
    check("resolve" in log.lower(), "pvgate.log does not say the name did not resolve")


def still_serving(ctx):
    r = ctx.post_json("send-token", fields(ctx))
    expect(r, 200, 200)
    secrets_absent(ctx, r)


def log_clean(stack, ctx):
    def scan():
        log = stack.pvgate_log.read_text(errors="replace")
        sigs = signatures()
        check(len(sigs) >= 10, f"only {len(sigs)} signatures recorded")
        for label, n in [("api_key", stack.api_key), ("api_secret", stack.api_secret)] + \
                [("signature", s) for s in sigs]:
            check(n not in log, f"{label} in pvgate.log")
    return [("pvgate.log has no api_key, api_secret or received signature", scan),
            ("extra mocks stopped", stop_extras)]


CASES = [
    ("slow headers (mock-slow-4000) -> 504 in time", fault("mock-slow-4000", 504)),
    ("slow body drip (mock-drip) -> 504 in time", fault("mock-drip", 504)),
    ("body over max_response_bytes (mock-big) -> 502", fault("mock-big", 502)),
    ("chunked endless body (mock-endless) -> 502", fault("mock-endless", 502)),
    ("HTML error page (mock-html) -> 502", fault("mock-html", 502)),
    ("invalid JSON (mock-garbage) -> 502", fault("mock-garbage", 502)),
    ("JSON array (mock-array) -> 502", fault("mock-array", 502)),
    ("HTTP 500 JSON (mock-http500) -> 502", fault("mock-http500", 502)),
    ("connection closed (mock-close) -> 502", fault("mock-close", 502)),
    ("merchant error 401 -> 502", fault("mock-status-401", 502)),
    ("JSON echoing api_key, signature, secret -> 400, echo withheld", echo_case),
    ("refused (closed loopback port) -> 502",
     via(lambda c: f"https://127.0.0.1:{closed_port()}/phone-verify")),
    ("DNS failure (loopback-only resolver) -> 502", dns_case),
    ("TLS: certificate of another CA -> 502",
     via(lambda c: f"https://127.0.0.1:{start_extra_mock(c, 'other-ca', 'other-server')}"
                   "/phone-verify")),
    ("TLS: certificate for another host name -> 502",
     via(lambda c: f"https://127.0.0.1:{start_extra_mock(c, 'wrong-host', 'wrong-host')}"
                   "/phone-verify")),
    ("TLS handshake never completes -> 504 in time",
     via(lambda c: f"https://127.0.0.1:{listener('stall')}/phone-verify", http=504)),
    ("connection closed before TLS -> 502",
     via(lambda c: f"https://127.0.0.1:{listener('close')}/phone-verify")),
    ("back on the mock: 200", still_serving),
]

if __name__ == "__main__":
    options = {"timeout_ms": TIMEOUT_MS, "connect_timeout_ms": CONNECT_TIMEOUT_MS,
               "secret_in_file": True}
    if WRAPPER is not None:
        options["pvgate_wrapper"] = WRAPPER
    itest.run(CASES, options, __doc__, after_stop=log_clean)
