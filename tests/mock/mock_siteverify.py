#!/usr/bin/env python3
"""Stand-in for the CAPTCHA providers' siteverify APIs, for pvgate's tests and demo (issue 14).

Python 3 standard library only. HTTPS (certificate given on the command line), one thread per
connection, HTTP/1.1 keep-alive, loopback only, like mock_pipwave.py. See README.md next to this
file for the tokens that choose a behaviour and the /__stats endpoint.

    POST /turnstile/v0/siteverify   Cloudflare Turnstile (form or JSON body)
    POST /siteverify                hCaptcha (form body)
    POST /recaptcha/api/siteverify  Google reCAPTCHA v2 / v3 (form body)

Checks, in order, each failing with HTTP 200 {"success":false,"error-codes":[...]}:
  1. the body is a form (or, for Turnstile, a JSON object) of unique string fields  bad-request
  2. `secret` present and non-empty                                              missing-input-secret
  3. `secret` equal to --secret                                                  invalid-input-secret
  4. `response` present and non-empty                                        missing-input-response
Then the token (`response`) chooses the answer: pass*, score-N*, slow*, fail*, garbage*, http500*;
anything else is invalid-input-response. A passing token is good once per provider: a second check
fails with the provider's duplicate code (timeout-or-duplicate; hCaptcha:
invalid-or-already-seen-response).
"""

import argparse
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
MAX_BODY_BYTES = 64 * 1024     # larger request bodies get HTTP 413 (Turnstile: token <= 2048)
HANDSHAKE_TIMEOUT_S = 10       # a TLS handshake that stalls longer is dropped
IDLE_TIMEOUT_S = 120           # keep-alive connection idle this long is closed
MAX_SEEN_TOKENS = 1_000_000    # the single-use memory forgets its oldest tokens past this
DEFAULT_SLOW_MS = 5000         # slow* tokens: answered after this long (--slow-ms)
LOG_TOKEN_CHARS = 24           # a token in the mock's own log line is cut to this

# Which provider each path imitates, and the code each documents for a token checked twice.
PROVIDERS = {
    "/turnstile/v0/siteverify": "turnstile",
    "/siteverify": "hcaptcha",
    "/recaptcha/api/siteverify": "recaptcha",
}
DUPLICATE_CODE = {
    "turnstile": "timeout-or-duplicate",
    "hcaptcha": "invalid-or-already-seen-response",
    "recaptcha": "timeout-or-duplicate",
}
HOSTNAME = "localhost"
SCORE_TOKEN = re.compile(r"score-([0-9]+(?:\.[0-9]+)?)")


class BadRequest(Exception):
    """The body is not a form (or JSON object) of unique string fields (-> bad-request)."""


# ---------------------------------------------------------------------------------------------
# Pure helpers


def _unique(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise BadRequest(f"duplicate field {k!r}")
        out[k] = v
    return out


def parse_body(raw, content_type, provider):
    """The request's fields as a dict of str -> str. A form for every provider; JSON too for
    Turnstile, which documents both. Another content type for hCaptcha or reCAPTCHA gives no
    fields (they read forms only, so its secret and response are missing)."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    if ctype == "application/x-www-form-urlencoded":
        if text == "":
            return {}
        try:
            pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                                           errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("malformed form body") from None
        # parse_qsl leaves a '%' that starts no escape as it is: a body pvgate encoded never
        # has one.
        if re.search(r"%(?![0-9A-Fa-f]{2})", text):
            raise BadRequest("malformed %-escape")
        return _unique(pairs)
    if ctype == "application/json" and provider == "turnstile":
        try:
            obj = json.loads(text, object_pairs_hook=_unique)
        except ValueError:  # BadRequest from _unique is not a ValueError: passes through
            raise BadRequest("malformed JSON") from None
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise BadRequest("not a JSON object of strings")
        return obj
    return {}


def log_safe(value, limit=64):
    s = re.sub(r"[^\x21-\x7e]", "?", str(value))
    return s if len(s) <= limit else s[:limit] + "..."


def is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def challenge_ts():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def success_body(provider, score=None):
    """A successful answer with the members each provider documents."""
    body = {"success": True, "challenge_ts": challenge_ts(), "hostname": HOSTNAME}
    if provider == "turnstile":
        body.update({"error-codes": [], "action": "", "cdata": "",
                     "metadata": {"interactive": False}})
    elif provider == "hcaptcha":
        body["credit"] = False
    if score is not None:
        body["score"] = score
        if provider == "recaptcha":
            body["action"] = "send_token"
        elif provider == "hcaptcha":
            body["score_reason"] = []
    return body


def failure_body(*codes):
    return {"success": False, "error-codes": list(codes)}


# ---------------------------------------------------------------------------------------------
# Shared state


class State:
    """Everything mutable the handler threads share, behind one lock."""

    def __init__(self, secret):
        self.secret = secret
        self.lock = threading.Lock()
        self.seen = {}                      # (provider, token) -> None, oldest first
        self._zero()

    def _zero(self):
        self.requests = 0
        self.connections = 0
        self.handshake_failures = 0
        self.by_path = {}
        self.by_outcome = {}
        self.last = None

    def reset(self):
        with self.lock:
            self._zero()

    def count_connection(self, ok):
        with self.lock:
            if ok:
                self.connections += 1
            else:
                self.handshake_failures += 1

    def count_request(self, path, content_type, has_api_key):
        with self.lock:
            self.requests += 1
            self.by_path[path] = self.by_path.get(path, 0) + 1
            # Replaced once the body is read (record_fields).
            self.last = {"path": path, "content_type": content_type,
                         "x_api_key": has_api_key, "fields": None, "response": None,
                         "secret_ok": None, "outcome": None}

    def record_fields(self, fields):
        with self.lock:
            self.last["fields"] = sorted(fields)
            self.last["response"] = fields.get("response")
            self.last["secret_ok"] = fields.get("secret") == self.secret

    def count_outcome(self, outcome):
        with self.lock:
            self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
            if self.last is not None:
                self.last["outcome"] = outcome

    def first_use(self, provider, token):
        """True the first time (provider, token) is checked, False afterwards."""
        key = (provider, token)
        with self.lock:
            if key in self.seen:
                return False
            self.seen[key] = None
            if len(self.seen) > MAX_SEEN_TOKENS:
                self.seen.pop(next(iter(self.seen)))
            return True

    def snapshot(self):
        with self.lock:
            return {
                "requests": self.requests,
                "connections": self.connections,
                "handshake_failures": self.handshake_failures,
                "by_path": dict(self.by_path),
                "by_outcome": dict(self.by_outcome),
                "tokens_seen": len(self.seen),
                "last": dict(self.last) if self.last else None,
            }


# ---------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out in separate writes
    server_version = "mock-siteverify/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    @property
    def st(self):
        return self.server.state

    def log_message(self, fmt, *args):  # silence BaseHTTPRequestHandler's own log
        pass

    def log_error(self, fmt, *args):
        pass

    def log_line(self, http_code, outcome="-", token="-"):
        """One line per request; the secret is never written, a token only in part."""
        if self.server.quiet:
            return
        ms = (time.monotonic() - self._t0) * 1000 if hasattr(self, "_t0") else 0.0
        line = (f"mock-siteverify {self.client_address[0]}:{self.client_address[1]} "
                f"\"{log_safe(self.command, 8)} {log_safe(self.path)}\" http={http_code} "
                f"outcome={log_safe(outcome, 32)} token={log_safe(token, LOG_TOKEN_CHARS)} "
                f"{ms:.1f}ms\n")
        with self.server.log_lock:
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def handle(self):
        try:
            super().handle()
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
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

    def read_body(self):
        """The raw body (Content-Length only), or None after answering an HTTP-level error."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self.send_json(failure_body("bad-request"), 411)
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.send_json(failure_body("bad-request"), 400)
            return None
        if n > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_json(failure_body("bad-request"), 413)
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
        elif path in PROVIDERS:
            self.send_json(failure_body("method-not-allowed"), 405)
            self.log_line(405)
        else:
            self.send_json({"success": False, "error-codes": ["not-found"]}, 404)
            self.log_line(404)

    def do_POST(self):
        self._t0 = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path == "/__reset":
            if self.read_body() is not None:
                self.st.reset()
                self.send_json({"reset": True})
                self.log_line(200)
            return
        provider = PROVIDERS.get(path)
        if provider is None:
            if self.read_body() is not None:
                self.send_json({"success": False, "error-codes": ["not-found"]}, 404)
                self.log_line(404)
            return
        self.st.count_request(path, self.headers.get("Content-Type"),
                              self.headers.get("x-api-key") is not None)
        raw = self.read_body()
        if raw is None:
            self.st.count_outcome("http-error")
            self.log_line("error", "http-error")
            return
        self.siteverify(provider, raw)

    # -- siteverify ------------------------------------------------------------------------

    def answer(self, obj, outcome, token="-", http_code=200):
        self.st.count_outcome(outcome)
        self.send_json(obj, http_code)
        self.log_line(http_code, outcome, token)

    def siteverify(self, provider, raw):
        try:
            fields = parse_body(raw, self.headers.get("Content-Type"), provider)
        except BadRequest:
            self.answer(failure_body("bad-request"), "bad-request")
            return
        self.st.record_fields(fields)
        secret = fields.get("secret", "")
        token = fields.get("response", "")
        missing = [code for code, value in (("missing-input-secret", secret),
                                            ("missing-input-response", token)) if value == ""]
        if "missing-input-secret" in missing:
            self.answer(failure_body(*missing), "missing-input")
            return
        if secret != self.st.secret:
            self.answer(failure_body("invalid-input-secret"), "wrong-secret", token or "-")
            return
        if missing:
            self.answer(failure_body(*missing), "missing-input")
            return
        self.by_token(provider, token)

    def by_token(self, provider, token):
        score_match = SCORE_TOKEN.match(token)
        if token.startswith("pass") or score_match:
            if not self.st.first_use(provider, token):
                self.answer(failure_body(DUPLICATE_CODE[provider]), "duplicate", token)
                return
            score = float(score_match.group(1)) if score_match else None
            self.answer(success_body(provider, score), "score" if score_match else "pass", token)
        elif token.startswith("slow"):
            # Long enough for pvgate's timeout to fire; a stopping server answers at once.
            self.server.stopping.wait(self.server.slow_s)
            self.answer(success_body(provider), "slow", token)
        elif token.startswith("fail"):
            self.answer(failure_body("invalid-input-response"), "fail", token)
        elif token.startswith("garbage"):
            self.st.count_outcome("garbage")
            self.send_raw(200, "application/json", b"<html>not json{")
            self.log_line(200, "garbage", token)
        elif token.startswith("http500"):
            self.answer(failure_body("internal-error"), "http500", token, http_code=500)
        else:
            self.answer(failure_body("invalid-input-response"), "invalid", token)


class MockServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, family, ctx, state, slow_s, quiet):
        self.address_family = family
        self.ctx = ctx
        self.state = state
        self.slow_s = slow_s
        self.quiet = quiet
        self.log_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(addr, Handler)

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
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, socket.timeout, OSError)):
            return
        super().handle_error(request, client_address)


# ---------------------------------------------------------------------------------------------
# CLI


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Mock CAPTCHA siteverify APIs: Turnstile, hCaptcha, reCAPTCHA (HTTPS, "
                    "loopback).")
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to listen on (127.0.0.0/8, ::1, localhost)")
    p.add_argument("--port", type=int, default=0, help="port, 0 = pick a free one")
    p.add_argument("--port-file", help="write the actual port here once listening")
    p.add_argument("--cert", help="server certificate chain, PEM")
    p.add_argument("--key", help="server private key, PEM")
    p.add_argument("--secret", help="the secret every provider expects (required)")
    p.add_argument("--slow-ms", type=int, default=DEFAULT_SLOW_MS,
                   help=f"how long slow* tokens wait before answering (default {DEFAULT_SLOW_MS})")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    a = p.parse_args(argv)
    if not is_loopback_host(a.host):
        p.error(f"--host {a.host!r}: only loopback addresses (127.0.0.0/8, ::1, localhost)")
    if not 0 <= a.port <= 65535:
        p.error(f"--port {a.port}: must be 0..65535")
    if not a.cert or not a.key:
        p.error("--cert and --key are required")
    if not a.secret:
        p.error("--secret is required and must not be empty")   # never echo it
    if a.slow_ms < 0:
        p.error("--slow-ms must be >= 0")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    host = "127.0.0.1" if a.host == "localhost" else a.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(a.cert, a.key)
    except (OSError, ssl.SSLError) as e:
        print(f"mock-siteverify: cannot load --cert/--key: {e}", file=sys.stderr)
        return 2

    threading.stack_size(512 * 1024)
    state = State(a.secret)
    try:
        srv = MockServer((host, a.port), family, ctx, state, a.slow_ms / 1000.0, a.quiet)
    except OSError as e:
        print(f"mock-siteverify: cannot listen on {host}:{a.port}: {e}", file=sys.stderr)
        return 2
    port = srv.server_address[1]
    if a.port_file:
        tmp = f"{a.port_file}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, a.port_file)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    if not a.quiet:
        print(f"mock-siteverify: listening on https://{host}:{port} "
              f"({', '.join(sorted(PROVIDERS))}; slow {a.slow_ms} ms)", file=sys.stderr,
              flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stopping.set()
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
