#!/usr/bin/env python3
"""A private pvgate stack on loopback: mock Pipwave (HTTPS) + pvgate under spawn-fcgi + nginx.

Used by scripts/demo and by every tests/integration/test_*.py. Python 3 standard library only.

    python3 scripts/stack.py start --dir /tmp/pvgate-demo [--port 8080]
    python3 scripts/stack.py status --dir /tmp/pvgate-demo
    python3 scripts/stack.py stop --dir /tmp/pvgate-demo

As a module:

    with Stack(run_dir, pvgate="/abs/build/pvgate", threads=2) as s:
        status, headers, body = s.request("POST", "/pvgate/send-token", b"...", {...})
        s.mock_stats()["requests"]

Everything lives in the run directory:
    certs/              test PKI from tests/mock/make_certs.sh (kept across restarts)
    mock.port mock.log  the mock upstream
    pvgate.yaml         pvgate's config (0600: it holds the merchant secret)
    pvgate.sock         pvgate's FastCGI socket (spawn-fcgi creates it)
    pvgate.log          pvgate's stderr
    nginx.conf          from nginx/demo.conf.in; fastcgi_params beside it
    nginx-*.log nginx.pid nginx-tmp/
    stack.json          pids of what `start` launched, read by `stop`

Readiness is always a condition (port file written, socket present, HTTP answer), polled with a
bounded deadline; a process that dies while being waited for fails the start at once, with the
tail of its log.
"""

import argparse
import http.client
import json
import re
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PVGATE = REPO_DIR / "build" / "pvgate"
MOCK = REPO_DIR / "tests" / "mock" / "mock_pipwave.py"
MAKE_CERTS = REPO_DIR / "tests" / "mock" / "make_certs.sh"
NGINX_TEMPLATE = REPO_DIR / "nginx" / "demo.conf.in"
SYSTEM_FASTCGI_PARAMS = Path("/etc/nginx/fastcgi_params")

START_TIMEOUT_S = 20.0   # per component
STOP_TIMEOUT_S = 15.0    # per process, after which it is killed
POLL_S = 0.02
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


class StackError(RuntimeError):
    pass


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
    (pvgate's ca_file; default certs/ca.pem), upstream_host (default 127.0.0.1),
    nginx_keepalive, nginx_workers, pvgate_args (more pvgate options)."""

    def __init__(self, run_dir, pvgate=None, port=None, threads=None, timeout_ms=10000,
                 connect_timeout_ms=3000, merchant="shop-a", api_key=None, api_secret=None,
                 secret_in_file=False, extra_pvgate_config="", extra_locations="",
                 mock_args=(), mock_cert="server", ca_file=None, upstream_host="127.0.0.1",
                 nginx_keepalive=8, nginx_workers=1, pvgate_args=()):
        self.run_dir = Path(run_dir).resolve()
        self.pvgate = Path(pvgate or DEFAULT_PVGATE).resolve()
        self.requested_port = port
        self.port = None
        self.threads = threads
        self.timeout_ms = timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
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
        self.procs = {}          # name -> Popen, in start order
        self.exit_codes = {}     # name -> returncode after stop()
        self.mock_port = None
        self._logs = []

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
        try:
            self._make_certs()
            self._start_mock()
            self._write_pvgate_config()
            self._check_pvgate_config()
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

        def port():
            try:
                text = port_file.read_text().strip()
            except FileNotFoundError:
                return None
            return int(text) if text.isdigit() else None

        self.mock_port = self._wait("mock upstream", port, p, self.run_dir / "mock.log")

    def _write_pvgate_config(self):
        ca = self.ca_file or (self.certs / "ca.pem")
        lines = [
            "# Written by scripts/stack.py for a private demo/test stack.",
            "upstream:",
            f"  url: https://{self.upstream_host}:{self.mock_port}/phone-verify",
            f"  ca_file: {ca}",
            f"  connect_timeout_ms: {self.connect_timeout_ms}",
            f"  timeout_ms: {self.timeout_ms}",
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
        text = "\n".join(lines) + "\n"
        if self.extra_pvgate_config:
            text += self.extra_pvgate_config.rstrip("\n") + "\n"
        self.pvgate_config.unlink(missing_ok=True)
        fd = os.open(self.pvgate_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def _check_pvgate_config(self):
        r = subprocess.run([str(self.pvgate), "--check-config", "--config",
                            str(self.pvgate_config)], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise StackError(f"pvgate --check-config rejected {self.pvgate_config} "
                             f"(exit {r.returncode}):\n{r.stdout}{r.stderr}")

    def start_pvgate(self):
        """(Re)starts pvgate under spawn-fcgi on the stack's socket; waits for the socket."""
        if "pvgate" in self.procs and self.procs["pvgate"].poll() is None:
            raise StackError("pvgate is already running")
        self.socket_path.unlink(missing_ok=True)
        argv = [find_tool("spawn-fcgi"), "-n", "-s", str(self.socket_path), "-M", "0666", "--",
                str(self.pvgate), "--config", str(self.pvgate_config)]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        argv += self.pvgate_args
        # spawn-fcgi -n creates the socket and execs pvgate in place: this pid is pvgate's.
        p = self._popen("pvgate", argv, "pvgate.log")
        self._wait("pvgate socket", self.socket_path.is_socket, p, self.pvgate_log)

    def stop_pvgate(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Signals pvgate and waits for it to exit: its exit code, or None if it had to be
        killed after `timeout` seconds."""
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
        values = {
            "RUN_DIR": str(self.run_dir),
            "REPO_DIR": str(REPO_DIR),
            "PORT": str(self.port),
            "SOCKET": str(self.socket_path),
            "KEEPALIVE": str(self.nginx_keepalive),
            "WORKER_PROCESSES": str(self.nginx_workers),
            # Workers of a root master run as `nobody`, which cannot enter a private (0700)
            # run directory; as root they may stay root (loopback-only demo/test stack).
            "USER_LINE": "user root;" if os.geteuid() == 0 else "",
            "EXTRA_LOCATIONS": self.extra_locations.replace("@SOCKET@", str(self.socket_path)),
        }
        for k, v in values.items():
            template = template.replace(f"@{k}@", v)
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
        """Stops nginx, then pvgate (SIGTERM: it finishes requests in flight), then the mock;
        each is waited for, and killed if it outlives STOP_TIMEOUT_S. Records exit codes."""
        order = [n for n in ("nginx", "pvgate", "mock") if n in self.procs]
        for name in order:
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                try:
                    p.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                    self.exit_codes[name + "_killed"] = True
            self.exit_codes[name] = p.returncode
        # nginx workers die with their master; reap any straggler of nginx's process group.
        if "nginx" in self.procs:
            try:
                os.killpg(self.procs["nginx"].pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()
        try:
            (self.run_dir / "stack.json").unlink(missing_ok=True)
        except OSError:
            pass
        return self.exit_codes

    def _write_state(self):
        state = {
            "port": self.port,
            "url": self.url("/pvgate/"),
            "mock_port": self.mock_port,
            "merchant": self.merchant,
            "pids": {n: {"pid": p.pid, "starttime": proc_starttime(p.pid)}
                     for n, p in self.procs.items()},
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

    def _mock(self, method, path):
        c = http.client.HTTPSConnection("127.0.0.1", self.mock_port, timeout=10,
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


# -- CLI (the demo's start/stop) --------------------------------------------------------------


def cli_stop(run_dir):
    state_file = Path(run_dir) / "stack.json"
    if not state_file.exists():
        print(f"stack.py: no stack running in {run_dir}")
        return 0
    state = json.loads(state_file.read_text())
    pids = state.get("pids", {})
    rc = 0
    for name in ("nginx", "pvgate", "mock"):
        info = pids.get(name)
        if not info:
            continue
        pid, st = info["pid"], info.get("starttime")
        if not pid_alive(pid, st):
            continue
        os.kill(pid, signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while pid_alive(pid, st) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if pid_alive(pid, st):
            print(f"stack.py: {name} (pid {pid}) did not stop in {STOP_TIMEOUT_S:.0f}s; killing")
            os.kill(pid, signal.SIGKILL)
            rc = 1
        print(f"stack.py: stopped {name} (pid {pid})")
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
    s.add_argument("--json", action="store_true", help="print stack.json instead of a summary")
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
        if any(pid_alive(i["pid"], i.get("starttime")) for i in state.get("pids", {}).values()):
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
               merchant=a.merchant)
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
        print(f"  pvgate  {st.socket_path}  (pid {st.procs['pvgate'].pid}, "
              f"log {st.pvgate_log})")
        print(f"  mock    https://127.0.0.1:{st.mock_port}/phone-verify  "
              f"(pid {st.procs['mock'].pid}, log {st.run_dir / 'mock.log'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
