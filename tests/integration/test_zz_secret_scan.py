#!/usr/bin/env python3
"""Suite-wide secret scan: runs after every other integration test (named to sort last).

Every test run through itest.run() leaves RECORD/<test>/ (see itest.py): responses.txt (status
line, headers and body of every response a case got), the stack's pvgate.log and nginx logs,
credentials.json (the api_key/api_secret of every merchant it configured, and any token signing
key material a test registered as signing_key) and signatures.txt
(every `signature` its mocks received). This scan searches every recorded response and log of
every test for every api_secret, api_key and signature of any test, and fails listing file:line
for each hit. RECORD is env PVGATE_IT_RECORD_DIR, else `it-record` beside the pvgate binary.

It needs no stack of its own. It fails when nothing was recorded (run the suite first), so that
a scan of nothing never passes.
"""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itest  # noqa: E402

NOT_SCANNED = {"credentials.json", "signatures.txt"}   # the needles themselves
HEX_RUN = re.compile(rb"[0-9a-fA-F]{40,}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pvgate", default=str(itest.REPO_DIR / "build" / "pvgate"),
                    help="the pvgate binary whose build tree holds the records")
    ap.add_argument("--keep", action="store_true", help="(accepted for ctest symmetry)")
    a = ap.parse_args()
    base = itest.record_dir_for(a.pvgate)
    me = Path(sys.argv[0]).stem
    passed = failed = 0

    def report(ok, name, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)
        else:
            failed += 1
            print(f"FAIL {name}: {detail}", flush=True)

    dirs = sorted(d for d in base.glob("*") if d.is_dir() and d.name != me) \
        if base.is_dir() else []
    report(bool(dirs), "records present",
           f"{len(dirs)} test(s) in {base}" if dirs else
           f"nothing recorded in {base}: run the integration suite first")

    # Needles from every test: a credential of one test must not show up in any other either.
    strings = {}      # bytes -> label
    signatures = set()
    for d in dirs:
        cred = d / "credentials.json"
        if not cred.is_file():
            report(False, f"{d.name}: credentials recorded",
                   f"{cred} missing (did the test run to its end?)")
            continue
        for i, c in enumerate(json.loads(cred.read_text())):
            # signing_key: material of a verification token signing key (test_verification
            # registers its stacks' keys: PEM lines, the private scalar).
            for kind in ("api_key", "api_secret", "signing_key"):
                v = c.get(kind)
                if v:
                    strings[v.encode()] = f"{kind} of {d.name}"
        sig = d / "signatures.txt"
        if sig.is_file():
            signatures.update(l.strip().lower().encode()
                              for l in sig.read_text(errors="replace").splitlines()
                              if len(l.strip()) == 40)

    for d in dirs:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.name not in NOT_SCANNED)
        hits = []
        nbytes = 0
        for f in files:
            data = f.read_bytes()
            nbytes += len(data)
            for lineno, line in enumerate(data.split(b"\n"), 1):
                for needle, label in strings.items():
                    if needle in line:
                        hits.append(f"{f}:{lineno}: {label}: {line[:160]!r}")
                for run in HEX_RUN.findall(line):
                    low = run.lower()
                    if any(low[i:i + 40] in signatures for i in range(len(low) - 39)):
                        hits.append(f"{f}:{lineno}: a signature the mock received: "
                                    f"{line[:160]!r}")
        report(not hits, f"{d.name}: no api_secret, api_key, signing key or signature in "
               f"{len(files)} recorded files",
               f"{nbytes} bytes, {len(strings)} credentials, {len(signatures)} signatures"
               if not hits else f"{len(hits)} hit(s):\n      " + "\n      ".join(hits[:50]))

    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
