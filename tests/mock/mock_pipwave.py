#!/usr/bin/env python3
"""Stand-in for Pipwave's phone-verify API, for pvgate's demo, integration tests and benchmarks.

Python 3 standard library only. HTTPS (certificate given on the command line), one thread per
connection, HTTP/1.1 keep-alive, loopback only. See README.md next to this file for the magic
user_ids and the /__stats endpoint; /work/shared/pipwave-api.md (copied into the repo docs) for the
real API this imitates.

Check order for POST /phone-verify (the same order the real service is assumed to use):
  1. body parses to a flat JSON object (or form) of string/integer values   else status 9001
  2. header x-api-key present, equal to body api_key, and a known merchant   else 403
  3. signature = sha1(sorted key:value of every body field but `signature`,
     plus api_secret)                                                        else 401
  4. action is send-token or verify-token-answer                             else 404
  5. required fields present and non-empty                                   else 9001
  6. the number is canonical: dialing code 1-3 digits, no leading 0 in it or
     in contact_no, code + number at most 15 digits (E.164)                  else 9001
  7. timestamp within MAX_CLOCK_SKEW_S of now                                else 400
Only then does a magic user_id (mock-*) choose a special behaviour, so a wrongly signed request
always gets 401/403 whatever its user_id.
"""

import argparse
import hashlib
import hmac
import math
import os
import re
import socket
import sys
import time

from mock_server import (BodyError, MockHandler, MockState, add_listen_options, body_text,
                         check_listen_options, form_fields, json_value, log_safe, media_type,
                         serve)

# Limits, named so a reader sees every bound in one place.
MAX_BODY_BYTES = 1 << 20          # larger request bodies get HTTP 413
MAX_CLOCK_SKEW_S = 300            # |now - timestamp| above this -> status 400
MAX_SESSIONS = 1_000_000          # oldest sessions are forgotten past this (benchmarks)
MAX_PHONES_KEPT = 64              # /__stats "phones": the last numbers received
FIRST_REFERENCE = 1001
BIG_BODY_BYTES = 2 * 1024 * 1024  # mock-big
DRIP_LENGTH = 1000                # mock-drip: declared Content-Length
DRIP_INTERVAL_S = 0.5             # mock-drip: one byte per interval
ENDLESS_CHUNK = 1024              # mock-endless: chunk size
CTRL_MESSAGE_LEN = 400            # mock-ctrl: message length
MAX_COUNTRY_CODE_DIGITS = 3       # ITU-T E.164: a country calling code has 1-3 digits
MAX_E164_DIGITS = 15              # ITU-T E.164: country code + national number

ACTIONS = ("send-token", "verify-token-answer")
REQUIRED = {
    "send-token": ("user_id", "contact_no_country_dialing_code", "timestamp"),
    "verify-token-answer": ("user_id", "contact_no_country_dialing_code", "timestamp",
                            "reference", "answer"),
}

# The worked examples of pipwave-api.md, checked by --self-test.
SELF_TEST_SECRET = "my_api_secret"
SELF_TEST_CASES = [
    ({"action": "send-token", "timestamp": "1539677150", "api_key": "sdvdas23t3btg34bhb",
      "user_id": "505315", "contact_no_country_dialing_code": "60", "contact_no": "123456789"},
     "912383aba7d0d271e2e970c6405e309f1c023c74"),
    ({"action": "verify-token-answer", "timestamp": "1539677150",
      "api_key": "sdvdas23t3btg34bhb", "user_id": "505315",
      "contact_no_country_dialing_code": "60", "contact_no": "123456789",
      "reference": "164", "answer": "123456"},
     "5e60beeec7fd00fc4b50502fe0d953f1d6ed2c42"),
]
SELF_TEST_STRING = ("action:send-tokenapi_key:sdvdas23t3btg34bhbapi_secret:my_api_secret"
                    "contact_no:123456789contact_no_country_dialing_code:60"
                    "timestamp:1539677150user_id:505315")


# ---------------------------------------------------------------------------------------------
# Pure helpers


def signature_string(fields, api_secret):
    """Concatenation of key:value, sorted by key in byte order, of `fields` minus `signature`,
    plus api_secret. Python sorts str by code point, which is UTF-8 byte order."""
    pairs = {k: str(v) for k, v in fields.items() if k != "signature"}
    pairs["api_secret"] = api_secret
    return "".join(f"{k}:{pairs[k]}" for k in sorted(pairs))


def compute_signature(fields, api_secret):
    return hashlib.sha1(signature_string(fields, api_secret).encode("utf-8")).hexdigest()


def parse_body(raw, content_type):
    """Returns a dict of str -> (str | int): a form, or else a JSON object. Raises BodyError
    (-> status 9001) when the body is not such a flat object."""
    text = body_text(raw)
    if media_type(content_type) == "application/x-www-form-urlencoded":
        return form_fields(text)
    obj = json_value(text)
    if not isinstance(obj, dict):
        raise BodyError("body is not a JSON object")
    for k, v in obj.items():
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise BodyError(f"field {k!r} is not a string or integer")
    return obj


def phone_problem(fields):
    """Why the body's phone is not in the canonical form pvgate must forward (country calling
    code + national significant number, as E.164 splits it), or None. The real Pipwave's rules
    are not documented; the mock is strict so that a test catches pvgate forwarding a number
    as the client spelt it ("0060", "0198765432", "601"+"98765432" is not caught: it is a
    possible split, and the E.164 length is the same)."""
    code = str(fields.get("contact_no_country_dialing_code", ""))
    number = str(fields.get("contact_no", ""))
    if not code.isdigit() or code.startswith("0") or len(code) > MAX_COUNTRY_CODE_DIGITS:
        return "contact_no_country_dialing_code"
    if number == "":
        return None   # Pipwave texts the number it holds for the user
    if not number.isdigit() or number.startswith("0"):
        return "contact_no"
    if len(code) + len(number) > MAX_E164_DIGITS:
        return "contact_no (over 15 digits with the dialing code)"
    return None


# ---------------------------------------------------------------------------------------------
# Shared state


class State(MockState):
    """Everything mutable the handler threads share, behind one lock."""

    def __init__(self, merchants, code, resend_cooldown):
        self.merchants = merchants          # api_key -> api_secret
        self.secrets = set(merchants.values())
        self.code = code
        self.resend_cooldown = resend_cooldown
        self.next_reference = FIRST_REFERENCE
        self.sessions = {}                  # reference -> (api_key, dial, contact, user_id)
        self.last_send = {}                 # (api_key, dial, contact) -> monotonic time
        self.signatures_file = None         # --signatures-file: every signature received
        super().__init__()

    def _zero(self):
        super()._zero()
        self.secret_leaks = 0
        self.by_user = {}
        self.by_status = {}
        self.noncanonical = 0
        self.phones = []                    # (dialing code, contact_no) received, newest last
        self.last = None
        self.last_headers = None

    def count_request(self):
        with self.lock:
            self.requests += 1

    def record_body(self, body, headers):
        """Remembers the last parsed body for /__stats, with any secret value blanked out."""
        leaked = False
        shown = {}
        for k, v in body.items():
            if k == "api_secret" or (isinstance(v, str) and v in self.secrets):
                leaked = True
                shown[k] = "<redacted secret>"
            else:
                shown[k] = v
        uid = body.get("user_id")
        with self.lock:
            if leaked:
                self.secret_leaks += 1
            if isinstance(uid, (str, int)):
                uid = str(uid)
                self.by_user[uid] = self.by_user.get(uid, 0) + 1
            self.last = shown
            self.last_headers = headers
            if "contact_no_country_dialing_code" in body or "contact_no" in body:
                self.phones.append([str(body.get("contact_no_country_dialing_code", "")),
                                    str(body.get("contact_no", ""))])
                del self.phones[:-MAX_PHONES_KEPT]
            sig = body.get("signature")
            if self.signatures_file is not None and isinstance(sig, str) and sig:
                self.signatures_file.write(sig.replace("\n", " ") + "\n")
                self.signatures_file.flush()

    def count_noncanonical(self):
        with self.lock:
            self.noncanonical += 1

    def count_status(self, status):
        key = str(status)
        with self.lock:
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def _stats(self):
        return {
            "secret_leaks": self.secret_leaks,
            "by_user": dict(self.by_user),
            "by_status": dict(self.by_status),
            "noncanonical": self.noncanonical,
            "phones": [list(p) for p in self.phones],
            "sessions": len(self.sessions),
            "last": self.last,
            "last_headers": self.last_headers,
        }

    def send_token(self, api_key, dial, contact, user_id):
        """Returns (reference, None) or (None, seconds_till_resend)."""
        key = (api_key, dial, contact)
        now = time.monotonic()
        with self.lock:
            if self.resend_cooldown > 0:
                last = self.last_send.get(key)
                if last is not None and now - last < self.resend_cooldown:
                    return None, max(1, math.ceil(self.resend_cooldown - (now - last)))
                self.last_send[key] = now
                if len(self.last_send) > MAX_SESSIONS:
                    self.last_send.pop(next(iter(self.last_send)))
            ref = self.next_reference
            self.next_reference += 1
            self.sessions[ref] = (api_key, dial, contact, user_id)
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.pop(next(iter(self.sessions)))
            return ref, None

    def session(self, ref):
        with self.lock:
            return self.sessions.get(ref)


# ---------------------------------------------------------------------------------------------
# HTTP


class Handler(MockHandler):
    server_version = "mock-pipwave/1"
    api_paths = ("/phone-verify",)
    max_body_bytes = MAX_BODY_BYTES
    not_found = {"status": 404, "message": "Not found."}
    method_not_allowed = {"status": 405, "message": "Use POST."}
    reset_done = {"status": 200, "message": "Counters reset."}

    def log_line(self, http_code, status="-", user_id="-", action="-"):
        self.write_log_line(http_code, f"status={log_safe(status, 16)} user={log_safe(user_id)} "
                                       f"action={log_safe(action, 24)}")

    def read_chunked_body(self):
        chunks, total = [], 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.reject_body(400, "bad chunk size")
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.reject_body(413)
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def post_api(self, path):
        self.st.count_request()
        raw = self.read_body()
        if raw is None:
            self.log_line("error")
            return
        if self.server.delay_s > 0:
            time.sleep(self.server.delay_s)
        self.phone_verify(raw)

    # -- /phone-verify ---------------------------------------------------------------------

    def answer(self, obj, user_id="-", action="-", http_code=200):
        self.st.count_status(obj.get("status", "-"))
        self.send_json(obj, http_code)
        self.log_line(http_code, obj.get("status", "-"), user_id, action)

    def phone_verify(self, raw):
        st = self.st
        try:
            body = parse_body(raw, self.headers.get("Content-Type"))
        except BodyError as e:
            self.answer({"status": 9001, "message": f"Parameter error: {e}."})
            return
        st.record_body(body, {
            h.lower(): self.headers.get(h) for h in
            ("Content-Type", "User-Agent", "x-api-key", "Content-Length", "Accept",
             "Accept-Encoding", "Expect")
            if self.headers.get(h) is not None})
        user_id = body.get("user_id", "-")
        action = body.get("action", "-")

        # 2. API key: header and body agree and name a known merchant.
        hdr_key = self.headers.get("x-api-key")
        api_key = body.get("api_key")
        secret = st.merchants.get(api_key) if isinstance(api_key, str) else None
        if hdr_key is None or hdr_key != api_key or secret is None:
            self.answer({"status": 403, "message": "Invalid API key."}, user_id, action)
            return

        # 3. Signature over every field but `signature`, plus api_secret.
        sig = body.get("signature")
        expected = compute_signature(body, secret)
        if not isinstance(sig, str) or not hmac.compare_digest(sig.encode("utf-8"),
                                                               expected.encode("ascii")):
            self.answer({"status": 401, "message": "Invalid API signature."}, user_id, action)
            return

        # 4. Action.
        if action not in ACTIONS:
            self.answer({"status": 404, "message": "Invalid action."}, user_id, action)
            return

        # 5. Required fields.
        missing = [f for f in REQUIRED[action] if str(body.get(f, "")) == ""]
        if missing:
            self.answer({"status": 9001, "message": "Parameter error: missing "
                         + ", ".join(missing) + "."}, user_id, action)
            return

        # 6. A canonical number (see phone_problem).
        bad = phone_problem(body)
        if bad is not None:
            st.count_noncanonical()
            self.answer({"status": 9001, "message": f"Parameter error: {bad}."}, user_id, action)
            return

        # 7. Timestamp.
        try:
            ts = int(str(body["timestamp"]))
        except ValueError:
            self.answer({"status": 9001, "message": "Parameter error: timestamp."},
                        user_id, action)
            return
        if abs(time.time() - ts) > MAX_CLOCK_SKEW_S:
            self.answer({"status": 400, "message": "Request timestamp expired."},
                        user_id, action)
            return

        uid = str(user_id)
        if uid.startswith("mock-") and self.magic(uid, body, secret, action):
            return
        if action == "send-token":
            self.send_token(body, uid, action)
        else:
            self.verify_token(body, uid, action)

    def send_token(self, body, uid, action):
        ref, wait = self.st.send_token(body["api_key"], str(body["contact_no_country_dialing_code"]),
                                       str(body.get("contact_no", "")), uid)
        if ref is None:
            self.answer({"status": 5002, "message": "Too frequent. Please try again later.",
                         "seconds_till_resend": wait}, uid, action)
            return
        self.answer({"status": 200, "message": "Token sent.", "reference": ref,
                     "internal_cost": "0.05", "provider_detail": "mock-sms-gw"}, uid, action)

    def verify_token(self, body, uid, action):
        try:
            ref = int(str(body["reference"]))
        except ValueError:
            ref = None
        sess = self.st.session(ref) if ref is not None else None
        want = (body["api_key"], str(body["contact_no_country_dialing_code"]),
                str(body.get("contact_no", "")), uid)
        if sess is None or sess != want:
            self.answer({"status": 5051, "message": "Session expired or reference not found."},
                        uid, action)
        elif not hmac.compare_digest(str(body["answer"]).encode("utf-8"),
                                     self.st.code.encode("utf-8")):
            self.answer({"status": 5052, "message": "Incorrect answer."}, uid, action)
        else:
            self.answer({"status": 200, "message": "Verified."}, uid, action)

    def magic(self, uid, body, secret, action):
        """Special behaviour chosen by user_id. Returns False to fall through to normal."""
        m = re.fullmatch(r"mock-(str)?status-(\d{1,9})", uid)
        if m:
            n = int(m.group(2))
            obj = {"status": str(n) if m.group(1) else n, "message": f"mock status {n}"}
            if n == 5002:
                obj["seconds_till_resend"] = 42
            self.answer(obj, uid, action)
            return True
        m = re.fullmatch(r"mock-slow-(\d{1,7})", uid)
        if m:
            time.sleep(int(m.group(1)) / 1000.0)
            return False
        if uid == "mock-garbage":
            self.st.count_status("garbage")
            self.send_raw(200, "application/json", b"not json{")
            self.log_line(200, "garbage", uid, action)
        elif uid == "mock-html":
            page = (b"<html><head><title>502 Bad Gateway</title></head><body>"
                    b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                    b"</body></html>\n")
            self.st.count_status("html")
            self.send_raw(502, "text/html", page)
            self.log_line(502, "html", uid, action)
        elif uid == "mock-http500":
            self.answer({"status": 500, "message": "boom"}, uid, action, http_code=500)
        elif uid == "mock-big":
            self.answer({"status": 200, "message": "x" * BIG_BODY_BYTES}, uid, action)
        elif uid == "mock-close":
            self.st.count_status("close")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.log_line("closed", "-", uid, action)
        elif uid == "mock-array":
            self.st.count_status("array")
            self.send_raw(200, "application/json", b"[1,2,3]")
            self.log_line(200, "array", uid, action)
        elif uid == "mock-echo":
            api_key, sig = body.get("api_key"), body.get("signature")
            self.answer({"status": 400,
                         "message": f"Bad request for api_key {api_key} signature {sig}",
                         "api_key": api_key, "signature": sig, "api_secret": secret},
                        uid, action)
        elif uid == "mock-ctrl":
            core = "ctrl:\r\n\t\u0000\u001b[31mred\u001b[0m\r\nSet-Cookie: x=1\n"
            msg = (core * (CTRL_MESSAGE_LEN // len(core) + 1))[:CTRL_MESSAGE_LEN]
            self.answer({"status": 400, "message": msg}, uid, action)
        elif uid == "mock-drip":
            self.drip(uid, action)
        elif uid == "mock-endless":
            self.endless(uid, action)
        else:
            return False
        return True

    def drip(self, uid, action):
        """Valid JSON of DRIP_LENGTH bytes, one byte per DRIP_INTERVAL_S."""
        head = b'{"status":200,"message":"'
        tail = b'"}'
        body = head + b"d" * (DRIP_LENGTH - len(head) - len(tail)) + tail
        self.st.count_status("drip")
        self.log_line(200, "drip", uid, action)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(len(body)):
            if self.server.stopping.wait(DRIP_INTERVAL_S):
                return
            self.wfile.write(body[i:i + 1])  # raises once the client is gone

    def endless(self, uid, action):
        self.st.count_status("endless")
        self.log_line(200, "endless", uid, action)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = b'{"status":200,"message":"'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        chunk = b"%x\r\n%s\r\n" % (ENDLESS_CHUNK, b"e" * ENDLESS_CHUNK)
        while not self.server.stopping.is_set():
            self.wfile.write(chunk)  # raises once the client is gone


# ---------------------------------------------------------------------------------------------
# CLI


def self_test():
    ok = True
    got = signature_string(SELF_TEST_CASES[0][0], SELF_TEST_SECRET)
    if got != SELF_TEST_STRING:
        print(f"FAIL signature string:\n  got  {got}\n  want {SELF_TEST_STRING}")
        ok = False
    for fields, want in SELF_TEST_CASES:
        got = compute_signature(fields, SELF_TEST_SECRET)
        print(f"{'ok  ' if got == want else 'FAIL'} {fields['action']}: {got} (want {want})")
        ok = ok and got == want
    # Integer values sign the same as their decimal strings.
    as_int = dict(SELF_TEST_CASES[0][0], timestamp=1539677150)
    if compute_signature(as_int, SELF_TEST_SECRET) != SELF_TEST_CASES[0][1]:
        print("FAIL integer timestamp signs differently")
        ok = False
    # `signature` itself is never signed.
    with_sig = dict(SELF_TEST_CASES[1][0], signature="whatever")
    if compute_signature(with_sig, SELF_TEST_SECRET) != SELF_TEST_CASES[1][1]:
        print("FAIL signature field was signed")
        ok = False
    print("self-test " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def parse_args(argv):
    p = argparse.ArgumentParser(description="Mock Pipwave phone-verify API (HTTPS, loopback).")
    add_listen_options(p)
    p.add_argument("--merchant", action="append", default=[], metavar="API_KEY:API_SECRET",
                   help="known merchant (repeatable, at least one)")
    p.add_argument("--delay-ms", type=int, default=0,
                   help="delay added to every phone-verify answer")
    p.add_argument("--code", default="123456", help="the code every session expects")
    p.add_argument("--resend-cooldown", type=float, default=0,
                   help="seconds between send-tokens to one number (0 = off)")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    p.add_argument("--signatures-file", default=os.environ.get("PVGATE_MOCK_SIGNATURES"),
                   help="append every `signature` received to this file, one a line, so a "
                        "test can search responses and logs for them (default: env "
                        "PVGATE_MOCK_SIGNATURES)")
    p.add_argument("--self-test", action="store_true",
                   help="check the signature examples of pipwave-api.md and exit")
    a = p.parse_args(argv)
    if a.self_test:
        return a
    check_listen_options(p, a)
    if not a.merchant:
        p.error("at least one --merchant API_KEY:API_SECRET is required")
    merchants = {}
    for m in a.merchant:
        k, sep, s = m.partition(":")
        if not sep or not k or not s:
            p.error("--merchant: expected API_KEY:API_SECRET")  # never echo the secret
        merchants[k] = s
    a.merchants = merchants
    if a.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    if a.resend_cooldown < 0:
        p.error("--resend-cooldown must be >= 0")
    if not a.code:
        p.error("--code must not be empty")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.self_test:
        return self_test()

    def new_state():
        state = State(a.merchants, a.code, a.resend_cooldown)
        if a.signatures_file:
            state.signatures_file = open(a.signatures_file, "a", encoding="utf-8")
        return state

    return serve("mock-pipwave", a, Handler, new_state,
                 f"({len(a.merchants)} merchant(s), delay {a.delay_ms} ms)",
                 delay_s=a.delay_ms / 1000.0)


if __name__ == "__main__":
    sys.exit(main())
