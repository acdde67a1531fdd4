"""Runs wrk and parses what it prints: requests/s, latency percentiles, status counts, and
wrk's own CPU time (from wait4), so a row can show whether the load generator saturated."""

import json
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def lua(method="POST", body=None, content_type="application/json", stop_after=0,
        stop_marker=None):
    """A wrk script: the request, and a done() line with the totals wrk does not print.
    stop_after > 0: each thread stops after that many responses and creates the file
    `stop_marker`.N (N its number): wrk itself sleeps for -d regardless, so run() sends it
    SIGINT once every thread's marker is there. (The Lua response() callback this adds costs
    wrk CPU: only for counted runs, never for the timed ones.)"""
    s = [f'wrk.method = "{method}"']
    if body is not None:
        s += [f'wrk.headers["Content-Type"] = "{content_type}"',
              f"wrk.body = {json.dumps(body)}"]
    if stop_after:
        s += ["local counter = 0",
              "setup = function(thread)",
              "  counter = counter + 1",
              "  thread:set(\"id\", counter)",
              "end",
              f"local limit = {int(stop_after)}",
              "seen = 0",
              "response = function(status, headers, body)",
              "  seen = seen + 1",
              "  if seen == limit then",
              f"    local f = io.open({json.dumps(str(stop_marker))} .. \".\" .. id, \"w\")",
              "    if f then f:close() end",
              "    wrk.thread:stop()",
              "  end",
              "end"]
    s += ["done = function(summary, latency, requests)",
          '  io.write(string.format("requests=%d non2xx3xx=%d connect=%d read=%d write=%d '
          'timeout=%d\\n", summary.requests, summary.errors.status, summary.errors.connect, '
          "summary.errors.read, summary.errors.write, summary.errors.timeout))",
          "end"]
    return "\n".join(s) + "\n"


def seconds(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


@dataclass
class WrkResult:
    cmd: list
    out: str
    rps: float = 0.0
    requests: int = 0
    non2xx: int = 0
    socket_errors: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)   # "50%" -> seconds
    wall: float = 0.0
    cpu: float = 0.0    # wrk's user + system CPU seconds

    @property
    def p99(self):
        return self.latency.get("99%")

    @property
    def cpu_share(self):
        """wrk's CPU as a fraction of one core over the run."""
        return self.cpu / self.wall if self.wall else 0.0


def run(url, script_path, threads, connections, duration, timeout_s=None, latency=True,
        extra=(), stop_marker=None):
    wrk = shutil.which("wrk")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
    if latency:
        cmd.append("--latency")
    if timeout_s:
        cmd.append(f"--timeout={timeout_s}s")
    cmd += list(extra) + ["-s", str(script_path), url]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if stop_marker is not None:   # a counted run: SIGINT once every thread has stopped
        marker = Path(stop_marker)
        deadline = time.monotonic() + duration
        while p.poll() is None and time.monotonic() < deadline:
            done = [f for f in marker.parent.glob(marker.name + ".*")]
            if len(done) >= threads:
                p.send_signal(signal.SIGINT)
                break
            time.sleep(0.01)
    try:
        out, _ = p.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise RuntimeError(f"wrk did not finish: {' '.join(cmd)}\n{out}")
    # communicate() reaped it; its rusage is folded into RUSAGE_CHILDREN: take the delta.
    r = WrkResult(cmd=cmd, out=out, wall=time.monotonic() - t0)
    return r


def run_measured(url, script_path, threads, connections, duration, **kw):
    """run(), plus wrk's own CPU seconds (RUSAGE_CHILDREN delta around the run: the bench
    starts no other child while wrk runs)."""
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = run(url, script_path, threads, connections, duration, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r.cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parse(r)
    return r


def parse(r):
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.out)
    c = re.search(r"requests=(\d+) non2xx3xx=(\d+) connect=(\d+) read=(\d+) write=(\d+) "
                  r"timeout=(\d+)", r.out)
    if not m or not c:
        raise RuntimeError(f"no figures in wrk's output:\n$ {' '.join(r.cmd)}\n{r.out}")
    r.rps = float(m.group(1))
    r.requests, r.non2xx = int(c.group(1)), int(c.group(2))
    r.socket_errors = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"),
                                                 c.groups()[2:]) if int(v)}
    for pct, val in re.findall(r"^\s+(\d+%)\s+(\S+)$", r.out, re.M):
        s = seconds(val)
        if s is not None:
            r.latency[pct] = s
    return r
