"""A fast stand-in for Pipwave for benchmarks: nginx with the echo module on HTTPS.

tests/mock/mock_pipwave.py checks every signature but tops out near 2,500 requests/s, below
the 5,120 requests/s a 256-connection, 50 ms upstream allows. This one answers every POST to
/phone-verify with Pipwave's 200 after `delay` seconds (echo_sleep: a timer, no thread held),
keeps connections alive for ever (keepalive_requests 1,000,000, keepalive_timeout 300 s, so
pvgate's reuse is what is measured), and checks nothing: it is for load, not correctness.

    with FastMock(run_dir, cert, key, delay=0.05) as m:
        m.url  # https://127.0.0.1:PORT/phone-verify

http2=True offers h2 through ALPN as well as HTTP/1.1 (nginx 1.22: `listen ... ssl http2`;
http2_max_concurrent_streams 128, nginx's default, like a typical server). access_log=True
writes one line per request to access.log (`access_lines()`): the TCP connection's serial
number ($connection) and the protocol ($server_protocol, "HTTP/2.0" or "HTTP/1.1"), a witness
of how many connections a client used and in which protocol, independent of the client's own
counting. Off by default: the benchmark measures the mock without it.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
ANSWER = '{"status":200,"message":"Token sent.","reference":1001}'
START_TIMEOUT_S = 10.0


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FastMock:
    def __init__(self, run_dir, cert, key, delay=0.05, workers=1, http2=False,
                 access_log=False):
        self.run_dir = Path(run_dir).resolve()
        self.cert, self.key = Path(cert), Path(key)
        self.delay = delay
        self.workers = workers
        self.http2 = http2
        self.access_log = access_log
        self.port = None
        self.proc = None

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/phone-verify"

    @property
    def access_log_path(self):
        return self.run_dir / "access.log"

    def access_lines(self):
        """[(connection serial, protocol, status)] of every request logged so far
        (access_log=True)."""
        try:
            text = self.access_log_path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((int(parts[0]), parts[1], int(parts[2])))
        return out

    def _conf(self):
        user = "user root;" if os.geteuid() == 0 else ""
        d = self.run_dir
        log = (f"log_format conns '$connection $server_protocol $status';\n"
               f"    access_log {self.access_log_path} conns;" if self.access_log
               else "access_log off;")
        http2 = " http2" if self.http2 else ""
        return f"""\
load_module {ECHO_MODULE};
{user}
worker_processes {self.workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {log}
    client_body_temp_path {d}/tmp;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{self.port} ssl{http2};
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        location = /phone-verify {{
            default_type application/json;
            echo_read_request_body;
            echo_sleep {self.delay};
            echo '{ANSWER}';
        }}
    }}
}}
"""

    def start(self):
        if not ECHO_MODULE.is_file():
            raise RuntimeError(f"{ECHO_MODULE} missing: apt-get install libnginx-mod-http-echo")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "nginx.conf"
        for _ in range(3):
            self.port = free_port()
            conf.write_text(self._conf())
            base = [nginx, "-p", str(self.run_dir), "-c", str(conf),
                    "-e", str(self.run_dir / "error.log")]
            r = subprocess.run(base + ["-t", "-q"], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"fast mock: nginx -t: {r.stdout}{r.stderr}")
            self.proc = subprocess.Popen(base, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=open(self.run_dir / "stderr.log", "ab"),
                                         start_new_session=True)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._listening():
                    return self
                time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"fast mock did not start: {(self.run_dir / 'error.log').read_text()}")

    def _listening(self):
        import socket
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def worker_pids(self):
        from .proc import children
        return children(self.proc.pid) if self.proc else []

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()   # nginx: fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
