#!/usr/bin/env python3
"""Slow and hostile FastCGI clients cannot freeze pvgate.

1,000 connections straight to pvgate's socket each send part of a FastCGI request and stop
(3 bytes of a record header; a BEGIN_REQUEST and half a PARAMS record; a whole PARAMS stream
and part of the body). Meanwhile 200 requests through nginx must all get their expected
answer, and pvgate keeps exactly --threads + 1 threads (the workers, which also drive the calls
to Pipwave, and main).
Once on the unix socket spawn-fcgi gives pvgate, once on pvgate's own TCP `--socket
127.0.0.1:PORT`. Then the deadlines: with a short limits.read_timeout_ms the half-open
connections are closed by pvgate (not before the timeout), while idle ones (nothing sent,
or kept alive after a whole request) stay open; and a client that pipelines requests with
large replies on a socket with a tiny SO_RCVBUF and never reads is dropped after
limits.write_timeout_ms while others are served. Loopback only; every wait is a polled
condition with a bounded deadline.
"""

import http.client
import resource
import subprocess
import select
import socket
import struct
import threading
import time
from pathlib import Path

import itest
from itest import check, expect, wait_until

THREADS = 4
HALF_OPEN = 1000
REQUESTS = 200
CLIENTS = 8
LONG_READ_MS = 120000    # while the attack runs: the deadline must not be what saves pvgate
SHORT_READ_MS = 1000     # for the read-deadline case
WRITE_MS = 1000

FCGI_BEGIN_REQUEST, FCGI_ABORT_REQUEST, FCGI_END_REQUEST = 1, 2, 3
FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, FCGI_STDERR = 4, 5, 6, 7


def limits(read_ms, write_ms=WRITE_MS):
    return f"limits:\n  read_timeout_ms: {read_ms}\n  write_timeout_ms: {write_ms}\n"


# -- a small FastCGI client ---------------------------------------------------------------------


def record(rtype, rid, content=b"", padding=0):
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), padding, 0) + content + \
        b"\0" * padding


def pair(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    name, value = name.encode(), value.encode()
    return length(len(name)) + length(len(value)) + name + value


def begin(rid=1, keep=True):
    return record(FCGI_BEGIN_REQUEST, rid, struct.pack(">HB5x", 1, 1 if keep else 0))


def params_record(params, rid=1):
    return record(FCGI_PARAMS, rid, b"".join(pair(k, v) for k, v in params.items()))


def fcgi_request(path, method="GET", body=b"", rid=1, keep=True, remote="127.0.0.1"):
    params = {"REQUEST_METHOD": method, "DOCUMENT_URI": path, "SCRIPT_NAME": path,
              "REMOTE_ADDR": remote, "CONTENT_LENGTH": str(len(body)),
              "PVGATE_MERCHANT": "shop-a"}
    out = begin(rid, keep) + params_record(params, rid) + record(FCGI_PARAMS, rid)
    if body:
        out += record(FCGI_STDIN, rid, body)
    return out + record(FCGI_STDIN, rid)


def read_reply(sock, timeout=10.0):
    """Reads records up to END_REQUEST; returns the STDOUT bytes."""
    sock.settimeout(timeout)
    data = b""
    out = b""
    while True:
        while len(data) < 8:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before END_REQUEST (got {out[:80]!r})")
            data += chunk
        _, rtype, _, length, padding, _ = struct.unpack(">BBHHBB", data[:8])
        while len(data) < 8 + length + padding:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed inside a record")
            data += chunk
        content = data[8:8 + length]
        data = data[8 + length + padding:]
        if rtype == FCGI_STDOUT:
            out += content
        elif rtype == FCGI_END_REQUEST:
            return out


def half_open_bytes(i):
    """Part of a FastCGI request, three kinds in turn."""
    whole_params = params_record({"REQUEST_METHOD": "POST", "DOCUMENT_URI": "/pvgate/send-token",
                                  "CONTENT_LENGTH": "100"})
    kind = i % 3
    if kind == 0:
        return begin()[:3]                                   # 3 bytes of a record header
    if kind == 1:
        return begin() + whole_params[:len(whole_params) // 2]   # half a PARAMS record
    return begin() + whole_params + record(FCGI_PARAMS, 1) + \
        record(FCGI_STDIN, 1, b"x" * 100)[:40]               # part of the body


# -- helpers ------------------------------------------------------------------------------------


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def pvgate_pid(stack):
    pids = stack.worker_pids()
    check(len(pids) == 1, f"want one pvgate process, found {pids}")
    return pids[0][0]


def threads_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


def open_fds(pid):
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def sanitizer_threads(pid):
    """Threads a sanitizer runtime adds: ThreadSanitizer runs one background thread."""
    binary = Path(f"/proc/{pid}/exe").read_bytes()
    return 1 if b"__tsan_init" in binary else 0


def check_threads(pid, when):
    extra = sanitizer_threads(pid)
    want = THREADS + 1 + extra
    got = threads_of(pid)
    check(got == want, f"{when}: pvgate has {got} threads, want --threads {THREADS} + "
                       f"main{' + the sanitizer runtime' if extra else ''} = {want}")


def connect(stack):
    if stack.listen is None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(str(stack.socket_path))
    else:
        host, port = stack.listen.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    return s


def attack(stack, n):
    """n connections to pvgate, each sent part of a request; waits until pvgate holds them."""
    pid = pvgate_pid(stack)
    base = open_fds(pid)
    socks = []
    sent_at = []
    try:
        for i in range(n):
            s = connect(stack)
            s.sendall(half_open_bytes(i))
            socks.append(s)
            sent_at.append(time.monotonic())
    except BaseException:
        for s in socks:
            s.close()
        raise
    # nginx may close a few kept-alive connections meanwhile: allow for its keepalive cache.
    wait_until(lambda: open_fds(pid) >= base + n - stack.nginx_keepalive,
               f"pvgate to accept the {n} connections", timeout=60)
    return socks, sent_at


def good(ctx):
    return {"user_id": ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def requests_through_nginx(ctx, total=REQUESTS, clients=CLIENTS):
    """total requests from `clients` threads on kept-alive connections: forwarded ones (200)
    and rejected ones (400) in turn; every answer must be the expected one."""
    per = total // clients
    failures = []

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port,
                                          timeout=itest.CLIENT_TIMEOUT_S)
        done = 0
        try:
            for i in range(per):
                try:
                    if (c + i) % 2 == 0:
                        expect(ctx.post_json("send-token", good(ctx), conn=conn), 200, 200)
                    else:
                        expect(ctx.post_json("send-token", dict(good(ctx), user_id="bad user"),
                                             conn=conn), 400, 9001, message_contains="user_id")
                    done += 1
                except Exception as e:  # collected and reported below
                    failures.append(str(e).splitlines()[0])
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port,
                                                      timeout=itest.CLIENT_TIMEOUT_S)
        finally:
            conn.close()
        return done

    t0 = time.monotonic()
    workers = [itest.Background(lambda c=c: client(c)) for c in range(clients)]
    ok = sum(w.result(timeout=itest.CLIENT_TIMEOUT_S * per) for w in workers)
    took = time.monotonic() - t0
    check(not failures, f"{len(failures)} of {per * clients} requests failed; first: "
                        f"{failures[:1]}")
    check(ok == per * clients, f"{ok} of {per * clients} requests answered as expected")
    return ok, took


def survive_attack(ctx):
    pid = pvgate_pid(ctx.stack)
    check_threads(pid, "before the attack")
    t0 = time.monotonic()
    socks, _ = attack(ctx.stack, HALF_OPEN)
    try:
        check_threads(pid, f"holding {HALF_OPEN} half-open connections")
        ok, took = requests_through_nginx(ctx)
        check_threads(pid, "after the requests")
        # The attackers are all still held (none was closed to make room).
        closed = sum(1 for s in socks if select.select([s], [], [], 0)[0])
        check(closed == 0, f"{closed} half-open connections were closed during the attack")
    finally:
        for s in socks:
            s.close()
    print(f"     {HALF_OPEN} half-open connections ({ctx.stack.listen or 'unix socket'}): "
          f"{ok}/{REQUESTS} requests answered as expected in {took:.2f} s; whole case "
          f"{time.monotonic() - t0:.2f} s", flush=True)


def on_tcp(fn):
    """Runs fn(ctx2) against a second stack whose pvgate listens on its own TCP --socket."""
    def case(ctx):
        port = itest.stacklib.free_port()
        st = itest.stacklib.Stack(ctx.stack.run_dir.parent / "tcp", pvgate=ctx.stack.pvgate,
                                  threads=THREADS, listen=f"127.0.0.1:{port}",
                                  extra_pvgate_config=limits(LONG_READ_MS))
        itest.record_credentials(st.api_key, st.api_secret)
        st.start()
        try:
            cmdline = Path(f"/proc/{pvgate_pid(st)}/cmdline").read_bytes().split(b"\0")
            check(f"127.0.0.1:{port}".encode() in cmdline, f"pvgate argv {cmdline}")
            fn(itest.Ctx(st))
        finally:
            st.stop()
            check(st.exit_codes.get("pvgate") == 0,
                  f"TCP pvgate exit codes {st.exit_codes}\n{itest.stacklib.tail(st.pvgate_log)}")
    return case


def read_deadline(ctx):
    ctx.stack.reload_pvgate(extra_pvgate_config=limits(SHORT_READ_MS))
    try:
        # Idle connections: one that never sent a byte, one kept alive after a whole request.
        idle = connect(ctx.stack)
        kept = connect(ctx.stack)
        kept.sendall(fcgi_request("/pvgate/healthz"))
        check(b"Status: 200" in read_reply(kept), "healthz on the kept connection")
        socks, sent_at = attack(ctx.stack, HALF_OPEN)
        try:
            closed_at = {}
            poller = select.poll()
            by_fd = {}
            for i, s in enumerate(socks):
                poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
                by_fd[s.fileno()] = i
            deadline = time.monotonic() + SHORT_READ_MS / 1000 + 30
            while len(closed_at) < len(socks) and time.monotonic() < deadline:
                for fd, _ in poller.poll(100):
                    i = by_fd[fd]
                    if i in closed_at:
                        continue
                    try:
                        data = socks[i].recv(4096, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    check(data == b"", f"half-open connection {i} got bytes {data[:40]!r}")
                    closed_at[i] = time.monotonic()
                    poller.unregister(fd)
            check(len(closed_at) == len(socks),
                  f"only {len(closed_at)} of {len(socks)} half-open connections were closed "
                  f"within {SHORT_READ_MS} ms + 30 s")
            early = [closed_at[i] - sent_at[i] for i in closed_at
                     if closed_at[i] - sent_at[i] < SHORT_READ_MS / 1000 - 0.05]
            check(not early, f"{len(early)} connections closed before limits.read_timeout_ms "
                             f"({SHORT_READ_MS} ms); earliest after {min(early or [0]):.3f} s")
            slowest = max(closed_at[i] - sent_at[i] for i in closed_at)
            print(f"     {len(socks)} half-open connections closed {SHORT_READ_MS} ms .. "
                  f"{slowest * 1000:.0f} ms after their last byte", flush=True)
        finally:
            for s in socks:
                s.close()
        # The idle ones are still open, and the kept one still serves.
        for name, s in (("never-sent", idle), ("kept-alive", kept)):
            s.setblocking(False)
            try:
                data = s.recv(1)
                raise AssertionError(f"the idle {name} connection was closed ({data!r})")
            except BlockingIOError:
                pass
            s.settimeout(10)
        kept.sendall(fcgi_request("/pvgate/healthz"))
        check(b"Status: 200" in read_reply(kept), "healthz again on the kept connection")
        idle.close()
        kept.close()
        log = ctx.stack.pvgate_log.read_text(errors="replace")
        check("holding part of a request" in log, "pvgate logged no read-deadline closes")
        requests_through_nginx(ctx, total=40)
    finally:
        ctx.stack.reload_pvgate(extra_pvgate_config=limits(LONG_READ_MS))


def write_deadline(ctx):
    st = ctx.stack
    before = st.pvgate_log.read_text(errors="replace").count("did not take the reply")
    host, port = st.listen.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)   # before connect: a tiny window
    s.settimeout(10)
    s.connect((host, int(port)))
    s.setblocking(False)
    one = fcgi_request("/pvgate/metrics")   # a few KB of Prometheus text each, from loopback
    sent = 0
    stop = threading.Event()
    gone = []

    def pump():
        nonlocal sent
        while not stop.is_set():
            try:
                sent += s.send(one * 64)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError as e:   # reset or broken pipe: pvgate dropped us
                gone.append(e.errno)
                return

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    try:
        t0 = time.monotonic()
        # pvgate serves others while this reader does not read.
        requests_through_nginx(ctx, total=24, clients=4)

        def dropped():
            return st.pvgate_log.read_text(errors="replace").count("did not take the reply") \
                > before
        wait_until(dropped, "pvgate to drop the reader that does not read",
                   timeout=WRITE_MS / 1000 + 30)
        took = time.monotonic() - t0
        check(took >= WRITE_MS / 1000 - 0.05, f"dropped after {took:.2f} s, before "
                                              f"limits.write_timeout_ms ({WRITE_MS} ms)")
        # The client sees the end: what was queued, then EOF or a reset.
        stop.set()
        pumper.join(10)
        s.setblocking(True)
        s.settimeout(10)
        got = 0
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            got += len(chunk)
        else:
            raise AssertionError("the dropped connection still delivers data after 30 s")
        print(f"     write deadline: a reader of {sent} request bytes that did not read was "
              f"dropped after {took:.2f} s (it had {got} reply bytes queued)", flush=True)
    finally:
        stop.set()
        s.close()
    requests_through_nginx(ctx, total=24, clients=4)


def ipv6_listen(ctx):
    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    except OSError:
        print("     no IPv6 loopback here: skipped", flush=True)
        return
    finally:
        probe.close()
    st = itest.stacklib.Stack(ctx.stack.run_dir.parent / "ipv6", pvgate=ctx.stack.pvgate,
                              threads=THREADS, listen=f"[::1]:{port}")
    itest.record_credentials(st.api_key, st.api_secret)
    st.start()
    try:
        # pvgate itself listens on ::1 (not nginx's doing): a FastCGI request straight to it.
        s = socket.create_connection(("::1", port), timeout=10)
        try:
            check(s.family == socket.AF_INET6, "not an IPv6 connection")
            s.sendall(fcgi_request("/pvgate/healthz"))
            check(b"Status: 200" in read_reply(s), "healthz over [::1]")
        finally:
            s.close()
        expect(itest.Ctx(st).post_json("send-token", good(ctx)), 200, 200)
    finally:
        st.stop()
    check(st.exit_codes.get("pvgate") == 0, f"IPv6 pvgate exit codes {st.exit_codes}")


def ipv6_listen_refused_unbracketed(ctx):
    r = subprocess.run(
        [str(ctx.stack.pvgate), "--config", str(ctx.stack.pvgate_config), "--socket", "::1:9471"],
        capture_output=True, text=True, timeout=30)
    check(r.returncode != 0, f"pvgate --socket ::1:9471 exited {r.returncode}")
    check("ambiguous" in r.stderr and "[::1]" in r.stderr, f"stderr: {r.stderr}")


CASES = [
    (f"unix socket: {HALF_OPEN} half-open connections, {REQUESTS} requests through nginx",
     survive_attack),
    (f"read deadline: half-open connections closed after {SHORT_READ_MS} ms, idle ones kept",
     read_deadline),
    (f"TCP --socket: {HALF_OPEN} half-open connections, {REQUESTS} requests through nginx",
     on_tcp(survive_attack)),
    (f"write deadline: a reader that never reads is dropped after {WRITE_MS} ms",
     on_tcp(write_deadline)),
    ("--socket [::1]:PORT listens on IPv6 loopback", ipv6_listen),
    ("--socket ::1:9471 is refused as ambiguous", ipv6_listen_refused_unbracketed),
]

if __name__ == "__main__":
    # Both ends of every connection: this process and pvgate (which inherits the limit).
    raise_fd_limit(4 * HALF_OPEN + 1024)
    itest.run(CASES, {"threads": THREADS, "extra_pvgate_config": limits(LONG_READ_MS)}, __doc__)
