#!/usr/bin/env python3
"""Host-wide metrics (issue 15, items 1 and 2): four pvgate workers under `spawn-fcgi -F 4`
(scripts/stack.py workers=4) share one metrics file beside the LMDB store, so every scrape,
whichever worker nginx hands it to, shows the host's totals.

- before any API request, every label set is there with 0 (merchant x action x outcome, the
  rule's results, the operations routes), with the store's used/max bytes, the upstream
  calls in flight against 4 x max_connections, pvgate_workers 4 and the process_* gauges;
- after each batch of requests, concurrent scrapes through nginx (landing on at least two
  workers) each show exactly the requests sent: send-token ok, invalid_input, unknown
  routes, throttle decisions, upstream calls, operations requests by route;
- requests held at the upstream show in the in-flight gauges (summed over the workers); once
  every worker is SIGKILLed and fresh ones start, the gauges are 0 (a dead worker's slot
  does not count) and the counters carry on from where they were (no reset);
- one worker SIGKILLed: pvgate_workers 3, the counters unchanged, new requests add up;
- `promtool check metrics` accepts the exposition (when promtool is installed).
"""

import re
import shutil
import signal
import subprocess
import threading
import time

import itest
from itest import check

from itest import stacklib

WORKERS = 4
MAX_CONNECTIONS = 256  # upstream.max_connections's default: the stack does not set it
RULE = "wide-open"
THROTTLE = f"""rules:
  - name: {RULE}
    actions: [send-token]
    key: [merchant, ip]
    limit: 10000
    period: 60s
"""
SCRAPES = 16  # concurrent scrapes per round: more than nginx keeps connections to pvgate
SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")

# What has been sent so far (the counts every scrape must show, over the first scrape's).
sent = {"ok": 0, "invalid_input": 0, "not_found": 0, "healthz": 0, "jwks": 0, "throttled": 0}
baseline = {}


def parse(text):
    """{series: value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = SERIES.match(line)
        check(m is not None, f"not an exposition line: {line!r}")
        out[m.group(1)] = float(m.group(2))
    return out


def req(action, outcome, merchant="shop-a"):
    return (f'pvgate_requests_total{{merchant="{merchant}",action="{action}",'
            f'outcome="{outcome}"}}')


def scrape(ctx):
    r = ctx.request("GET", "/pvgate/metrics")
    check(r.status == 200, "scrape:\n      " + r.describe())
    return r.body.decode()


def worker_rchar(ctx):
    """{pid: bytes read so far} per worker (/proc/PID/io): a worker reads each FastCGI request
    it takes with read(2) (its replies go out with send(2), which wchar does not count)."""
    out = {}
    for pid, _ in ctx.stack.worker_pids():
        try:
            for line in open(f"/proc/{pid}/io"):
                if line.startswith("rchar:"):
                    out[pid] = int(line.split()[1])
        except OSError:
            pass
    return out


def scrape_round(ctx, n=SCRAPES):
    """n scrapes at once, each on its own connection through nginx; returns their texts and the
    pids of the workers that read something meanwhile (took a scrape)."""
    io0 = worker_rchar(ctx)
    texts, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(timeout=20)
            texts[i] = scrape(ctx)
        except Exception as e:  # reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, f"scrapes failed: {errors[:3]!r}")
    io1 = worker_rchar(ctx)
    served = {pid for pid, w in io1.items() if w > io0.get(pid, w)}
    return texts, served


THROTTLE_OK = f'pvgate_throttle_decisions_total{{rule="{RULE}",result="ok"}}'


def expected():
    counters = {
        req("send-token", "ok"): sent["ok"],
        req("send-token", "invalid_input"): sent["invalid_input"],
        req("none", "not_found", "(none)"): sent["not_found"],
        req("verify-token-answer", "ok"): 0,
        req("send-token", "method_not_allowed"): 0,
        THROTTLE_OK: sent["ok"] + sent["throttled"],
        f'pvgate_throttle_decisions_total{{rule="{RULE}",result="over"}}': 0,
        "pvgate_upstream_latency_seconds_count": sent["ok"],
        'pvgate_operations_requests_total{route="healthz"}': sent["healthz"],
        'pvgate_operations_requests_total{route="jwks.json"}': sent["jwks"],
    }
    want = {k: baseline[k] + v for k, v in counters.items()}
    want["pvgate_requests_in_flight"] = 0
    want["pvgate_upstream_in_flight"] = 0
    return want


def check_rounds(ctx, rounds=3, workers=WORKERS):
    """`rounds` rounds of concurrent scrapes: every scrape shows exactly the counts sent; the
    scrapes were answered by at least two workers in all."""
    want = expected()
    served = set()
    for _ in range(rounds):
        texts, by = scrape_round(ctx)
        served |= by
        for text in texts:
            got = parse(text)
            wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            check(not wrong, f"a scrape disagrees with what was sent, (got, want): {wrong}")
            check(got.get("pvgate_workers") == workers,
                  f"pvgate_workers {got.get('pvgate_workers')}, want {workers}")
            check(got.get("pvgate_upstream_max_connections") == workers * MAX_CONNECTIONS,
                  f"pvgate_upstream_max_connections {got.get('pvgate_upstream_max_connections')}")
    return served


def send_batch(ctx, ok=6, bad=4, unknown=3, healthz=2, jwks=1):
    """Requests of known outcomes, some at once (so several workers take them)."""
    user = ctx.unique("hw")
    rs = itest.burst(ctx, ok, lambda i: {"user_id": f"{user}-{i}",
                                         "contact_no_country_dialing_code": "60",
                                         "contact_no": ctx.phone()})
    for r in rs:
        itest.expect(r, 200, 200)
    sent["ok"] += ok
    rs = itest.burst(ctx, bad, lambda i: {"user_id": "bad id", "contact_no": "1",
                                          "contact_no_country_dialing_code": "60"})
    for r in rs:
        check(r.status == 400, "invalid input:\n      " + r.describe())
    sent["invalid_input"] += bad
    for _ in range(unknown):
        r = ctx.request("POST", "/pvgate/no-such-route", "{}",
                        {"Content-Type": "application/json"})
        check(r.status == 404, "unknown route:\n      " + r.describe())
    sent["not_found"] += unknown
    for _ in range(healthz):
        check(ctx.request("GET", "/pvgate/healthz").status == 200, "healthz")
    sent["healthz"] += healthz
    for _ in range(jwks):
        ctx.request("GET", "/pvgate/jwks.json")  # 404 without verification: still counted
    sent["jwks"] += jwks


def all_counted(ctx):
    """Waits until every worker has mapped the file: a worker takes requests only after that
    (server.start comes after), but the stack is ready once one of them answers."""
    itest.wait_until(lambda: parse(scrape(ctx)).get("pvgate_workers") == WORKERS,
                     f"all {WORKERS} workers counted in pvgate_workers")


def up_front(ctx):
    all_counted(ctx)
    got = parse(scrape(ctx))
    # 19 outcomes x (shop-a: 2 actions, (none): 3, (other): 2), all present from the start.
    series = [k for k in got if k.startswith("pvgate_requests_total{")]
    outcomes = len([k for k in series if 'merchant="shop-a",action="send-token"' in k])
    check(outcomes >= 19, f"{outcomes} send-token outcomes for shop-a, want every one")
    check(len(series) == 7 * outcomes, f"{len(series)} request series, want {7 * outcomes}")
    # The stack's readiness probe (a GET of /pvgate/send-token: 405) is the only request so far.
    probe = req("send-token", "method_not_allowed")
    nonzero = {k: v for k, v in got.items() if k in series and v != 0 and k != probe}
    check(not nonzero, f"before any request all are 0 but {nonzero}")
    check(got.get(probe, 0) >= 1, f"{probe} {got.get(probe)}: the stack's readiness probe")
    baseline.update(got)
    for result in ("ok", "over", "over_dry_run"):
        k = f'pvgate_throttle_decisions_total{{rule="{RULE}",result="{result}"}}'
        check(got.get(k) == 0, f"{k} = {got.get(k)}, want 0 from the start")
    check(got.get("pvgate_store_max_bytes") == 64 * 1024 * 1024,
          f"pvgate_store_max_bytes {got.get('pvgate_store_max_bytes')}: max_size_mb 64")
    used = got.get("pvgate_store_used_bytes")
    check(used is not None and 0 < used < 64 * 1024 * 1024, f"pvgate_store_used_bytes {used}")
    check(got.get("pvgate_workers") == WORKERS, f"pvgate_workers {got.get('pvgate_workers')}")
    check(got.get("pvgate_upstream_max_connections") == WORKERS * MAX_CONNECTIONS,
          "upstream max connections summed over the workers")
    check(got.get("process_threads", 0) >= WORKERS, f"process_threads {got.get('process_threads')}")
    check(got.get("process_open_fds", 0) >= 3 * WORKERS, "process_open_fds")
    check(got.get("process_resident_memory_bytes", 0) > WORKERS * 1024 * 1024, "resident memory")
    start = got.get("process_start_time_seconds", 0)
    check(time.time() - 600 < start <= time.time(), f"process_start_time_seconds {start}")
    metrics_file = ctx.stack.throttle_path / "metrics"
    check(metrics_file.is_file(), f"{metrics_file} missing")


def counts_per_batch(ctx):
    served = set()
    for _ in range(3):
        send_batch(ctx)
        served |= check_rounds(ctx)
    check(len(served) >= 2, f"scrapes answered by {len(served)} worker(s), want at least 2")
    print(f"#    {sent}: every one of {3 * 3 * SCRAPES} scrapes exact, answered by "
          f"{len(served)} of {WORKERS} workers")


def gauges_and_restart(ctx):
    slow = itest.start_slow(ctx, 5, lambda user: {"user_id": user,
                                                  "contact_no_country_dialing_code": "60",
                                                  "contact_no": ctx.phone()}, slow_ms=8000)

    def holding():
        got = parse(scrape(ctx))
        return got.get("pvgate_requests_in_flight") == 5 and \
            got.get("pvgate_upstream_in_flight") == 5
    itest.wait_until(holding, "5 requests in flight, summed over the workers")
    sent["throttled"] += 5  # they passed the throttle; they never finish: their workers die
    before = time.time()
    killed = ctx.stack.kill_workers(signal.SIGKILL)
    check(len(killed) == WORKERS, f"killed {killed}")
    for b in slow:
        b.result()  # nginx's error page: the worker is gone
    ctx.stack.start_pvgate()

    def answers():
        status = ctx.request("GET", "/pvgate/healthz").status
        if status != 502:  # nginx's own 502: it never reached a worker
            sent["healthz"] += 1
        return status == 200
    itest.wait_until(answers, "fresh workers answer")
    all_counted(ctx)
    check_rounds(ctx)  # in flight 0 again, counters where they were
    got = parse(scrape(ctx))
    check(got["process_start_time_seconds"] >= before - 1,
          "process_start_time_seconds: the oldest live worker is one of the fresh ones")
    send_batch(ctx)
    check_rounds(ctx)
    print(f"#    SIGKILL with 5 requests in flight, 4 fresh workers: gauges 0, counters {sent}")


def one_worker_killed(ctx):
    pid, st = ctx.stack.worker_pids()[0]
    check(stacklib.signal_verified(pid, st, signal.SIGKILL), f"SIGKILL {pid}")
    itest.wait_until(lambda: not stacklib.pid_alive(pid, st), f"worker {pid} gone")
    ctx.stack._reap_worker(pid)
    check_rounds(ctx, workers=WORKERS - 1)
    send_batch(ctx)
    check_rounds(ctx, workers=WORKERS - 1)
    print(f"#    worker {pid} killed: 3 workers, counters {sent}")


def promtool(ctx):
    tool = shutil.which("promtool")
    if tool is None:
        print("#    promtool not installed (Debian package prometheus): skipped")
        return
    text = scrape(ctx)
    p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check(p.returncode == 0, f"promtool check metrics failed:\n{out}")
    print(f"#    promtool check metrics: ok{(' (' + out.strip() + ')') if out.strip() else ''}")


CASES = [
    ("every label set and gauge present from the start, 4 workers", up_front),
    ("counts equal the requests sent, scrape after scrape, across workers", counts_per_batch),
    ("in-flight gauges; all workers SIGKILLed and restarted: no reset, no stuck gauge",
     gauges_and_restart),
    ("one worker SIGKILLed: the others keep the totals", one_worker_killed),
    ("promtool check metrics", promtool),
]

if __name__ == "__main__":
    itest.run(CASES, {"workers": WORKERS, "throttle": THROTTLE, "timeout_ms": 10000},
              description=__doc__)
