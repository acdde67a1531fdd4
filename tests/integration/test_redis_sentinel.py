#!/usr/bin/env python3
"""Throttling through Redis Sentinel: pvgate follows a failover without a restart.

A private primary (redis-server), one replica of it and one redis-sentinel monitoring it
(down-after-milliseconds DOWN_AFTER_MS, failover-timeout FAILOVER_TIMEOUT_MS, quorum 1), all on
127.0.0.1 free ports in the run dir, no persistence. The data nodes require AUTH for the ACL user
`pvgate` (its password is in pvgate's URL; the sentinel itself has no auth and reaches the
nodes through the open `default` user). pvgate (scripts/stack.py, 2 worker processes) has
`throttle.redis: redis-sentinel://pvgate:PASSWORD@DEAD_ADDRESS,SENTINEL/pvmain`: the first
sentinel address listed has nothing listening, so every discovery tries the next one.

Cases: --check-config shows the sentinel form without the password; a cooldown rule throttles
and its count is on the primary (and replicated). Then the primary is SIGKILLed with
`on_store_error: deny`: every request is answered within MAX_LATENCY_S, 503 (nothing forwarded)
until the sentinel has promoted the replica, then a fresh phone passes once and is refused again
(429), with no pvgate restart; the counts written after the failover are on the new primary
and the count replicated before it still refuses its phone. The old primary comes back empty
as a replica of the new one, and the same failover is done again with `on_store_error: allow`
(reloaded in between): every request forwarded (200) while there is no primary, throttling
back afterwards. Then a hand-over with both nodes up (SENTINEL FAILOVER: the sentinel closes
the demoted node's clients; pvgate's reconnect finds ROLE slave there and asks again). Last, a
demotion by hand that leaves pvgate's connections open (the real sentinel stopped, a stand-in
naming the nodes): pvgate's writes meet READONLY, and it asks again and moves. The password
is in neither pvgate's log nor the check-config output.
"""

import collections
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import itest
import stack as stacklib
from itest import check, expect, wait_until

SEND = "send-token"
WORKERS = 2
MASTER = "pvmain"
USER = "pvgate"
PASSWORD = "sentinel-data-pw-7fq2"   # the data nodes' AUTH password; must never be printed
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
REDIS_TIMEOUT_MS = 100
MAX_LATENCY_S = 2.0          # a bound on every request during the failover, not a benchmark
FAILOVER_BOUND_S = 30.0      # bound of the wait for throttling after the kill
SETUP_TIMEOUT_S = 20.0       # replication link up, sentinel sees the replica
BREAKER_RETRY_S = 0.5        # RedisStore's retry_after: an open breaker probes after this

observed = {}


class DataNode(stacklib.RedisServer):
    """A redis-server with the `pvgate` ACL user (PASSWORD), optionally a replica of `of`."""

    def __init__(self, run_dir, of=None):
        super().__init__(run_dir)
        self.of = of

    def _argv(self):
        argv = super()._argv() + ["--user", USER, "on", ">" + PASSWORD, "~*", "&*", "+@all"]
        if self.of is not None:
            argv += ["--replicaof", "127.0.0.1", str(self.of.port)]
        return argv

    def role(self):
        return self.command("ROLE")[0]


class Sentinel(stacklib.RedisServer):
    """redis-sentinel monitoring `primary` as MASTER (its config file, which sentinel rewrites,
    in run_dir)."""

    def __init__(self, run_dir, primary):
        super().__init__(run_dir)
        self.primary = primary

    def _argv(self):
        conf = self.run_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\n"
            f"dir {self.run_dir}\nlogfile {self.log_path}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n")
        return [stacklib.find_tool("redis-sentinel"), str(conf)]

    def master_port(self):
        return int(self.command("SENTINEL", "get-master-addr-by-name", MASTER)[1])

    def replicas_ok(self):
        """Ports of the replicas the sentinel knows and sees as healthy."""
        out = []
        for r in self.command("SENTINEL", "replicas", MASTER):
            d = dict(zip(r[::2], r[1::2]))
            if ("s_down" not in d.get("flags", "") and "disconnected" not in d.get("flags", "")
                    and d.get("master-link-status") == "ok"):
                out.append(int(d["port"]))
        return out


class FakeSentinel:
    """A stand-in sentinel on a free loopback port that answers every command with the address
    in `port` (get-master-addr-by-name's reply) and counts the questions: it names a node the
    test has demoted by hand, which a real sentinel would set right at once."""

    def __init__(self, port):
        self.port = port
        self.asked = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    if not conn.recv(4096):
                        continue
                    self.asked += 1
                    port = str(self.port).encode()
                    conn.sendall(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n" % (len(port), port))
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def replica_synced(replica):
    info = replica.command("INFO", "replication")
    return "master_link_status:up" in info


# -- configuration and requests -------------------------------------------------------------


def throttle_yaml(url, on_store_error="deny", name="cool"):
    return "\n".join([
        "store: redis", f"redis: {url}", f"redis_timeout_ms: {REDIS_TIMEOUT_MS}",
        f"on_store_error: {on_store_error}", "rules:", f"  - name: {name}",
        "    key: [merchant, phone]", "    limit: 1", "    period: 60s",
        "max_answer_attempts: 0"]) + "\n"


def fields(ctx):
    return {"user_id": ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone_in("60")}


def send(ctx, f):
    conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port,
                                      timeout=itest.CLIENT_TIMEOUT_S)
    try:
        return ctx.post_json(SEND, f, conn=conn)
    finally:
        conn.close()


def sent_ok(ctx, f):
    before = ctx.upstream_requests()
    r = send(ctx, f)
    expect(r, 200, 200)
    check(ctx.upstream_requests() - before == 1, "a send that passed was not forwarded once")


def refused(ctx, f):
    before = ctx.upstream_requests()
    r = send(ctx, f)
    j = expect(r, 429, 5002)
    check(ctx.upstream_requests() == before, "a refused send was forwarded\n      "
          + r.describe())
    s = j.get("seconds_till_resend")
    check(isinstance(s, int) and 1 <= s <= 60, f"seconds_till_resend {s!r}")


def keys_on(node, pattern):
    return sorted(k for k in node.cli("--user", USER, "--pass", PASSWORD, "--no-auth-warning",
                                      "--scan", "--pattern", pattern).split("\n") if k)


def log_text(ctx):
    return ctx.stack.pvgate_log.read_text(errors="replace")


# -- the failover ---------------------------------------------------------------------------


def failover(ctx, mode, dead, survivor, label=None, manual=False):
    """Kills `dead` (the primary), or with `manual` has the sentinel hand its role to
    `survivor` (SENTINEL FAILOVER: `dead` stays up, demoted to a replica; the sentinel closes
    its clients, so pvgate reconnects to it and its ROLE check refuses it), and sends fresh
    phones until throttling is back on `survivor`."""
    label = label or mode
    sentinel = SENTINEL[0]
    check(sentinel.master_port() == dead.port, "the sentinel does not name the primary")
    f0 = fields(ctx)
    sent_ok(ctx, f0)
    # The count of f0 reaches the replica (asynchronous replication: wait for it, bounded),
    # so it must survive the failover.
    wait_until(lambda: keys_on(survivor, f"pvgate:{label}:*"), f"the {mode} count on the replica",
               timeout=SETUP_TIMEOUT_S)
    pids = ctx.stack.worker_pids()
    t_kill = time.monotonic()
    if manual:
        # Asynchronous: wait (bounded) for the hand-over to finish before sending, so the
        # first sends meet pooled connections to a node that is now a replica.
        sentinel.command("SENTINEL", "FAILOVER", MASTER)
        wait_until(lambda: sentinel.master_port() == survivor.port and dead.role() == "slave"
                   and survivor.role() == "master", "the hand-over", timeout=SETUP_TIMEOUT_S)
        t_kill = time.monotonic()
    else:
        dead.kill()
    seen = collections.Counter()
    worst = 0.0
    forwarded_during = 0
    back_at = None
    while back_at is None:
        check(time.monotonic() - t_kill < FAILOVER_BOUND_S,
              f"{mode}: no throttling {FAILOVER_BOUND_S:.0f}s after the kill (answers "
              f"{dict(seen)}; sentinel log:\n{stacklib.tail(sentinel.log_path, 3000)})")
        f = fields(ctx)
        before = ctx.upstream_requests()
        t0 = time.monotonic()
        r1 = send(ctx, f)
        lat = time.monotonic() - t0
        worst = max(worst, lat)
        check(lat < MAX_LATENCY_S, f"{mode}: a request took {lat:.2f}s during the failover")
        seen[r1.status] += 1
        if mode == "deny" and r1.status == 503:
            expect(r1, 503, 500)
            check(ctx.upstream_requests() == before, "deny: a 503 was forwarded")
            time.sleep(0.05)
            continue
        expect(r1, 200, 200)
        check(ctx.upstream_requests() == before + 1, "a 200 was not forwarded once")
        t0 = time.monotonic()
        r2 = send(ctx, f)
        worst = max(worst, time.monotonic() - t0)
        seen[r2.status] += 1
        if r2.status == 429:
            back_at = time.monotonic()
            break
        # The store is still down for this worker: by on_store_error only.
        want = 503 if mode == "deny" else 200
        expect(r2, want, 500 if want == 503 else 200)
        forwarded_during += 1
        time.sleep(0.05)
    took = back_at - t_kill
    check(survivor.role() == "master", f"{mode}: the replica was not promoted")
    check(sentinel.master_port() == survivor.port, "the sentinel does not name the new primary")
    if manual:
        wait_until(lambda: dead.role() == "slave", "the old primary demoted",
                   timeout=SETUP_TIMEOUT_S)
    if mode == "deny" and not manual:
        check(seen[503] > 0, f"deny: no 503 during the failover ({dict(seen)})")
        wait_until(lambda: "on_store_error: deny" in log_text(ctx), "the deny in the log")
    elif mode == "allow":
        check(seen[503] == 0, f"allow: a 503 during the failover ({dict(seen)})")
        check(forwarded_during + seen[200] > 2, f"allow: too few answers ({dict(seen)})")
        wait_until(lambda: "on_store_error: allow" in log_text(ctx), "the allow in the log")
    # (A manual failover may be over before any request meets it: no 503 is required then;
    # the loop above has checked that each answer was a 200, 429 or a deny's 503.)
    # Every worker's breaker has had its retry period: each must now throttle on the new
    # primary (not a synchronisation sleep: an open breaker cannot be hurried).
    time.sleep(BREAKER_RETRY_S + 0.1)
    refused(ctx, f0)            # the replicated count survived
    after_keys = set(keys_on(survivor, f"pvgate:{label}:*"))
    for _ in range(4):
        f = fields(ctx)
        sent_ok(ctx, f)
        refused(ctx, f)
    new_keys = set(keys_on(survivor, f"pvgate:{label}:*")) - after_keys
    check(len(new_keys) == 4, f"{len(new_keys)} new counts on the new primary, want 4")
    check(ctx.stack.worker_pids() == pids, "pvgate workers changed: no restart allowed")
    observed[label] = (took, dict(seen), worst)
    how = "handed over by SENTINEL FAILOVER" if manual else "SIGKILLed"
    print(f"#    {label}: primary :{dead.port} {how}; throttling on :{survivor.port} again "
          f"after {took:.2f} s (answers meanwhile {dict(seen)}, worst latency "
          f"{worst * 1000:.0f} ms); 4 new counts on the new primary, the replicated one refuses")


# -- cases ----------------------------------------------------------------------------------


def check_config_hides_password(ctx):
    r = subprocess.run([str(ctx.stack.pvgate), "--check-config", "--config",
                        str(ctx.stack.pvgate_config)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    check(r.returncode == 0, f"--check-config exit {r.returncode}: {out}")
    want = f"redis-sentinel://{USER}:***@127.0.0.1:{DEAD_PORT},127.0.0.1:{SENTINEL[0].port}/" \
           f"{MASTER}?db=0"
    check(want in out, f"--check-config does not show {want}: {out}")
    check(PASSWORD not in out, "--check-config printed the password")
    bad = ctx.stack.run_dir / "bad.yaml"
    bad.write_text(ctx.stack.pvgate_config.read_text().replace(
        f"/{MASTER}", "/"))
    r = subprocess.run([str(ctx.stack.pvgate), "--check-config", "--config", str(bad)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    check(r.returncode == 1 and "throttle.redis" in out and "master name" in out,
          f"an empty master name: exit {r.returncode}, {out}")
    check(PASSWORD not in out, "the config error printed the password")


def throttles_on_primary(ctx):
    ctx.stack.reload_pvgate(throttle=throttle_yaml(URL, "deny", "start"))
    f = fields(ctx)
    sent_ok(ctx, f)
    refused(ctx, f)
    check(keys_on(PRIMARY, "pvgate:start:*"), "no count on the primary")


def failover_deny(ctx):
    ctx.stack.reload_pvgate(throttle=throttle_yaml(URL, "deny", "deny"))
    failover(ctx, "deny", PRIMARY, REPLICA)


def rejoins(node, primary):
    """The SIGKILLed `node` comes back (empty: nothing persisted) as a replica of `primary`;
    the sentinel must see it healthy before the next failover."""
    node.of = primary
    node.restart()
    wait_until(lambda: replica_synced(node), "the old primary synced as a replica",
               timeout=SETUP_TIMEOUT_S)
    wait_until(lambda: node.port in SENTINEL[0].replicas_ok(),
               "the sentinel sees the old primary as a healthy replica", timeout=SETUP_TIMEOUT_S)
    check(node.role() == "slave", "the old primary is not a replica")


def old_primary_rejoins(ctx):
    rejoins(PRIMARY, REPLICA)


def failover_allow(ctx):
    ctx.stack.reload_pvgate(throttle=throttle_yaml(URL, "allow", "allow"))
    failover(ctx, "allow", REPLICA, PRIMARY)


def manual_failover(ctx):
    rejoins(REPLICA, PRIMARY)
    ctx.stack.reload_pvgate(throttle=throttle_yaml(URL, "deny", "manual"))
    failover(ctx, "deny", PRIMARY, REPLICA, label="manual", manual=True)


def demoted_readonly(ctx):
    """A primary demoted while pvgate's connections to it stay open (REPLICAOF sent by hand:
    unlike a sentinel, nothing kills the clients), so pvgate's writes meet READONLY. The real
    sentinel is stopped first (it would undo this); a stand-in names the nodes. pvgate must drop
    the demoted node and ask the (stand-in) sentinel again."""
    old, new = REPLICA, PRIMARY          # after the hand-over, REPLICA is the primary
    check(old.role() == "master" and new.role() == "slave", "unexpected roles before the case")
    SENTINEL[0].stop()
    fake = FakeSentinel(old.port)
    try:
        url = f"redis-sentinel://{USER}:{PASSWORD}@127.0.0.1:{fake.address}/{MASTER}"
        ctx.stack.stop_pvgate()
        ctx.stack.write_pvgate_config(throttle=throttle_yaml(url, "deny", "readonly"))
        ctx.stack.start_pvgate()
        for _ in range(2 * WORKERS):     # every worker pooled on `old`
            f = fields(ctx)
            sent_ok(ctx, f)
            refused(ctx, f)
        check(keys_on(old, "pvgate:readonly:*"), "no count on the primary the stand-in names")
        asked = fake.asked
        new.command("REPLICAOF", "NO", "ONE")
        old.command("REPLICAOF", "127.0.0.1", str(new.port))
        fake.port = new.port
        t0 = time.monotonic()
        seen = collections.Counter()
        while True:
            check(time.monotonic() - t0 < FAILOVER_BOUND_S,
                  f"still not throttling on the new primary ({dict(seen)})")
            f = fields(ctx)
            r1 = send(ctx, f)
            seen[r1.status] += 1
            if r1.status == 200:
                r2 = send(ctx, f)
                seen[r2.status] += 1
                if r2.status == 429:
                    break
            else:
                expect(r1, 503, 500)
            time.sleep(0.05)
        took = time.monotonic() - t0
        time.sleep(BREAKER_RETRY_S + 0.1)
        before = set(keys_on(new, "pvgate:readonly:*"))
        for _ in range(4):
            f = fields(ctx)
            sent_ok(ctx, f)
            refused(ctx, f)
        added = set(keys_on(new, "pvgate:readonly:*")) - before
        check(len(added) == 4, f"{len(added)} new counts on the new primary, want 4")
        check(fake.asked > asked, "the sentinel was not asked again after the demotion")
        check(seen[503] > 0, f"no 503 while the pool was on the demoted node ({dict(seen)})")
        print(f"#    demoted by hand (READONLY): throttling on :{new.port} again after "
              f"{took:.2f} s ({dict(seen)}); the stand-in sentinel asked "
              f"{fake.asked - asked} more time(s)")
    finally:
        fake.stop()


def no_password_in_log(ctx):
    check(PASSWORD not in log_text(ctx), "the password is in pvgate's log")
    for name, (took, seen, worst) in observed.items():
        after = "the hand-over" if name == "manual" else \
            f"SIGKILL of the primary (down-after {DOWN_AFTER_MS} ms)"
        print(f"#    {name}: throttling back {took:.2f} s after {after}, worst latency "
              f"{worst * 1000:.0f} ms, {seen}")


CASES = [
    ("--check-config shows the sentinel URL without the password; a bad one names the key",
     check_config_hides_password),
    ("the sentinel's primary throttles (cooldown 1/60s), its count on the primary",
     throttles_on_primary),
    ("primary SIGKILLed, deny: 503 bounded, then throttling on the promoted replica",
     failover_deny),
    ("the old primary rejoins (empty) as a replica of the new one", old_primary_rejoins),
    ("new primary SIGKILLed, allow (reloaded): forwarded, then throttling on the other node",
     failover_allow),
    ("SENTINEL FAILOVER (old primary up, demoted, its clients closed), deny: throttling on "
     "the other node", manual_failover),
    ("a primary demoted under pvgate's open connections (READONLY): pvgate asks again, moves",
     demoted_readonly),
    ("the password is not in pvgate's log; failover timings", no_password_in_log),
]

PRIMARY = REPLICA = None
SENTINEL = []
DEAD_PORT = None
URL = None


def start_redis(base):
    global PRIMARY, REPLICA, DEAD_PORT, URL
    PRIMARY = DataNode(base / "primary").start()
    REPLICA = DataNode(base / "replica", of=PRIMARY).start()
    SENTINEL.append(Sentinel(base / "sentinel", PRIMARY).start())
    DEAD_PORT = stacklib.free_port()   # nothing listens there: discovery tries the next one
    URL = (f"redis-sentinel://{USER}:{PASSWORD}@127.0.0.1:{DEAD_PORT},"
           f"127.0.0.1:{SENTINEL[0].port}/{MASTER}")
    wait_until(lambda: replica_synced(REPLICA), "the replica synced", timeout=SETUP_TIMEOUT_S)
    wait_until(lambda: REPLICA.port in SENTINEL[0].replicas_ok(),
               "the sentinel sees the replica", timeout=SETUP_TIMEOUT_S)


def stop_redis():
    for node in SENTINEL + [REPLICA, PRIMARY]:
        if node is not None:
            node.stop()


if __name__ == "__main__":
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="pvgate-sentinel-"))
    try:
        start_redis(base)
    except Exception as e:   # a setup failure is a test failure, with what was seen
        stop_redis()
        print(f"FAIL redis primary/replica/sentinel setup: {e}\n0 passed, 1 failed", flush=True)
        sys.exit(1)
    try:
        itest.run(CASES, stack_options={"workers": WORKERS, "timeout_ms": 3000,
                                        "throttle": throttle_yaml(URL)},
                  description=__doc__.split("\n\n")[0])
    finally:
        stop_redis()
        if not os.environ.get("PVGATE_KEEP_SENTINEL_DIR"):
            import shutil
            shutil.rmtree(base, ignore_errors=True)
