// Where throttle counts live. Two engines implement it: LmdbStore (one host,
// every worker process shares one file) and RedisStore (many hosts). Both pass
// the same contract tests (tests/unit/store_contract_test.cpp).
//
// Algorithm, the same in both: a sliding log per key holding the timestamps of
// the last `limit` events. A hit is over its limit when `limit` events already
// fall inside the last `period_ms`; its wait is the time until the oldest of
// them leaves the window. Memory per key is bounded by `limit` timestamps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pvgate {

inline constexpr std::uint32_t kMaxRuleLimit = 10000;

struct ThrottleHit {
  std::string key;         // opaque store key, printable ASCII, <= 200 bytes
  std::uint32_t limit;     // 1 .. kMaxRuleLimit events ...
  std::int64_t period_ms;  // ... per this many milliseconds (>= 1000)
  bool enforce = true;     // false for dry-run rules: counted, never rejects
};

struct ThrottleDecision {
  bool allowed = true;                // no enforcing hit was over; every hit was recorded
  std::vector<std::int64_t> wait_ms;  // per hit: 0 when under its limit, else ms until a slot frees
};

enum class StoreStatus {
  ok,           // the decision is valid
  unavailable,  // the store could not be reached or answered an error (apply on_store_error)
  full,         // no room for a new key even after reclaiming expired ones (apply on_store_error)
};

class ThrottleStore {
 public:
  virtual ~ThrottleStore() = default;

  // Checks every hit at time `now_ms` (Unix ms, from the caller's clock). If no
  // enforcing hit is over its limit, records one event at `now_ms` for every
  // hit; otherwise records nothing. All or nothing, atomically with respect to
  // every other caller of the same store (threads, processes, hosts).
  virtual StoreStatus check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                       ThrottleDecision& out) = 0;

  // Removes one event recorded at exactly `now_ms` from each hit's key (used
  // when a request provably never reached Pipwave). Missing events are ignored.
  virtual StoreStatus refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) = 0;

  // Cheap liveness check for health reporting.
  virtual StoreStatus ping() = 0;
};

}  // namespace pvgate
