// One contract for every ThrottleStore engine: each TEMPLATE_TEST_CASE runs
// against LMDB and against a real redis-server (started on a private unix
// socket by redis_fixture.h). Time is passed in, so no test sleeps.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "lmdb_fixture.h"
#include "redis_fixture.h"
#include "throttle_store.h"

using namespace pvgate;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;  // a fixed "now", Unix ms
constexpr std::int64_t kMinute = 60'000;

ThrottleHit hit(const std::string& key, std::uint32_t limit, std::int64_t period_ms,
                bool enforce = true) {
  return ThrottleHit{key, limit, period_ms, enforce};
}

bool allowed(ThrottleStore& s, const std::vector<ThrottleHit>& hits, std::int64_t now,
             ThrottleDecision* out = nullptr) {
  ThrottleDecision d;
  REQUIRE(s.check_and_commit(hits, now, d) == StoreStatus::ok);
  REQUIRE(d.wait_ms.size() == hits.size());
  if (out != nullptr) *out = d;
  return d.allowed;
}

// Hits outside ThrottleHit's ranges, each with a word of what broke.
std::vector<std::pair<ThrottleHit, std::string>> broken_hits() {
  return {
      {hit("", 1, kMinute), "empty key"},
      {hit(std::string(ThrottleHit::kMaxKeyBytes + 1, 'k'), 1, kMinute), "key longer"},
      {hit("tab\there", 1, kMinute), "not printable"},
      {hit("seg\x01mark", 1, kMinute), "not printable"},
      {hit("caf\xc3\xa9", 1, kMinute), "not printable"},
      {hit("c:bad", 0, kMinute), "limit"},
      {hit("c:bad", kMaxRuleLimit + 1, kMinute), "limit"},
      {hit("c:bad", 1, ThrottleHit::kMinPeriodMs - 1), "period"},
      {hit("c:bad", 1, 0), "period"},
  };
}

// A peek's decision; the call must succeed.
ThrottleDecision peeked(ThrottleStore& s, const std::vector<ThrottleHit>& hits, std::int64_t now) {
  ThrottleDecision d;
  REQUIRE(s.peek(hits, now, d) == StoreStatus::ok);
  REQUIRE(d.wait_ms.size() == hits.size());
  return d;
}

// Whether claim_once called `key` fresh; the call must succeed.
bool fresh_claim(ThrottleStore& s, const std::string& key, std::int64_t now, std::int64_t ttl_ms) {
  bool fresh = false;
  REQUIRE(s.claim_once(key, now, ttl_ms, fresh) == StoreStatus::ok);
  return fresh;
}

}  // namespace

TEMPLATE_TEST_CASE("store contract: exactly `limit` events per period", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:limit", 3, kMinute)};
  CHECK(allowed(*store, hits, kT0));
  CHECK(allowed(*store, hits, kT0 + 1000));
  CHECK(allowed(*store, hits, kT0 + 2000));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0 + 3000, &d));
  // The oldest event (kT0) leaves the window at kT0 + 60 s.
  CHECK(d.wait_ms[0] == kMinute - 3000);
  // Rejected attempts are not recorded: still exactly 57 s to wait later on.
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute - 1, &d));
  CHECK(d.wait_ms[0] == 1);
  CHECK(allowed(*store, hits, kT0 + kMinute));
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute + 1));
}

TEMPLATE_TEST_CASE("store contract: a cooldown of one per period", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:cooldown", 1, kMinute)};
  CHECK(allowed(*store, hits, kT0));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0 + 59'999, &d));
  CHECK(d.wait_ms[0] == 1);
  CHECK(allowed(*store, hits, kT0 + kMinute));
}

TEMPLATE_TEST_CASE("store contract: keys are independent", "[store]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  CHECK(allowed(*store, {hit("c:a", 1, kMinute)}, kT0));
  CHECK(allowed(*store, {hit("c:b", 1, kMinute)}, kT0));
  CHECK_FALSE(allowed(*store, {hit("c:a", 1, kMinute)}, kT0));
}

TEMPLATE_TEST_CASE("store contract: all or nothing across hits", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  const auto tight = hit("c:tight", 1, kMinute);
  const auto loose = hit("c:loose", 2, kMinute);
  CHECK(allowed(*store, {tight}, kT0));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, {loose, tight}, kT0 + 1, &d));
  CHECK(d.wait_ms[0] == 0);
  CHECK(d.wait_ms[1] == kMinute - 1);
  // The rejected request consumed nothing in `loose`: both of its slots are free.
  CHECK(allowed(*store, {loose}, kT0 + 2));
  CHECK(allowed(*store, {loose}, kT0 + 3));
  CHECK_FALSE(allowed(*store, {loose}, kT0 + 4));
}

TEMPLATE_TEST_CASE("store contract: dry-run hits count but never reject", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  const auto dry = hit("c:dry", 1, kMinute, /*enforce=*/false);
  const auto real = hit("c:real", 10, kMinute);
  CHECK(allowed(*store, {dry, real}, kT0));
  ThrottleDecision d;
  CHECK(allowed(*store, {dry, real}, kT0 + 1, &d));
  CHECK(d.wait_ms[0] > 0);  // reported as over its limit ...
  CHECK(d.wait_ms[1] == 0);
  // ... and both requests were counted in `real`.
  for (int i = 0; i < 8; ++i) CHECK(allowed(*store, {real}, kT0 + 2 + i));
  CHECK_FALSE(allowed(*store, {real}, kT0 + 100));
}

TEMPLATE_TEST_CASE("store contract: refund gives the event back", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:refund", 1, kMinute), hit("c:refund2", 5, kMinute)};
  CHECK(allowed(*store, hits, kT0));
  CHECK(store->refund(hits, kT0) == StoreStatus::ok);
  CHECK(allowed(*store, hits, kT0 + 1));
  // Refunding an event that is not there changes nothing.
  CHECK(store->refund(hits, kT0 + 12345) == StoreStatus::ok);
  CHECK_FALSE(allowed(*store, hits, kT0 + 2));
}

TEMPLATE_TEST_CASE("store contract: concurrent callers get exactly `limit`", "[store]", LmdbFactory,
                   RedisFactory) {
  auto store = TestType::make();
  constexpr int kThreads = 8;
  constexpr int kTries = 50;
  constexpr std::uint32_t kLimit = 37;
  std::atomic<int> granted{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTries; ++i) {
        ThrottleDecision d;
        const auto status =
            store->check_and_commit({hit("c:race", kLimit, kMinute)}, kT0 + t * kTries + i, d);
        if (status != StoreStatus::ok) ++errors;
        if (status == StoreStatus::ok && d.allowed) ++granted;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(granted == static_cast<int>(kLimit));
}

TEMPLATE_TEST_CASE("store contract: ping", "[store]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  CHECK(store->ping() == StoreStatus::ok);
}

TEMPLATE_TEST_CASE("store contract: a wait never exceeds the period", "[store]", LmdbFactory,
                   RedisFactory) {
  // Another worker stamped its event 5 ms after this caller read the clock.
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:skew", 1, kMinute)};
  CHECK(allowed(*store, hits, kT0 + 5));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0, &d));
  CHECK(d.wait_ms[0] == kMinute);
}

TEMPLATE_TEST_CASE("store contract: a large limit allows exactly `limit` per window, to the ms",
                   "[store]", LmdbFactory, RedisFactory) {
  // 1000 events: in LMDB a log over sealed segments (src/lmdb_store.cpp), in Redis one sorted set.
  auto store = TestType::make();
  constexpr std::uint32_t kLimit = 1000;
  const std::vector<ThrottleHit> hits{hit("c:large", kLimit, kMinute)};
  for (std::uint32_t i = 0; i < kLimit; ++i) {
    REQUIRE(allowed(*store, hits, kT0 + 50 * i));  // the last at kT0 + 49,950
  }
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0 + 50'000, &d));
  CHECK(d.wait_ms[0] == kMinute - 50'000);
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute - 1, &d));
  CHECK(d.wait_ms[0] == 1);
  // The first event leaves the window at kT0 + 60 s: exactly one slot frees.
  CHECK(allowed(*store, hits, kT0 + kMinute));
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute + 1, &d));
  CHECK(d.wait_ms[0] == 49);  // the second event (kT0 + 50) leaves next
  CHECK(allowed(*store, hits, kT0 + kMinute + 50));
  // Over many periods the window keeps sliding one event at a time.
  for (std::int64_t t = kT0 + 2 * kMinute; t < kT0 + 5 * kMinute; t += 60) {
    CHECK(allowed(*store, hits, t));
  }
}

TEMPLATE_TEST_CASE("store contract: an event stamped out of order keeps the log in time order",
                   "[store]", LmdbFactory, RedisFactory) {
  // Two workers read the clock a few ms apart and commit in the other order.
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:order", 2, kMinute)};
  CHECK(allowed(*store, hits, kT0 + 10));
  CHECK(allowed(*store, hits, kT0));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0 + 20, &d));
  CHECK(d.wait_ms[0] == kMinute - 20);  // the older event (kT0) decides, not the later commit
  CHECK(allowed(*store, hits, kT0 + kMinute));
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute + 1, &d));
  CHECK(d.wait_ms[0] == 9);  // kT0 + 10 leaves at kT0 + 60,010
}

TEMPLATE_TEST_CASE("store contract: an event older than every kept one is not kept", "[store]",
                   LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  const auto real = hit("c:stale", 2, kMinute);
  const auto dry = hit("c:stale", 2, kMinute, /*enforce=*/false);
  CHECK(allowed(*store, {real}, kT0 + 10));
  CHECK(allowed(*store, {real}, kT0 + 20));
  // A dry-run hit commits even when over; stamped before both, it is the
  // oldest of three and the log keeps only the newest two.
  ThrottleDecision d;
  CHECK(allowed(*store, {dry}, kT0 + 5, &d));
  CHECK(d.wait_ms[0] == kMinute);  // 60,005 ms, capped at one period
  CHECK_FALSE(allowed(*store, {real}, kT0 + 30, &d));
  CHECK(d.wait_ms[0] == kMinute + 10 - 30);
  CHECK(allowed(*store, {real}, kT0 + kMinute + 10));
}

TEMPLATE_TEST_CASE("store contract: a lowered limit counts the newest events", "[store]",
                   LmdbFactory, RedisFactory) {
  // A reload changes a rule from 5 to 2 per minute while its key holds 4 events.
  auto store = TestType::make();
  for (int i = 0; i < 4; ++i) CHECK(allowed(*store, {hit("c:lowered", 5, kMinute)}, kT0 + i * 100));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, {hit("c:lowered", 2, kMinute)}, kT0 + 400, &d));
  CHECK(d.wait_ms[0] == kMinute + 200 - 400);  // the 2nd newest (kT0 + 200) decides
  CHECK(allowed(*store, {hit("c:lowered", 2, kMinute)}, kT0 + kMinute + 200));
  CHECK_FALSE(allowed(*store, {hit("c:lowered", 2, kMinute)}, kT0 + kMinute + 201, &d));
  CHECK(d.wait_ms[0] == 99);  // kT0 + 300 leaves at kT0 + 60,300
}

TEMPLATE_TEST_CASE("store contract: refund of one event in a long log frees exactly one slot",
                   "[store]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  constexpr std::uint32_t kLimit = 600;
  const std::vector<ThrottleHit> hits{hit("c:refund-long", kLimit, kMinute)};
  for (std::uint32_t i = 0; i < kLimit; ++i) REQUIRE(allowed(*store, hits, kT0 + 10 * i));
  CHECK_FALSE(allowed(*store, hits, kT0 + 6000));
  // Give back an event from the middle of the log: one slot frees, no more.
  CHECK(store->refund(hits, kT0 + 3000) == StoreStatus::ok);
  CHECK(allowed(*store, hits, kT0 + 6001));
  ThrottleDecision d;
  CHECK_FALSE(allowed(*store, hits, kT0 + 6002, &d));
  CHECK(d.wait_ms[0] == kMinute - 6002);  // kT0 is still the oldest
  // A second refund of the same stamp finds nothing more to give back.
  CHECK(store->refund(hits, kT0 + 3000) == StoreStatus::ok);
  CHECK_FALSE(allowed(*store, hits, kT0 + 6003));
}

TEMPLATE_TEST_CASE("store contract: a hit outside ThrottleHit's ranges is an internal error",
                   "[store]", LmdbFactory, RedisFactory) {
  // A bug upstream of the store, never an outage: `internal` (refused whatever
  // on_store_error says), what broke said, nothing recorded, nothing refunded;
  // and the same from a peek.
  auto store = TestType::make();
  for (const auto& [broken, what] : broken_hits()) {
    const std::vector<ThrottleHit> hits{hit("c:fine", 1, kMinute), broken};
    for (const bool peek : {false, true}) {
      INFO((peek ? "peek " : "check_and_commit ")
           << what << ": limit " << broken.limit << ", period " << broken.period_ms);
      ThrottleDecision d;
      CHECK((peek ? store->peek(hits, kT0, d) : store->check_and_commit(hits, kT0, d)) ==
            StoreStatus::internal);
      REQUIRE(d.broken != nullptr);
      CHECK(std::string(d.broken).find(what) != std::string::npos);
      CHECK(d.broken_hit == 1);
    }
    CHECK(store->refund({broken}, kT0) == StoreStatus::internal);
  }
  // A decision after a broken one says nothing broke.
  ThrottleDecision d;
  CHECK(store->peek({hit("", 1, kMinute)}, kT0, d) == StoreStatus::internal);
  CHECK(store->peek({hit("c:fine", 1, kMinute)}, kT0, d) == StoreStatus::ok);
  CHECK(d.broken == nullptr);
  CHECK(d.allowed);
  // Nothing was recorded for the good hit next to the broken ones.
  CHECK(allowed(*store, {hit("c:fine", 1, kMinute)}, kT0));
  // The bounds themselves are fine.
  CHECK(allowed(
      *store,
      {hit(std::string(ThrottleHit::kMaxKeyBytes, 'k'), kMaxRuleLimit, ThrottleHit::kMinPeriodMs)},
      kT0));
  CHECK(allowed(*store, {hit(" ~", 1, kMinute)}, kT0));  // printable ASCII's ends
}

// Peeks (issue 14: challenge pressure).

TEMPLATE_TEST_CASE("store contract: peek decides as check_and_commit would, and records nothing",
                   "[store][peek]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  const std::vector<ThrottleHit> hits{hit("c:peek", 3, kMinute)};
  // Peeks before, between and after the commits leave every slot free.
  for (int i = 0; i < 5; ++i) {
    const ThrottleDecision d = peeked(*store, hits, kT0);
    CHECK(d.allowed);
    CHECK(d.wait_ms[0] == 0);
  }
  for (int i = 0; i < 3; ++i) {
    CHECK(peeked(*store, hits, kT0 + 1000 * i).allowed);
    CHECK(allowed(*store, hits, kT0 + 1000 * i));
  }
  // Three sends in the period: over, with the wait check_and_commit reports.
  ThrottleDecision peek = peeked(*store, hits, kT0 + 3000);
  ThrottleDecision commit;
  CHECK_FALSE(allowed(*store, hits, kT0 + 3000, &commit));
  CHECK_FALSE(peek.allowed);
  CHECK(peek.wait_ms == commit.wait_ms);
  CHECK(peek.wait_ms[0] == kMinute - 3000);
  // The oldest send leaves at kT0 + 60 s: under again. Had that peek
  // recorded an event, the commit at the same ms would be refused.
  peek = peeked(*store, hits, kT0 + kMinute);
  CHECK(peek.allowed);
  CHECK(peek.wait_ms[0] == 0);
  CHECK(allowed(*store, hits, kT0 + kMinute));
  CHECK_FALSE(peeked(*store, hits, kT0 + kMinute + 1).allowed);
}

TEMPLATE_TEST_CASE("store contract: peek across hits: enforcing, dry-run and unknown keys",
                   "[store][peek]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  const auto tight = hit("c:peek-tight", 1, kMinute);
  const auto dry = hit("c:peek-dry", 1, kMinute, /*enforce=*/false);
  const auto unknown = hit("c:peek-unknown", 2, kMinute);
  CHECK(allowed(*store, {tight, dry}, kT0));
  // A dry-run hit over its limit reports its wait and refuses nothing ...
  ThrottleDecision d = peeked(*store, {unknown, dry}, kT0 + 1);
  CHECK(d.allowed);
  CHECK(d.wait_ms == std::vector<std::int64_t>{0, kMinute - 1});
  // ... an enforcing one refuses the whole set, as check_and_commit would.
  d = peeked(*store, {unknown, dry, tight}, kT0 + 2);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms == std::vector<std::int64_t>{0, kMinute - 2, kMinute - 2});
  // The peeks recorded nothing in the key no commit ever named.
  CHECK(allowed(*store, {unknown}, kT0 + 3));
  CHECK(allowed(*store, {unknown}, kT0 + 4));
  CHECK_FALSE(allowed(*store, {unknown}, kT0 + 5));
  // No hits: allowed, no waits.
  d = peeked(*store, {}, kT0);
  CHECK(d.allowed);
}

TEMPLATE_TEST_CASE("store contract: peek of a long log decides exactly, to the ms", "[store][peek]",
                   LmdbFactory, RedisFactory) {
  // 1000 events: in LMDB a log over sealed segments, read by a read-only peek.
  auto store = TestType::make();
  constexpr std::uint32_t kLimit = 1000;
  const std::vector<ThrottleHit> hits{hit("c:peek-large", kLimit, kMinute)};
  for (std::uint32_t i = 0; i < kLimit - 1; ++i) REQUIRE(allowed(*store, hits, kT0 + 50 * i));
  CHECK(peeked(*store, hits, kT0 + 50'000).allowed);  // 999 in the window
  REQUIRE(allowed(*store, hits, kT0 + 50'000));
  ThrottleDecision d = peeked(*store, hits, kT0 + 50'001);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == kMinute - 50'001);
  d = peeked(*store, hits, kT0 + kMinute);  // the first event has left
  CHECK(d.allowed);
  CHECK(d.wait_ms[0] == 0);
  d = peeked(*store, hits, kT0 + kMinute + 49);
  CHECK(d.allowed);
  CHECK(allowed(*store, hits, kT0 + kMinute));
  CHECK_FALSE(allowed(*store, hits, kT0 + kMinute + 1, &d));
  CHECK(d.wait_ms[0] == 49);
}

// Verification sessions (issue 12).

TEMPLATE_TEST_CASE("store contract: a session counts its owner's attempts, up to the limit",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  REQUIRE(store->session_open("s:1", "owner-a", kT0, 10 * kMinute) == StoreStatus::ok);
  SessionAttempt a;
  for (std::uint32_t i = 1; i <= 3; ++i) {
    REQUIRE(store->session_attempt("s:1", "owner-a", 3, kT0 + i, a) == StoreStatus::ok);
    CHECK(a.result == SessionAttempt::Result::ok);
    CHECK(a.attempts == i);
  }
  REQUIRE(store->session_attempt("s:1", "owner-a", 3, kT0 + 10, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::locked);
  CHECK(a.attempts == 3);
  CHECK(a.wait_ms == 10 * kMinute - 10);
  // 0: no limit.
  REQUIRE(store->session_attempt("s:1", "owner-a", 0, kT0 + 11, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::ok);
  CHECK(a.attempts == 4);
}

TEMPLATE_TEST_CASE("store contract: another owner's guesses leave a session untouched",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  REQUIRE(store->session_open("s:2", "owner-a", kT0, 10 * kMinute) == StoreStatus::ok);
  SessionAttempt a;
  for (int i = 0; i < 20; ++i) {
    REQUIRE(store->session_attempt("s:2", "stranger", 5, kT0 + i, a) == StoreStatus::ok);
    CHECK(a.result == SessionAttempt::Result::unknown);
  }
  bool consumed = true;
  REQUIRE(store->session_consume("s:2", "stranger", kT0 + 30, consumed) == StoreStatus::ok);
  CHECK_FALSE(consumed);
  // The owner still has every attempt.
  for (std::uint32_t i = 1; i <= 5; ++i) {
    REQUIRE(store->session_attempt("s:2", "owner-a", 5, kT0 + 100 + i, a) == StoreStatus::ok);
    REQUIRE(a.result == SessionAttempt::Result::ok);
    CHECK(a.attempts == i);
  }
}

TEMPLATE_TEST_CASE("store contract: unknown, expired and consumed sessions", "[store][session]",
                   LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  SessionAttempt a;
  REQUIRE(store->session_attempt("s:never", "owner-a", 5, kT0, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::unknown);

  REQUIRE(store->session_open("s:3", "owner-a", kT0, kMinute) == StoreStatus::ok);
  REQUIRE(store->session_attempt("s:3", "owner-a", 5, kT0 + kMinute - 1, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::ok);
  REQUIRE(store->session_attempt("s:3", "owner-a", 5, kT0 + kMinute, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::unknown);  // expired at exactly its ttl
  bool consumed = true;
  REQUIRE(store->session_consume("s:3", "owner-a", kT0 + kMinute, consumed) == StoreStatus::ok);
  CHECK_FALSE(consumed);

  REQUIRE(store->session_open("s:4", "owner-a", kT0, kMinute) == StoreStatus::ok);
  REQUIRE(store->session_consume("s:4", "owner-a", kT0 + 1, consumed) == StoreStatus::ok);
  CHECK(consumed);
  REQUIRE(store->session_consume("s:4", "owner-a", kT0 + 2, consumed) == StoreStatus::ok);
  CHECK_FALSE(consumed);
  REQUIRE(store->session_attempt("s:4", "owner-a", 5, kT0 + 3, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::unknown);
}

TEMPLATE_TEST_CASE("store contract: reopening a session starts its attempts over",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  REQUIRE(store->session_open("s:5", "owner-a", kT0, kMinute) == StoreStatus::ok);
  SessionAttempt a;
  REQUIRE(store->session_attempt("s:5", "owner-a", 1, kT0 + 1, a) == StoreStatus::ok);
  REQUIRE(store->session_attempt("s:5", "owner-a", 1, kT0 + 2, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::locked);
  REQUIRE(store->session_open("s:5", "owner-b", kT0 + 3, kMinute) == StoreStatus::ok);
  REQUIRE(store->session_attempt("s:5", "owner-a", 1, kT0 + 4, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::unknown);  // now owner-b's
  REQUIRE(store->session_attempt("s:5", "owner-b", 1, kT0 + 4, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::ok);
}

TEMPLATE_TEST_CASE("store contract: sessions and throttle logs never share a key",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  // A rule log under the same caller key as a session: each keeps its own.
  REQUIRE(store->session_open("same:key", "owner-a", kT0, kMinute) == StoreStatus::ok);
  CHECK(allowed(*store, {hit("same:key", 1, kMinute)}, kT0 + 1));
  CHECK_FALSE(allowed(*store, {hit("same:key", 1, kMinute)}, kT0 + 2));
  SessionAttempt a;
  REQUIRE(store->session_attempt("same:key", "owner-a", 5, kT0 + 3, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::ok);
}

TEMPLATE_TEST_CASE("store contract: parallel answers count every attempt, one consume wins",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  REQUIRE(store->session_open("s:par", "owner-a", kT0, kMinute) == StoreStatus::ok);
  constexpr int kThreads = 8;
  constexpr std::uint32_t kMax = 5;
  std::atomic<int> ok{0}, locked{0}, consumed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      SessionAttempt a;
      if (store->session_attempt("s:par", "owner-a", kMax, kT0 + t, a) != StoreStatus::ok) return;
      (a.result == SessionAttempt::Result::ok ? ok : locked).fetch_add(1);
      bool c = false;
      if (store->session_consume("s:par", "owner-a", kT0 + 10, c) == StoreStatus::ok && c) {
        consumed.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok.load() + locked.load() == kThreads);
  CHECK(ok.load() <= static_cast<int>(kMax));
  CHECK(consumed.load() == 1);
}

TEMPLATE_TEST_CASE("store contract: session keys and owners outside their ranges are internal",
                   "[store][session]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  SessionAttempt a;
  bool consumed = false;
  CHECK(store->session_open("", "o", kT0, kMinute) == StoreStatus::internal);
  CHECK(store->session_open(std::string(201, 'k'), "o", kT0, kMinute) == StoreStatus::internal);
  CHECK(store->session_open("bad\nkey", "o", kT0, kMinute) == StoreStatus::internal);
  CHECK(store->session_open("k", "", kT0, kMinute) == StoreStatus::internal);
  CHECK(store->session_open("k", std::string(65, 'o'), kT0, kMinute) == StoreStatus::internal);
  CHECK(store->session_open("k", "o", kT0, 0) == StoreStatus::internal);
  CHECK(store->session_attempt("", "o", 5, kT0, a) == StoreStatus::internal);
  CHECK(store->session_consume("k", "", kT0, consumed) == StoreStatus::internal);
  // At the limits: accepted.
  CHECK(store->session_open(std::string(200, 'k'), std::string(64, 'o'), kT0, kMinute) ==
        StoreStatus::ok);
}

// One-time claims (issue 14: an ALTCHA solution is accepted once).

TEMPLATE_TEST_CASE("store contract: a claim is fresh once while it lives, keys apart",
                   "[store][claim]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  CHECK(fresh_claim(*store, "c:solution", kT0, kMinute));
  CHECK_FALSE(fresh_claim(*store, "c:solution", kT0 + 1, kMinute));
  CHECK_FALSE(fresh_claim(*store, "c:solution", kT0 + kMinute - 1, kMinute));
  // Other keys are independent, and a refused claim did not extend or take anything.
  CHECK(fresh_claim(*store, "c:solution2", kT0 + 2, kMinute));
  CHECK(fresh_claim(*store, "c:Solution", kT0 + 2, kMinute));
  CHECK_FALSE(fresh_claim(*store, "c:solution2", kT0 + 3, kMinute));
}

TEMPLATE_TEST_CASE("store contract: an expired claim is fresh again", "[store][claim]", LmdbFactory,
                   RedisFactory) {
  // LMDB judges expiry by now_ms, Redis by its own clock (throttle_store.h):
  // a 1 ms claim has expired by now_ms + 1 at once, and in Redis within a
  // millisecond or so of real time, which the loop waits for.
  auto store = TestType::make();
  REQUIRE(fresh_claim(*store, "c:short", kT0, 1));
  REQUIRE(fresh_claim(*store, "c:long", kT0, kMinute));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  bool again = false;
  while (!again && std::chrono::steady_clock::now() < deadline) {
    again = fresh_claim(*store, "c:short", kT0 + 1, 1);
  }
  CHECK(again);
  CHECK_FALSE(fresh_claim(*store, "c:long", kT0 + 1, kMinute));  // still lives
}

TEMPLATE_TEST_CASE("store contract: claims, sessions and throttle logs never share a key",
                   "[store][claim]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  // A log and a session under a key, then a claim of the same key: all three kept.
  CHECK(allowed(*store, {hit("same:key", 1, kMinute)}, kT0));
  REQUIRE(store->session_open("same:key", "owner-a", kT0, kMinute) == StoreStatus::ok);
  CHECK(fresh_claim(*store, "same:key", kT0 + 1, kMinute));
  CHECK_FALSE(allowed(*store, {hit("same:key", 1, kMinute)}, kT0 + 2));
  SessionAttempt a;
  REQUIRE(store->session_attempt("same:key", "owner-a", 5, kT0 + 3, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::ok);
  CHECK_FALSE(fresh_claim(*store, "same:key", kT0 + 4, kMinute));
  // A claim first: no log or session sees it, and it outlives them both.
  CHECK(fresh_claim(*store, "claim:first", kT0, kMinute));
  CHECK(peeked(*store, {hit("claim:first", 1, kMinute)}, kT0 + 1).allowed);
  CHECK(allowed(*store, {hit("claim:first", 1, kMinute)}, kT0 + 1));
  REQUIRE(store->session_attempt("claim:first", "owner-a", 5, kT0 + 2, a) == StoreStatus::ok);
  CHECK(a.result == SessionAttempt::Result::unknown);
  REQUIRE(store->session_open("claim:first", "owner-a", kT0 + 3, kMinute) == StoreStatus::ok);
  bool consumed = false;
  REQUIRE(store->session_consume("claim:first", "owner-a", kT0 + 4, consumed) == StoreStatus::ok);
  CHECK(consumed);
  CHECK(store->refund({hit("claim:first", 1, kMinute)}, kT0 + 1) == StoreStatus::ok);
  CHECK_FALSE(fresh_claim(*store, "claim:first", kT0 + 5, kMinute));
}

TEMPLATE_TEST_CASE("store contract: claim keys and ttls outside their ranges are internal",
                   "[store][claim]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  const std::vector<std::pair<std::string, std::int64_t>> bad{
      {"", kMinute},
      {std::string(ThrottleHit::kMaxKeyBytes + 1, 'k'), kMinute},
      {"bad\nkey", kMinute},
      {"mark\x03", kMinute},
      {"caf\xc3\xa9", kMinute},
      {"c:ttl", 0},
      {"c:ttl", -1},
      {"c:ttl", kMaxClaimTtlMs + 1},
  };
  for (const auto& [key, ttl] : bad) {
    INFO("key of " << key.size() << " bytes, ttl " << ttl);
    CHECK(broken_claim(key, ttl) != nullptr);
    bool fresh = true;
    CHECK(store->claim_once(key, kT0, ttl, fresh) == StoreStatus::internal);
    CHECK_FALSE(fresh);
  }
  // The refused calls claimed nothing.
  CHECK(fresh_claim(*store, "c:ttl", kT0, kMinute));
  // The bounds themselves are fine.
  CHECK(fresh_claim(*store, std::string(ThrottleHit::kMaxKeyBytes, 'k'), kT0, kMaxClaimTtlMs));
  CHECK(fresh_claim(*store, " ~", kT0, 1));  // printable ASCII's ends, the shortest ttl
  CHECK(broken_claim(" ~", 1) == nullptr);
}

TEMPLATE_TEST_CASE("store contract: parallel claims of a key: exactly one is fresh",
                   "[store][claim]", LmdbFactory, RedisFactory) {
  auto store = TestType::make();
  constexpr int kThreads = 8;
  constexpr int kKeys = 50;
  std::atomic<int> ready{0};
  std::atomic<int> errors{0};
  std::vector<std::atomic<int>> fresh(kKeys);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Start together, so the claims of each key overlap.
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int k = 0; k < kKeys; ++k) {
        bool f = false;
        if (store->claim_once("c:race" + std::to_string(k), kT0 + t, kMinute, f) !=
            StoreStatus::ok) {
          ++errors;
        }
        if (f) fresh[static_cast<std::size_t>(k)].fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  for (int k = 0; k < kKeys; ++k) {
    INFO("key c:race" << k);
    CHECK(fresh[static_cast<std::size_t>(k)].load() == 1);
  }
}
