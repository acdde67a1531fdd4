#!/usr/bin/env python3
"""Through nginx with `fastcgi_keep_conn on` and an upstream keepalive cache larger than
pvgate's thread pool (--threads 2, keepalive 8): many sequential requests on kept-alive FastCGI
connections all succeed, 20 concurrent clients (10x the threads) all complete without deadlock,
and pvgate reuses its upstream HTTPS connections instead of a new TLS handshake per request.
"""

import http.client

import itest
from itest import Background, check, expect

THREADS = 2
CLIENTS = 20
PER_CLIENT = 15
SEQUENTIAL = 120


def good(ctx):
    return {"user_id": ctx.unique(), "contact_no_country_dialing_code": "60",
            "contact_no": ctx.phone()}


def one_exchange(ctx, i, conn=None):
    """Alternates a forwarded request, a locally rejected one and a 404, checking each."""
    kind = i % 3
    if kind == 0:
        expect(ctx.post_json("send-token", good(ctx), conn=conn), 200, 200)
    elif kind == 1:
        expect(ctx.post_json("send-token", dict(good(ctx), user_id="bad user"), conn=conn),
               400, 9001, message_contains="user_id")
    else:
        expect(ctx.post_json("nope", good(ctx), conn=conn), 404, 404)


def sequential_one_client_connection(ctx):
    conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port, timeout=itest.CLIENT_TIMEOUT_S)
    try:
        for i in range(SEQUENTIAL):
            one_exchange(ctx, i, conn)
    finally:
        conn.close()


def sequential_new_client_connections(ctx):
    for i in range(SEQUENTIAL // 2):
        one_exchange(ctx, i)


def upstream_connection_reuse(ctx):
    # Warm up, then count TLS connections the mock accepts for 30 forwarded requests.
    for _ in range(THREADS * 2):
        expect(ctx.post_json("send-token", good(ctx)), 200, 200)
    ctx.stack.mock_reset()
    n = 30
    for _ in range(n):
        expect(ctx.post_json("send-token", good(ctx)), 200, 200)
    st = ctx.stack.mock_stats()
    check(st["requests"] == n, f"mock saw {st['requests']} requests, want {n}")
    check(st["connections"] <= THREADS,
          f"{st['connections']} new upstream TLS connections for {n} sequential requests "
          f"once warm (pvgate --threads {THREADS}): connections are not reused")


def concurrent_clients(ctx, slow_ms=None):
    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port,
                                          timeout=itest.CLIENT_TIMEOUT_S)
        try:
            for i in range(PER_CLIENT):
                if slow_ms is not None and i == 0:
                    f = dict(good(ctx), user_id=f"mock-slow-{slow_ms}")
                    expect(ctx.post_json("send-token", f, conn=conn), 200, 200)
                else:
                    one_exchange(ctx, i + c, conn)
        finally:
            conn.close()
        return True

    workers = [Background(lambda c=c: client(c)) for c in range(CLIENTS)]
    errors = []
    for w in workers:
        try:
            w.result(timeout=itest.CLIENT_TIMEOUT_S * 2)
        except Exception as e:
            errors.append(str(e).splitlines()[0])
    if errors:
        log = ctx.stack.run_dir / "nginx-error.log"
        nginx_errors = [l.split(", client:")[0] for l in log.read_text(errors="replace").splitlines()
                        if "[error]" in l]
        raise AssertionError(
            f"{len(errors)} of {CLIENTS} clients failed (pvgate --threads {THREADS}, nginx "
            f"keepalive {ctx.stack.nginx_keepalive}); first: {errors[0]}"
            + (f"\n      nginx-error.log ({len(nginx_errors)} errors), first: {nginx_errors[0]}"
               if nginx_errors else ""))


def still_serving(ctx):
    for i in range(6):
        one_exchange(ctx, i)


CASES = [
    (f"{SEQUENTIAL} sequential requests on one client connection", sequential_one_client_connection),
    (f"{SEQUENTIAL // 2} sequential requests on new client connections",
     sequential_new_client_connections),
    ("upstream HTTPS connections reused", upstream_connection_reuse),
    (f"{CLIENTS} concurrent clients x {PER_CLIENT} requests, {THREADS} threads",
     lambda ctx: concurrent_clients(ctx)),
    (f"{CLIENTS} concurrent clients with a slow upstream call each, {THREADS} threads",
     lambda ctx: concurrent_clients(ctx, slow_ms=200)),
    ("still serving", still_serving),
]

if __name__ == "__main__":
    itest.run(CASES, {"threads": THREADS, "nginx_keepalive": 8}, __doc__)
