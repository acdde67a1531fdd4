"""An ALTCHA solver for the benchmarks: turns a challenge from GET .../challenge into the
`altcha` field a send-token carries, as the widget fills it (protocol v2, deterministic
SHA-256: the counter whose SHA-256(salt || nonce || counter, 4 bytes big-endian) starts with
keyPrefix). The same search as tests/integration/test_challenge.py's, kept here so the bench
scripts need nothing from the tests. At pvgate's default difficulty (50,000) it takes well
under a second."""

import base64
import hashlib
import json


def solve(challenge, limit=1 << 32):
    """The payload (base64 text) for `challenge` (the parsed JSON), or None if no counter
    below `limit` matches."""
    p = challenge["parameters"]
    prefix = bytes.fromhex(p["keyPrefix"])
    head = hashlib.sha256(bytes.fromhex(p["salt"]) + bytes.fromhex(p["nonce"]))
    for n in range(limit):
        h = head.copy()
        h.update(n.to_bytes(4, "big"))
        key = h.digest()
        if key.startswith(prefix):
            obj = {"challenge": {"parameters": p, "signature": challenge["signature"]},
                   "solution": {"counter": n, "derivedKey": key.hex(), "time": 0}}
            return base64.b64encode(json.dumps(obj).encode()).decode()
    return None
