#!/usr/bin/env python3
"""Browser end-to-end test of the demo page: starts a private stack (scripts/stack.py) serving
nginx/demo-site at / with the shipped throttle rules, verification tokens, the demo shop's
backend at /shop/ (scripts/demo_shop.py) and the merchant's ALTCHA challenge at pvgate's default
difficulty, runs tests/e2e/demo.e2e.mjs against it in Debian's headless Chromium, and stops the
stack.

    python3 tests/e2e/run_e2e.py [--pvgate build/pvgate] [--keep]

Needs node, /usr/bin/chromium and tests/e2e/node_modules (scripts/install-deps installs them:
`apt-get install chromium`, `npm ci --prefix tests/e2e`). The page's own package, the ALTCHA
widget pinned by nginx/demo-site/package-lock.json, is installed here (`npm ci` there, which needs
the npm registry once) when node_modules does not hold the locked version. Screenshots, and the
widget's solve time (widget-solve.txt), go to $PVGATE_E2E_ARTIFACTS (default build/e2e-artifacts);
on a failure the stack's logs are copied there too. Loopback only. The last line printed is
`N passed, M failed`; exit 0 when none failed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import stack  # noqa: E402

NODE_TIMEOUT_S = 300
NPM_TIMEOUT_S = 300
# The demo page's npm package (nginx/demo-site/package.json): the ALTCHA widget.
SITE_PACKAGE = "altcha"
SUMMARY = re.compile(r"^\d+ passed, \d+ failed(, \d+ skipped)?$")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def missing_tools():
    problems = []
    if not shutil.which("node"):
        problems.append("node not found")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        problems.append(f"{CHROMIUM} not found (apt-get install chromium)")
    if not (HERE / "node_modules" / "playwright-core" / "package.json").is_file():
        problems.append(f"{HERE}/node_modules/playwright-core missing "
                        f"(npm ci --prefix {HERE.relative_to(REPO)})")
    return problems


def site_package_as_locked(site):
    """Whether site/node_modules holds the version of SITE_PACKAGE its package-lock.json names."""
    try:
        lock = json.loads((site / "package-lock.json").read_text())
        want = lock["packages"][f"node_modules/{SITE_PACKAGE}"]["version"]
        have = json.loads((site / "node_modules" / SITE_PACKAGE / "package.json").read_text())
        return have.get("version") == want
    except (OSError, KeyError, ValueError):
        return False


def install_site_package(site):
    """`npm ci` in the demo page's folder unless it already holds the locked widget. A problem
    as text, or None."""
    if site_package_as_locked(site):
        return None
    if not shutil.which("npm"):
        return "npm not found: cannot install the demo page's ALTCHA widget"
    print(f"run_e2e: npm ci --prefix {site.relative_to(REPO)} (the widget is missing or not "
          "at the locked version)", flush=True)
    try:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=site, check=True,
                       stdin=subprocess.DEVNULL, timeout=NPM_TIMEOUT_S)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return f"npm ci in {site} failed: {e}"
    return None if site_package_as_locked(site) else f"npm ci did not install {SITE_PACKAGE}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pvgate", default=str(stack.DEFAULT_PVGATE), help="pvgate binary")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    a = ap.parse_args(argv)

    artifacts = Path(os.environ.get("PVGATE_E2E_ARTIFACTS", REPO / "build" / "e2e-artifacts"))
    artifacts = artifacts.resolve()
    artifacts.mkdir(parents=True, exist_ok=True)

    problems = missing_tools()
    if not problems:
        problem = install_site_package(stack.DEMO_SITE)
        problems = [problem] if problem else []
    if problems:
        for p in problems:
            print(f"run_e2e: {p}; run scripts/install-deps", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1

    run_dir = Path(tempfile.mkdtemp(prefix="pvgate-e2e-"))
    st = stack.Stack(run_dir, pvgate=a.pvgate, throttle="default",
                     site_root=stack.DEMO_SITE, allowed_origins=list(stack.DEMO_ORIGINS),
                     allow_missing_origin=False, verification=True, shop=True,
                     challenge="altcha")
    rc = 1
    summary = "0 passed, 1 failed"   # printed last, after the stack is stopped
    try:
        try:
            st.start()
        except stack.StackError as e:
            print(f"run_e2e: stack start failed: {e}", file=sys.stderr)
            return 1
        url = st.url("/")
        print(f"run_e2e: stack up at {url} (run dir {run_dir})", flush=True)
        env = dict(os.environ, PVGATE_E2E_ARTIFACTS=str(artifacts), CHROMIUM=CHROMIUM,
                   PVGATE_E2E_DIFFICULTY=str(st.challenge_difficulty))
        # node's output goes straight through but for its `N passed, M failed` line, which this
        # script prints last.
        node = subprocess.Popen(["node", str(HERE / "demo.e2e.mjs"), url], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        try:
            for line in node.stdout:
                if SUMMARY.match(line.strip()):
                    summary = line.strip()
                else:
                    print(line, end="", flush=True)
            rc = node.wait(timeout=NODE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"run_e2e: node did not finish in {NODE_TIMEOUT_S}s", file=sys.stderr)
            node.kill()
            node.wait()
            rc = 1
        if rc != 0 and summary.endswith(" 0 failed"):
            summary = "0 passed, 1 failed"   # node failed without a failing step (crash)
    finally:
        st.stop()
        if rc != 0:
            for log in ("pvgate.log", "mock.log", "shop.log", "nginx-error.log",
                        "nginx-access.log", "nginx.conf"):
                if (run_dir / log).is_file():
                    shutil.copyfile(run_dir / log, artifacts / log)
            print(f"run_e2e: stack logs copied to {artifacts}", file=sys.stderr)
        if a.keep or rc != 0:
            print(f"run_e2e: run directory kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        sys.stderr.flush()
        print(summary, flush=True)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
