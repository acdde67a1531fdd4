#!/usr/bin/env python3
"""The shipped nginx files and the two-merchant example, under a real nginx (issue 15, item 7).

Each case starts its own nginx (loopback only) in front of the stack's pvgate, from the files an
operator installs, with only what must differ on this machine replaced (each replacement must be
found, so the files cannot drift from what is tested):

- nginx/pvgate-upstream.conf (the upstream and the `pvgate_per_ip` limit_req zone) with the
  stack's socket for /run/pvgate/pvgate.sock, and nginx/pvgate.conf verbatim: `nginx -t`
  passes; then a bounded loop of requests from 127.0.0.1 gets pvgate's own answers for exactly
  the burst (20) plus the one request the rate allows, then nginx's 429 with the JSON body of
  @pvgate_429 (status 5002, Retry-After) and no request past the burst reaches pvgate; one rate
  interval later (30r/m: 2 s) one request passes again.
- nginx/examples/two-merchants.conf (with the same upstream file) with loopback listen lines and
  the test CA's certificate: `nginx -t` passes; a request at each site is pvgate's answer for
  that site's merchant (the other merchant's page origin is refused with 403 at each site,
  its own is not), the PVGATE_MERCHANT of each server block.

The stack's own nginx (nginx/demo.conf.in) keeps the zone's name with an empty key, so the other
integration tests and the benchmarks are never limited; this test is where the shipped limit
is checked.
"""

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import time

import itest
import stack as stacklib
from itest import check

REPO = itest.REPO_DIR
NGINX_DIR = REPO / "nginx"
SHIPPED_SOCKET = "server unix:/run/pvgate/pvgate.sock;"
BURST = 20            # nginx/pvgate.conf: limit_req ... burst=20 nodelay
RATE_INTERVAL_S = 2   # nginx/pvgate-upstream.conf: rate=30r/m
FLOOD = 40            # the bounded loop: burst + 1 pass, the rest must be refused

SHOP_B_KEY = "shopbkey" + os.urandom(4).hex()
SHOP_B_SECRET = "shopbsecret" + os.urandom(8).hex()
itest.record_credentials(SHOP_B_KEY, SHOP_B_SECRET)
# The stack's merchant is shop-a (what nginx/pvgate.conf sends); shop-b is added, each with
# the origin of its own site only.
EXTRA_CONFIG = f"""  shop-b:
    api_key: {SHOP_B_KEY}
    api_secret: {SHOP_B_SECRET}
    allowed_origins: [https://shop-b.example]
"""


def replaced(text, pairs, what):
    for old, new in pairs:
        check(text.count(old) >= 1, f"{what}: no {old!r} to replace")
        text = text.replace(old, new)
    return text


def upstream_conf(ctx):
    """nginx/pvgate-upstream.conf with the stack's socket in place of the package's."""
    text = (NGINX_DIR / "pvgate-upstream.conf").read_text()
    check("limit_req_zone $binary_remote_addr zone=pvgate_per_ip:" in text,
          "nginx/pvgate-upstream.conf: no pvgate_per_ip zone keyed on $binary_remote_addr")
    return replaced(text, [(SHIPPED_SOCKET, f"server unix:{ctx.stack.socket_path};")],
                    "nginx/pvgate-upstream.conf")


class Nginx:
    """A private nginx in DIR from http-level text `body`; stopped on exit."""

    def __init__(self, directory, body):
        self.dir = directory
        shutil.rmtree(directory, ignore_errors=True)
        for d in ("body", "fastcgi", "proxy", "scgi", "uwsgi"):
            (directory / "tmp" / d).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stacklib.SYSTEM_FASTCGI_PARAMS, directory / "fastcgi_params")
        user = (f"user {stacklib.NGINX_USER} {stacklib.NGINX_GROUP};"
                if os.geteuid() == 0 else "")
        self.conf = directory / "nginx.conf"
        self.conf.write_text(f"""{user}
worker_processes 1;
daemon off;
master_process on;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/tmp/body;
    fastcgi_temp_path {directory}/tmp/fastcgi;
    proxy_temp_path {directory}/tmp/proxy;
    scgi_temp_path {directory}/tmp/scgi;
    uwsgi_temp_path {directory}/tmp/uwsgi;
{body}
}}
""")
        self.base = [stacklib.find_tool("nginx"), "-p", str(directory), "-c", str(self.conf),
                     "-e", str(directory / "error.log")]
        self.proc = None

    def test(self):
        r = subprocess.run(self.base + ["-t"], capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and "test is successful" in r.stderr,
              f"nginx -t {self.conf}: exit {r.returncode}\n{r.stdout}{r.stderr}")

    def __enter__(self):
        self.proc = subprocess.Popen(self.base, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def wait_listening(self, port, tls=False):
        def answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {stacklib.tail(self.dir / 'error.log')}")
            try:
                conn = connection(port, tls)
                conn.request("GET", "/")
                conn.getresponse().read()
                conn.close()
                return True
            except OSError:
                return False
        itest.wait_until(answers, f"nginx on 127.0.0.1:{port}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(3)  # SIGQUIT: graceful
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def connection(port, tls=False, timeout=10):
    if tls:
        # The sites' certificate is the test CA's localhost one; this test is about nginx's
        # routing, not the certificate, so it is not verified here.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def pvgate_requests(ctx):
    """Requests pvgate has logged (one `"event":"request"` line each)."""
    return ctx.stack.pvgate_log.read_text(errors="replace").count('"event":"request"')


def limit_req(ctx):
    port = stacklib.free_port()
    d = ctx.stack.run_dir.parent / "nginx-limit"
    (d.parent).mkdir(exist_ok=True)
    body = (f"    # nginx/pvgate-upstream.conf, the socket aside\n{upstream_conf(ctx)}\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n"
            f"        include {NGINX_DIR / 'pvgate.conf'};\n    }}\n")
    ng = Nginx(d, body)
    ng.test()
    with ng:
        ng.wait_listening(port)   # GET / is the server's 404: not in the limited location
        before = pvgate_requests(ctx)
        conn = connection(port)
        statuses = []
        refused = []
        t0 = time.monotonic()
        # GET send-token: pvgate's own 405 (no upstream call, nothing counted by its rules).
        for _ in range(FLOOD):
            status, headers, data = request(conn, "GET", "/pvgate/send-token")
            statuses.append(status)
            if status == 429:
                refused.append((headers, data))
        elapsed = time.monotonic() - t0
        passed = [s for s in statuses if s != 429]
        # What the rate may add while the loop ran (it takes well under a second here).
        slack = int(elapsed / RATE_INTERVAL_S)
        check(statuses[:BURST + 1] == [405] * (BURST + 1),
              f"the first {BURST + 1} requests (burst {BURST} + 1) reach pvgate (405): {statuses}")
        check(BURST + 1 <= len(passed) <= BURST + 1 + slack and len(refused) >= 1,
              f"{FLOOD} requests in {elapsed:.2f} s: {len(passed)} passed, {len(refused)} "
              f"refused; want {BURST + 1} (+{slack}) passed: {statuses}")
        for headers, data in refused:
            doc = json.loads(data)
            check(doc == {"status": 5002, "message": "Too many requests; try again shortly.",
                          "seconds_till_resend": RATE_INTERVAL_S},
                  f"429 body: {data!r}")
            check(headers.get("content-type") == "application/json" and
                  headers.get("retry-after") == str(RATE_INTERVAL_S) and
                  headers.get("cache-control") == "no-store" and
                  headers.get("server", "").startswith("nginx"),
                  f"429 headers: {headers}")
        itest.wait_until(lambda: pvgate_requests(ctx) - before >= len(passed),
                         "pvgate's log lines of the requests that passed")
        check(pvgate_requests(ctx) - before == len(passed),
              f"pvgate saw {pvgate_requests(ctx) - before} requests, nginx passed {len(passed)}: "
              "a refused request reached pvgate")
        # The bucket refills at the rate: after one interval, one request passes, the next not.
        time.sleep(RATE_INTERVAL_S + 0.3)
        after = [request(conn, "GET", "/pvgate/send-token")[0] for _ in range(2)]
        check(after == [405, 429], f"one interval later: {after}, want [405, 429]")
        # The unlimited locations stay reachable: healthz is not behind the zone.
        status, _, data = request(conn, "GET", "/pvgate/healthz")
        check(status == 200, f"healthz during the limit: {status} {data!r}")
        conn.close()


def two_merchants(ctx):
    port = stacklib.free_port()
    d = ctx.stack.run_dir.parent / "nginx-two"
    certs = ctx.stack.certs
    example = (NGINX_DIR / "examples" / "two-merchants.conf").read_text()
    check(example.count("listen 443 ssl;") == 2 and
          example.count("fastcgi_param PVGATE_MERCHANT shop-a;") == 1 and
          example.count("fastcgi_param PVGATE_MERCHANT shop-b;") == 1,
          "nginx/examples/two-merchants.conf: two TLS servers, merchants shop-a and shop-b")
    site = replaced(example, [
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("/etc/ssl/certs/shop-a.example.pem", str(certs / "server.pem")),
        ("/etc/ssl/private/shop-a.example.key", str(certs / "server.key")),
        ("/etc/ssl/certs/shop-b.example.pem", str(certs / "server.pem")),
        ("/etc/ssl/private/shop-b.example.key", str(certs / "server.key")),
    ], "nginx/examples/two-merchants.conf")
    (d.parent).mkdir(exist_ok=True)
    ng = Nginx(d, f"{upstream_conf(ctx)}\n{site}")
    ng.test()
    fields = json.dumps({"user_id": "u-two", "contact_no_country_dialing_code": "60"}).encode()
    with ng:
        ng.wait_listening(port, tls=True)
        seen = {}
        for host in ("shop-a.example", "shop-b.example"):
            for origin_of in ("shop-a.example", "shop-b.example"):
                conn = connection(port, tls=True)
                status, _, data = request(conn, "POST", "/pvgate/send-token", fields, {
                    "Host": host, "Content-Type": "application/json",
                    "Origin": f"https://{origin_of}"})
                conn.close()
                seen[(host, origin_of)] = (status, data)
        # shop-a's allowed_origins are the stack's (none set: any origin); shop-b's are its own
        # page only. So the shop-a page at the shop-b site is refused, at the shop-a site not:
        # the two server blocks send two different merchants.
        a_site_b_page = seen[("shop-a.example", "shop-b.example")]
        b_site_a_page = seen[("shop-b.example", "shop-a.example")]
        b_site_b_page = seen[("shop-b.example", "shop-b.example")]
        check(b_site_a_page[0] == 403, f"shop-b site, shop-a page: want 403, got {b_site_a_page}")
        check(b_site_b_page[0] not in (403, 429, 500) and b_site_b_page[0] < 500,
              f"shop-b site, its own page: passes the origin check, got {b_site_b_page}")
        check(a_site_b_page[0] not in (403, 429) and a_site_b_page[0] < 500,
              f"shop-a site (any origin in this stack): got {a_site_b_page}")
        log = ctx.stack.pvgate_log.read_text(errors="replace")
        check(re.search(r'"merchant":"shop-b"', log) and re.search(r'"merchant":"shop-a"', log),
              "pvgate's log names both merchants")


CASES = [
    ("nginx/pvgate-upstream.conf + pvgate.conf: nginx -t; past the burst nginx answers "
     "429 JSON and pvgate sees nothing", limit_req),
    ("nginx/examples/two-merchants.conf: nginx -t; each site is its own merchant", two_merchants),
]

if __name__ == "__main__":
    itest.run(CASES, {"extra_pvgate_config": EXTRA_CONFIG}, description=__doc__)
