#!/usr/bin/env python3
"""Throttling through a real nginx with the Redis store: pvgate as 4 processes (spawn-fcgi -F 4)
with `throttle: store: redis` pointing at a private redis-server (scripts/stack.py redis=True:
127.0.0.1 on a free port, no persistence, its own directory in the run dir).

Each case installs its own rules (pvgate.yaml rewritten, SIGHUP to every worker, each reload
seen in the log) with names of its own, and uses its own phones and users, so the counts of one
case never meet another's. Every 429 and 503 is checked to leave the mock's request count
unchanged.

Proves, as test_throttle.py does for the local store: exact limits with 48 concurrent requests
for one phone across 4 processes; the resend cooldown; all or nothing across rules. Then what
only Redis gives: a second stack (other pvgate processes, nginx and mock: "another host")
sharing the Redis shares the limits, also under a burst split across both; keys carry their own
expiry (PTTL > 0 and <= the period, read with redis-cli) and vanish after it. Then failure:
Redis SIGKILLed (and, separately, hung with SIGSTOP) with `on_store_error: deny` (503 JSON,
status 500, nothing forwarded) and `allow` (forwarded), every request answered in under
MAX_DOWN_LATENCY_S while it is down, and throttling back after a restart on the same port,
without restarting pvgate.
"""

import collections
import http.client
import signal
import threading
import time

import itest
import stack as stacklib
from itest import burst, by_status, check, expect, wait_until, worker_wchar

SEND = "send-token"
WORKERS = 4
BURST = 48
REDIS_TIMEOUT_MS = 100       # throttle.redis_timeout_ms in this stack
MAX_DOWN_LATENCY_S = 2.0     # a bound on each request while Redis is down, not a benchmark
DOWN_WINDOW_S = 2.5          # how long requests run against a dead Redis (> 4 breaker periods)
RECOVERY_TIMEOUT_S = 15.0    # bound of the poll for normal throttling after a restart
BREAKER_RETRY_S = 0.5         # RedisStore's retry_after: an open breaker probes after this

observed = {}   # figures for the summary lines


# -- configuration --------------------------------------------------------------------------


def rule(name, key, limit, period, actions=None):
    return {"name": name, "key": key, "limit": limit, "period": period, "actions": actions}


def throttle_yaml(rules=(), on_store_error="deny"):
    """The body of pvgate.yaml's throttle: section; stack.py adds `redis: <its URL>` and
    `path:`."""
    lines = ["store: redis", f"redis_timeout_ms: {REDIS_TIMEOUT_MS}",
             f"on_store_error: {on_store_error}", "rules:" if rules else "rules: []"]
    for r in rules:
        lines.append(f"  - name: {r['name']}")
        if r["actions"]:
            lines.append(f"    actions: [{', '.join(r['actions'])}]")
        lines.append(f"    key: [{', '.join(r['key'])}]")
        lines.append(f"    limit: {r['limit']}")
        lines.append(f"    period: {r['period']}")
    lines.append("max_answer_attempts: 0")
    return "\n".join(lines) + "\n"


def configure(ctx, *rules, on_store_error="deny", stack=None):
    (stack or ctx.stack).reload_pvgate(throttle=throttle_yaml(rules, on_store_error))


# -- requests -------------------------------------------------------------------------------


def fields(ctx, user=None, phone=None, dial="60"):
    return {"user_id": user or ctx.unique(), "contact_no_country_dialing_code": dial,
            "contact_no": phone or ctx.phone_in(dial)}


def send(ctx, f, stack=None):
    if stack is None:
        return ctx.post_json(SEND, f)
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=itest.CLIENT_TIMEOUT_S)
    try:
        return ctx.post_json(SEND, f, conn=conn)
    finally:
        conn.close()


def mock_total(*stacks):
    return sum(s.mock_stats()["requests"] for s in stacks)


def sent_ok(ctx, f, stack=None):
    """A send that must pass the throttle and reach the (that stack's) mock exactly once."""
    st = stack or ctx.stack
    before = mock_total(st)
    r = send(ctx, f, stack)
    j = expect(r, 200, 200)
    got = mock_total(st) - before
    check(got == 1, f"mock saw {got} requests for one send, want 1\n      " + r.describe())
    return j


def too_many(r, lo, hi):
    j = expect(r, 429, 5002)
    s = j.get("seconds_till_resend")
    check(isinstance(s, int) and lo <= s <= hi,
          f"seconds_till_resend {s!r}, want {lo}..{hi}\n      " + r.describe())
    check(r.header("Retry-After") == str(s),
          f"Retry-After {r.header('Retry-After')!r} != seconds_till_resend {s}\n      "
          + r.describe())
    return s


def refused(ctx, f, lo, hi, stack=None, also=()):
    """A send the throttle must refuse (429) without forwarding it (to any mock in `also`
    either)."""
    stacks = [stack or ctx.stack, *also]
    before = mock_total(*stacks)
    r = send(ctx, f, stack)
    check(mock_total(*stacks) == before, "a refused send was forwarded\n      " + r.describe())
    return too_many(r, lo, hi)


def hammer(ctx, seconds, threads=4):
    """Sends for `seconds` from `threads` clients, each request a fresh phone on a fresh
    connection: [(status, latency_s, Resp)]."""
    out = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    errors = []

    def loop():
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            try:
                r = send(ctx, fields(ctx))
            except OSError as e:
                errors.append(e)
                return
            with lock:
                out.append((r.status, time.monotonic() - t0, r))
            time.sleep(0.01)

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + itest.CLIENT_TIMEOUT_S + 5)
    check(not errors, f"{len(errors)} request(s) failed at the socket: {errors[:3]!r}")
    return out


def log_text(ctx):
    return ctx.stack.pvgate_log.read_text(errors="replace")


def pvgate_keys(ctx, pattern="pvgate:*"):
    out = ctx.stack.redis.cli("--scan", "--pattern", pattern)
    return sorted(k for k in out.split("\n") if k)


def throttling_again(ctx, what):
    """After a Redis restart: polls (bounded) until a fresh phone passes once and is then
    refused normally (429 with the cooldown's wait), i.e. the store answers again; on the way
    only 503 (deny) or 200 (allow, or a pass) are acceptable. Then, once every worker's breaker
    has had time to probe (> its 500 ms), 6 more phones must each pass once and be refused.
    Returns the seconds it took."""
    t0 = time.monotonic()
    seen = collections.Counter()
    while True:
        f = fields(ctx)
        r1 = send(ctx, f)
        seen[r1.status] += 1
        if r1.status == 200:
            r2 = send(ctx, f)
            seen[r2.status] += 1
            if r2.status == 429:
                too_many(r2, 59, 60)
                break
            check(r2.status in (200, 503), f"{what}: unexpected answer\n      " + r2.describe())
        else:
            check(r1.status == 503, f"{what}: unexpected answer\n      " + r1.describe())
            expect(r1, 503, 500)
        check(time.monotonic() - t0 < RECOVERY_TIMEOUT_S,
              f"{what}: no normal throttling {RECOVERY_TIMEOUT_S:.0f}s after the restart "
              f"(answers: {dict(seen)})")
        time.sleep(0.05)
    took = time.monotonic() - t0
    # Not a synchronisation sleep: a worker whose breaker opened while Redis was down answers
    # 503 without touching Redis until BREAKER_RETRY_S has passed; no request can shorten that.
    time.sleep(BREAKER_RETRY_S + 0.1)
    for _ in range(6):
        f = fields(ctx)
        sent_ok(ctx, f)
        refused(ctx, f, 59, 60)
    return took


def check_down_answers(rs, mode, what):
    statuses = collections.Counter(s for s, _, _ in rs)
    worst = max((lat for _, lat, _ in rs), default=0.0)
    slow = [(s, lat) for s, lat, _ in rs if lat >= MAX_DOWN_LATENCY_S]
    check(rs, f"{what}: no request completed")
    check(not slow, f"{what}: {len(slow)} of {len(rs)} requests took >= "
          f"{MAX_DOWN_LATENCY_S} s: {slow[:5]}")
    want = 503 if mode == "deny" else 200
    for s, _, r in rs:
        if s != want:
            raise AssertionError(f"{what}: HTTP {s}, want {want} for every request "
                                 f"({dict(statuses)})\n      " + r.describe())
        expect(r, want, 500 if mode == "deny" else 200)
    return worst, len(rs)


# -- cases ----------------------------------------------------------------------------------


def redis_in_use(ctx):
    pids = ctx.stack.worker_pids()
    check(len(pids) == WORKERS, f"{len(pids)} pvgate processes found, want {WORKERS}: {pids}")
    check(ctx.stack.redis is not None and ctx.stack.redis.ping(), "the stack's Redis is down")
    text = ctx.stack.pvgate_config.read_text()
    check("  store: redis" in text and f"  redis: {ctx.stack.redis.url}" in text,
          "pvgate.yaml does not point the redis store at the stack's Redis")
    configure(ctx, rule("inuse", ["merchant", "phone"], 1, "60s"))
    sent_ok(ctx, fields(ctx))
    check(pvgate_keys(ctx, "pvgate:inuse:*"), "no pvgate:inuse:* key in Redis after a send")
    check(ctx.stack.redis.log_path.is_file(), "no redis.log in the run dir")


def exact_limit_concurrent(ctx):
    configure(ctx, rule("r-burst-phone", ["merchant", "phone"], 3, "60s"))
    served = set()
    rounds = 0
    while rounds < 3 or (len(served) < 2 and rounds < 10):
        rounds += 1
        user, phone = ctx.unique("burst"), ctx.phone()
        before, io0 = ctx.stack.mock_stats(), worker_wchar(ctx)
        rs = burst(ctx, BURST, lambda i: fields(ctx, user, phone))
        after, io1 = ctx.stack.mock_stats(), worker_wchar(ctx)
        groups = by_status(rs)
        odd = [r for r in rs if r.status not in (200, 429)]
        check(not odd, f"{len(odd)} answers other than 200/429: "
              + (odd[0].describe() if odd else ""))
        check(len(groups.get(200, [])) == 3,
              f"{len(groups.get(200, []))} of {BURST} concurrent sends passed, want exactly 3")
        for r in groups[429]:
            too_many(r, 1, 60)
        for r in groups[200]:
            expect(r, 200, 200)
        forwarded = after["requests"] - before["requests"]
        per_user = after["by_user"].get(user, 0) - before["by_user"].get(user, 0)
        check(forwarded == 3 and per_user == 3,
              f"mock saw {forwarded} requests ({per_user} for this user), want exactly 3")
        served |= {pid for pid, w in io1.items() if w > io0.get(pid, w)}
    check(len(served) >= 2, f"only {len(served)} of {WORKERS} workers handled the bursts")
    print(f"#    {rounds} bursts of {BURST}, exactly 3 forwarded each, served by {len(served)} "
          f"of {WORKERS} worker processes")


def cooldown(ctx):
    configure(ctx, rule("r-phone-cooldown", ["merchant", "phone"], 1, "60s", ["send-token"]),
              rule("r-phone-hour", ["merchant", "phone"], 5, "1h", ["send-token"]))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f, 59, 60)
    refused(ctx, dict(f, user_id=ctx.unique()), 59, 60)   # keyed by phone, not by user
    sent_ok(ctx, fields(ctx))                              # another phone
    gb = fields(ctx, dial="44")
    sent_ok(ctx, gb)
    sent_ok(ctx, dict(gb, contact_no_country_dialing_code="91"))   # same digits, other country


def window_reopens(ctx):
    configure(ctx, rule("r-short", ["merchant", "phone"], 1, "2s"))
    f = fields(ctx)
    t0 = time.monotonic()
    sent_ok(ctx, f)
    while True:
        before = ctx.upstream_requests()
        r = send(ctx, f)
        if r.status == 200:
            break
        check(ctx.upstream_requests() == before, "a refused send was forwarded")
        too_many(r, 1, 2)
        check(time.monotonic() - t0 < 5, "the 2 s window did not reopen within 5 s")
        time.sleep(0.05)
    took = time.monotonic() - t0
    check(took >= 2.0, f"second send passed {took:.2f}s after the first, inside the 2 s window")


def all_or_nothing(ctx):
    configure(ctx, rule("r-aon-phone", ["merchant", "phone"], 1, "1h"),
              rule("r-aon-user", ["merchant", "user"], 2, "1h"))
    user = ctx.unique("aon")
    p1, p2, p3 = ctx.phone(), ctx.phone(), ctx.phone()
    sent_ok(ctx, fields(ctx, user, p1))                 # r-aon-user 1/2, r-aon-phone(p1) 1/1
    for _ in range(5):                                  # refused by r-aon-phone ...
        refused(ctx, fields(ctx, user, p1), 3590, 3600)
    sent_ok(ctx, fields(ctx, user, p2))                 # ... so r-aon-user still had room
    refused(ctx, fields(ctx, user, p3), 3590, 3600)     # refused by r-aon-user ...
    sent_ok(ctx, fields(ctx, None, p3))                 # ... so p3 was never counted


def two_hosts(ctx):
    """A second stack (its own nginx, pvgate -F 2, mock) on the same Redis: another host."""
    rules = (rule("r-shared-cooldown", ["merchant", "phone"], 1, "60s"),
             rule("r-shared-burst", ["merchant", "user"], 3, "1h"))
    configure(ctx, *rules)
    b = stacklib.Stack(ctx.stack.run_dir.parent / "stack-b", pvgate=ctx.stack.pvgate,
                       workers=2, redis=ctx.stack.redis, throttle=throttle_yaml(rules),
                       timeout_ms=ctx.stack.timeout_ms)
    try:
        b.start()
        check(b.redis is ctx.stack.redis and not b._owns_redis, "stack B runs its own Redis")
        a_pids = {p for p, _ in ctx.stack.worker_pids()}
        b_pids = {p for p, _ in b.worker_pids()}
        check(len(b_pids) == 2 and not a_pids & b_pids, f"worker pids A {a_pids} B {b_pids}")
        # A send through A arms the cooldown that B enforces, and the other way round.
        f = fields(ctx)
        sent_ok(ctx, f)
        refused(ctx, f, 59, 60, stack=b, also=[ctx.stack])
        refused(ctx, f, 59, 60)
        g = fields(ctx)
        sent_ok(ctx, g, stack=b)
        refused(ctx, g, 59, 60, also=[b])
        # A burst for one user split across both hosts: exactly 3 forwarded in total.
        user = ctx.unique("split")
        before = mock_total(ctx.stack, b)
        rs = burst(ctx, 32, lambda i: fields(ctx, user),
                   stack_of=lambda i: b if i % 2 else None)
        forwarded = mock_total(ctx.stack, b) - before
        groups = by_status(rs)
        check(set(groups) <= {200, 429}, f"answers {sorted(groups)}, want only 200/429")
        check(len(groups.get(200, [])) == 3 and forwarded == 3,
              f"split burst: {len(groups.get(200, []))} passed, {forwarded} forwarded by the "
              "two mocks, want exactly 3")
        for r in groups[429]:
            too_many(r, 3590, 3600)
    finally:
        b.stop()
    check(ctx.stack.redis.ping(), "stopping stack B stopped the shared Redis")
    bad = {k: v for k, v in b.exit_codes.items() if k in ("nginx", "pvgate", "mock") and v != 0}
    check(not bad and "redis" not in b.exit_codes, f"stack B exit codes: {b.exit_codes}")


def keys_expire(ctx):
    configure(ctx, rule("r-exp-min", ["merchant", "phone"], 1, "60s"),
              rule("r-exp-hour", ["merchant", "user"], 5, "1h"),
              rule("r-exp-short", ["merchant", "phone"], 3, "2s"))
    for _ in range(3):
        sent_ok(ctx, fields(ctx))
    redis = ctx.stack.redis
    periods = {"r-exp-min": 60_000, "r-exp-hour": 3_600_000, "r-exp-short": 2_000}
    ttls = {}
    for name, period in periods.items():
        keys = pvgate_keys(ctx, f"pvgate:{name}:*")
        want = 3   # 3 sends, each a new phone and a new user: 3 keys per rule
        check(len(keys) == want, f"{len(keys)} keys pvgate:{name}:*, want {want}: {keys}")
        for k in keys:
            check(len(k.split(":")[-1]) == 40, f"key {k!r} is not prefix:rule:sha1")
            pttl = int(redis.cli("PTTL", k).strip())
            check(0 < pttl <= period, f"PTTL {k} = {pttl} ms, want 0 < PTTL <= {period}")
            ttls.setdefault(name, []).append(pttl)
    # Every pvgate key in Redis carries an expiry: PTTL -1 is a key kept forever. (-2 is a key
    # gone since the scan: a 2 s key on a slow host, under ThreadSanitizer, expires in between.)
    forever = [k for k in pvgate_keys(ctx) if int(redis.cli("PTTL", k).strip()) == -1]
    check(not forever, f"pvgate keys without an expiry: {forever[:5]}")
    short = pvgate_keys(ctx, "pvgate:r-exp-short:*")
    t0 = time.monotonic()
    wait_until(lambda: all(int(redis.cli("PTTL", k).strip()) == -2 for k in short),
               "the 2 s rule's keys to expire", timeout=6, poll=0.1)
    gone = time.monotonic() - t0
    check(pvgate_keys(ctx, "pvgate:r-exp-min:*"), "the 60 s rule's keys went with the 2 s ones")
    print("#    PTTL ms: " + ", ".join(f"{n} {min(v)}..{max(v)} (period {periods[n]})"
                                       for n, v in ttls.items())
          + f"; the 2 s keys were gone {gone:.1f} s later")


def redis_killed(ctx, mode):
    configure(ctx, rule(f"r-kill-{mode}", ["merchant", "phone"], 1, "60s"),
              on_store_error=mode)
    pids = ctx.stack.worker_pids()
    armed = fields(ctx)
    sent_ok(ctx, armed)
    refused(ctx, armed, 59, 60)
    sent_ok(ctx, fields(ctx))      # the pools of the workers are warm
    port = ctx.stack.redis.port
    rc = ctx.stack.kill_redis()
    check(rc == -signal.SIGKILL, f"redis-server exit code {rc}, want -9")
    check(not ctx.stack.redis.ping(), "Redis still answers after SIGKILL")
    before = ctx.upstream_requests()
    rs = hammer(ctx, DOWN_WINDOW_S)
    rs += [(r.status, None, r) for r in burst(ctx, 16, lambda i: fields(ctx))]
    forwarded = ctx.upstream_requests() - before
    timed = [x for x in rs if x[1] is not None]
    worst, n = check_down_answers(timed, mode, f"Redis dead, {mode}")
    check_down_answers([(s, 0.0, r) for s, _, r in rs], mode, f"Redis dead, {mode}, burst")
    if mode == "deny":
        check(forwarded == 0, f"{forwarded} requests forwarded while the store was down (deny)")
        wait_until(lambda: "on_store_error: deny" in log_text(ctx), "the deny in the log")
    else:
        check(forwarded == len(rs), f"{forwarded} of {len(rs)} forwarded while the store was "
              "down (allow)")
        wait_until(lambda: "on_store_error: allow" in log_text(ctx), "the allow in the log")
    observed[f"kill-{mode}"] = (worst, n)
    ctx.stack.restart_redis()
    check(ctx.stack.redis.port == port, "Redis came back on another port")
    took = throttling_again(ctx, f"after the restart ({mode})")
    check(ctx.stack.worker_pids() == pids, "pvgate workers changed: recovery must not need a "
          "pvgate restart")
    print(f"#    Redis dead for {DOWN_WINDOW_S} s ({mode}): {n} timed requests, all "
          f"{503 if mode == 'deny' else 200}, max latency {worst * 1000:.1f} ms; throttling "
          f"again {took * 1000:.0f} ms after the restart on port {port}")


def redis_hung(ctx):
    """SIGSTOP: connections are accepted by the kernel but never answered, so pvgate's
    timeouts (redis_timeout_ms) bound the wait, and the breaker keeps it from every request."""
    configure(ctx, rule("r-hung", ["merchant", "phone"], 1, "60s"))
    pids = ctx.stack.worker_pids()
    sent_ok(ctx, fields(ctx))
    before = ctx.upstream_requests()
    ctx.stack.redis.pause()
    try:
        rs = hammer(ctx, DOWN_WINDOW_S)
        rs += [(r.status, None, r) for r in burst(ctx, 16, lambda i: fields(ctx))]
    finally:
        ctx.stack.redis.resume()
    check(ctx.upstream_requests() == before, "forwarded while the store hung (deny)")
    timed = [x for x in rs if x[1] is not None]
    worst, n = check_down_answers(timed, "deny", "Redis hung, deny")
    check_down_answers([(s, 0.0, r) for s, _, r in rs], "deny", "Redis hung, deny, burst")
    slow = sum(1 for _, lat, _ in timed if lat >= REDIS_TIMEOUT_MS / 1000 * 0.9)
    observed["hung-deny"] = (worst, n)
    took = throttling_again(ctx, "after SIGCONT")
    check(ctx.stack.worker_pids() == pids, "pvgate workers changed")
    print(f"#    Redis hung for {DOWN_WINDOW_S} s (deny): {n} timed requests, all 503, "
          f"{slow} waited for the {REDIS_TIMEOUT_MS} ms timeout, max latency "
          f"{worst * 1000:.1f} ms; throttling again {took * 1000:.0f} ms after SIGCONT")


def stale_pooled_connection(ctx):
    """Redis restarted between two requests (no request saw it down): the next requests must be
    served normally, since Redis is up. Also after Redis closes idle clients (CLIENT KILL,
    as its `timeout` setting or a proxy would)."""
    configure(ctx, rule("r-stale", ["merchant", "phone"], 1, "60s"))
    for _ in range(3 * WORKERS):          # warm every worker's pool
        sent_ok(ctx, fields(ctx))
    failures = []
    for how in ("restart", "client-kill"):
        if how == "restart":
            ctx.stack.kill_redis()
            ctx.stack.restart_redis()
        else:
            for _ in range(3 * WORKERS):
                sent_ok(ctx, fields(ctx))
            ctx.stack.redis.command("CLIENT", "KILL", "TYPE", "normal")
        rs = [send(ctx, fields(ctx)) for _ in range(2 * WORKERS)]
        bad = [r for r in rs if r.status != 200]
        if bad:
            failures.append(f"{how}: {len(bad)} of {len(rs)} sends failed with Redis up "
                            f"(first: HTTP {bad[0].status} {bad[0].body!r})")
        if bad:
            # Only after a failure can a breaker be open: give it its retry period, so the
            # next step is judged on its own (the test fails on `failures` either way).
            time.sleep(BREAKER_RETRY_S + 0.1)
    check(not failures, "; ".join(failures))


def still_serving(ctx):
    configure(ctx, rule("r-final", ["merchant", "phone"], 1, "60s"))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f, 59, 60)
    for name, (worst, n) in observed.items():
        print(f"#    {name}: max latency {worst * 1000:.1f} ms over {n} requests "
              f"(bound {MAX_DOWN_LATENCY_S * 1000:.0f} ms)")


CASES = [
    ("4 pvgate workers on the stack's private Redis (store: redis)", redis_in_use),
    (f"exact limit: {BURST} concurrent sends for one phone over 4 workers, 3 forwarded",
     exact_limit_concurrent),
    ("cooldown 1/60s with phone-hour: 429 + Retry-After, keyed by phone", cooldown),
    ("sliding window: a 2 s cooldown reopens after 2 s", window_reopens),
    ("all or nothing across rules, both directions", all_or_nothing),
    ("two hosts (two stacks, one Redis) share the limits, also a split burst", two_hosts),
    ("keys expire on their own: 0 < PTTL <= period, short-period keys vanish", keys_expire),
    ("Redis SIGKILLed, on_store_error: deny: 503, nothing forwarded, bounded; restart recovers",
     lambda ctx: redis_killed(ctx, "deny")),
    ("Redis SIGKILLed, on_store_error: allow: forwarded, bounded; restart recovers",
     lambda ctx: redis_killed(ctx, "allow")),
    ("Redis hung (SIGSTOP), deny: bounded by redis_timeout_ms, 503; SIGCONT recovers",
     redis_hung),
    ("Redis restarted / idle clients killed between requests: next requests served",
     stale_pooled_connection),
    ("still throttling at the end; latency summary", still_serving),
]


def after_stop(st, ctx):
    def redis_stopped():
        check(st.redis.proc is None and not st.redis.ping(), "Redis still running after stop()")
        check(st.exit_codes.get("redis") == 0, f"redis-server exit code "
              f"{st.exit_codes.get('redis')!r} on SIGTERM, want 0")

    def workers_exit_cleanly():
        check(st.exit_codes.get("pvgate") == 0 and not st.exit_codes.get("pvgate_killed"),
              f"pvgate exit codes after SIGTERM: {st.exit_codes}")

    return [("the stack's Redis stopped with the stack", redis_stopped),
            ("every pvgate worker exited 0 on SIGTERM", workers_exit_cleanly)]


if __name__ == "__main__":
    itest.run(CASES, stack_options={"workers": WORKERS, "timeout_ms": 3000, "redis": True,
                                    "throttle": throttle_yaml()},
              description=__doc__.split("\n\n")[0], after_stop=after_stop)
