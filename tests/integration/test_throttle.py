#!/usr/bin/env python3
"""Throttling through a real nginx, with pvgate as 4 processes (spawn-fcgi -F 4) sharing the
LMDB ("local") store.

Each case installs its own rules (pvgate.yaml rewritten, SIGHUP to every worker, each worker's
reload seen in the log) with names of its own, and uses its own phones, users and client
addresses, so the counts of one case never meet another's. Client addresses are faked through
X-Forwarded-For, which this stack's nginx (real_ip, loopback trusted) turns into REMOTE_ADDR.
Every 429 and 403 is checked to leave the mock's request count unchanged.

Proves: exact limits with 48 concurrent requests for one phone across 4 processes; the resend
cooldown and a sliding window that reopens on time; every default rule's shape (phone per hour
and day, user, IP with IPv6 by /64, IP for verify, merchant ceiling); Retry-After = the longest
wait among broken rules; all or nothing across rules in both directions; counts surviving
SIGKILL of every worker (also mid-load) and a restart on the same socket; dry-run; the
countries allow and deny lists; the wrong-answer lock (also under concurrent guesses); quota
given back when the upstream is unreachable and kept after a timeout.
"""

import signal
import socket
import threading
import time

import itest
import stack as stacklib
from itest import burst, by_status, check, expect, wait_until, worker_wchar

SEND = "send-token"
VERIFY = "verify-token-answer"
WORKERS = 4
TIMEOUT_MS = 1500      # pvgate's upstream timeout_ms in this stack
BURST = 48             # concurrent requests per burst
BURST_WAIT_SLACK_S = 0  # waits are capped at the rule's period (was a pvgate bug)


# -- configuration --------------------------------------------------------------------------


def rule(name, key, limit, period, actions=None, dry_run=False):
    return {"name": name, "key": key, "limit": limit, "period": period, "actions": actions,
            "dry_run": dry_run}


def throttle_yaml(rules=(), countries=None, max_answer_attempts=0, answer_lock_period="1h"):
    """The body of pvgate.yaml's throttle: section (stack.py adds store: local and path:)."""
    lines = ["on_store_error: deny", "rules:" if rules else "rules: []"]
    for r in rules:
        lines.append(f"  - name: {r['name']}")
        if r["actions"]:
            lines.append(f"    actions: [{', '.join(r['actions'])}]")
        lines.append(f"    key: [{', '.join(r['key'])}]")
        lines.append(f"    limit: {r['limit']}")
        lines.append(f"    period: {r['period']}")
        if r["dry_run"]:
            lines.append("    dry_run: true")
    if countries:
        which, codes = countries
        lines += ["countries:", f"  {which}: [{', '.join(codes)}]"]
    lines.append(f"max_answer_attempts: {max_answer_attempts}")
    lines.append(f"answer_lock_period: {answer_lock_period}")
    return "\n".join(lines) + "\n"


def configure(ctx, *rules, **kw):
    """Installs these rules (and countries / answer-attempt settings) in every worker."""
    ctx.stack.reload_pvgate(throttle=throttle_yaml(rules, **kw))


# -- requests -------------------------------------------------------------------------------


def fields(ctx, user=None, phone=None, dial="60"):
    return {"user_id": user or ctx.unique(), "contact_no_country_dialing_code": dial,
            "contact_no": phone or ctx.phone_in(dial)}


def xff(addr):
    return {"X-Forwarded-For": addr}


def send(ctx, f, headers=None):
    return ctx.post_json(SEND, f, headers=headers)


def sent_ok(ctx, f, headers=None):
    """A send that must pass the throttle and reach the mock exactly once."""
    r = ctx.forwarded_once(lambda: send(ctx, f, headers))
    return expect(r, 200, 200)


def too_many(r, lo, hi):
    """Asserts a throttle refusal: 429, body 5002, seconds_till_resend in [lo, hi], equal to
    Retry-After."""
    j = expect(r, 429, 5002)
    s = j.get("seconds_till_resend")
    check(isinstance(s, int) and lo <= s <= hi,
          f"seconds_till_resend {s!r}, want {lo}..{hi}\n      " + r.describe())
    check(r.header("Retry-After") == str(s),
          f"Retry-After {r.header('Retry-After')!r} != seconds_till_resend {s}\n      "
          + r.describe())
    return s


def refused(ctx, f, lo, hi, headers=None, route=SEND):
    """A request the throttle must refuse (429) without forwarding it."""
    r = ctx.not_forwarded(lambda: ctx.post_json(route, f, headers=headers))
    return too_many(r, lo, hi)


def log_text(ctx):
    return ctx.stack.pvgate_log.read_text(errors="replace")


def wait_log_count(ctx, needle, n, what):
    return wait_until(lambda: log_text(ctx).count(needle) >= n, what, timeout=10)


# -- cases ----------------------------------------------------------------------------------


def workers_running(ctx):
    pids = ctx.stack.worker_pids()
    check(len(pids) == WORKERS, f"{len(pids)} pvgate processes found, want {WORKERS}: {pids}")
    check(not any(p == ctx.stack.procs.get("pvgate") for p, _ in pids), "not in -F mode")


def exact_limit_concurrent(ctx):
    configure(ctx, rule("burst-phone", ["merchant", "phone"], 3, "60s"))
    served = set()
    overshoot = [0]
    rounds = 0
    # At least 3 rounds, more (up to 10) until 2+ processes have taken part: which process
    # accepts a connection is the kernel's choice.
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
            # A request reads its clock before it gets the store's write lock, so another
            # process may have stamped an event a few ms later; the store caps the wait at the
            # rule's period, so no client is ever told more than 60 s.
            if too_many(r, 1, 60 + BURST_WAIT_SLACK_S) > 60:
                overshoot[0] += 1
        for r in groups[200]:
            expect(r, 200, 200)
        forwarded = after["requests"] - before["requests"]
        per_user = after["by_user"].get(user, 0) - before["by_user"].get(user, 0)
        check(forwarded == 3 and per_user == 3,
              f"mock saw {forwarded} requests ({per_user} for this user), want exactly 3")
        served |= {pid for pid, w in io1.items() if w > io0.get(pid, w)}
    check(len(served) >= 2, f"only {len(served)} of {WORKERS} workers handled the bursts: the "
          "test did not exercise sharing between processes")
    print(f"#    {rounds} bursts were served by {len(served)} of {WORKERS} worker processes"
          + (f"; {overshoot[0]} refusal(s) said 61 s for a 60 s rule (known issue)"
             if overshoot[0] else ""))


def cooldown(ctx):
    # The shipped phone rules with the shipped numbers.
    configure(ctx, rule("phone-cooldown", ["merchant", "phone"], 1, "60s", ["send-token"]),
              rule("phone-hour", ["merchant", "phone"], 5, "1h", ["send-token"]),
              rule("phone-day", ["merchant", "phone"], 10, "1d", ["send-token"]))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f, 59, 60)
    refused(ctx, dict(f, user_id=ctx.unique()), 59, 60)   # keyed by phone, not by user
    sent_ok(ctx, fields(ctx))                              # another phone
    gb = fields(ctx, dial="44")
    sent_ok(ctx, gb)
    sent_ok(ctx, dict(gb, contact_no_country_dialing_code="91"))   # same digits, other country
    # Without contact_no (Pipwave texts the number it holds for the user) a send is refused
    # unless the merchant sets allow_stored_number; then it is counted per user
    # (test_phone_numbers).
    user = ctx.unique("nonumber")
    bare = {"user_id": user, "contact_no_country_dialing_code": "60"}
    expect(ctx.not_forwarded(lambda: send(ctx, bare)), 400, 9001)
    sent_ok(ctx, fields(ctx, user))                     # with a number: that number's count


def window_reopens(ctx):
    configure(ctx, rule("short-cooldown", ["merchant", "phone"], 1, "2s"))
    f = fields(ctx)
    t0 = time.monotonic()
    sent_ok(ctx, f)
    refusals = 0
    while True:
        before = ctx.upstream_requests()
        r = send(ctx, f)
        if r.status == 200:
            break
        check(ctx.upstream_requests() == before, "a refused send was forwarded")
        too_many(r, 1, 2)
        refusals += 1
        check(time.monotonic() - t0 < 2 + 3, "the 2 s window did not reopen within 5 s "
              "(do refused requests count?)")
        time.sleep(0.05)
    took = time.monotonic() - t0
    check(took >= 2.0, f"second send passed {took:.2f}s after the first, inside the 2 s window")
    check(refusals >= 5, f"only {refusals} refusals before the window reopened")
    refused(ctx, f, 1, 2)


def phone_hour_and_day(ctx):
    configure(ctx, rule("ph-hour", ["merchant", "phone"], 3, "1h", ["send-token"]),
              rule("ph-day", ["merchant", "phone"], 5, "1d", ["send-token"]))
    f = fields(ctx)
    for _ in range(3):
        sent_ok(ctx, dict(f, user_id=ctx.unique()))
    refused(ctx, f, 3590, 3600)
    configure(ctx, rule("pd-hour", ["merchant", "phone"], 5, "1h", ["send-token"]),
              rule("pd-day", ["merchant", "phone"], 2, "1d", ["send-token"]))
    f = fields(ctx)
    sent_ok(ctx, f)
    sent_ok(ctx, f)
    refused(ctx, f, 86390, 86400)


def per_user(ctx):
    configure(ctx, rule("user-hour", ["merchant", "user"], 2, "1h", ["send-token"]))
    user = ctx.unique("cycler")
    sent_ok(ctx, fields(ctx, user))
    sent_ok(ctx, fields(ctx, user))
    refused(ctx, fields(ctx, user), 3590, 3600)        # a third number for the same account
    sent_ok(ctx, fields(ctx))                           # another account


def per_ip(ctx):
    configure(ctx, rule("ip-hour", ["merchant", "ip"], 2, "1h", ["send-token"]))
    bot = xff("203.0.113.7")
    sent_ok(ctx, fields(ctx), bot)
    sent_ok(ctx, fields(ctx), bot)
    refused(ctx, fields(ctx), 3590, 3600, bot)         # new user, new phone, same address
    sent_ok(ctx, fields(ctx), xff("203.0.113.8"))
    sent_ok(ctx, fields(ctx))                           # the loopback peer itself
    wait_until(lambda: '"ip":"203.0.113.7"' in log_text(ctx), "REMOTE_ADDR 203.0.113.7 in the log")
    # IPv6: one subscriber holds a /64, so addresses in one /64 share a count.
    sent_ok(ctx, fields(ctx), xff("2001:db8:1:2::1"))
    sent_ok(ctx, fields(ctx), xff("2001:db8:1:2:ffff:ffff:ffff:fffe"))
    refused(ctx, fields(ctx), 3590, 3600, xff("2001:db8:1:2::99"))
    sent_ok(ctx, fields(ctx), xff("2001:db8:1:3::1"))   # the next /64
    # An IPv4-mapped IPv6 address is that IPv4 client.
    sent_ok(ctx, fields(ctx), xff("203.0.113.9"))
    sent_ok(ctx, fields(ctx), xff("::ffff:203.0.113.9"))
    refused(ctx, fields(ctx), 3590, 3600, xff("203.0.113.9"))


def ip_is_remote_addr_not_header(ctx):
    # nginx (real_ip_recursive off) takes the LAST X-Forwarded-For hop as REMOTE_ADDR; a client
    # controls the first. Keyed on REMOTE_ADDR: same last hop = one client whatever comes first.
    configure(ctx, rule("ip-hour-b", ["merchant", "ip"], 2, "1h", ["send-token"]))
    sent_ok(ctx, fields(ctx), xff("198.51.100.1, 203.0.113.20"))
    sent_ok(ctx, fields(ctx), xff("198.51.100.2, 203.0.113.20"))
    refused(ctx, fields(ctx), 3590, 3600, xff("198.51.100.3, 203.0.113.20"))
    for last in ("203.0.113.21", "203.0.113.22", "203.0.113.23"):
        sent_ok(ctx, fields(ctx), xff("198.51.100.50, " + last))


def ip_verify(ctx):
    configure(ctx, rule("ip-verify-hour", ["merchant", "ip"], 2, "1h", ["verify-token-answer"]))
    guesser = xff("203.0.113.40")
    f = fields(ctx)
    ref = sent_ok(ctx, f, guesser)["reference"]
    for _ in range(2):
        r = ctx.forwarded_once(lambda: ctx.post_json(
            VERIFY, dict(f, reference=ref, answer="000000"), headers=guesser))
        expect(r, 400, 5052)
    refused(ctx, dict(f, reference=ref, answer="123456"), 3590, 3600, guesser, VERIFY)
    sent_ok(ctx, fields(ctx), guesser)                  # sends are not this rule's action
    r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, dict(f, reference=ref, answer="123456"),
                                                 headers=xff("203.0.113.41")))
    expect(r, 200, 200)


def merchant_ceiling(ctx):
    configure(ctx, rule("merchant-hour", ["merchant"], 3, "1h", ["send-token"]))
    for i in range(3):
        sent_ok(ctx, fields(ctx), xff(f"203.0.113.{60 + i}"))
    refused(ctx, fields(ctx), 3590, 3600, xff("203.0.113.70"))
    refused(ctx, fields(ctx), 3590, 3600)
    # Code checks are not sends: the breaker leaves them alone.
    r = ctx.forwarded_once(lambda: ctx.post_json(
        VERIFY, dict(fields(ctx, "mock-status-200"), reference="1", answer="123456")))
    expect(r, 200, 200)


def longest_wait(ctx):
    configure(ctx, rule("lw-minute", ["merchant", "phone"], 1, "60s"),
              rule("lw-hour", ["merchant", "phone"], 1, "1h"),
              rule("lw-day-dry", ["merchant", "phone"], 1, "1d", dry_run=True))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f, 3590, 3600)    # both enforcing rules broken: the hour wins; dry-run ignored
    wait_until(lambda: "lw-minute:over[" in log_text(ctx) and "lw-hour:over[" in log_text(ctx)
               and "lw-day-dry:over(dry)[" in log_text(ctx), "each broken rule in the log")


def all_or_nothing(ctx):
    configure(ctx, rule("aon-phone", ["merchant", "phone"], 1, "1h"),
              rule("aon-user", ["merchant", "user"], 2, "1h"))
    user = ctx.unique("aon")
    p1, p2, p3 = ctx.phone(), ctx.phone(), ctx.phone()
    sent_ok(ctx, fields(ctx, user, p1))                 # aon-user 1/2, aon-phone(p1) 1/1
    for _ in range(5):                                  # refused by aon-phone ...
        refused(ctx, fields(ctx, user, p1), 3590, 3600)
    sent_ok(ctx, fields(ctx, user, p2))                 # ... so aon-user still had room: 2/2
    refused(ctx, fields(ctx, user, p3), 3590, 3600)     # refused by aon-user ...
    sent_ok(ctx, fields(ctx, None, p3))                 # ... so p3 was never counted


def dry_run(ctx):
    configure(ctx, rule("dry-phone", ["merchant", "phone"], 1, "1h", dry_run=True))
    f = fields(ctx)
    before = log_text(ctx).count("dry-phone:over(dry)[")
    for _ in range(3):
        sent_ok(ctx, f)
    wait_log_count(ctx, "dry-phone:over(dry)[", before + 2, "two dry-run overs in the log")
    check(log_text(ctx).count("dry-phone:over(dry)[") == before + 2,
          "want exactly 2 over(dry) lines for 3 sends")


def countries(ctx):
    configure(ctx, countries=("allow", ["60", "65"]))
    for route in (SEND, VERIFY):
        f = fields(ctx, dial="44")
        if route == VERIFY:
            f.update(reference="1", answer="123456")
        r = ctx.not_forwarded(lambda: ctx.post_json(route, f))
        expect(r, 403, 5001)
        check(r.header("Retry-After") is None, "403 with Retry-After")
    sent_ok(ctx, fields(ctx, dial="65"))
    sent_ok(ctx, fields(ctx, dial="60"))
    configure(ctx, countries=("deny", ["44", "880"]))
    expect(ctx.not_forwarded(lambda: send(ctx, fields(ctx, dial="880"))), 403, 5001)
    sent_ok(ctx, fields(ctx, dial="1"))


def answer_lock(ctx):
    configure(ctx, max_answer_attempts=2, answer_lock_period="1h")
    f = fields(ctx)
    ref = sent_ok(ctx, f)["reference"]
    for _ in range(2):
        r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, dict(f, reference=ref,
                                                                  answer="000000")))
        expect(r, 400, 5052)
    refused(ctx, dict(f, reference=ref, answer="123456"), 3590, 3600, route=VERIFY)
    # Another reference is not locked.
    g = fields(ctx)
    ref2 = sent_ok(ctx, g)["reference"]
    r = ctx.forwarded_once(lambda: ctx.post_json(VERIFY, dict(g, reference=ref2,
                                                              answer="123456")))
    expect(r, 200, 200)


def answer_lock_concurrent(ctx):
    configure(ctx, max_answer_attempts=2, answer_lock_period="1h")
    f = fields(ctx)
    ref = sent_ok(ctx, f)["reference"]
    before = ctx.stack.mock_stats()
    rs = burst(ctx, 24, lambda i: dict(f, reference=ref, answer=f"{i:06d}"), route=VERIFY)
    after = ctx.stack.mock_stats()
    groups = by_status(rs)
    check(len(groups.get(400, [])) == 2 and len(groups.get(429, [])) == 22,
          f"24 parallel guesses: {dict((k, len(v)) for k, v in groups.items())}, "
          "want exactly 2 forwarded (400) and 22 refused (429)")
    check(after["requests"] - before["requests"] == 2,
          f"mock saw {after['requests'] - before['requests']} guesses, want 2")


def refund_unreachable(ctx):
    configure(ctx, rule("rf-phone", ["merchant", "phone"], 1, "1h"),
              rule("rf-user", ["merchant", "user"], 1, "1h"))
    f = fields(ctx)
    marker = "upstream unreachable"
    # A loopback port that is bound but not listening: connection refused, for certain.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        ctx.stack.reload_pvgate(upstream_url=f"https://127.0.0.1:{port}/phone-verify")
        try:
            seen = log_text(ctx).count(marker)
            for attempt in range(2):   # the second would be 429 had the first kept its quota
                r = ctx.not_forwarded(lambda: send(ctx, f))
                expect(r, 502, 500)
                wait_log_count(ctx, marker, seen + attempt + 1,
                               "pvgate's log to name the unreachable upstream")
        finally:
            ctx.stack.reload_pvgate(upstream_url=None)
    sent_ok(ctx, f)                    # both rules gave their quota back
    refused(ctx, f, 3590, 3600)


def timeout_keeps_quota(ctx):
    configure(ctx, rule("to-phone", ["merchant", "phone"], 1, "1h"))
    phone = ctx.phone()
    slow = fields(ctx, f"mock-slow-{TIMEOUT_MS + 2000}", phone)
    r = ctx.forwarded_once(lambda: send(ctx, slow))
    expect(r, 504, 500)
    refused(ctx, fields(ctx, None, phone), 3590, 3600)   # it may have reached Pipwave


def survives_sigkill(ctx):
    configure(ctx, rule("kill-phone", ["merchant", "phone"], 3, "1h"))
    hot, warm = ctx.phone(), ctx.phone()
    rs = burst(ctx, 20, lambda i: fields(ctx, None, hot))
    check(len(by_status(rs).get(200, [])) == 3, "burst before the kill: want exactly 3 passed")
    sent_ok(ctx, fields(ctx, None, warm))
    killed = ctx.stack.kill_workers(signal.SIGKILL)
    check(len(killed) == WORKERS, f"killed {killed}, want {WORKERS} workers")
    check(ctx.stack.worker_pids() == [], "pvgate processes left after SIGKILL")
    codes = ctx.stack.worker_exit_codes(killed)
    check(all(c == -9 for c in codes.values()), f"exit codes after SIGKILL: {codes}")
    r = ctx.not_forwarded(lambda: send(ctx, fields(ctx, None, warm)))
    check(r.status == 502, f"with every worker dead nginx should answer 502: {r.describe()}")
    new = ctx.stack.start_pvgate()
    check(len(new) == WORKERS and not set(new) & set(killed), f"restarted workers: {new}")
    refused(ctx, fields(ctx, None, hot), 3590, 3600)
    sent_ok(ctx, fields(ctx, None, warm))
    sent_ok(ctx, fields(ctx, None, warm))
    refused(ctx, fields(ctx, None, warm), 3590, 3600)
    sent_ok(ctx, fields(ctx))


def sigkill_under_load(ctx):
    # Workers killed while requests are in flight (some inside a store transaction): after a
    # restart the store must answer at once (no lock left held) and keep every count made.
    configure(ctx, rule("load-phone", ["merchant", "phone"], 1, "1h"))
    stop = threading.Event()
    lock = threading.Lock()
    counter = [0]
    base = ctx.phone()
    results = []   # (phone, status or None, seconds, after_restart)
    restarted = threading.Event()

    def loader():
        while not stop.is_set():
            with lock:
                n = counter[0]
                counter[0] += 1
            phone = f"{int(base) + 1 + n // 3}"        # each number asked ~3 times
            after = restarted.is_set()
            t0 = time.monotonic()
            try:
                status = send(ctx, fields(ctx, f"ld{phone}", phone)).status
            except OSError:
                status = None
            results.append((phone, status, time.monotonic() - t0, after))

    before = ctx.upstream_requests()
    threads = [threading.Thread(target=loader) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: ctx.upstream_requests() >= before + 30, "load to reach the mock")
        killed = ctx.stack.kill_workers(signal.SIGKILL)
        check(len(killed) == WORKERS, f"killed {killed}")
        ctx.stack.start_pvgate()
        restarted.set()
        wait_until(lambda: sum(1 for _, s, _, a in list(results) if a and s == 200) >= 20,
                   "20 sends to pass after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(itest.CLIENT_TIMEOUT_S + 5)
    after = [x for x in results if x[3]]
    slow = [x for x in after if x[2] > 5]
    check(not slow, f"{len(slow)} requests after the restart took over 5 s: {slow[:3]}")
    odd = [x for x in after if x[1] not in (200, 429)]
    check(not odd, f"after the restart: statuses other than 200/429: {odd[:5]}")
    by_user = ctx.stack.mock_stats()["by_user"]
    phones = sorted({p for p, _, _, _ in results})
    twice = [p for p in phones if by_user.get(f"ld{p}", 0) > 1]
    check(not twice, f"numbers forwarded more than once: {twice[:5]}")
    passed = sorted({p for p, s, _, _ in results if s == 200})
    for p in passed:
        refused(ctx, fields(ctx, None, p), 3500, 3600)
    print(f"#    {len(results)} requests, {len(passed)} numbers passed, "
          f"{sum(1 for x in results if x[1] not in (200, 429))} failed around the kill")


def still_serving(ctx):
    configure(ctx, rule("final", ["merchant", "phone"], 1, "60s"))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f, 59, 60)


CASES = [
    ("4 pvgate worker processes on one socket", workers_running),
    (f"exact limit: {BURST} concurrent sends for one phone over 4 workers, 3 forwarded",
     exact_limit_concurrent),
    ("phone-cooldown (shipped 1/60s with phone-hour, phone-day): 429 + Retry-After", cooldown),
    ("sliding window: a 2 s cooldown reopens after 2 s, refusals not counted", window_reopens),
    ("phone-hour and phone-day shapes", phone_hour_and_day),
    ("user-hour: one account cycling numbers", per_user),
    ("ip-hour: per client address (X-Forwarded-For via real_ip), IPv6 by /64", per_ip),
    ("ip is REMOTE_ADDR (nginx's last hop), not the header's first entry",
     ip_is_remote_addr_not_header),
    ("ip-verify-hour: code checks per address, sends unaffected", ip_verify),
    ("merchant-hour: the cost breaker, verify unaffected", merchant_ceiling),
    ("seconds_till_resend is the longest wait among broken rules, dry-run ignored", longest_wait),
    ("all or nothing across rules, both directions", all_or_nothing),
    ("dry_run: never refuses, logs over(dry)", dry_run),
    ("countries allow and deny: 403 / 5001, not forwarded", countries),
    ("wrong-answer lock: max_answer_attempts 2, third attempt 429", answer_lock),
    ("wrong-answer lock: 24 parallel guesses, exactly 2 forwarded", answer_lock_concurrent),
    ("refund: upstream unreachable -> 502 and the quota is given back", refund_unreachable),
    ("no refund after a timeout: 504 and the cooldown holds", timeout_keeps_quota),
    ("counts survive SIGKILL of every worker and a restart on the same socket",
     survives_sigkill),
    ("SIGKILL under load: restart answers at once, counts kept", sigkill_under_load),
    ("still serving after all that", still_serving),
]


def after_stop(st, ctx):
    def all_exited():
        left = stacklib.find_pvgate_processes(st.pvgate_config)
        check(not left, f"pvgate processes still running after stop: {left}")
        check(st.exit_codes.get("pvgate") == 0 and not st.exit_codes.get("pvgate_killed"),
              f"workers did not all exit 0 on SIGTERM: {st.exit_codes}")
    return [("every worker exited 0 on SIGTERM, none left", all_exited)]


if __name__ == "__main__":
    itest.run(CASES, {"workers": WORKERS, "throttle": throttle_yaml(), "real_ip": True,
                      "timeout_ms": TIMEOUT_MS, "nginx_keepalive": 8}, __doc__,
              after_stop=after_stop)
