// Where throttle counts live. Two engines implement it: LmdbStore (one host,
// every worker process shares one file) and RedisStore (many hosts). Both pass
// the same contract tests (tests/unit/store_contract_test.cpp).
//
// What it holds: throttle logs (check_and_commit, refund, and peek, which
// checks without recording), verification sessions (session_*) and one-time
// claims (claim_once); ping is for health. Logs, sessions and claims live
// apart: no key of one kind can name an entry of another.
//
// Algorithm, the same in both: a sliding log per key holding the timestamps of
// the last `limit` events. A hit is over its limit when `limit` events already
// fall inside the last `period_ms`; its wait is the time until the oldest of
// them leaves the window. Memory per key is bounded by `limit` timestamps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pvgate {

inline constexpr std::uint32_t kMaxRuleLimit = 10000;

struct ThrottleHit {
  static constexpr std::size_t kMaxKeyBytes = 200;
  static constexpr std::int64_t kMinPeriodMs = 1000;

  std::string key;         // opaque store key, printable ASCII, 1 .. kMaxKeyBytes bytes
  std::uint32_t limit;     // 1 .. kMaxRuleLimit events ...
  std::int64_t period_ms;  // ... per this many milliseconds (>= kMinPeriodMs)
  bool enforce = true;     // false for dry-run rules: counted, never rejects
};

// Whether every byte of `s` is printable ASCII (0x20 .. 0x7e). Every store
// call checks its keys with it: the lowest and highest byte in one pass
// without a branch per byte, which the compiler vectorises 16 bytes at a time.
inline bool printable_ascii(const std::string& s) {
  unsigned char lowest = 0xff;
  unsigned char highest = 0;
  for (const char c : s) {
    const auto byte = static_cast<unsigned char>(c);
    lowest = byte < lowest ? byte : lowest;
    highest = byte > highest ? byte : highest;
  }
  return lowest >= 0x20 && highest <= 0x7e;
}

// What in `hit` breaks ThrottleHit's documented ranges (static text that
// never quotes the key), or nullptr when nothing does. The config validates
// every rule, so a broken hit is a bug in pvgate: stores answer it
// StoreStatus::internal and never act on it.
inline const char* broken_hit(const ThrottleHit& hit) {
  if (hit.key.empty()) return "empty key";
  if (hit.key.size() > ThrottleHit::kMaxKeyBytes) return "key longer than 200 bytes";
  if (!printable_ascii(hit.key)) return "key not printable ASCII";
  if (hit.limit < 1 || hit.limit > kMaxRuleLimit) return "limit outside 1..10000";
  if (hit.period_ms < ThrottleHit::kMinPeriodMs) return "period under 1000 ms";
  return nullptr;
}

struct ThrottleDecision {
  bool allowed = true;                // no enforcing hit was over; every hit was recorded
  std::vector<std::int64_t> wait_ms;  // per hit: 0 when under its limit, else ms until a slot frees
  // With StoreStatus::internal: what broke, for the error log (static text,
  // never a key or a secret); nullptr otherwise.
  const char* broken = nullptr;
  std::size_t broken_hit = 0;  // and the index of the hit it broke in
};

enum class StoreStatus {
  ok,           // the decision is valid
  unavailable,  // the store could not be reached or answered an error (apply on_store_error)
  full,         // no room for a new key even after reclaiming expired ones (apply on_store_error)
  internal,     // a broken invariant (a bug in pvgate): refused whatever on_store_error says
};

// Verification sessions: one per reference that Pipwave issued through
// pvgate, so a verify-token-answer is checked against who asked for the code
// before it is forwarded, its attempts counted per session, and a verified
// session used once. `key` is printable ASCII (1 .. kMaxKeyBytes) like a
// hit's; `owner` an opaque digest of merchant, user and phone (1 .. 64 bytes).
// Stores keep sessions apart from throttle logs: no rule key can name one.
struct SessionAttempt {
  enum class Result {
    ok,       // counted: the session exists, is live, is `owner`'s and had attempts left
    unknown,  // never opened, expired, consumed or another owner's: nothing changed
    locked,   // `owner`'s, but its attempts are used up: nothing changed
  };
  Result result = Result::unknown;
  std::uint32_t attempts = 0;  // ok: counted so far, this one included
  std::int64_t wait_ms = 0;    // locked: until the session expires
};

inline constexpr std::size_t kMaxSessionOwnerBytes = 64;

// Whether `key` is printable ASCII, 1 .. ThrottleHit::kMaxKeyBytes bytes: the
// form of session and claim keys, which the engines prefix with a byte
// outside that range to keep them apart from rule keys.
inline bool store_key_ok(const std::string& key) {
  return !key.empty() && key.size() <= ThrottleHit::kMaxKeyBytes && printable_ascii(key);
}

// What in a session call's key or owner breaks the ranges above (static
// text, never quoting them), or nullptr: stores answer it
// StoreStatus::internal and never act on it, as for broken_hit().
inline const char* broken_session(const std::string& key, const std::string& owner) {
  if (!store_key_ok(key)) return "session key not 1..200 printable ASCII bytes";
  if (owner.empty() || owner.size() > kMaxSessionOwnerBytes) return "session owner length";
  return nullptr;
}

// One-time claims (issue 14: an ALTCHA solution is accepted once). A claim's
// `key` is printable ASCII (1 .. kMaxKeyBytes) like a hit's; it lives 1 ms ..
// kMaxClaimTtlMs. Stores keep claims apart from throttle logs and sessions:
// no rule key or session key can name one.
inline constexpr std::int64_t kMaxClaimTtlMs = 7 * 24 * 3'600'000;  // 7 days

// What in a claim's key or ttl breaks the ranges above (static text, never
// quoting the key), or nullptr: stores answer it StoreStatus::internal and
// claim nothing, as for broken_hit().
inline const char* broken_claim(const std::string& key, std::int64_t ttl_ms) {
  if (!store_key_ok(key)) return "claim key not 1..200 printable ASCII bytes";
  if (ttl_ms < 1 || ttl_ms > kMaxClaimTtlMs) return "claim ttl outside 1 ms..7 days";
  return nullptr;
}

class ThrottleStore {
 public:
  virtual ~ThrottleStore() = default;

  // Checks every hit at time `now_ms` (Unix ms, from the caller's clock). If no
  // enforcing hit is over its limit, records one event at `now_ms` for every
  // hit; otherwise records nothing. All or nothing, atomically with respect to
  // every other caller of the same store (threads, processes, hosts). A hit
  // that broken_hit() refuses makes it record nothing and answer `internal`,
  // with `out.broken` saying what broke.
  virtual StoreStatus check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                       ThrottleDecision& out) = 0;

  // Removes one event recorded at exactly `now_ms` from each hit's key (used
  // when a request provably never reached Pipwave). Missing events are ignored.
  // Answers `internal` and removes nothing for a hit that broken_hit() refuses.
  virtual StoreStatus refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) = 0;

  // Checks `hits` at `now_ms` exactly as check_and_commit would and fills
  // `out` the same way (allowed, wait_ms per hit, broken and broken_hit), but
  // records nothing. For challenge pressure (issue 14): has this address or
  // phone already had N sends in the period? A hit with limit N is over when N
  // events fall inside its window. A hit that broken_hit() refuses answers
  // `internal`, as there.
  virtual StoreStatus peek(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                           ThrottleDecision& out) = 0;

  // Opens (or replaces) the session `key` for `owner` at `now_ms`, living
  // `ttl_ms`, with no attempts counted.
  virtual StoreStatus session_open(const std::string& key, const std::string& owner,
                                   std::int64_t now_ms, std::int64_t ttl_ms) = 0;
  // Counts one answer attempt on a live session of `owner`'s with fewer than
  // `max_attempts` counted (0: unlimited); otherwise changes nothing. Atomic
  // with respect to every other caller, so parallel guesses cannot overtake
  // the count.
  virtual StoreStatus session_attempt(const std::string& key, const std::string& owner,
                                      std::uint32_t max_attempts, std::int64_t now_ms,
                                      SessionAttempt& out) = 0;
  // Ends a live session of `owner`'s (it was verified): `consumed` is true
  // for exactly one caller; false when it was already consumed, expired,
  // never opened or another owner's.
  virtual StoreStatus session_consume(const std::string& key, const std::string& owner,
                                      std::int64_t now_ms, bool& consumed) = 0;

  // Records `key` as claimed until now_ms + ttl_ms. `fresh` is true for
  // exactly one caller among all callers of the store (threads, processes,
  // hosts) while the claim lives; false when it is already claimed and not
  // expired, and whenever the answer is not `ok`. Expiry is judged by
  // `now_ms` in LMDB (one host, one clock) and by Redis's own clock in Redis
  // (ttl_ms from when Redis set it, so skew between hosts cannot end a claim
  // early). A key or ttl that broken_claim() refuses answers `internal` and
  // claims nothing.
  virtual StoreStatus claim_once(const std::string& key, std::int64_t now_ms, std::int64_t ttl_ms,
                                 bool& fresh) = 0;

  // Cheap liveness check for health reporting.
  virtual StoreStatus ping() = 0;

  // Space in use against the store's bound, for the metrics route; a field
  // the store cannot tell honestly stays unset.
  struct Usage {
    std::optional<std::uint64_t> used_bytes;
    std::optional<std::uint64_t> max_bytes;
  };
  virtual Usage usage() { return {}; }
};

}  // namespace pvgate
