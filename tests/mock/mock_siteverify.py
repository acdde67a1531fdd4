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
import re
import sys
import time

from mock_server import (BodyError, MockHandler, MockState, add_listen_options, body_text,
                         check_listen_options, form_fields, json_value, log_safe, media_type,
                         serve)

# Limits, named so a reader sees every bound in one place.
MAX_BODY_BYTES = 64 * 1024     # larger request bodies get HTTP 413 (Turnstile: token <= 2048)
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


# ---------------------------------------------------------------------------------------------
# Pure helpers


def parse_body(raw, content_type, provider):
    """The request's fields as a dict of str -> str. A form for every provider; JSON too for
    Turnstile, which documents both. Another content type for hCaptcha or reCAPTCHA gives no
    fields (they read forms only, so its secret and response are missing). Raises BodyError
    (-> bad-request) when the body is not a form (or JSON object) of unique string fields."""
    text = body_text(raw)
    ctype = media_type(content_type)
    if ctype == "application/x-www-form-urlencoded":
        fields = form_fields(text)
        # parse_qsl leaves a '%' that starts no escape as it is: a body pvgate encoded never
        # has one.
        if re.search(r"%(?![0-9A-Fa-f]{2})", text):
            raise BodyError("malformed %-escape")
        return fields
    if ctype == "application/json" and provider == "turnstile":
        obj = json_value(text)
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise BodyError("not a JSON object of strings")
        return obj
    return {}


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


class State(MockState):
    """Everything mutable the handler threads share, behind one lock."""

    def __init__(self, secret):
        self.secret = secret
        self.seen = {}                      # (provider, token) -> None, oldest first
        super().__init__()

    def _zero(self):
        super()._zero()
        self.by_path = {}
        self.by_outcome = {}
        self.last = None

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

    def _stats(self):
        return {
            "by_path": dict(self.by_path),
            "by_outcome": dict(self.by_outcome),
            "tokens_seen": len(self.seen),
            "last": dict(self.last) if self.last else None,
        }


# ---------------------------------------------------------------------------------------------
# HTTP


class Handler(MockHandler):
    server_version = "mock-siteverify/1"
    api_paths = tuple(PROVIDERS)
    max_body_bytes = MAX_BODY_BYTES
    not_found = {"success": False, "error-codes": ["not-found"]}
    method_not_allowed = failure_body("method-not-allowed")
    reset_done = {"reset": True}

    def log_line(self, http_code, outcome="-", token="-"):
        """One line per request; the secret is never written, a token only in part."""
        self.write_log_line(http_code, f"outcome={log_safe(outcome, 32)} "
                                       f"token={log_safe(token, LOG_TOKEN_CHARS)}")

    def reject_body(self, http_code, reason=None):
        # Chunked (411), a bad Content-Length (400) or a body too large (413).
        self.close_connection = True
        self.send_json(failure_body("bad-request"), http_code)

    def post_api(self, path):
        self.st.count_request(path, self.headers.get("Content-Type"),
                              self.headers.get("x-api-key") is not None)
        raw = self.read_body()
        if raw is None:
            self.st.count_outcome("http-error")
            self.log_line("error", "http-error")
            return
        self.siteverify(PROVIDERS[path], raw)

    # -- siteverify ------------------------------------------------------------------------

    def answer(self, obj, outcome, token="-", http_code=200):
        self.st.count_outcome(outcome)
        self.send_json(obj, http_code)
        self.log_line(http_code, outcome, token)

    def siteverify(self, provider, raw):
        try:
            fields = parse_body(raw, self.headers.get("Content-Type"), provider)
        except BodyError:
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


# ---------------------------------------------------------------------------------------------
# CLI


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Mock CAPTCHA siteverify APIs: Turnstile, hCaptcha, reCAPTCHA (HTTPS, "
                    "loopback).")
    add_listen_options(p)
    p.add_argument("--secret", help="the secret every provider expects (required)")
    p.add_argument("--slow-ms", type=int, default=DEFAULT_SLOW_MS,
                   help=f"how long slow* tokens wait before answering (default {DEFAULT_SLOW_MS})")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    a = p.parse_args(argv)
    check_listen_options(p, a)
    if not a.secret:
        p.error("--secret is required and must not be empty")   # never echo it
    if a.slow_ms < 0:
        p.error("--slow-ms must be >= 0")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    return serve("mock-siteverify", a, Handler, lambda: State(a.secret),
                 f"({', '.join(sorted(PROVIDERS))}; slow {a.slow_ms} ms)",
                 slow_s=a.slow_ms / 1000.0)

if __name__ == "__main__":
    sys.exit(main())
