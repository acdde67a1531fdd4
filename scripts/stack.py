#!/usr/bin/env python3
"""A private pvgate stack on loopback: mock Pipwave (HTTPS) + pvgate under spawn-fcgi + nginx.

Used by scripts/demo and by every tests/integration/test_*.py. Python 3 standard library only.

    python3 scripts/stack.py start --dir /tmp/pvgate-demo [--port 8080] [--workers 2]
                                   [--throttle default] [--verification [--shop]]
                                   [--challenge altcha [--challenge-difficulty N]]
    python3 scripts/stack.py status --dir /tmp/pvgate-demo
    python3 scripts/stack.py stop --dir /tmp/pvgate-demo

As a module:

    with Stack(run_dir, pvgate="/abs/build/pvgate", threads=2) as s:
        status, headers, body = s.request("POST", "/pvgate/send-token", b"...", {...})
        s.mock_stats()["requests"]

Everything lives in the run directory:
    certs/              test PKI from tests/mock/make_certs.sh (kept across restarts)
    mock.port mock.log  the mock upstream
    siteverify.port siteverify.log siteverify_secret
                        with siteverify=True: the mock CAPTCHA providers and the secret they expect
    shop.port shop.log  with shop=True: the demo shop's backend (scripts/demo_shop.py)
    pvgate.yaml         pvgate's config (0600: it holds the merchant secret)
    altcha.key          with challenge="altcha": the merchant's ALTCHA key_file (0600, made once)
    pvgate.sock         pvgate's FastCGI socket (spawn-fcgi creates it)
    pvgate.log          pvgate's stderr (every worker's), and spawn-fcgi's messages
    pvgate.pids         with workers=N: the pids spawn-fcgi -F N forked (its -P file)
    throttle/           the local (LMDB) throttle store, when the config has a throttle: section
    redis/              with redis=True: the private redis-server's directory and redis.log
    nginx.conf          from nginx/demo.conf.in; fastcgi_params beside it
    nginx-*.log nginx.pid nginx-tmp/
    stack.json          pids of what `start` launched, read by `stop`

pvgate runs one of two ways. By default `spawn-fcgi -n` execs a single pvgate in place, so the
stack's child *is* pvgate. With workers=N, `spawn-fcgi -F N` forks N pvgate processes sharing
one listening socket and exits (-n cannot be combined with -F). Those workers are nobody's
child then, so the stack finds them by scanning /proc for a pvgate whose command line holds
this run directory's config path, and it re-reads a worker's start time (/proc/PID/stat) right
before signalling it, so a reused pid is never hit. When the stack runs inside a long-lived
Python process (tests), that process becomes a child subreaper so it can reap the workers and
see their exit codes; otherwise (`stack.py start`) they are re-parented to init.

Readiness is always a condition (port file written, socket present, HTTP answer), polled with a
bounded deadline; a process that dies while being waited for fails the start at once, with the
tail of its log.
"""

import argparse
import ctypes
import http.client
import json
import re
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PVGATE = REPO_DIR / "build" / "pvgate"
MOCK = REPO_DIR / "tests" / "mock" / "mock_pipwave.py"
MOCK_SITEVERIFY = REPO_DIR / "tests" / "mock" / "mock_siteverify.py"
# Stack siteverify=True: the secret the mock providers expect, and each provider's path there
# (the real endpoints' paths, src/siteverify.h).
SITEVERIFY_SECRET = "test-siteverify-secret"
SITEVERIFY_PATHS = {
    "turnstile": "/turnstile/v0/siteverify",
    "hcaptcha": "/siteverify",
    "recaptcha": "/recaptcha/api/siteverify",
}
# The demo shop's backend (Stack shop=True): it imports PyJWT, which Debian installs for its own
# interpreter only (another python3 first on PATH, pyenv or a venv, does not see it).
SHOP = REPO_DIR / "scripts" / "demo_shop.py"
SYSTEM_PYTHON3 = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
MAKE_CERTS = REPO_DIR / "tests" / "mock" / "make_certs.sh"
NGINX_TEMPLATE = REPO_DIR / "nginx" / "demo.conf.in"
SHIPPED_CONFIG = REPO_DIR / "conf" / "pvgate.yaml"
SYSTEM_FASTCGI_PARAMS = Path("/etc/nginx/fastcgi_params")
DEMO_SITE = REPO_DIR / "nginx" / "demo-site"   # the demo page (Stack site_root=)
# The ALTCHA widget's files the demo page loads, served under the site (URL path -> file under
# the site root): its CSP-friendly build (dist/external: the page registers the SHA-256 worker
# itself) from the npm package that the site's package.json pins and `npm ci` there installs.
# Only these files are served, never node_modules as a whole.
SITE_VENDOR_FILES = {
    "/vendor/altcha/altcha.js": "node_modules/altcha/dist/external/altcha.js",
    "/vendor/altcha/altcha.css": "node_modules/altcha/dist/external/altcha.css",
    "/vendor/altcha/workers/sha.js": "node_modules/altcha/dist/workers/sha.js",
}
# pvgate's challenge.difficulty when the config sets none (src/config.h); Stack's default too.
ALTCHA_DEFAULT_DIFFICULTY = 50000
# The origins the demo page is served from (Stack allowed_origins=); {port} is nginx's port.
DEMO_ORIGINS = ("http://127.0.0.1:{port}", "http://localhost:{port}")

START_TIMEOUT_S = 20.0   # per component
RELOAD_TIMEOUT_S = 10.0  # SIGHUP until every pvgate process has logged the reload
STOP_TIMEOUT_S = 15.0    # per process, after which it is killed
POLL_S = 0.02

# The FastCGI socket as the package makes it (packaging/, scripts/spawn-fcgi-example: -U pvgate
# -G www-data -M 0660): mode 0660, in the group of the web server's workers, so nginx may
# connect and other users may not. Started as root, the stack's nginx workers run as
# NGINX_USER:NGINX_GROUP (its `user` line); otherwise nginx, pvgate and the socket share the
# caller's user and group.
SOCKET_MODE = "0660"
NGINX_USER = "root"
NGINX_GROUP = "root"
LOG_TAIL_BYTES = 4000

# Used only when the system nginx ships no fastcgi_params (it always does on Debian).
FALLBACK_FASTCGI_PARAMS = """\
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
fastcgi_param  HTTP_HOST          $host;
"""



def read_port_file(path):
    """The port a child wrote to `path` once it listens, or None until then."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None

class StackError(RuntimeError):
    pass


def socket_owner_args():
    """spawn-fcgi options for a FastCGI socket nginx's workers connect to (SOCKET_MODE)."""
    # spawn-fcgi creates the socket with its own user and group: root:root (= NGINX_USER:
    # NGINX_GROUP) when run as root (it refuses `-U root` / `-G root`, so none is passed), else
    # the user that runs nginx too. A stack whose nginx workers ran as another group would
    # pass `-G` that group, as the package passes www-data.
    assert os.geteuid() != 0 or (NGINX_USER, NGINX_GROUP) == ("root", "root")
    return ["-M", SOCKET_MODE]


def free_port():
    """A loopback TCP port that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tool(name):
    """Absolute path of a tool, also where PATH lacks the sbin directories."""
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not found:
        raise StackError(f"{name} not found (run scripts/install-deps)")
    return found


def tail(path, limit=LOG_TAIL_BYTES):
    try:
        data = Path(path).read_bytes()
    except OSError:
        return "(no log)"
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


def proc_starttime(pid):
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None.
    Stored with each pid so `stop` never signals an unrelated process that reused the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def pid_alive(pid, starttime=None):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if starttime is not None and proc_starttime(pid) != starttime:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def proc_cmdline(pid):
    """The process's argv (list of str), or None when it is gone or a zombie (empty cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0")


def runs_config(argv, config_path):
    """True when argv is a pvgate as the stack starts it: `BINARY --config config_path ...`
    (the stack always puts --config first; spawn-fcgi and the sh wrapper have other argv[1])."""
    return bool(argv) and argv[1:3] == ["--config", str(config_path)]


def find_pvgate_processes(config_path):
    """[(pid, starttime)] of every live (non-zombie) pvgate started with --config config_path,
    found by scanning /proc. The run directory is private, so its config path identifies the
    stack's workers and nothing else."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if not runs_config(proc_cmdline(pid), config_path):
            continue
        st = proc_starttime(pid)
        if st is not None and pid_alive(pid, st):
            found.append((pid, st))
    return sorted(found)


def signal_verified(pid, starttime, sig):
    """Signals pid only if it is still the process that started at `starttime`. True if sent."""
    if proc_starttime(pid) != starttime:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def reap(pid):
    """Collects pid's exit status if it is our child (or re-parented to us, a subreaper) and has
    exited: the returncode in Popen's convention (-signal when killed), else None."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def become_subreaper():
    """PR_SET_CHILD_SUBREAPER: orphans of our descendants (spawn-fcgi's workers once it exits)
    are re-parented to this process, which can then reap them and read their exit codes. Best
    effort: False where prctl is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0   # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def shipped_throttle_section(store_path):
    """conf/pvgate.yaml's throttle: section, verbatim (the shipped default rules), with its
    `path:` pointed at store_path. Raises StackError if the file's layout changed."""
    lines = SHIPPED_CONFIG.read_text().splitlines()
    try:
        start = lines.index("throttle:")
    except ValueError:
        raise StackError(f"{SHIPPED_CONFIG}: no top-level throttle: section") from None
    end = start + 1
    while end < len(lines) and (not lines[end] or lines[end][0] in " \t"):
        end += 1
    section = lines[start:end]
    paths = [i for i, l in enumerate(section) if re.match(r"^  path:", l)]
    if len(paths) != 1:
        raise StackError(f"{SHIPPED_CONFIG}: want exactly one `  path:` in throttle:")
    section[paths[0]] = f"  path: {store_path}"
    return "\n".join(section).rstrip() + "\n"


def redis_throttle_section(section, url):
    """A throttle: section (as shipped_throttle_section returns it) switched to the Redis
    store at `url`: its `  store:` and `  redis:` lines replaced. Raises StackError if it
    lacks either line."""
    lines = section.rstrip("\n").split("\n")
    for key, value in (("store", "redis"), ("redis", url)):
        at = [i for i, l in enumerate(lines) if re.match(rf"^  {key}:", l)]
        if len(at) != 1:
            raise StackError(f"throttle section: want exactly one `  {key}:` line")
        lines[at[0]] = f"  {key}: {value}"
    return "\n".join(lines) + "\n"


REDIS_STOP_TIMEOUT_S = 10.0


def redis_command(port, *args, host="127.0.0.1", timeout=2.0):
    """Sends one command to a Redis on host:port over RESP and returns its reply (str for
    simple strings and bulk strings, int, list, None for a nil); raises StackError for an error
    reply, OSError when Redis does not answer. Standard library only (no redis-cli needed)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        f = s.makefile("rb")

        def read():
            line = f.readline()
            if not line.endswith(b"\r\n"):
                raise OSError("redis: connection closed mid-reply")
            kind, rest = line[:1], line[1:-2]
            if kind == b"+":
                return rest.decode()
            if kind == b"-":
                raise StackError(f"redis: {rest.decode(errors='replace')}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                if n < 0:
                    return None
                data = f.read(n + 2)
                return data[:-2].decode(errors="replace")
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [read() for _ in range(n)]
            raise OSError(f"redis: unexpected reply {line!r}")

        return read()


class RedisServer:
    """A private redis-server for throttle tests and benchmarks: 127.0.0.1 only, on a free
    port (kept across restart()), no persistence (--save '' --appendonly no), its working
    directory and log in `run_dir` (redis.log). Readiness is a PING answered PONG, polled with
    a bounded deadline.

        r = RedisServer(run_dir).start()
        r.url                  # redis://127.0.0.1:PORT/0, for pvgate's throttle.redis
        r.command("PTTL", k)   # one command over RESP; r.cli(...) runs redis-cli
        r.kill()               # SIGKILL (data is gone: nothing is persisted)
        r.restart()            # a new redis-server on the same port, empty
        r.stop()

    A Stack with redis=True owns one (started before pvgate, stopped after everything); a
    Stack given redis=<RedisServer> uses that one and leaves its lifecycle to the caller, so
    two stacks ("two hosts") can share one Redis."""

    def __init__(self, run_dir, port=None, db=0):
        self.run_dir = Path(run_dir).resolve()
        self.requested_port = port
        self.port = None
        self.db = db
        self.proc = None
        self.exit_codes = []   # returncode of every server process this object ended
        self._log = None

    @property
    def log_path(self):
        return self.run_dir / "redis.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _argv(self):
        return [find_tool("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port),
                "--protected-mode", "yes", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.run_dir),
                "--logfile", str(self.log_path), "--pidfile", str(self.run_dir / "redis.pid")]

    def start(self):
        """Starts redis-server (on requested_port, else a free port; with a free port a clash
        with another process is retried on another) and waits for PING. Returns self."""
        if self.running():
            raise StackError("redis-server is already running")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if (self.requested_port or self.port) else 3
        for attempt in range(attempts):
            if self.port is None:
                self.port = self.requested_port or free_port()
            try:
                return self._spawn_and_wait()
            except StackError:
                in_use = "Address already in use" in tail(self.log_path, 1000)
                if not in_use or attempt == attempts - 1:
                    raise
                self.port = None

    def restart(self):
        """A new, empty redis-server on the same port (after kill() or stop())."""
        if self.running():
            raise StackError("redis-server is still running; kill() or stop() it first")
        return self._spawn_and_wait()

    def _spawn_and_wait(self):
        if self._log is None:
            self._log = open(self.run_dir / "redis-stderr.log", "ab")
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.run_dir,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                self.exit_codes.append(self.proc.returncode)
                raise StackError(f"redis-server on 127.0.0.1:{self.port}: exited with "
                                 f"{self.proc.returncode}\n--- {self.log_path} ---\n"
                                 f"{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise StackError(f"redis-server on 127.0.0.1:{self.port}: no PONG after "
                                 f"{START_TIMEOUT_S:.0f}s\n--- {self.log_path} ---\n"
                                 f"{tail(self.log_path)}")
            time.sleep(POLL_S)

    def ping(self):
        """True when this server answers PING with PONG right now."""
        if self.port is None:
            return False
        try:
            return redis_command(self.port, "PING", timeout=1.0) == "PONG"
        except (OSError, StackError):
            return False

    def command(self, *args, timeout=2.0):
        return redis_command(self.port, *args, timeout=timeout)

    def cli(self, *args, timeout=10):
        """Runs redis-cli against this server; returns its stdout (raises on failure)."""
        r = subprocess.run([find_tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-n", str(self.db)] + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0 or r.stdout.startswith("(error)") or r.stdout.startswith("ERR"):
            raise StackError(f"redis-cli {' '.join(map(str, args))}: exit {r.returncode}\n"
                             f"{r.stdout}{r.stderr}")
        return r.stdout

    def _end(self, sig, timeout=REDIS_STOP_TIMEOUT_S):
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            if sig != signal.SIGKILL:
                p.send_signal(signal.SIGCONT)   # a pause()d server must see the signal
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.exit_codes.append(p.returncode)
        self.proc = None
        return p.returncode

    def pause(self):
        """SIGSTOP: a hung Redis. The kernel still accepts connections (backlog) but nothing
        answers, so clients see their timeouts. resume() undoes it."""
        if not self.running():
            raise StackError("redis-server is not running")
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.running():
            self.proc.send_signal(signal.SIGCONT)

    def kill(self):
        """SIGKILL, as a crash: the port stops answering at once. Returns the exit code."""
        return self._end(signal.SIGKILL)

    def stop(self):
        """SIGTERM (nothing to save), SIGKILL after REDIS_STOP_TIMEOUT_S. Idempotent."""
        rc = self._end(signal.SIGTERM)
        if self._log is not None:
            self._log.close()
            self._log = None
        return rc

    def pid(self):
        return self.proc.pid if self.running() else None


class Stack:
    """One private stack. start() brings it up or raises StackError (after stopping whatever it
    had started); stop() ends every process it started and waits for each.

    Options: pvgate (binary, default build/pvgate), port (nginx; default a free one), threads
    (pvgate --threads; default pvgate's), timeout_ms / connect_timeout_ms (upstream), merchant
    (name; nginx/pvgate.conf sends shop-a), api_key / api_secret (default random, distinctive),
    secret_in_file (api_secret_file instead of api_secret), extra_pvgate_config (YAML text
    appended at the end of pvgate.yaml: top-level keys, or lines indented by two spaces to
    add merchants, since `merchants:` is the last block), extra_locations (nginx text inserted
    in the server block; @SOCKET@ is replaced by the socket path), mock_args (more
    mock_pipwave.py options), mock_cert (certs/NAME.pem|.key the mock serves), ca_file
    (pvgate's ca_file; default certs/ca.pem), upstream_host (default 127.0.0.1), http2
    (upstream.http2: None writes none, pvgate's default auto; "auto" or "off"),
    nginx_keepalive, nginx_workers, pvgate_args (more pvgate options),
    workers (None: `spawn-fcgi -n`, one pvgate that is the stack's child; N: `spawn-fcgi -F N`,
    N pvgate processes on one socket), throttle (None: no throttle: section; "default": the
    shipped section of conf/pvgate.yaml; other text: the section's body, keys at column 0, to
    which `store: local` and `path: RUN_DIR/throttle` are added unless it sets them),
    upstream_url (default the mock), real_ip (nginx takes the client address from
    X-Forwarded-For sent by loopback, so a test can pose as other clients; tests only),
    listen (None: pvgate under spawn-fcgi on RUN_DIR/pvgate.sock; "HOST:PORT", "[V6]:PORT"
    or a path: pvgate started directly with its own --socket there, nginx connecting to it),
    redis (False: none; True: a private RedisServer in RUN_DIR/redis, started before pvgate
    and stopped with the stack, see kill_redis()/restart_redis(); a RedisServer: one the
    caller runs, shared with other stacks), verification (True: a verification: section with
    a P-256 key made once in RUN_DIR/token-key.pem, which needs a throttle), shop (True: the
    demo shop's backend, scripts/demo_shop.py under SYSTEM_PYTHON3, on a free loopback port
    behind nginx's /shop/, checking tokens against /pvgate/jwks.json with the verification
    issuer and the merchant's name as audience; needs verification), siteverify (True:
    tests/mock/mock_siteverify.py, the three CAPTCHA providers, on a free loopback port with the
    test CA's server certificate, expecting the secret it writes to siteverify_secret_file; see
    siteverify_url(kind), siteverify_stats(), siteverify_reset()), challenge (None: none;
    "altcha": the merchant's `challenge:` block of kind altcha, its key_file RUN_DIR/altcha.key
    made once, difficulty challenge_difficulty, default pvgate's 50000; needs a throttle). With
    a Redis, throttle="default-redis" is the
    shipped section with `store: redis` pointing at it, and a throttle body that sets
    `store: redis` without `redis:` gets `redis: <its URL>` added."""

    def __init__(self, run_dir, pvgate=None, port=None, threads=None, timeout_ms=10000,
                 connect_timeout_ms=3000, merchant="shop-a", api_key=None, api_secret=None,
                 secret_in_file=False, extra_pvgate_config="", extra_locations="",
                 mock_args=(), mock_cert="server", ca_file=None, upstream_host="127.0.0.1",
                 nginx_keepalive=8, nginx_workers=1, pvgate_args=(), workers=None,
                 throttle=None, upstream_url=None, real_ip=False, redis=False,
                 pvgate_wrapper=(), supervisor=None, site_root=None, allowed_origins=None,
                 allow_missing_origin=None, extra_http="", max_connections=None,
                 verification=False, listen=None, shop=False, siteverify=False,
                 challenge=None, challenge_difficulty=ALTCHA_DEFAULT_DIFFICULTY,
                 http2=None):
        self.run_dir = Path(run_dir).resolve()
        self.pvgate = Path(pvgate or DEFAULT_PVGATE).resolve()
        self.requested_port = port
        self.port = None
        self.threads = threads
        self.timeout_ms = timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.max_connections = max_connections  # upstream.max_connections (None: pvgate's)
        self.http2 = http2                      # upstream.http2 (None: pvgate's)
        # verification: False, or True for a verification: section signing with a P-256 key
        # made once in RUN_DIR/token-key.pem (issuer http://127.0.0.1:PORT/pvgate).
        self.verification = verification
        # shop: the demo shop's backend behind nginx's /shop/ (see _start_shop).
        self.shop = shop
        self.shop_port = None
        # siteverify: the mock CAPTCHA providers (see _start_siteverify).
        self.siteverify = siteverify
        self.siteverify_port = None
        # challenge: None, or "altcha" for the merchant's challenge block (see altcha_key()).
        if challenge not in (None, "altcha"):
            raise StackError(f"challenge={challenge!r}: only None or 'altcha'")
        self.challenge = challenge
        self.challenge_difficulty = challenge_difficulty
        self.merchant = merchant
        # Distinctive values, so a test can search responses and logs for them.
        self.api_key = api_key or "pk" + secrets.token_hex(10)
        self.api_secret = api_secret or "sk" + secrets.token_hex(20)
        self.secret_in_file = secret_in_file
        self.extra_pvgate_config = extra_pvgate_config
        self.extra_locations = extra_locations
        self.mock_args = list(mock_args)
        self.mock_cert = mock_cert
        self.ca_file = ca_file
        self.upstream_host = upstream_host
        self.nginx_keepalive = nginx_keepalive
        self.nginx_workers = nginx_workers
        self.pvgate_args = list(pvgate_args)
        self.workers = workers
        self.throttle = throttle
        self.upstream_url = upstream_url
        self.real_ip = real_ip
        self._owns_redis = redis is True
        self.redis = RedisServer(self.run_dir / "redis") if redis is True else (redis or None)
        # pvgate_wrapper: argv prefix for the spawn-fcgi -n command (e.g. an `unshare -m`
        # wrapper that gives pvgate its own resolver files); it must exec in place.
        self.pvgate_wrapper = list(pvgate_wrapper)
        # supervisor=N: `spawn-fcgi -n -- multiwatch -f N -- pvgate ...`, N workers that
        # multiwatch restarts when one dies; procs["pvgate"] is multiwatch then.
        self.supervisor = supervisor
        self.worker_exits = {}   # pid -> returncode, for reaped workers (workers=N mode)
        self._spawned = set()    # every worker pid spawn-fcgi reported, reaped at stop()
        self.procs = {}          # name -> Popen, in start order
        self.exit_codes = {}     # name -> returncode after stop()
        self.mock_port = None
        self._logs = []
        # site_root: a directory of static files nginx serves at / (the demo page,
        # DEMO_SITE), instead of the JSON 404. allowed_origins: the merchant's
        # allowed_origins, each "{port}" replaced by nginx's port (DEMO_ORIGINS);
        # allow_missing_origin: its allow_missing_origin. None writes neither key
        # (pvgate's defaults: any origin, a start-up warning), as the tests expect.
        self.site_root = site_root
        self.allowed_origins = allowed_origins
        self.allow_missing_origin = allow_missing_origin
        # extra_http: nginx text inserted at the top of the http block (e.g. a second
        # `upstream` for scripts/bench's FastCGI baseline); @RUN_DIR@ is replaced.
        self.extra_http = extra_http
        # listen: pvgate's own --socket (no spawn-fcgi); see listen_target().
        self.listen = listen

    # -- paths -------------------------------------------------------------------------------

    @property
    def certs(self):
        return self.run_dir / "certs"

    @property
    def socket_path(self):
        return self.run_dir / "pvgate.sock"

    @property
    def pvgate_log(self):
        return self.run_dir / "pvgate.log"

    @property
    def pvgate_config(self):
        return self.run_dir / "pvgate.yaml"

    @property
    def pid_file(self):
        return self.run_dir / "pvgate.pids"

    @property
    def siteverify_secret_file(self):
        """The secret the mock providers expect (siteverify=True), one line, mode 0600."""
        return self.run_dir / "siteverify_secret"

    def siteverify_url(self, kind):
        """The mock's https URL for one provider: "turnstile", "hcaptcha" or "recaptcha"."""
        if self.siteverify_port is None:
            raise StackError("this stack runs no mock siteverify (siteverify=True)")
        return f"https://127.0.0.1:{self.siteverify_port}{SITEVERIFY_PATHS[kind]}"

    @property
    def throttle_path(self):
        return self.run_dir / "throttle"

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path="/pvgate/"):
        return self.base_url + path

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if not self.pvgate.is_file() or not os.access(self.pvgate, os.X_OK):
            raise StackError(f"pvgate binary not found or not executable: {self.pvgate} "
                             "(build it first: cmake -S . -B build && cmake --build build)")
        for tool in ("nginx", "spawn-fcgi", "openssl"):
            find_tool(tool)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.workers is not None:
            become_subreaper()
        try:
            self._make_certs()
            self._start_mock()
            self._start_siteverify()
            self._start_shop()
            self._start_redis()
            self.write_pvgate_config()
            self.start_pvgate()
            self._start_nginx()
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _popen(self, name, argv, log_name, **kw):
        log = open(self.run_dir / log_name, "ab")
        self._logs.append(log)
        # Own session: a Ctrl-C in the demo's terminal doesn't hit the stack, and the stack
        # outlives `stack.py start`.
        p = subprocess.Popen(argv, stdin=kw.pop("stdin", subprocess.DEVNULL), stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.run_dir, start_new_session=True,
                             **kw)
        self.procs[name] = p
        return p

    def _wait(self, what, cond, proc=None, log=None, timeout=START_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while True:
            r = cond()
            if r:
                return r
            if proc is not None and proc.poll() is not None:
                raise StackError(f"{what}: process exited with {proc.returncode}\n"
                                 f"--- {log} ---\n{tail(log) if log else ''}")
            if time.monotonic() > deadline:
                raise StackError(f"{what}: not ready after {timeout:.0f}s\n"
                                 f"--- {log} ---\n{tail(log) if log else ''}")
            time.sleep(POLL_S)

    def _make_certs(self):
        r = subprocess.run(["sh", str(MAKE_CERTS), str(self.certs)], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise StackError(f"make_certs.sh failed:\n{r.stdout}{r.stderr}")

    def _start_mock(self):
        port_file = self.run_dir / "mock.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, str(MOCK), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file),
                "--cert", str(self.certs / f"{self.mock_cert}.pem"),
                "--key", str(self.certs / f"{self.mock_cert}.key"),
                "--merchant", f"{self.api_key}:{self.api_secret}"] + self.mock_args
        p = self._popen("mock", argv, "mock.log")

        self.mock_port = self._wait("mock upstream", lambda: read_port_file(port_file), p,
                                    self.run_dir / "mock.log")

    def _start_siteverify(self):
        """siteverify=True: writes siteverify_secret_file and starts mock_siteverify.py as the
        Pipwave mock is started (free loopback port, port file, the test CA's certificate)."""
        if not self.siteverify:
            return
        fd = os.open(self.siteverify_secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(SITEVERIFY_SECRET + "\n")
        port_file = self.run_dir / "siteverify.port"
        port_file.unlink(missing_ok=True)
        argv = [sys.executable, str(MOCK_SITEVERIFY), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file),
                "--cert", str(self.certs / "server.pem"), "--key", str(self.certs / "server.key"),
                "--secret", SITEVERIFY_SECRET]
        p = self._popen("siteverify", argv, "siteverify.log")
        self.siteverify_port = self._wait("mock siteverify", lambda: read_port_file(port_file),
                                          p, self.run_dir / "siteverify.log")

    def _start_redis(self):
        """redis=True: starts the stack's own redis-server (before pvgate, which may use it)."""
        if self._owns_redis and not self.redis.running():
            self.redis.start()

    def _start_shop(self):
        """shop=True: starts scripts/demo_shop.py on a free loopback port (it writes shop.port)
        and waits for that port. It needs nginx's port now, for the issuer and JWKS URL it
        checks tokens against (_origin_port() fixes it, as for the verification issuer)."""
        if not self.shop:
            return
        if not self.verification:
            raise StackError("shop=True needs verification=True (the shop checks its tokens)")
        port_file = self.run_dir / "shop.port"
        port_file.unlink(missing_ok=True)
        issuer = f"http://127.0.0.1:{self._origin_port()}/pvgate"
        argv = [SYSTEM_PYTHON3, str(SHOP), "--host", "127.0.0.1", "--port", "0",
                "--port-file", str(port_file), "--jwks-url", issuer + "/jwks.json",
                "--issuer", issuer, "--audience", self.merchant]
        p = self._popen("shop", argv, "shop.log")

        self.shop_port = self._wait("demo shop backend", lambda: read_port_file(port_file), p,
                                    self.run_dir / "shop.log")

    def _shop_location(self):
        """nginx's /shop/ location proxying to the demo shop's backend; a comment without it."""
        if not self.shop:
            return "# (no shop backend: stack.py shop= / --shop)"
        return ("# The demo shop's backend (stack.py shop= / --shop): the merchant's own server.\n"
                "        location /shop/ {\n"
                f"            proxy_pass http://127.0.0.1:{self.shop_port};\n"
                "            proxy_http_version 1.1;\n"
                "            proxy_set_header Host $host;\n"
                "            proxy_set_header Connection \"\";\n"
                "            client_max_body_size 16k;\n"
                "        }")

    def _redis_url(self):
        if self.redis is None:
            raise StackError("throttle store redis: this stack has no Redis (redis=True)")
        if self.redis.port is None:
            raise StackError("throttle store redis: its redis-server was never started")
        return self.redis.url

    def kill_redis(self):
        """SIGKILLs the stack's redis-server (a crash: it stops answering at once, and its data
        is gone). pvgate keeps running. Returns the exit code."""
        if self.redis is None:
            raise StackError("this stack has no Redis")
        return self.redis.kill()

    def restart_redis(self):
        """Starts a new, empty redis-server on the SAME port (pvgate's URL stays valid) and
        waits for its PING."""
        if self.redis is None:
            raise StackError("this stack has no Redis")
        return self.redis.restart()

    def _throttle_text(self):
        """The throttle: section for pvgate.yaml ("" for none)."""
        if self.throttle is None:
            return ""
        if self.throttle == "default":
            return shipped_throttle_section(self.throttle_path)
        if self.throttle == "default-redis":
            return redis_throttle_section(shipped_throttle_section(self.throttle_path),
                                          self._redis_url())
        body = textwrap.dedent(self.throttle).strip("\n")
        head = []
        if not re.search(r"^store:", body, re.M):
            head.append("store: local")
        if not re.search(r"^path:", body, re.M):
            head.append(f"path: {self.throttle_path}")
        if re.search(r"^store:\s*redis\s*$", body, re.M) and not re.search(r"^redis:", body,
                                                                            re.M):
            head.append(f"redis: {self._redis_url()}")
        return "throttle:\n" + textwrap.indent("\n".join(head + [body]), "  ") + "\n"

    def write_pvgate_config(self, **changes):
        """(Re)writes pvgate.yaml; keyword arguments change the corresponding options first
        (throttle, upstream_url, timeout_ms, ...). Used by start() and reload_pvgate()."""
        for k, v in changes.items():
            if not hasattr(self, k):
                raise TypeError(f"unknown stack option {k!r}")
            setattr(self, k, v)
        self._write_pvgate_config()
        self._check_pvgate_config()

    def _write_pvgate_config(self):
        ca = self.ca_file or (self.certs / "ca.pem")
        url = self.upstream_url or f"https://{self.upstream_host}:{self.mock_port}/phone-verify"
        lines = [
            "# Written by scripts/stack.py for a private demo/test stack.",
            "upstream:",
            f"  url: {url}",
            f"  ca_file: {ca}",
            f"  connect_timeout_ms: {self.connect_timeout_ms}",
            f"  timeout_ms: {self.timeout_ms}",
        ]
        if self.max_connections is not None:
            lines.append(f"  max_connections: {self.max_connections}")
        if self.http2 is not None:
            lines.append(f"  http2: {self.http2}")
        throttle = self._throttle_text()
        if throttle:
            lines.append(throttle.rstrip("\n"))
        if self.verification:
            lines += [
                "verification:",
                f"  issuer: http://127.0.0.1:{self._origin_port()}/pvgate",
                f"  signing_keys: [{self.token_key()}]",
            ]
        lines += [
            "merchants:",
            f"  {self.merchant}:",
            f"    api_key: {self.api_key}",
        ]
        if self.secret_in_file:
            sf = self.run_dir / "api_secret"
            fd = os.open(sf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.api_secret + "\n")
            lines.append(f"    api_secret_file: {sf}")
        else:
            lines.append(f"    api_secret: {self.api_secret}")
        lines += self._origin_lines()
        if self.challenge == "altcha":
            lines += [
                "    challenge:",
                "      kind: altcha",
                f"      key_file: {self.altcha_key()}",
                f"      difficulty: {self.challenge_difficulty}",
            ]
        text = "\n".join(lines) + "\n"
        if self.extra_pvgate_config:
            text += self.extra_pvgate_config.rstrip("\n") + "\n"
        self.pvgate_config.unlink(missing_ok=True)
        fd = os.open(self.pvgate_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def token_key(self):
        """RUN_DIR/token-key.pem: a P-256 private key (openssl genpkey), made on first use."""
        key = self.run_dir / "token-key.pem"
        if not key.exists():
            tmp = key.with_suffix(".tmp")
            subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-out", str(tmp)],
                           check=True, capture_output=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, key)
        return key

    def altcha_key(self):
        """RUN_DIR/altcha.key: the ALTCHA key_file, 64 hex characters (secrets.token_hex(32)),
        mode 0600, made on first use and kept, so challenges issued before a restart still
        verify."""
        key = self.run_dir / "altcha.key"
        if not key.exists():
            tmp = key.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.replace(tmp, key)
        return key

    def _origin_port(self):
        """nginx's port for the {port} of allowed_origins. pvgate's config is written before
        nginx starts, so without a requested port one is chosen now (and nginx then uses it)."""
        if self.port is None and self.requested_port is None:
            self.requested_port = free_port()
        return self.port or self.requested_port

    def origins(self):
        """allowed_origins with {port} filled in ([] when the option is not set)."""
        if not self.allowed_origins:
            return []
        return [o.replace("{port}", str(self._origin_port())) for o in self.allowed_origins]

    def _origin_lines(self):
        """The merchant's allowed_origins / allow_missing_origin lines for pvgate.yaml."""
        lines = []
        if self.allowed_origins:
            lines.append("    allowed_origins:")
            lines += [f"      - {json.dumps(o)}" for o in self.origins()]
        if self.allow_missing_origin is not None:
            lines.append(f"    allow_missing_origin: {'true' if self.allow_missing_origin else 'false'}")
        return lines

    def _site_locations(self):
        """nginx locations serving site_root at / (index.html) and its files by name, ahead of
        the JSON 404 of `location /`; a comment when there is no site. A site with a
        package.json (the demo page's pinned ALTCHA widget) also gets SITE_VENDOR_FILES, each
        by an exact location of its own; StackError when one is missing (npm ci not run)."""
        if not self.site_root:
            return "# (no site: stack.py site_root= / --site)"
        root = Path(self.site_root).resolve()
        if not (root / "index.html").is_file():
            raise StackError(f"site_root {root}: no index.html")
        # The page's CSP: its own origin only, no inline script or style. The widget needs
        # nothing more: it sets styles through the CSSOM (element.style, which style-src does
        # not govern), fetches its challenge from /pvgate/ (connect-src 'self'), and its
        # worker, /vendor/altcha/workers/sha.js, is same-origin (worker-src falls back to
        # script-src 'self').
        headers = ("types { text/html html; text/javascript js; text/css css;\n"
                   "                    image/svg+xml svg; image/png png; }\n"
                   "            charset utf-8;\n"
                   "            charset_types text/css text/javascript;\n"
                   "            add_header Cache-Control no-cache always;\n"
                   "            add_header X-Content-Type-Options nosniff always;\n"
                   "            add_header Referrer-Policy same-origin always;\n"
                   "            add_header Content-Security-Policy \"default-src 'none'; "
                   "script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                   "form-action 'self'; base-uri 'none'; frame-ancestors 'none'\" always;")
        common = f"root {root};\n            {headers}"
        vendor = []
        if (root / "package.json").is_file():
            for url, rel in SITE_VENDOR_FILES.items():
                path = root / rel
                if not path.is_file():
                    raise StackError(f"site_root {root}: {rel} missing; install the page's "
                                     f"packages: npm ci --prefix {root}")
                vendor.append(f"        location = {url} {{\n"
                              f"            alias {path};\n"
                              f"            {headers}\n"
                              "        }")
        return ("# The demo page (stack.py site_root= / --site): its own files only.\n"
                "        location = / {\n"
                f"            {common}\n"
                "            try_files /index.html =404;\n"
                "        }\n"
                "        location ~ ^/[A-Za-z0-9_-]+\\.(html|js|css|svg|png)$ {\n"
                f"            {common}\n"
                "        }" +
                ("\n        # The ALTCHA widget from the site's npm package (SITE_VENDOR_FILES), "
                 "file by file.\n" + "\n".join(vendor) if vendor else ""))

    def _check_pvgate_config(self):
        r = subprocess.run([str(self.pvgate), "--check-config", "--config",
                            str(self.pvgate_config)], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise StackError(f"pvgate --check-config rejected {self.pvgate_config} "
                             f"(exit {r.returncode}):\n{r.stdout}{r.stderr}")

    def start_pvgate(self):
        """(Re)starts pvgate under spawn-fcgi on the stack's socket; waits for the socket (and
        with workers=N for spawn-fcgi to report every worker started)."""
        if self.workers is not None:
            return self._start_workers()
        if "pvgate" in self.procs and self.procs["pvgate"].poll() is None:
            raise StackError("pvgate is already running")
        if self.listen is not None:
            return self._start_listening_pvgate()
        self.socket_path.unlink(missing_ok=True)
        argv = ([find_tool("spawn-fcgi"), "-n", "-s", str(self.socket_path)]
                + socket_owner_args() + ["--"] + self._pvgate_argv())
        if self.supervisor is not None:
            at = argv.index("--") + 1
            argv[at:at] = [find_tool("multiwatch"), "-f", str(self.supervisor), "--"]
        argv = self.pvgate_wrapper + argv
        before = self._serving_lines()
        # spawn-fcgi -n creates the socket and execs pvgate in place: this pid is pvgate's.
        p = self._popen("pvgate", argv, "pvgate.log")
        self._wait("pvgate socket", self.socket_path.is_socket, p, self.pvgate_log)
        # The socket exists before pvgate runs (spawn-fcgi makes it): wait for pvgate's own
        # start-up line, after which it handles signals and serves.
        self._wait("pvgate start-up", lambda: self._serving_lines() > before, p, self.pvgate_log)

    def listen_target(self):
        """Where nginx finds pvgate: nginx's `server` value for the upstream."""
        if self.listen is None:
            return f"unix:{self.socket_path}"
        if self.listen.startswith(("/", ".")) or ":" not in self.listen:
            return f"unix:{Path(self.run_dir, self.listen)}"
        return self.listen

    def _start_listening_pvgate(self):
        """listen=...: pvgate itself opens the socket (--socket), without spawn-fcgi. The
        stack's child is pvgate; ready once it logged its start-up line."""
        argv = self.pvgate_wrapper + self._pvgate_argv() + ["--socket", self.listen]
        before = self._serving_lines()
        p = self._popen("pvgate", argv, "pvgate.log")
        self._wait("pvgate start-up", lambda: self._serving_lines() > before, p, self.pvgate_log)

    def _serving_lines(self):
        try:
            return self.pvgate_log.read_text(errors="replace").count(" serving with ")
        except FileNotFoundError:
            return 0

    def _pvgate_argv(self):
        argv = [str(self.pvgate), "--config", str(self.pvgate_config)]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        return argv + self.pvgate_args

    def _start_workers(self):
        """spawn-fcgi -F N: creates the socket, forks N pvgate processes on it (checking each
        is still alive 100 ms later), writes their pids to pvgate.pids and exits. Returns the
        pids."""
        running = self.worker_pids()
        if running:
            raise StackError(f"pvgate workers already running: {[p for p, _ in running]}")
        self.socket_path.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        # In fork mode spawn-fcgi points each child's stdout and stderr at /dev/null, so a
        # shell puts pvgate.log back before it execs pvgate (whose command line then is
        # pvgate's own, as find_pvgate_processes expects).
        redirect = f'exec "$0" "$@" >>{shlex.quote(str(self.pvgate_log))} 2>&1'
        argv = ([find_tool("spawn-fcgi"), "-F", str(self.workers), "-P", str(self.pid_file),
                 "-s", str(self.socket_path)] + socket_owner_args()
                + ["--", "/bin/sh", "-c", redirect] + self._pvgate_argv())
        p = self._popen("spawn-fcgi", argv, "pvgate.log")
        try:
            rc = p.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        del self.procs["spawn-fcgi"]
        if rc != 0:
            self.kill_workers()   # whichever did start
            raise StackError(f"spawn-fcgi -F {self.workers} failed (exit {rc})\n"
                             f"--- {self.pvgate_log} ---\n{tail(self.pvgate_log)}")
        try:
            spawned = [int(x) for x in self.pid_file.read_text().split()]
        except (OSError, ValueError) as e:
            raise StackError(f"spawn-fcgi left no usable pid file {self.pid_file}: {e}") \
                from None
        self._spawned.update(spawned)
        # Each child is `sh -c 'exec pvgate ...'` until its exec: wait for all of them to be
        # this stack's pvgate, failing at once if one is gone.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            live = self.worker_pids()
            missing = sorted(set(spawned) - {pid for pid, _ in live})
            dead = [pid for pid in missing if not pid_alive(pid)]
            if len(spawned) != self.workers or dead or \
                    (missing and time.monotonic() > deadline):
                self.kill_workers()
                for pid in missing:   # a child stuck before its exec (still sh)
                    argv = proc_cmdline(pid) or []
                    if str(self.pvgate_config) in argv and not dead:
                        signal_verified(pid, proc_starttime(pid), signal.SIGKILL)
                raise StackError(f"spawn-fcgi reported pids {spawned}; not running as this "
                                 f"stack's pvgate: {missing} (gone: {dead})\n"
                                 f"--- {self.pvgate_log} ---\n{tail(self.pvgate_log)}")
            if not missing:
                break
            time.sleep(POLL_S)
        self._wait("pvgate socket", self.socket_path.is_socket, None, self.pvgate_log)
        if self.procs:
            self._write_state()
        return [pid for pid, _ in live]

    def worker_pids(self):
        """[(pid, starttime)] of the live pvgate processes of this stack (any mode), by /proc."""
        found = find_pvgate_processes(self.pvgate_config)
        for pid, _ in found:
            self._reap_worker(pid)   # nothing to collect from a live one; keeps the table tidy
        return found

    def _reap_worker(self, pid):
        rc = reap(pid)
        if rc is not None:
            self.worker_exits[pid] = rc
        return rc

    def _wait_workers_gone(self, workers, timeout):
        """Polls until none of `workers` [(pid, starttime)] is alive (reaping those that are
        our children). True if they all went within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for pid, _ in workers:
                if pid not in self.worker_exits:
                    self._reap_worker(pid)
            if not any(pid_alive(pid, st) for pid, st in workers):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_S)

    def kill_workers(self, sig=signal.SIGKILL, timeout=STOP_TIMEOUT_S):
        """Sends `sig` (default SIGKILL) to every live pvgate process of this stack, each
        after re-checking its start time, and waits until they are all gone (escalating to
        SIGKILL after `timeout`). Returns the pids signalled. The socket file stays; nginx
        gets connection errors until start_pvgate() spawns new workers on the same path."""
        workers = self.worker_pids()
        for pid, st in workers:
            signal_verified(pid, st, sig)
        if not self._wait_workers_gone(workers, timeout):
            for pid, st in workers:
                signal_verified(pid, st, signal.SIGKILL)
            self._wait_workers_gone(workers, STOP_TIMEOUT_S)
            self.exit_codes["pvgate_killed"] = True
        if "pvgate" in self.procs:   # -n mode: the Popen is pvgate itself
            self.procs["pvgate"].wait()
        return [pid for pid, _ in workers]

    def worker_exit_codes(self, pids):
        """{pid: returncode} for those of `pids` this process reaped (a subreaper sees its
        re-parented workers' codes; others are missing)."""
        return {pid: self.worker_exits[pid] for pid in pids if pid in self.worker_exits}

    def reload_pvgate(self, **changes):
        """Rewrites pvgate.yaml with `changes` (see write_pvgate_config), sends SIGHUP to every
        pvgate process and waits until each has logged that it loaded the file. Raises
        StackError if one rejects it or the reloads do not all show up in time."""
        self.write_pvgate_config(**changes)
        marker = f"reload: configuration {self.pvgate_config} loaded"

        def count(text):
            return text.count(marker), text.count("reload rejected")

        before, rejected_before = count(self.pvgate_log.read_text(errors="replace"))
        workers = self.worker_pids()
        if not workers:
            raise StackError("reload: no pvgate process running")
        sent = sum(signal_verified(pid, st, signal.SIGHUP) for pid, st in workers)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while True:
            loaded, rejected = count(self.pvgate_log.read_text(errors="replace"))
            if rejected > rejected_before:
                raise StackError(f"reload rejected\n--- {self.pvgate_log} ---\n"
                                 f"{tail(self.pvgate_log)}")
            if loaded >= before + sent:
                return sent
            if time.monotonic() > deadline:
                raise StackError(f"reload: {loaded - before} of {sent} pvgate processes "
                                 f"logged the reload in {RELOAD_TIMEOUT_S:.0f}s\n"
                                 f"--- {self.pvgate_log} ---\n{tail(self.pvgate_log)}")
            time.sleep(POLL_S)

    def stop_pvgate(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Signals pvgate and waits for it to exit: its exit code, or None if it had to be
        killed after `timeout` seconds. With workers=N: 0 when every worker exited with 0
        (or exited at all where its code cannot be seen), the first other code, or None."""
        if self.workers is not None:
            workers = self.worker_pids()
            for pid, st in workers:
                signal_verified(pid, st, sig)
            if not self._wait_workers_gone(workers, timeout):
                self.kill_workers(signal.SIGKILL)
                return None
            codes = self.worker_exit_codes([pid for pid, _ in workers])
            bad = [c for c in codes.values() if c != 0]
            return bad[0] if bad else 0
        p = self.procs["pvgate"]
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return None
        return p.returncode

    def _nginx_conf(self):
        template = NGINX_TEMPLATE.read_text()
        if self.listen is not None:
            server_line = "server unix:@SOCKET@;"
            if server_line not in template:
                raise StackError(f"nginx/demo.conf.in: no `{server_line}` line for listen=")
            template = template.replace(server_line, f"server {self.listen_target()};")
        values = {
            "RUN_DIR": str(self.run_dir),
            "REPO_DIR": str(REPO_DIR),
            "PORT": str(self.port),
            "SOCKET": str(self.socket_path),
            "KEEPALIVE": str(self.nginx_keepalive),
            "WORKER_PROCESSES": str(self.nginx_workers),
            # Workers of a root master run as `nobody`, which cannot enter a private (0700)
            # run directory; as root they may stay root (loopback-only demo/test stack).
            "USER_LINE": f"user {NGINX_USER} {NGINX_GROUP};" if os.geteuid() == 0 else "",
            "EXTRA_LOCATIONS": self.extra_locations.replace("@SOCKET@", str(self.socket_path)),
            "REAL_IP": ("set_real_ip_from 127.0.0.1;\n        real_ip_header X-Forwarded-For;"
                        if self.real_ip else "# (none: the demo uses the peer address)"),
            "SITE": self._site_locations(),
            "SHOP": self._shop_location(),
        }
        for k, v in values.items():
            template = template.replace(f"@{k}@", v)
        if self.extra_http:
            head, sep, rest = template.partition("\nhttp {\n")
            if not sep:
                raise StackError("nginx/demo.conf.in: no `http {` line for extra_http")
            template = (head + sep + "    " +
                        self.extra_http.replace("@RUN_DIR@", str(self.run_dir)).strip() +
                        "\n\n" + rest)
        left = re.findall(r"@[A-Z_]+@", template)
        if left:
            raise StackError(f"nginx/demo.conf.in: unfilled placeholders {sorted(set(left))}")
        return template

    def _start_nginx(self):
        for d in ("body", "fastcgi", "proxy", "scgi", "uwsgi"):
            (self.run_dir / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
        params = self.run_dir / "fastcgi_params"
        if SYSTEM_FASTCGI_PARAMS.is_file():
            shutil.copyfile(SYSTEM_FASTCGI_PARAMS, params)
        else:
            params.write_text(FALLBACK_FASTCGI_PARAMS)
        nginx = find_tool("nginx")
        conf = self.run_dir / "nginx.conf"
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            self.port = self.requested_port or free_port()
            conf.write_text(self._nginx_conf())
            base = [nginx, "-p", str(self.run_dir), "-c", str(conf),
                    "-e", str(self.run_dir / "nginx-error.log")]
            r = subprocess.run(base + ["-t", "-q"], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise StackError(f"nginx -t rejected {conf}:\n{r.stdout}{r.stderr}")
            p = self._popen("nginx", base, "nginx-stderr.log")
            try:
                self._wait(f"nginx on 127.0.0.1:{self.port}", self._answers, p,
                           self.run_dir / "nginx-error.log")
                return
            except StackError as e:
                in_use = "Address already in use" in tail(self.run_dir / "nginx-error.log")
                if p.poll() is None:
                    p.kill()
                p.wait()
                del self.procs["nginx"]
                if not in_use or attempt == attempts - 1:
                    raise StackError(f"{e}\n--- pvgate.log ---\n{tail(self.pvgate_log)}") \
                        from None

    def _answers(self):
        """True once nginx answers on the port and pvgate answers through it: pvgate's own
        reply to a GET of a pvgate route (405) proves the whole chain; nginx's JSON 502 (pvgate
        not accepting yet) or a refused connection means not yet."""
        try:
            status, headers, body = self.request("GET", "/pvgate/send-token", timeout=5)
        except OSError:
            return False
        return status != 502

    def stop(self):
        """Stops nginx, then pvgate (SIGTERM: it finishes requests in flight; with workers=N
        every worker found in /proc), then the mock; each is waited for, and killed if it
        outlives STOP_TIMEOUT_S. Records exit codes."""
        for name in ("nginx", "pvgate", "spawn-fcgi", "mock", "siteverify", "shop"):
            if name == "pvgate" and self.workers is not None:
                self._stop_all_workers()
            p = self.procs.get(name)
            if p is None:
                continue
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                try:
                    p.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    self.exit_codes[name + "_killed"] = True
            self.exit_codes[name] = p.returncode
            if name == "pvgate" and self.workers is None:
                # A supervisor's children (multiwatch) that outlived it: stop them too, so no
                # pvgate of this stack is ever left running.
                strays = self.worker_pids()
                for pid, st in strays:
                    signal_verified(pid, st, signal.SIGTERM)
                if strays and not self._wait_workers_gone(strays, STOP_TIMEOUT_S):
                    for pid, st in strays:
                        signal_verified(pid, st, signal.SIGKILL)
                    self._wait_workers_gone(strays, STOP_TIMEOUT_S)
        # nginx workers die with their master; reap any straggler of nginx's process group.
        for pid in self._spawned - set(self.worker_exits):   # one that died on its own
            self._reap_worker(pid)
        if "nginx" in self.procs:
            try:
                os.killpg(self.procs["nginx"].pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        if self._owns_redis and self.redis.proc is not None:
            self.exit_codes["redis"] = self.redis.stop()
        try:
            (self.run_dir / "stack.json").unlink(missing_ok=True)
        except OSError:
            pass
        return self.exit_codes

    def _stop_all_workers(self):
        """workers=N: SIGTERM every worker (they finish requests in flight), SIGKILL after
        STOP_TIMEOUT_S; records exit_codes["pvgate"] as stop_pvgate() returns it."""
        if self.worker_pids():
            self.exit_codes["pvgate"] = self.stop_pvgate(signal.SIGTERM, STOP_TIMEOUT_S)
            if self.exit_codes["pvgate"] is None:
                self.exit_codes["pvgate_killed"] = True

    def _write_state(self):
        state = {
            "port": self.port,
            "url": self.url("/pvgate/"),
            "mock_port": self.mock_port,
            "siteverify_port": self.siteverify_port,
            "shop_port": self.shop_port,
            "merchant": self.merchant,
            "config": str(self.pvgate_config),
            "pids": {n: {"pid": p.pid, "starttime": proc_starttime(p.pid)}
                     for n, p in self.procs.items()},
            "workers": [{"pid": pid, "starttime": st} for pid, st in
                        (self.worker_pids() if self.workers is not None else [])],
        }
        (self.run_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")

    # -- clients -----------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One HTTP/1.1 request to nginx on a fresh connection: (status, headers, body).
        headers is a list of (name, value) as received."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            c.close()

    def mock_ssl_context(self):
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        return ctx

    def _mock(self, method, path, port=None):
        c = http.client.HTTPSConnection("127.0.0.1", port or self.mock_port, timeout=10,
                                        context=self.mock_ssl_context())
        try:
            c.request(method, path, body=b"" if method == "POST" else None)
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise StackError(f"mock {path}: HTTP {r.status}")
            return json.loads(data)
        finally:
            c.close()

    def mock_stats(self):
        return self._mock("GET", "/__stats")

    def mock_reset(self):
        return self._mock("POST", "/__reset")

    def siteverify_stats(self):
        """The mock providers' /__stats (tests/mock/README.md)."""
        self.siteverify_url("turnstile")   # raises without the mock
        return self._mock("GET", "/__stats", self.siteverify_port)

    def siteverify_reset(self):
        self.siteverify_url("turnstile")
        return self._mock("POST", "/__reset", self.siteverify_port)


# -- CLI (the demo's start/stop) --------------------------------------------------------------


def _cli_workers(state):
    """[(pid, starttime)] of the stack's live pvgate workers: those stack.json recorded, plus any
    pvgate in /proc running this run directory's config (workers restarted since)."""
    found = {(w["pid"], w.get("starttime")) for w in state.get("workers", [])
             if pid_alive(w["pid"], w.get("starttime"))}
    if state.get("config"):
        found.update(find_pvgate_processes(state["config"]))
    return sorted(found)


def _cli_stop_group(name, procs, sig):
    """Signals every (pid, starttime) in procs (start time re-checked), waits for all, kills
    stragglers after STOP_TIMEOUT_S. 0, or 1 if one had to be killed."""
    procs = [(pid, st) for pid, st in procs if signal_verified(pid, st, sig)]
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(pid_alive(pid, st) for pid, st in procs) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    rc = 0
    for pid, st in procs:
        if pid_alive(pid, st):
            print(f"stack.py: {name} (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f}s; killing")
            signal_verified(pid, st, signal.SIGKILL)
            rc = 1
        print(f"stack.py: stopped {name} (pid {pid})")
    return rc


def cli_stop(run_dir):
    state_file = Path(run_dir) / "stack.json"
    if not state_file.exists():
        print(f"stack.py: no stack running in {run_dir}")
        return 0
    state = json.loads(state_file.read_text())
    pids = state.get("pids", {})
    rc = 0
    for name in ("nginx", "pvgate", "mock", "siteverify", "shop"):
        info = pids.get(name)
        if name == "pvgate":
            group = _cli_workers(state)
        elif info and pid_alive(info["pid"], info.get("starttime")):
            group = [(info["pid"], info.get("starttime"))]
        else:
            group = []
        rc |= _cli_stop_group(name, group, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
    state_file.unlink(missing_ok=True)
    return rc


def cli_status(run_dir):
    state_file = Path(run_dir) / "stack.json"
    if not state_file.exists():
        print(f"no stack in {run_dir}")
        return 1
    state = json.loads(state_file.read_text())
    ok = True
    for name, info in state.get("pids", {}).items():
        alive = pid_alive(info["pid"], info.get("starttime"))
        ok = ok and alive
        print(f"{name:7} pid {info['pid']:>7} {'running' if alive else 'NOT running'}")
    for w in state.get("workers", []):
        alive = pid_alive(w["pid"], w.get("starttime"))
        ok = ok and alive
        print(f"{'worker':7} pid {w['pid']:>7} {'running' if alive else 'NOT running'}")
    print(f"url     {state['url']}")
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a stack in --dir (stays up after this exits)")
    s.add_argument("--dir", required=True, help="run directory (created if missing)")
    s.add_argument("--port", type=int, default=None, help="nginx port (default: a free one)")
    s.add_argument("--pvgate", default=str(DEFAULT_PVGATE), help="pvgate binary")
    s.add_argument("--threads", type=int, default=None, help="pvgate --threads")
    s.add_argument("--timeout-ms", type=int, default=10000, help="upstream timeout_ms")
    s.add_argument("--merchant", default="shop-a", help="merchant name (pvgate.conf uses shop-a)")
    s.add_argument("--workers", type=int, default=None,
                   help="pvgate processes (spawn-fcgi -F N; default one, spawn-fcgi -n)")
    s.add_argument("--throttle", choices=("none", "default"), default="none",
                   help="default: conf/pvgate.yaml's throttle: section, store in --dir")
    s.add_argument("--fresh-store", action="store_true",
                   help="start with an empty throttle store (removes --dir/throttle)")
    s.add_argument("--json", action="store_true", help="print stack.json instead of a summary")
    s.add_argument("--site", default=None,
                   help="serve this directory's static files at / (the demo page: "
                        "nginx/demo-site)")
    s.add_argument("--allow-origin", action="append", default=None, metavar="ORIGIN",
                   help="the merchant's allowed_origins (repeatable; {port} is nginx's port); "
                        "'demo' stands for http://127.0.0.1:{port} and http://localhost:{port}")
    s.add_argument("--verification", action="store_true",
                   help="a verification: section (signed tokens; key made in --dir)")
    s.add_argument("--shop", action="store_true",
                   help="the demo shop's backend at /shop/ (scripts/demo_shop.py; needs "
                        "--verification)")
    s.add_argument("--allow-missing-origin", action="store_true",
                   help="the merchant's allow_missing_origin: true (curl without Origin works)")
    s.add_argument("--challenge", choices=("altcha",), default=None,
                   help="the merchant's challenge before any SMS (key made in --dir/altcha.key; "
                        "needs --throttle)")
    s.add_argument("--challenge-difficulty", type=int, default=ALTCHA_DEFAULT_DIFFICULTY,
                   metavar="N", help="the ALTCHA challenge's difficulty (default: pvgate's, "
                                     f"{ALTCHA_DEFAULT_DIFFICULTY})")
    for name in ("stop", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
    a = ap.parse_args(argv)

    if a.cmd == "stop":
        return cli_stop(a.dir)
    if a.cmd == "status":
        return cli_status(a.dir)

    state_file = Path(a.dir) / "stack.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if any(pid_alive(i["pid"], i.get("starttime")) for i in state.get("pids", {}).values()) \
                or _cli_workers(state):
            print(f"stack.py: a stack is already running in {a.dir} ({state['url']}); "
                  f"stop it first: python3 {sys.argv[0]} stop --dir {a.dir}", file=sys.stderr)
            return 1
    if a.port is not None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                t.bind(("127.0.0.1", a.port))
        except OSError as e:
            print(f"stack.py: port {a.port} on 127.0.0.1 is not free ({e.strerror}); "
                  "choose another with --port", file=sys.stderr)
            return 1
    st = Stack(a.dir, pvgate=a.pvgate, port=a.port, threads=a.threads, timeout_ms=a.timeout_ms,
               merchant=a.merchant, workers=a.workers,
               throttle=None if a.throttle == "none" else a.throttle,
               verification=a.verification, shop=a.shop, challenge=a.challenge,
               challenge_difficulty=a.challenge_difficulty)
    st.site_root = a.site
    if a.allow_origin:
        st.allowed_origins = [o for x in a.allow_origin
                              for o in (DEMO_ORIGINS if x == "demo" else (x,))]
    st.allow_missing_origin = True if a.allow_missing_origin else None
    if a.fresh_store and st.throttle_path.exists():
        shutil.rmtree(st.throttle_path)
    try:
        st.start()
    except StackError as e:
        print(f"stack.py: start failed: {e}", file=sys.stderr)
        return 1
    # The processes live on in their own sessions; forget them here without stopping them.
    for f in st._logs:
        f.close()
    if a.json:
        print((st.run_dir / "stack.json").read_text(), end="")
    else:
        print(f"stack up in {st.run_dir}")
        print(f"  nginx   {st.url('/pvgate/')}  (pid {st.procs['nginx'].pid})")
        pids = [pid for pid, _ in st.worker_pids()]
        print(f"  pvgate  {st.socket_path}  (pid{'s' if len(pids) > 1 else ''} "
              f"{', '.join(map(str, pids))}, log {st.pvgate_log})")
        if st.throttle is not None:
            print(f"  throttle store {st.throttle_path} (rules: {st.pvgate_config})")
        print(f"  mock    https://127.0.0.1:{st.mock_port}/phone-verify  "
              f"(pid {st.procs['mock'].pid}, log {st.run_dir / 'mock.log'})")
        if st.site_root:
            print(f"  page    {st.url('/')}  (from {Path(st.site_root).resolve()})")
        if st.shop:
            print(f"  shop    {st.url('/shop/')}  (127.0.0.1:{st.shop_port}, pid "
                  f"{st.procs['shop'].pid}, log {st.run_dir / 'shop.log'}; keys "
                  f"{st.url('/pvgate/jwks.json')})")
        if st.challenge:
            print(f"  challenge {st.challenge} (difficulty {st.challenge_difficulty}, key "
                  f"{st.altcha_key()}): GET {st.url('/pvgate/challenge')}")
        if st.allowed_origins:
            print(f"  origins {', '.join(st.origins())}"
                  f"{' (and none: curl)' if st.allow_missing_origin else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
