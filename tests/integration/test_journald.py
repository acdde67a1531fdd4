#!/usr/bin/env python3
"""pvgate under systemd's eyes (issue 15, item 5): journald priorities and sd_notify readiness.

The stack runs pvgate with its own --socket (listen=), nginx in front. Each case stops the
stack's pvgate and starts build/pvgate on the same socket as systemd would run it: stderr on a
stream named by JOURNAL_STREAM (its st_dev:st_ino), NOTIFY_SOCKET a datagram socket of the test.
It then serves a request (info line), one Pipwave fails (502: a warn line), reloads a good file
and a broken one (errors), and stops on SIGTERM.

- file: stderr is a file whose dev:ino JOURNAL_STREAM names. Each line is read as sd-daemon(3)
  says journald reads it (Python's own reading: "<N>" with N in 0..7 at the start of a line is
  the priority, else the default), and must carry the priority of its level (error 3, warn 4,
  info 6, debug 7), the rest a JSON object; the notify socket receives READY=1, then
  RELOADING=1 (with MONOTONIC_USEC) + READY=1 per SIGHUP, STOPPING=1 on SIGTERM.
- journald: where systemd-journald can run (root; a private journal namespace, so the host's
  journal is never touched, and no systemd as PID 1 needed), stderr is a real journal stream
  (journald's stdout protocol) and `journalctl --namespace=... -p warning` must list exactly the
  warn and error lines, each entry's PRIORITY matching its level. Skipped (and said so) where
  journald cannot run; the file case covers the format then.
- not the journal: JOURNAL_STREAM naming another file, or unset (the stack's own pvgate),
  leaves lines without a prefix, as before.
- start-up errors: a broken file with log.format: text gives its errors as text log lines,
  "<3>pvgate: error ...", its warnings too (whatever log.level), and no READY=1.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import itest
from itest import check, expect, wait_until

# What pvgate's environment must not inherit from whoever runs the tests (ctest under systemd).
for name in ("JOURNAL_STREAM", "NOTIFY_SOCKET"):
    os.environ.pop(name, None)

PRIORITY = {"error": 3, "warn": 4, "info": 6, "debug": 7}   # sd-daemon(3): SD_ERR ... SD_DEBUG
JOURNALD = Path("/lib/systemd/systemd-journald")
NOTIFY_TIMEOUT_S = 20


def sd_prefix(line, default=6):
    """sd-daemon(3): a line starting with "<N>" (one digit 0-7) is logged at priority N,
    the prefix removed; any other line at the stream's default priority."""
    if len(line) >= 3 and line[0] == "<" and line[1] in "01234567" and line[2] == ">":
        return int(line[1]), line[3:]
    return default, line


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = str(path)
        Path(self.path).unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, timeout=NOTIFY_TIMEOUT_S):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()
        Path(self.path).unlink(missing_ok=True)


def stream_id(fd):
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def start_pvgate(ctx, stderr_fd, env_extra, config=None):
    """build/pvgate as systemd would start it (in place of the stack's pvgate, same socket)."""
    st = ctx.stack
    if st.procs["pvgate"].poll() is None:
        check(st.stop_pvgate() == 0, "the stack's pvgate did not stop cleanly")
    argv = [str(st.pvgate), "--config", str(config or st.pvgate_config),
            "--socket", str(st.run_dir / st.listen)]
    env = dict(os.environ)
    env.update(env_extra)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=stderr_fd, env=env, cwd=st.run_dir, start_new_session=True)
    st.procs["pvgate"] = p   # the stack stops it if a case fails half-way
    return p


def exercise(ctx, p, notify):
    """Requests, a good and a bad reload, SIGTERM; checks every notification on the way."""
    st = ctx.stack
    ready = notify.next()
    check(ready == "READY=1", f"first notification {ready!r}, want READY=1")
    check(p.poll() is None, "pvgate exited after READY=1")
    # READY=1 means serving: a request right away is answered.
    expect(ctx.send_token()[0], 200, 200)
    r, _ = ctx.send_token(user_id="mock-http500")
    check(r.status == 502, f"mock-http500: HTTP {r.status}, want 502")

    def reload_once(what):
        before = time.monotonic_ns() // 1000
        p.send_signal(signal.SIGHUP)
        msg = notify.next()
        after = time.monotonic_ns() // 1000
        m = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=(\d+)", msg or "")
        check(m, f"{what}: notification {msg!r}, want RELOADING=1 + MONOTONIC_USEC")
        check(before <= int(m.group(1)) <= after,
              f"{what}: MONOTONIC_USEC {m.group(1)} not in [{before}, {after}] (CLOCK_MONOTONIC)")
        msg = notify.next()
        check(msg == "READY=1", f"{what}: after RELOADING=1 came {msg!r}, want READY=1")

    reload_once("good reload")
    good = st.pvgate_config.read_text()
    st.pvgate_config.write_text(good + "no_such_key: 1\n")
    try:
        reload_once("rejected reload")
    finally:
        st.pvgate_config.write_text(good)
    expect(ctx.send_token()[0], 200, 200)   # the old configuration still serves
    p.send_signal(signal.SIGTERM)
    msg = notify.next()
    check(msg == "STOPPING=1", f"on SIGTERM: notification {msg!r}, want STOPPING=1")
    check(p.wait(timeout=30) == 0, f"pvgate exited with {p.returncode}")
    msg = notify.next(timeout=0.2)
    check(msg is None, f"a notification after STOPPING=1: {msg!r}")


# What every run must have logged, as (level, test on the decoded JSON line).
EXPECTED = [
    ("warn", lambda d: "no allowed_origins" in d.get("msg", ""), "start-up config warning"),
    ("info", lambda d: " serving with " in d.get("msg", ""), "serving with"),
    ("info", lambda d: d.get("event") == "request" and d.get("http") == 200, "request 200"),
    ("warn", lambda d: d.get("event") == "request" and d.get("http") == 502, "request 502"),
    ("info", lambda d: d.get("msg", "").startswith("reload: configuration"), "reload loaded"),
    ("error", lambda d: "no_such_key" in d.get("msg", ""), "reload rejected: the bad key"),
    ("error", lambda d: "keeping the previous" in d.get("msg", ""), "reload rejected"),
    ("info", lambda d: "signal SIGTERM" in d.get("msg", ""), "SIGTERM"),
    ("info", lambda d: d.get("msg", "").startswith("stopped after"), "stopped after"),
]


def check_entries(entries, how):
    """entries: [(priority, message text)]. Each message a JSON line whose level matches the
    priority; every EXPECTED line present."""
    docs = []
    for prio, text in entries:
        try:
            doc = json.loads(text)
        except ValueError:
            raise AssertionError(f"{how}: not a JSON log line: {text!r}")
        check(PRIORITY.get(doc.get("level")) == prio,
              f"{how}: priority {prio} for a {doc.get('level')} line: {text!r}")
        docs.append(doc)
    for level, pred, what in EXPECTED:
        hits = [d for d in docs if pred(d)]
        check(hits, f"{how}: no line for {what}")
        check(all(d["level"] == level for d in hits), f"{how}: {what} not at {level}: {hits}")
    return docs


def journal_file(ctx):
    st = ctx.stack
    out = st.run_dir / "journal-file.log"
    notify = NotifySocket(st.run_dir / "notify.sock")
    try:
        with open(out, "wb") as f:
            p = start_pvgate(ctx, f.fileno(), {"JOURNAL_STREAM": stream_id(f.fileno()),
                                               "NOTIFY_SOCKET": notify.path})
            exercise(ctx, p, notify)
    finally:
        notify.close()
    raw = out.read_bytes()
    check(raw.endswith(b"\n"), "the log does not end with a newline")
    entries = []
    for line in raw.decode().split("\n")[:-1]:
        check(re.match(r"<[3467]>\{", line), f"a line without its priority prefix: {line!r}")
        entries.append(sd_prefix(line))
    check_entries(entries, "JOURNAL_STREAM=stderr (file, read per sd-daemon(3))")


def journald_usable():
    return os.geteuid() == 0 and JOURNALD.is_file() and shutil.which("journalctl")


def journal_real(ctx):
    if not journald_usable():
        print("# journald: systemd-journald cannot run here (needs root and "
              f"{JOURNALD}); the priorities were checked by the file case only", flush=True)
        return
    st = ctx.stack
    ns = f"pvgateit{os.getpid()}"
    machine = Path("/etc/machine-id").read_text().strip()
    dirs = [Path(f"/run/systemd/journal.{ns}"), Path(f"/run/log/journal/{machine}.{ns}")]
    jd = subprocess.Popen([str(JOURNALD), ns], stdin=subprocess.DEVNULL,
                          stdout=open(st.run_dir / "journald.out", "wb"),
                          stderr=subprocess.STDOUT, start_new_session=True)
    notify = NotifySocket(st.run_dir / "notify2.sock")
    try:
        stdout_sock = dirs[0] / "stdout"
        wait_until(stdout_sock.is_socket, f"journald's {stdout_sock}", timeout=15)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(stdout_sock))
        # journald's stream header, as systemd writes it for StandardError=journal:
        # identifier, unit, default priority, level prefix on, no syslog/kmsg/console.
        s.sendall(b"pvgate-it\n\n6\n1\n0\n0\n0\n")
        s.shutdown(socket.SHUT_RD)
        try:
            p = start_pvgate(ctx, s.fileno(), {"JOURNAL_STREAM": stream_id(s.fileno()),
                                               "NOTIFY_SOCKET": notify.path})
        finally:
            s.close()
        exercise(ctx, p, notify)

        def journal(*args):
            r = subprocess.run(["journalctl", f"--namespace={ns}", "-t", "pvgate-it", "-o",
                                "json", "--no-pager", *args], capture_output=True, text=True,
                               timeout=30)
            check(r.returncode == 0, f"journalctl {args}: {r.stderr}")
            return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

        wait_until(lambda: any("stopped after" in e.get("MESSAGE", "") for e in journal()),
                   "the last line in the journal", timeout=15)
        every = journal()
        docs = check_entries([(int(e["PRIORITY"]), e["MESSAGE"]) for e in every],
                             "journald (journalctl -o json)")
        warnings = journal("-p", "warning")
        want = sum(1 for d in docs if d["level"] in ("warn", "error"))
        check(len(warnings) == want and want >= 4,
              f"journalctl -p warning: {len(warnings)} entries, want the {want} warn/error lines")
        check(all(json.loads(e["MESSAGE"])["level"] in ("warn", "error") for e in warnings),
              "journalctl -p warning lists a line below warning")
        print(f"# journald: {len(every)} entries, {want} at warning or above "
              f"(journalctl -p warning)", flush=True)
    finally:
        notify.close()
        if jd.poll() is None:
            jd.terminate()
            try:
                jd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                jd.kill()
                jd.wait()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def not_the_journal(ctx):
    st = ctx.stack
    # The stack's own pvgate ran without JOURNAL_STREAM: JSON lines, start-up warning included.
    lines = [l for l in st.pvgate_log.read_text().splitlines() if l.strip()]
    check(lines and all(l.startswith('{"ts":') for l in lines),
          f"without JOURNAL_STREAM, a line that is not a plain JSON line: {lines[:3]}")
    check(any("no allowed_origins" in json.loads(l).get("msg", "") for l in lines),
          "no start-up warning as a JSON line")
    # JOURNAL_STREAM naming another file (stderr redirected after systemd set it): no prefix.
    out = st.run_dir / "journal-other.log"
    other = st.run_dir / "other"
    other.write_text("")
    with open(out, "wb") as f, open(other, "rb") as o:
        p = start_pvgate(ctx, f.fileno(), {"JOURNAL_STREAM": stream_id(o.fileno())})
        wait_until(lambda: " serving with " in out.read_text(), "pvgate start-up", timeout=20)
        p.send_signal(signal.SIGTERM)
        check(p.wait(timeout=30) == 0, f"pvgate exited with {p.returncode}")
    lines = out.read_text().splitlines()
    check(lines and all(l.startswith('{"ts":') for l in lines),
          f"JOURNAL_STREAM of another file, yet: {lines[:3]}")


def startup_error_text(ctx):
    st = ctx.stack
    bad = st.run_dir / "bad.yaml"
    bad.write_text(st.pvgate_config.read_text() +
                   "log:\n  format: text\n  level: error\nno_such_key: 1\n")
    os.chmod(bad, 0o600)
    out = st.run_dir / "journal-bad.log"
    notify = NotifySocket(st.run_dir / "notify3.sock")
    try:
        with open(out, "wb") as f:
            p = start_pvgate(ctx, f.fileno(), {"JOURNAL_STREAM": stream_id(f.fileno()),
                                               "NOTIFY_SOCKET": notify.path}, config=bad)
            check(p.wait(timeout=30) == 1, f"a broken file: exit {p.returncode}, want 1")
        msg = notify.next(timeout=0.2)
        check(msg is None, f"a failed start notified {msg!r}")
    finally:
        notify.close()
    lines = out.read_text().splitlines()
    check(lines, "nothing logged for a broken file")
    for line in lines:
        prio, text = sd_prefix(line, default=None)
        m = re.match(r"pvgate: (error|warn|info|debug) ", text)
        check(prio is not None and m and PRIORITY[m.group(1)] == prio,
              f"not a text log line with its priority: {line!r}")
    check(any(l.startswith("<3>pvgate: error ") and "no_such_key" in l for l in lines),
          f"no error line for the bad key: {lines}")
    check(any(l.startswith("<4>pvgate: warn ") and "no allowed_origins" in l for l in lines),
          f"no warning line (log.format text): {lines}")


if __name__ == "__main__":
    itest.run([
        ("JOURNAL_STREAM on a file: every line its priority; READY, RELOADING, STOPPING",
         journal_file),
        ("systemd-journald (private namespace): journalctl -p warning", journal_real),
        ("not the journal: lines unchanged", not_the_journal),
        ("start-up errors: log lines in log.format text, priorities, no READY", startup_error_text),
    ], stack_options={"listen": "journal.sock"}, description=__doc__)
