"""Shared harness of pvgate's integration tests (Python 3 standard library only).

Every tests/integration/test_*.py is a standalone script:

    python3 tests/integration/test_X.py --pvgate /abs/build/pvgate [--keep]

It starts its own private stack (scripts/stack.py: mock Pipwave + pvgate under spawn-fcgi +
nginx, all on loopback) in a temporary directory, runs its cases in order, stops the stack even
when a case fails, prints one line per case and finally exactly `N passed, M failed`, and exits 0
iff M == 0. The run directory (logs, configs) is removed on success and kept on failure, or
always with --keep.

A case is a function taking a Ctx; it fails by raising (AssertionError with a message that says
what was sent and what came back).

Recording, for the suite-wide secret scan (test_zz_secret_scan.py): every response a case gets
through Ctx (status line, headers, body) is appended to RECORD/<test>/responses.txt, every
`signature` the mock receives to RECORD/<test>/signatures.txt (the mock's --signatures-file, via
env PVGATE_MOCK_SIGNATURES), and at stop the stack's pvgate.log and nginx logs are copied there,
with the stack's api_key/api_secret (plus any given to record_credentials) in
credentials.json. RECORD is env PVGATE_IT_RECORD_DIR, else `it-record` beside the pvgate binary
under test. Each run of a test replaces its own RECORD/<test>/.
"""

import argparse
import http.client
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO_DIR / "scripts"))

import stack as stacklib  # noqa: E402

CHALLENGE_KINDS = ("altcha", "turnstile", "hcaptcha", "recaptcha")
ALLOWED_MEMBERS = {"status", "message", "reference", "seconds_till_resend"}
COMPACT_JWS = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
MAX_MESSAGE_BYTES = 255
CLIENT_TIMEOUT_S = 30


class Resp:
    """One HTTP response from nginx, with the request that produced it (for messages)."""

    def __init__(self, method, path, req_headers, req_body, status, headers, body):
        self.method, self.path = method, path
        self.req_headers, self.req_body = req_headers, req_body
        self.status = status
        self.header_list = headers
        self.headers = {}
        for k, v in headers:
            self.headers.setdefault(k.lower(), v)
        self.body = body
        try:
            self.json = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())

    def describe(self):
        req = self.req_body if isinstance(self.req_body, (bytes, type(None))) else str(self.req_body)
        if isinstance(req, bytes) and len(req) > 300:
            req = req[:300] + b"...(%d bytes)" % len(self.req_body)
        ctype = dict((k.lower(), v) for k, v in (self.req_headers or {}).items()).get(
            "content-type")
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        hdrs = "; ".join(f"{k}: {v}" for k, v in self.header_list)
        return (f"request: {self.method} {self.path} content-type={ctype!r} body={req!r}\n"
                f"      response: HTTP {self.status} [{hdrs}] body={body!r}")


class Recorder:
    """Appends responses to RECORD/<test>/responses.txt (see the module doc)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.credentials = []   # [{"api_key":..., "api_secret":...}]
        self._lock = threading.Lock()
        self._n = 0

    def record(self, label, status_line, headers, body):
        head = "\r\n".join(f"{k}: {v}" for k, v in headers)
        with self._lock:
            self._n += 1
            with open(self.dir / "responses.txt", "ab") as f:
                f.write(f"### response {self._n}: {label}\n{status_line}\n{head}\n\n"
                        .encode("utf-8", "replace") + (body or b"") + b"\n")

    def add_credentials(self, api_key, api_secret):
        with self._lock:
            self.credentials.append({"api_key": api_key, "api_secret": api_secret})

    def finish(self, stack):
        """Copies the stack's logs (not the mock's, which legitimately sees the api_key) and
        writes credentials.json."""
        if stack is not None:
            for path in sorted(stack.run_dir.glob("*.log")):
                if path.name.startswith("mock"):
                    continue
                try:
                    shutil.copyfile(path, self.dir / f"{stack.run_dir.name}-{path.name}")
                except OSError:
                    pass
            self.add_credentials(stack.api_key, stack.api_secret)
        (self.dir / "credentials.json").write_text(json.dumps(self.credentials, indent=1))


RECORDER = None   # set by run()


def record_credentials(api_key, api_secret):
    """Registers more credentials (e.g. extra merchants) for the secret scan."""
    if RECORDER is not None:
        RECORDER.add_credentials(api_key, api_secret)


def record_dir_for(pvgate):
    import os
    env = os.environ.get("PVGATE_IT_RECORD_DIR")
    return Path(env) if env else Path(pvgate).resolve().parent / "it-record"


def parse_raw_response(data):
    """(status, [(name, value)], body) of a raw HTTP/1.x response, or None if there is none.
    The body is what follows the headers (the request is sent with Connection: close)."""
    if not data:
        return None
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise AssertionError(f"not an HTTP response: {data[:200]!r}")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    hd = {k.lower(): v for k, v in headers}
    if "chunked" in hd.get("transfer-encoding", "").lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    elif "content-length" in hd:
        body = body[:int(hd["content-length"])]
    return int(parts[1]), headers, body


class Ctx:
    """What a case gets: the running stack and helpers to talk to it."""

    def __init__(self, stack):
        self.stack = stack
        self.responses = []   # every Resp, for the secret-leak checks
        self._serial = 0
        self._lock = threading.Lock()

    # -- unique values, so cases never collide in the mock's session table ------------------

    def unique(self, prefix="u"):
        with self._lock:
            self._serial += 1
            return f"{prefix}{self._serial}"

    def phone(self):
        """A valid Malaysian mobile number (with dialing code 60), a new one each call, each in
        its own block of 100 consecutive numbers: pvgate checks numbers with libphonenumber,
        and the shipped phone-range-hour rule counts blocks of 100."""
        with self._lock:
            self._serial += 1
            return f"12{self._serial % 100000:05d}45"

    # A valid mobile number's digits for some dialing codes, the serial before the last two
    # digits (one block of 100 each, as phone()): Malaysia, Singapore, Great Britain, the US,
    # Bangladesh.
    NUMBER_FORMS = {"60": ("12{:05d}45", 100000), "65": ("9{:05d}12", 90000),
                    "44": ("7400{:04d}12", 10000), "1": ("2015{:04d}12", 10000),
                    "880": ("171{:05d}12", 100000)}

    def phone_in(self, dial):
        """A valid mobile number of the country with this dialing code (one of NUMBER_FORMS),
        a new one each call."""
        form, wrap = self.NUMBER_FORMS[dial]
        with self._lock:
            self._serial += 1
            return form.format(self._serial % wrap)

    # -- HTTP ---------------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, conn=None):
        """Sends one request (on `conn` if given, else a fresh connection) and returns Resp."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        headers = dict(headers or {})
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.stack.port,
                                              timeout=CLIENT_TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            resp = Resp(method, path, headers, body, r.status, r.getheaders(), r.read())
        finally:
            if own:
                conn.close()
        with self._lock:
            self.responses.append(resp)
        if RECORDER is not None:
            RECORDER.record(f"{method} {path}", f"HTTP {resp.status}", resp.header_list,
                            resp.body)
        return resp

    def raw(self, data, timeout=10.0, shutdown_write=False, port=None):
        """Sends `data` (bytes, a whole raw HTTP request; use Connection: close) on a fresh
        connection, optionally half-closes, and reads until the server closes or `timeout`.
        Returns Resp (method/path parsed from the request line) or None when the server
        closed without answering. For requests http.client would normalise."""
        first = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, path = (first + ["", ""])[:2]
        s = socket.create_connection(("127.0.0.1", port or self.stack.port), timeout=timeout)
        chunks = []
        try:
            try:
                s.sendall(data)
                if shutdown_write:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass   # the server may answer (and close) before the whole request is sent
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    b = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    break
                if not b:
                    break
                chunks.append(b)
        finally:
            s.close()
        parsed = parse_raw_response(b"".join(chunks))
        if parsed is None:
            return None
        status, headers, body = parsed
        head, _, req_body = data.partition(b"\r\n\r\n")
        req_headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = line.partition(":")
            req_headers.setdefault(k.strip(), v.strip())
        resp = Resp(method, path, req_headers, req_body, status, headers, body)
        with self._lock:
            self.responses.append(resp)
        if RECORDER is not None:
            RECORDER.record(f"raw {method} {path}", f"HTTP {status}", headers, body)
        return resp

    def post_json(self, route, obj, headers=None, **kw):
        """POSTs obj as JSON to /pvgate/<route>; `headers` adds request headers (e.g.
        X-Forwarded-For on a stack with real_ip=True)."""
        body = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        return self.request("POST", "/pvgate/" + route, body,
                            {"Content-Type": "application/json", **(headers or {})}, **kw)

    def post_form(self, route, pairs, headers=None, **kw):
        body = pairs if isinstance(pairs, (str, bytes)) else urllib.parse.urlencode(pairs)
        return self.request("POST", "/pvgate/" + route, body,
                            {"Content-Type": "application/x-www-form-urlencoded",
                             **(headers or {})}, **kw)

    def send_token(self, user_id=None, dial="60", contact=None, **kw):
        obj = {"user_id": user_id or self.unique(), "contact_no_country_dialing_code": dial,
               "contact_no": contact or self.phone()}
        return self.post_json("send-token", obj, **kw), obj

    # -- mock counters --------------------------------------------------------------------------

    def upstream_requests(self):
        return self.stack.mock_stats()["requests"]

    def not_forwarded(self, fn):
        """Runs fn() and asserts the mock saw no request meanwhile. Returns fn()'s result."""
        before = self.upstream_requests()
        r = fn()
        after = self.upstream_requests()
        if after != before:
            raise AssertionError(f"request was forwarded upstream ({after - before} upstream "
                                 f"request(s)) but must be rejected locally\n      "
                                 + (r.describe() if isinstance(r, Resp) else ""))
        return r

    def forwarded_once(self, fn):
        before = self.upstream_requests()
        r = fn()
        after = self.upstream_requests()
        if after != before + 1:
            raise AssertionError(f"expected exactly 1 upstream request, mock saw "
                                 f"{after - before}\n      "
                                 + (r.describe() if isinstance(r, Resp) else ""))
        return r


# -- assertions ---------------------------------------------------------------------------------


def check_envelope(r):
    """What every pvgate answer must look like, whatever the outcome."""
    problems = []
    ctype = (r.header("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        problems.append(f"Content-Type is {r.header('Content-Type')!r}, want application/json")
    cc = r.header("Cache-Control") or ""
    if "no-store" not in cc.lower():
        problems.append(f"Cache-Control is {cc!r}, want no-store")
    j = r.json
    if not isinstance(j, dict):
        problems.append("body is not a JSON object")
    else:
        extra = set(j) - ALLOWED_MEMBERS
        if r.status == 403 and j.get("status") == 403 and "challenge" in j:
            # A challenge refusal names the kind to solve (issue 14), and nothing else does.
            extra.discard("challenge")
            if j["challenge"] not in CHALLENGE_KINDS:
                problems.append(f"challenge is {j['challenge']!r}, want one of {CHALLENGE_KINDS}")
        if (r.status == 200 and j.get("status") == 200 and "verification_token" in extra
                and r.path.split("?")[0].rstrip("/").endswith("/verify-token-answer")):
            # A verified answer carries the signed token (issue 12), and nothing else does.
            extra.discard("verification_token")
            if not re.fullmatch(COMPACT_JWS, str(j["verification_token"])):
                problems.append("verification_token is not a compact JWS (three base64url parts)")
        if extra:
            problems.append(f"body has members beyond {sorted(ALLOWED_MEMBERS)}: {sorted(extra)}")
        if not (isinstance(j.get("status"), int) and not isinstance(j.get("status"), bool)):
            problems.append(f"status is {j.get('status')!r}, want an integer")
        msg = j.get("message")
        if not isinstance(msg, str):
            problems.append(f"message is {msg!r}, want a string")
        else:
            if any(ord(c) < 0x20 or ord(c) == 0x7f for c in msg):
                problems.append(f"message contains control characters: {msg!r}")
            if len(msg.encode("utf-8")) > MAX_MESSAGE_BYTES:
                problems.append(f"message is {len(msg.encode('utf-8'))} bytes, max "
                                f"{MAX_MESSAGE_BYTES}")
        for k in ("reference", "seconds_till_resend"):
            if k in j and (not isinstance(j[k], int) or isinstance(j[k], bool)):
                problems.append(f"{k} is {j[k]!r}, want an integer")
    if problems:
        raise AssertionError("; ".join(problems) + "\n      " + r.describe())


def expect(r, http_status, status=None, message_contains=None, message_lacks=()):
    """Asserts the HTTP status, the body status and (case-insensitively) message content."""
    if r.status != http_status:
        raise AssertionError(f"HTTP {r.status}, want {http_status}\n      " + r.describe())
    check_envelope(r)
    j = r.json
    if status is not None and j["status"] != status:
        raise AssertionError(f"body status {j['status']}, want {status}\n      " + r.describe())
    if message_contains is not None and message_contains.lower() not in j["message"].lower():
        raise AssertionError(f"message {j['message']!r} does not name {message_contains!r}\n"
                             "      " + r.describe())
    for bad in message_lacks:
        if bad.lower() in j["message"].lower():
            raise AssertionError(f"message {j['message']!r} leaks {bad!r}\n      "
                                 + r.describe())
    return j


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def wait_until(cond, what, timeout=20.0, poll=0.02):
    """Polls cond() until truthy (returned) or the deadline (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


class Background:
    """Runs fn() in a thread; .done tells whether it has finished, .result()/.error after."""

    def __init__(self, fn):
        self._fn = fn
        self.value = None
        self.error = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.value = self._fn()
        except BaseException as e:  # reported by result()
            self.error = e
        finally:
            self.finished.set()

    @property
    def done(self):
        return self.finished.is_set()

    def result(self, timeout=CLIENT_TIMEOUT_S + 5):
        if not self.finished.wait(timeout):
            raise AssertionError(f"background request still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.value


def start_slow(ctx, n, fields, slow_ms=3000):
    """Starts n send-tokens from the mock's slow user (answered after slow_ms) and waits until
    the mock has received all of them. fields(user_id) gives each one's body."""
    user = f"mock-slow-{slow_ms}"
    before = ctx.stack.mock_stats()["by_user"].get(user, 0)
    slow = [Background(lambda: ctx.post_json("send-token", fields(user))) for _ in range(n)]
    wait_until(lambda: ctx.stack.mock_stats()["by_user"].get(user, 0) >= before + n,
               f"{n} slow request(s) to reach the mock")
    return slow


def finish_slow(slow):
    """Each of start_slow's requests ends with Pipwave's 200."""
    for b in slow:
        expect(b.result(), 200, 200)


# -- runner -------------------------------------------------------------------------------------


def run(cases, stack_options=None, description="", after_stop=None):
    """Runs `cases` (list of (name, fn(ctx))) against one fresh stack. `after_stop(stack, ctx)`
    (optional) returns further (name, fn()) checks run once the stack is stopped. Exits."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--pvgate", default=str(REPO_DIR / "build" / "pvgate"),
                    help="the pvgate binary under test")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("-k", dest="only", default=None, help="run only cases containing this")
    a = ap.parse_args()
    if a.only:
        cases = [c for c in cases if a.only in c[0]]

    global RECORDER
    import os
    record = record_dir_for(a.pvgate) / Path(sys.argv[0]).stem
    shutil.rmtree(record, ignore_errors=True)
    record.mkdir(parents=True, exist_ok=True)
    RECORDER = Recorder(record)
    os.environ["PVGATE_MOCK_SIGNATURES"] = str(record / "signatures.txt")

    run_dir = Path(tempfile.mkdtemp(prefix="pvgate-it-"))
    st = stacklib.Stack(run_dir / "stack", pvgate=a.pvgate, **(stack_options or {}))
    passed = failed = 0
    ctx = None

    def report(name, fn):
        nonlocal passed, failed
        t0 = time.monotonic()
        try:
            fn()
        except Exception as e:  # a case failure, whatever it is
            failed += 1
            detail = str(e) if isinstance(e, AssertionError) else \
                "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
            print(f"FAIL {name}: {detail}", flush=True)
            return
        passed += 1
        print(f"ok   {name} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)

    try:
        try:
            st.start()
        except Exception as e:
            print(f"FAIL stack start: {e}", flush=True)
            failed = max(1, len(cases))
        else:
            ctx = Ctx(st)
            print(f"# stack: nginx 127.0.0.1:{st.port}, mock 127.0.0.1:{st.mock_port}, "
                  f"run dir {run_dir}", flush=True)
            for name, fn in cases:
                report(name, lambda fn=fn: fn(ctx))
    finally:
        try:
            st.stop()
        finally:
            RECORDER.finish(st)
    if ctx is not None and after_stop is not None:
        for name, fn in after_stop(st, ctx):
            report(name, fn)

    if failed or a.keep:
        print(f"# run dir kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


# -- concurrent bursts (the throttle tests) ------------------------------------------------------


def burst(ctx, n, body, route="send-token", headers=None, stack_of=lambda i: None):
    """n requests on n connections (request i to stack_of(i), default ctx's stack), opened first
    and released together by a barrier. body(i) gives request i's fields. Returns the n Resps."""
    barrier = threading.Barrier(n)
    results = [None] * n
    errors = []

    def one(i):
        st = stack_of(i) or ctx.stack
        conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=CLIENT_TIMEOUT_S)
        try:
            conn.connect()
            barrier.wait(timeout=20)
            results[i] = ctx.post_json(route, body(i), headers=headers, conn=conn)
        except Exception as e:  # reported below
            errors.append(e)
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT_S + 10)
    check(not errors, f"burst: {len(errors)} request(s) failed: {errors[:3]!r}")
    check(all(r is not None for r in results), "burst: a request did not finish")
    return results


def by_status(rs):
    """{HTTP status: [Resp, ...]}"""
    out = {}
    for r in rs:
        out.setdefault(r.status, []).append(r)
    return out


def worker_wchar(ctx):
    """{pid: bytes written so far} per worker (/proc/PID/io): a worker that handled a request
    wrote its log line and the reply, an idle one wrote nothing."""
    out = {}
    for pid, _ in ctx.stack.worker_pids():
        try:
            for line in open(f"/proc/{pid}/io"):
                if line.startswith("wchar:"):
                    out[pid] = int(line.split()[1])
        except OSError:
            pass
    return out
