#!/usr/bin/env python3
"""Phone numbers as the world writes them (issue 13), through nginx + pvgate + the mock Pipwave.

pvgate parses every number with libphonenumber and uses only its E.164 form from then on. This
test holds it to that with the shipped throttle rules (conf/pvgate.yaml's throttle: section) and,
where a case says so, a section of its own installed by a reload:

- every spelling of one Malaysian handset (+60 19-876 5432: trunk prefix, IDD prefix, the
  dialing code split elsewhere or repeated) gets one SMS per cooldown: the first 200, every other
  spelling 429, and the mock got exactly one call, for 60 / 198765432;
- `countries: deny: [880]` refuses every spelling of a Bangladeshi mobile (403 / 5001), and
  `deny: [JM]` the Jamaican +1 876 mobiles while a US +1 number passes;
- premium-rate, toll-free, personal and voip numbers: 400 / 5001 naming the type, never
  forwarded, never counted by the throttle, counted in pvgate_phone_refusals_total{type};
- invalid numbers (too short, too long, no such range): 400 / 5001 naming why, never forwarded,
  and they use up no throttle budget (not the client address's, not the user's);
- a send without contact_no: 400 / 9001, unless the merchant sets allow_stored_number; then it
  is counted per user by the phone rules;
- a phone_prefix rule with range_digits: 2 counts a block of 100 consecutive numbers as one;
- the mock itself refuses (9001) a number that is not canonical, so a pvgate that forwarded a
  raw spelling would fail here; after every case the mock has seen no such number.

Each case sends from a client address of its own (X-Forwarded-For, which this stack's nginx
turns into REMOTE_ADDR) with users of its own, so the shipped per-IP and per-user rules of one
case never meet another's.
"""

import json
import re
import ssl
import sys
import time
import urllib.request
from pathlib import Path

import itest
from itest import check, expect

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "mock"))
import mock_pipwave  # noqa: E402  (compute_signature, for the mock's own check)

SEND = "send-token"
HANDSET = ("60", "198765432")   # +60 19-876 5432, a Malaysian mobile
# Other ways people write that handset, each read by pvgate as +60198765432.
SPELLINGS = [
    ("60", "0198765432"),      # national trunk prefix 0 kept
    ("601", "98765432"),       # the dialing code split after the mobile prefix's first digit
    ("6019", "8765432"),       # ... and after its second
    ("60198", "765432"),       # a 5-digit "dialing code"
    ("6", "0198765432"),       # split inside the country code
    ("060", "198765432"),      # IDD habits: 0, 00, 000 before the code
    ("0060", "198765432"),
    ("00060", "198765432"),
    ("60", "60198765432"),     # the country code repeated in the number
    ("60", "0060198765432"),   # an international prefix and the code in the number
]
BD = ("880", "1712345678")     # a Bangladeshi mobile
BD_SPELLINGS = [BD, ("0880", "1712345678"), ("00880", "1712345678"), ("88", "01712345678"),
                ("8801", "712345678")]
JM_MOBILE = ("1", "8762101234")          # +1 876: Jamaica (libphonenumber: JM, mobile)
JM_OTHER = ("1", "8765230123")           # JM, fixed_line_or_mobile
US_NUMBER = ("1", "2015550123")          # +1 201: US, fixed_line_or_mobile
# Numbers whose type the shipped phone.number_types (mobile, fixed_line_or_mobile) refuses,
# from tests/unit/phone_test.cpp's vectors.
REFUSED_TYPES = [
    ("44", "9098790000", "premium_rate"),      # GB 09
    ("44", "09098790000", "premium_rate"),     # the same with its trunk prefix
    ("60", "1600123456", "premium_rate"),      # MY 1600
    ("1", "8002345678", "toll_free"),          # US 800
    ("44", "7012345678", "personal_number"),   # GB 070
    ("44", "5612345678", "voip"),              # GB 056
]
INVALID = [
    ("60", "1987", "too short"),
    ("60", "19876543212345", "too long"),
    ("60", "100000001", "not a valid number"),          # no Malaysian range looks like it
    ("65", "123456789", "wrong number of digits"),      # Singapore numbers have 8
    ("999", "198765432", None),                          # no such country code
]
CANONICAL = re.compile(r"^[1-9][0-9]{0,2}$")


# -- helpers ------------------------------------------------------------------------------


def xff(addr):
    return {"X-Forwarded-For": addr}


def body(ctx, phone, user=None):
    dial, number = phone
    f = {"user_id": user or ctx.unique("pn"), "contact_no_country_dialing_code": dial}
    if number is not None:
        f["contact_no"] = number
    return f


def send(ctx, phone, ip, user=None):
    return ctx.post_json(SEND, body(ctx, phone, user), headers=xff(ip))


def mock_phones(ctx):
    return ctx.stack.mock_stats()["phones"]


def forwarded_as(ctx, phone, ip, want, user=None):
    """A send that must reach the mock exactly once, as `want` (dialing code, contact_no)."""
    before = ctx.stack.mock_stats()
    r = send(ctx, phone, ip, user)
    after = ctx.stack.mock_stats()
    expect(r, 200, 200)
    check(after["requests"] == before["requests"] + 1,
          f"{phone}: mock saw {after['requests'] - before['requests']} calls, want 1")
    check(after["phones"][-1] == list(want),
          f"{phone}: forwarded as {after['phones'][-1]}, want {list(want)}")
    return r


def refused(ctx, phone, ip, http, status, user=None, says=None):
    """A send pvgate must answer itself (never forwarded), with this answer."""
    r = ctx.not_forwarded(lambda: send(ctx, phone, ip, user))
    j = expect(r, http, status)
    if says is not None:
        check(says.lower() in j["message"].lower(),
              f"{phone}: message {j['message']!r} does not say {says!r}\n      " + r.describe())
    return r


def nothing_raw(ctx):
    """The mock never got a number that is not canonical (it would have answered 9001)."""
    st = ctx.stack.mock_stats()
    check(st["noncanonical"] == 0, f"the mock got {st['noncanonical']} raw number(s)")
    for dial, number in st["phones"]:
        check(CANONICAL.match(dial) and not number.startswith("0"),
              f"the mock got {dial!r} / {number!r}: not a canonical number")


def metric(ctx, name, labels):
    """The value of one Prometheus sample from /pvgate/metrics (through nginx), 0 if absent."""
    r = ctx.request("GET", "/pvgate/metrics")
    check(r.status == 200, "GET /pvgate/metrics:\n      " + r.describe())
    want = f"{name}{{{labels}}} "
    for line in r.body.decode("utf-8").splitlines():
        if line.startswith(want):
            return float(line[len(want):])
    return 0.0


def refusals(ctx, kind):
    return metric(ctx, "pvgate_phone_refusals_total", f'type="{kind}"')


def reload(ctx, throttle="default", stored=False):
    """Installs a throttle: section (the shipped one, or a body as stack.py takes it) and the
    merchant's allow_stored_number in the running pvgate."""
    extra = "    allow_stored_number: true\n" if stored else ""
    ctx.stack.reload_pvgate(throttle=throttle, extra_pvgate_config=extra)


def too_frequent(r, lo, hi):
    j = expect(r, 429, 5002)
    s = j.get("seconds_till_resend")
    check(isinstance(s, int) and lo <= s <= hi and r.header("Retry-After") == str(s),
          f"seconds_till_resend {s!r} (Retry-After {r.header('Retry-After')!r}), want {lo}..{hi}"
          "\n      " + r.describe())


# -- cases --------------------------------------------------------------------------------


def mock_refuses_raw_spellings(ctx):
    """The mock's own check, straight at it (signed as pvgate would): a raw spelling is 9001."""
    st = ctx.stack
    tls = ssl.create_default_context(cafile=str(st.certs / "ca.pem"))

    def call(dial, number):
        f = {"action": "send-token", "timestamp": str(int(time.time())), "api_key": st.api_key,
             "user_id": "direct", "contact_no_country_dialing_code": dial}
        if number is not None:
            f["contact_no"] = number
        f["signature"] = mock_pipwave.compute_signature(f, st.api_secret)
        req = urllib.request.Request(f"https://127.0.0.1:{st.mock_port}/phone-verify",
                                     data=json.dumps(f).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "x-api-key": st.api_key})
        with urllib.request.urlopen(req, context=tls, timeout=10) as resp:
            return json.loads(resp.read())

    before = st.mock_stats()["noncanonical"]
    raw = [("60", "0198765432"), ("060", "198765432"), ("0060", "198765432"),
           ("6019", "8765432"), ("60", "19876543212345")]   # the last: 2 + 14 digits
    for dial, number in raw:
        j = call(dial, number)
        check(j["status"] == 9001, f"mock answered {j} to {dial} / {number}, want 9001")
    check(call("60", "198765432")["status"] == 200, "the mock refused a canonical number")
    check(call("60", None)["status"] == 200, "the mock refused a send without contact_no")
    after = st.mock_stats()["noncanonical"]
    check(after == before + len(raw), f"mock counted {after - before} raw numbers, "
          f"want {len(raw)}")
    st.mock_reset()   # the pvgate cases below check that the count stays 0


def one_handset_one_sms(ctx):
    ip = "203.0.113.10"
    forwarded_as(ctx, HANDSET, ip, HANDSET)
    before = ctx.stack.mock_stats()
    for spelling in SPELLINGS:
        # A new user each time: the phone-cooldown rule (1 per phone a minute) refuses them,
        # not the per-user one.
        r = ctx.not_forwarded(lambda: send(ctx, spelling, ip))
        try:
            too_frequent(r, 50, 60)
        except AssertionError as e:
            raise AssertionError(f"spelling {spelling}: {e}") from None
    after = ctx.stack.mock_stats()
    check(after["requests"] == before["requests"],
          f"the mock got {after['requests'] - before['requests']} more calls")
    sms = [p for p in after["phones"] if p == list(HANDSET)]
    check(len(sms) == 1, f"the mock got {len(sms)} calls for {HANDSET}, want 1: {after['phones']}")
    nothing_raw(ctx)


def spellings_forwarded_canonical(ctx):
    # After its cooldown each spelling would be sent as the one canonical number; shown here
    # with numbers of their own (a block apart, for the shipped range rule): the trunk prefix,
    # an IDD prefix, a split code, the code repeated.
    ip = "203.0.113.11"
    cases = [(("60", "0123400145"), ("60", "123400145")),
             (("0060", "123400245"), ("60", "123400245")),
             (("601", "23400345"), ("60", "123400345")),
             (("60", "60123400445"), ("60", "123400445")),
             (("00880", "1712300145"), ("880", "1712300145")),
             (("1", "18762101234"), ("1", "8762101234"))]
    for spelling, want in cases:
        forwarded_as(ctx, spelling, ip, want)
    nothing_raw(ctx)


def number_types_refused(ctx):
    ip = "203.0.113.12"
    kinds = sorted({k for _, _, k in REFUSED_TYPES})
    before = {k: refusals(ctx, k) for k in kinds}
    user = ctx.unique("types")
    for dial, number, kind in REFUSED_TYPES:
        # Twice, by one user: never a 429, so the refusal counted nothing.
        for _ in range(2):
            refused(ctx, (dial, number), ip, 400, 5001, user=user, says=kind)
    for k in kinds:
        want = 2 * sum(1 for _, _, kind in REFUSED_TYPES if kind == k)
        got = refusals(ctx, k) - before[k]
        check(got == want, f'pvgate_phone_refusals_total{{type="{k}"}} rose by {got}, want {want}')
    # A mobile from the same user and address passes: nothing above used up their budget.
    forwarded_as(ctx, ("44", "7400123456"), ip, ("44", "7400123456"), user=user)
    nothing_raw(ctx)


def invalid_numbers_refused(ctx):
    ip = "203.0.113.13"
    user = ctx.unique("invalid")
    before = refusals(ctx, "invalid")
    for dial, number, why in INVALID:
        refused(ctx, (dial, number), ip, 400, 5001, user=user, says=why or "contact_no")
    # More than the shipped ip-hour (20) and user-hour (10) limits of invalid sends, from one
    # address and one user, each answered 400 (never 429): an invalid number is refused
    # before the throttle and uses up nothing.
    for i in range(25):
        refused(ctx, ("60", "1987"), ip, 400, 5001, user=user, says="too short")
    got = refusals(ctx, "invalid") - before
    check(got == len(INVALID) + 25, f'pvgate_phone_refusals_total{{type="invalid"}} rose by '
          f"{got}, want {len(INVALID) + 25}")
    # ... so a valid send right after, by that user from that address, still passes.
    forwarded_as(ctx, ("60", "198765433"), ip, ("60", "198765433"), user=user)
    nothing_raw(ctx)


def numberless_sends(ctx):
    ip = "203.0.113.14"
    alice, bob = ctx.unique("alice"), ctx.unique("bob")
    refused(ctx, ("60", None), ip, 400, 9001, user=alice, says="contact_no")
    reload(ctx, "default", stored=True)
    try:
        forwarded_as(ctx, ("60", None), ip, ("60", ""), user=alice)
        # Counted per user by the phone rules: the same user again is in the cooldown ...
        too_frequent(ctx.not_forwarded(lambda: send(ctx, ("60", None), ip, alice)), 50, 60)
        # ... another user is not, and neither is alice with a number of her own.
        forwarded_as(ctx, ("60", None), ip, ("60", ""), user=bob)
        forwarded_as(ctx, ("60", "198765434"), ip, ("60", "198765434"), user=alice)
    finally:
        reload(ctx, "default", stored=False)
    refused(ctx, ("60", None), ip, 400, 9001, user=ctx.unique("carol"), says="contact_no")
    nothing_raw(ctx)


def countries_by_calling_code(ctx):
    ip = "203.0.113.15"
    reload(ctx, "on_store_error: deny\nrules: []\ncountries:\n  deny: [880]\n")
    try:
        for spelling in BD_SPELLINGS:
            refused(ctx, spelling, ip, 403, 5001)
        forwarded_as(ctx, ("60", "198765435"), ip, ("60", "198765435"))
    finally:
        reload(ctx, "default")
    nothing_raw(ctx)


def countries_by_region(ctx):
    ip = "203.0.113.16"
    reload(ctx, "on_store_error: deny\nrules: []\ncountries:\n  deny: [JM]\n")
    try:
        for spelling in (JM_MOBILE, ("1", "18762101234"), ("001", "8762101234"), JM_OTHER):
            refused(ctx, spelling, ip, 403, 5001)
        # The same calling code, another region: a US number passes.
        forwarded_as(ctx, US_NUMBER, ip, US_NUMBER)
    finally:
        reload(ctx, "default")
    # And an allow list by region: MY only.
    reload(ctx, "on_store_error: deny\nrules: []\ncountries:\n  allow: [MY]\n")
    try:
        forwarded_as(ctx, ("0060", "198765436"), ip, ("60", "198765436"))
        refused(ctx, US_NUMBER, ip, 403, 5001)
        refused(ctx, ("65", "81234567"), ip, 403, 5001)
    finally:
        reload(ctx, "default")
    nothing_raw(ctx)


def phone_prefix_range(ctx):
    ip = "203.0.113.17"
    reload(ctx, "on_store_error: deny\nrules:\n"
                "  - name: range-test\n    actions: [send-token]\n"
                "    key: [merchant, phone_prefix]\n    range_digits: 2\n"
                "    limit: 3\n    period: 1h\n")
    try:
        block = "1876543"   # +60 18-765 43xx, a block of 100 Malaysian mobiles
        for last in ("00", "01", "02"):
            forwarded_as(ctx, ("60", block + last), ip, ("60", block + last))
        r = ctx.not_forwarded(lambda: send(ctx, ("60", block + "03"), ip))
        too_frequent(r, 3590, 3600)
        # The same block in any spelling, any number in it: refused.
        too_frequent(ctx.not_forwarded(lambda: send(ctx, ("60", "0" + block + "99"), ip)),
                     3590, 3600)
        too_frequent(ctx.not_forwarded(lambda: send(ctx, ("601", block[1:] + "50"), ip)),
                     3590, 3600)
        # The next block, and a number of the same digits elsewhere: theirs to use.
        forwarded_as(ctx, ("60", "1876544" + "03"), ip, ("60", "187654403"))
        forwarded_as(ctx, ("44", "74001234" + "03"), ip, ("44", "7400123403"))
    finally:
        reload(ctx, "default")
    nothing_raw(ctx)


CASES = [
    ("the mock refuses raw spellings itself (9001, counted)", mock_refuses_raw_spellings),
    ("one handset, every spelling: one SMS, the rest 429", one_handset_one_sms),
    ("spellings forwarded as country code + national number", spellings_forwarded_canonical),
    ("premium, toll-free, personal, voip: 400 / 5001, counted by type", number_types_refused),
    ("invalid numbers: 400 / 5001, no throttle budget used", invalid_numbers_refused),
    ("numberless sends: 9001, or per user with allow_stored_number", numberless_sends),
    ("countries deny [880]: every spelling 403 / 5001", countries_by_calling_code),
    ("countries by region: deny [JM] vs US, allow [MY]", countries_by_region),
    ("phone_prefix range_digits 2: a block of 100 counts as one", phone_prefix_range),
]

if __name__ == "__main__":
    itest.run(CASES, {"throttle": "default", "real_ip": True}, __doc__.split("\n\n")[0])
