#!/usr/bin/env python3
"""Interoperability of pvgate's ALTCHA module (src/altcha.h) with the reference server library
altcha-lib, pinned by this folder's package-lock.json: runs test_altcha_lib.mjs with node.

    python3 tests/interop/altcha/run_altcha_lib.py --tool build/tests/pvgate_altcha_tool

Installs the locked packages first (`npm ci` in this folder) when node_modules does not hold the
locked altcha-lib version; that needs the npm registry once. The last line printed is
`N passed, M failed`; exit 0 when none failed.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "altcha-lib"
NPM_TIMEOUT_S = 300
NODE_TIMEOUT_S = 300


def installed_as_locked():
    """Whether node_modules holds the version of altcha-lib package-lock.json names."""
    try:
        lock = json.loads((HERE / "package-lock.json").read_text())
        want = lock["packages"][f"node_modules/{PACKAGE}"]["version"]
        have = json.loads((HERE / "node_modules" / PACKAGE / "package.json").read_text())
        return have.get("version") == want
    except (OSError, KeyError, ValueError):
        return False


def fail(why):
    print(f"run_altcha_lib: {why}", file=sys.stderr)
    print("0 passed, 1 failed")
    return 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", required=True, help="the pvgate_altcha_tool binary")
    a = ap.parse_args(argv)

    for program in ("node", "npm"):
        if not shutil.which(program):
            return fail(f"{program} not found")
    if not installed_as_locked():
        print("run_altcha_lib: npm ci (node_modules missing or not at the locked version)",
              flush=True)
        try:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True,
                           timeout=NPM_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            return fail(f"npm ci failed: {e}")
        if not installed_as_locked():
            return fail(f"npm ci did not install the locked {PACKAGE}")
    try:
        done = subprocess.run(["node", str(HERE / "test_altcha_lib.mjs"), "--tool",
                               str(Path(a.tool).resolve())], cwd=HERE, timeout=NODE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return fail(f"node did not finish in {NODE_TIMEOUT_S} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
