"""What the stand-ins in tests/mock share: an HTTPS server on loopback, one thread per
connection, the /__stats and /__reset test endpoints, and the command line's listen, port-file
and signal plumbing.

Python 3 standard library only. A mock brings its own State (a MockState), its own Handler (a
MockHandler naming its paths, its answers and its log line) and its own options; see
mock_pipwave.py and mock_siteverify.py. Nothing here knows what a mock imitates.
"""

import ipaddress
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Limits, named so a reader sees every bound in one place.
HANDSHAKE_TIMEOUT_S = 10          # a TLS handshake that stalls longer is dropped
IDLE_TIMEOUT_S = 120              # keep-alive connection idle this long is closed
THREAD_STACK_BYTES = 512 * 1024   # 300+ connection threads without a big footprint
POLL_INTERVAL_S = 0.2             # how soon the serving loop sees a signal

# A client that went away, timed out or broke TLS: nothing worth a traceback.
CONNECTION_ERRORS = (ConnectionError, ssl.SSLError, socket.timeout, OSError)

_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def log_safe(value, limit=64):
    """Client-supplied text made safe for one log line."""
    s = _UNPRINTABLE.sub("?", str(value))
    return s if len(s) <= limit else s[:limit] + "..."


def is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Request bodies, read strictly: what a mock then accepts is its own business.


class BodyError(Exception):
    """A request body that does not parse; str(e) says why, for a mock that shows it."""


def _unique(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise BodyError(f"duplicate field {k!r}")
        out[k] = v
    return out


def media_type(content_type):
    """The Content-Type header's type/subtype in lower case, without parameters ("" if none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def body_text(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None


def form_fields(text):
    """An application/x-www-form-urlencoded body as a dict of str -> str: every pair has an
    '=', escapes decode to UTF-8, no name twice."""
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                                       errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BodyError("malformed form body") from None
    return _unique(pairs)


def json_value(text):
    """A JSON body, no name twice in one object."""
    try:
        return json.loads(text, object_pairs_hook=_unique)
    except ValueError:  # BodyError from _unique is not a ValueError: passes through
        raise BodyError("malformed JSON") from None


# ---------------------------------------------------------------------------------------------
# Shared state


class MockState:
    """The part of a mock's state every mock has: the one lock the handler threads share, the
    TLS connection counters the server keeps, and `requests`, which the mock counts (its API
    requests). A mock's State adds its own counters in _zero (calling this one's) and its own
    /__stats members in _stats."""

    def __init__(self):
        self.lock = threading.Lock()
        self._zero()

    def _zero(self):
        self.requests = 0
        self.connections = 0
        self.handshake_failures = 0

    def reset(self):
        with self.lock:
            self._zero()

    def count_connection(self, ok):
        with self.lock:
            if ok:
                self.connections += 1
            else:
                self.handshake_failures += 1

    def snapshot(self):
        """GET /__stats: the counters every mock has, then the mock's own."""
        with self.lock:
            return {
                "requests": self.requests,
                "connections": self.connections,
                "handshake_failures": self.handshake_failures,
                **self._stats(),
            }

    def _stats(self):
        """The mock's own /__stats members, in order; called with the lock held."""
        return {}


# ---------------------------------------------------------------------------------------------
# HTTP


class MockHandler(BaseHTTPRequestHandler):
    """One connection's requests. Answers GET /__stats and POST /__reset itself, a GET of an API
    path 405, any other path 404, and hands a POST to an API path to post_api(path).

    A mock's Handler sets server_version, api_paths, max_body_bytes and the three JSON bodies
    below (in its own vocabulary), and defines post_api and log_line. reject_body and
    read_chunked_body have defaults it may replace."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle plus
    # delayed ACK adds ~40 ms to every answer.
    disable_nagle_algorithm = True
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    api_paths = ()              # the paths the mock serves, POST only
    max_body_bytes = 0          # a longer body is refused with 413
    not_found = None            # body of a 404
    method_not_allowed = None   # body of a GET of an API path
    reset_done = None           # body of POST /__reset

    # -- plumbing --------------------------------------------------------------------------

    @property
    def st(self):
        return self.server.state

    def log_message(self, fmt, *args):  # silence BaseHTTPRequestHandler's own log
        pass

    def log_error(self, fmt, *args):
        pass

    def log_line(self, http_code):
        """The mock's log line for an answer; its other arguments default to "-"."""
        raise NotImplementedError

    def write_log_line(self, http_code, detail):
        """One stderr line per answer: mock, peer, request line, HTTP code, the mock's `detail`
        (made log_safe by it), time since the request began. Nothing with --quiet."""
        if self.server.quiet:
            return
        ms = (time.monotonic() - self._t0) * 1000 if hasattr(self, "_t0") else 0.0
        line = (f"{self.server.mock_name} {self.client_address[0]}:{self.client_address[1]} "
                f"\"{log_safe(self.command, 8)} {log_safe(self.path)}\" http={http_code} "
                f"{detail} {ms:.1f}ms\n")
        with self.server.log_lock:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def handle(self):
        try:
            super().handle()
        except CONNECTION_ERRORS:
            self.close_connection = True

    def send_raw(self, http_code, ctype, body):
        self.send_response(http_code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj, http_code=200):
        body = json.dumps(obj, separators=(",", ":")).encode("ascii")
        self.send_raw(http_code, "application/json", body)

    def reject_body(self, http_code, reason=None):
        """Answers a request whose body cannot be read (400, 411, 413); the connection closes.
        Default: http.server's HTML error page."""
        self.send_error(http_code, reason)

    def read_chunked_body(self):
        """A chunked body, or None after answering. Default: refused, 411 Length Required."""
        self.reject_body(411)
        return None

    def read_body(self):
        """Returns the raw body, or None after answering an HTTP-level error."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.read_chunked_body()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""  # RFC 9112 6.3: a request with neither header has no body
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.reject_body(400, "bad Content-Length")
            return None
        if n > self.max_body_bytes:
            self.reject_body(413)
            return None
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            return None
        return data

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self):
        self._t0 = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/__stats":
            self.send_json(self.st.snapshot())
            self.log_line(200)
        elif path in self.api_paths:
            self.send_json(self.method_not_allowed, 405)
            self.log_line(405)
        else:
            self.send_json(self.not_found, 404)
            self.log_line(404)

    def do_POST(self):
        self._t0 = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/__reset":
            if self.read_body() is not None:
                self.st.reset()
                self.send_json(self.reset_done)
                self.log_line(200)
        elif path not in self.api_paths:
            if self.read_body() is not None:
                self.send_json(self.not_found, 404)
                self.log_line(404)
        else:
            self.post_api(path)

    def post_api(self, path):
        """A POST to one of api_paths, its body not read yet."""
        raise NotImplementedError


class MockServer(ThreadingHTTPServer):
    """HTTPS, one daemon thread per connection; the TLS handshake runs in that thread, with a
    timeout, so a stalled client never holds up accept(). Quiet about clients that go away.
    `settings` become attributes the mock's handler reads (self.server.delay_s, ...)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, name, addr, family, ctx, handler, state, quiet, **settings):
        self.mock_name = name
        self.address_family = family
        self.ctx = ctx
        self.state = state
        self.quiet = quiet
        self.log_lock = threading.Lock()
        self.stopping = threading.Event()   # set on shutdown: slow answers stop waiting
        vars(self).update(settings)
        super().__init__(addr, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls getfqdn(), which can stall on DNS; loopback needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread, so a slow handshake never blocks accept().
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.state.count_connection(False)
            return
        self.state.count_connection(True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except CONNECTION_ERRORS:
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], CONNECTION_ERRORS):
            return
        super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------------
# CLI


def add_listen_options(p):
    """--host, --port, --port-file, --cert, --key, as every mock takes them."""
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (127.0.0.0/8, ::1, localhost)")
    p.add_argument("--port", type=int, default=0, help="port, 0 = pick a free one")
    p.add_argument("--port-file", help="write the actual port here once listening")
    p.add_argument("--cert", help="server certificate chain, PEM")
    p.add_argument("--key", help="server private key, PEM")


def check_listen_options(p, a):
    """Exits through p.error (status 2) unless the listen options are usable."""
    if not is_loopback_host(a.host):
        p.error(f"--host {a.host!r}: only loopback addresses (127.0.0.0/8, ::1, localhost)")
    if not 0 <= a.port <= 65535:
        p.error(f"--port {a.port}: must be 0..65535")
    if not a.cert or not a.key:
        p.error("--cert and --key are required")


def write_port_file(path, port):
    """Atomically (tmp file, then rename): a reader that sees the file sees the whole port."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def serve(name, a, handler, new_state, banner, **settings):
    """Runs a mock: loads a.cert/a.key, listens on a.host:a.port, writes a.port_file, says
    "NAME: listening on https://HOST:PORT BANNER" (unless a.quiet), and serves until SIGTERM
    or SIGINT. Returns the exit code: 0 after a signal, 2 when the certificate or the socket
    fails. new_state() is called between the two, so a bad certificate creates nothing."""
    host = "127.0.0.1" if a.host == "localhost" else a.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(a.cert, a.key)
    except (OSError, ssl.SSLError) as e:
        print(f"{name}: cannot load --cert/--key: {e}", file=sys.stderr)
        return 2

    threading.stack_size(THREAD_STACK_BYTES)
    state = new_state()
    try:
        srv = MockServer(name, (host, a.port), family, ctx, handler, state, a.quiet,
                         **settings)
    except OSError as e:
        print(f"{name}: cannot listen on {host}:{a.port}: {e}", file=sys.stderr)
        return 2
    port = srv.server_address[1]
    if a.port_file:
        write_port_file(a.port_file, port)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if not a.quiet:
        print(f"{name}: listening on https://{host}:{port} {banner}", file=sys.stderr,
              flush=True)
    try:
        srv.serve_forever(poll_interval=POLL_INTERVAL_S)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stopping.set()
        srv.server_close()
    return 0
