// Throttle decisions per second, one thread, for the stores pvgate ships.
// Reported as ratios to a baseline measured in the same run: the same policy
// code against an in-memory store that never refuses (key building, hashing
// and bookkeeping without any storage engine).
//
//   pvgate_bench_throttle [--seconds S] [--redis URL] [--only all-pass] [--rules shipped]
//
// --only all-pass runs just the baseline and the LMDB all-pass scenario (for
// `perf record`). --rules shipped decides with the seven send-token rules of
// conf/pvgate.yaml instead of the default five (phone-day and
// phone-range-hour added; the distinct numbers are then 100 apart, so each
// falls in a range of its own and every decision still passes).
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "lmdb_store.h"
#include "throttle.h"
#ifdef PVGATE_HAVE_REDIS
#include "redis_store.h"
#endif
#include "../unit/temp_dir.h"

using namespace pvgate;

namespace {

class NullStore final : public ThrottleStore {
 public:
  StoreStatus check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t,
                               ThrottleDecision& out) override {
    out.allowed = true;
    out.wait_ms.assign(hits.size(), 0);
    return StoreStatus::ok;
  }
  StoreStatus refund(const std::vector<ThrottleHit>&, std::int64_t) override {
    return StoreStatus::ok;
  }
  StoreStatus peek(const std::vector<ThrottleHit>& hits, std::int64_t,
                   ThrottleDecision& out) override {
    out.allowed = true;
    out.wait_ms.assign(hits.size(), 0);
    return StoreStatus::ok;
  }
  StoreStatus session_open(const std::string&, const std::string&, std::int64_t,
                           std::int64_t) override {
    return StoreStatus::ok;
  }
  StoreStatus session_attempt(const std::string&, const std::string&, std::uint32_t, std::int64_t,
                              SessionAttempt& out) override {
    out = SessionAttempt{};
    return StoreStatus::ok;
  }
  StoreStatus session_consume(const std::string&, const std::string&, std::int64_t,
                              bool& consumed) override {
    consumed = false;
    return StoreStatus::ok;
  }
  StoreStatus claim_once(const std::string&, std::int64_t, std::int64_t, bool& fresh) override {
    fresh = true;
    return StoreStatus::ok;
  }
  StoreStatus ping() override { return StoreStatus::ok; }
};

ThrottleConfig five_rules() {
  ThrottleConfig c;
  c.enabled = true;
  c.max_answer_attempts = 0;
  const auto add = [&](const char* name, std::vector<KeyPart> key, std::uint32_t limit,
                       std::int64_t period_ms) {
    ThrottleRule r;
    r.name = name;
    r.key = std::move(key);
    r.limit = limit;
    r.period_ms = period_ms;
    c.rules.push_back(r);
  };
  add("phone-cooldown", {KeyPart::merchant, KeyPart::phone}, 1, 60'000);
  add("phone-hour", {KeyPart::merchant, KeyPart::phone}, 5, 3'600'000);
  add("user-hour", {KeyPart::merchant, KeyPart::user}, 10, 3'600'000);
  add("ip-hour", {KeyPart::merchant, KeyPart::ip}, 20, 3'600'000);
  add("merchant-hour", {KeyPart::merchant}, 1000, 3'600'000);
  return c;
}

// The send-token rules conf/pvgate.yaml ships, in its order.
ThrottleConfig shipped_rules() {
  ThrottleConfig c = five_rules();
  ThrottleRule day = c.rules[1];
  day.name = "phone-day";
  day.limit = 10;
  day.period_ms = 86'400'000;
  ThrottleRule range = c.rules[1];
  range.name = "phone-range-hour";
  range.key = {KeyPart::merchant, KeyPart::phone_prefix};
  range.range_digits = 2;
  range.limit = 10;
  range.period_ms = 3'600'000;
  c.rules.insert(c.rules.begin() + 2, {day, range});
  return c;
}

struct Result {
  double per_second = 0;
  long passed = 0;
  long refused = 0;
  long errors = 0;
};

// One client (user, phone, address) of merchant `merchant`.
ThrottleSubject bench_subject(std::string merchant) {
  ThrottleSubject s;
  s.merchant = std::move(merchant);
  s.dialing_code = "60";
  s.user_id = "bench-user";
  s.contact_no = "123456789";
  s.remote_addr = "192.0.2.1";
  return s;
}

// Runs decisions for `seconds`; `distinct` gives every request its own phone,
// user and IP (all pass), otherwise one phone is hammered (all but the first
// are refused).
Result run(ThrottleStore& store, const ThrottleConfig& config, double seconds, bool distinct,
           long number_step = 1) {
  // Time only moves forward across scenarios, and each scenario has its own
  // merchant, so one scenario's events never decide another's.
  static std::int64_t now = 1'700'000'000'000;
  static int scenario = 0;
  Result r;
  ThrottleSubject s = bench_subject("bench-" + std::to_string(++scenario));
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  long n = 0;
  while (true) {
    if ((n & 255) == 0 && std::chrono::steady_clock::now() >= end) break;
    if (distinct) {
      s.contact_no = std::to_string(100000000 + n * number_step);
      s.user_id = "u" + std::to_string(n);
      s.remote_addr = "10." + std::to_string((n >> 16) & 255) + "." +
                      std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255);
    }
    // The merchant-wide rule would refuse distinct requests after 1000 within
    // its hour; advancing time 4 s per request keeps every rule passing.
    now += distinct ? 4'000 : 1;
    const ThrottleVerdict v = throttle_check(config, &store, s, now);
    switch (v.result) {
      case ThrottleResult::pass:
        ++r.passed;
        break;
      case ThrottleResult::reject:
        ++r.refused;
        break;
      default:
        ++r.errors;
        break;
    }
    ++n;
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.per_second = static_cast<double>(n) / elapsed;
  return r;
}

// `threads` threads hammer one phone at once for `seconds` (every decision but
// the first is refused): what a flood of 429s costs when workers share a store.
Result run_parallel(ThrottleStore& store, const ThrottleConfig& config, double seconds,
                    int threads) {
  static int scenario = 0;
  const ThrottleSubject s = bench_subject("bench-parallel-" + std::to_string(++scenario));
  const std::int64_t start_ms = 1'800'000'000'000 + scenario * 10'000'000LL;
  throttle_check(config, &store, s, start_ms);  // arms the cooldown
  std::vector<Result> per(static_cast<std::size_t>(threads));
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Result& r = per[static_cast<std::size_t>(t)];
      for (long n = 0;; ++n) {
        if ((n & 255) == 0 && std::chrono::steady_clock::now() >= end) break;
        // Within the 60 s cooldown the whole run: every decision is refused.
        const ThrottleVerdict v = throttle_check(config, &store, s, start_ms + 1 + (n & 1023));
        if (v.result == ThrottleResult::pass) {
          ++r.passed;
        } else if (v.result == ThrottleResult::reject) {
          ++r.refused;
        } else {
          ++r.errors;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Result total;
  for (const Result& r : per) {
    total.passed += r.passed;
    total.refused += r.refused;
    total.errors += r.errors;
  }
  total.per_second = static_cast<double>(total.passed + total.refused + total.errors) / elapsed;
  return total;
}

void report(const char* name, const Result& r, double baseline) {
  std::printf("%-34s %10.0f decisions/s  ratio %.3f  (passed %ld, refused %ld, errors %ld)\n", name,
              r.per_second, baseline > 0 ? r.per_second / baseline : 0.0, r.passed, r.refused,
              r.errors);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // the Redis store requires it (see RedisStore::create)
  double seconds = 3;
  std::string redis_url;
  bool only_pass = false;
  bool shipped = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      seconds = std::stod(argv[++i]);
    } else if (std::strcmp(argv[i], "--redis") == 0 && i + 1 < argc) {
      redis_url = argv[++i];
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc &&
               std::strcmp(argv[i + 1], "all-pass") == 0) {
      only_pass = true;
      ++i;
    } else if (std::strcmp(argv[i], "--rules") == 0 && i + 1 < argc &&
               std::strcmp(argv[i + 1], "shipped") == 0) {
      shipped = true;
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seconds S] [--redis URL] [--only all-pass] [--rules shipped]\n",
                   argv[0]);
      return 2;
    }
  }
  const ThrottleConfig config = shipped ? shipped_rules() : five_rules();
  const long step = shipped ? 100 : 1;  // shipped: one number per range of 100
  std::printf("throttle decisions, %zu rules%s, one thread, %.1f s per scenario\n",
              config.rules.size(), shipped ? " (shipped)" : "", seconds);

  NullStore null_store;
  const Result base = run(null_store, config, seconds, true, step);
  report("baseline: policy, no store", base, base.per_second);

  pvgate_test::TempDir dir;
  LmdbStore lmdb(LmdbStoreOptions{dir.path() + "/throttle", 256u << 20, 8});
  report("local (LMDB), all pass", run(lmdb, config, seconds, true, step), base.per_second);
  if (only_pass) return 0;
  report("local (LMDB), one phone refused", run(lmdb, config, seconds, false), base.per_second);
  report("local (LMDB), refused, 8 threads", run_parallel(lmdb, config, seconds, 8),
         base.per_second);

#ifdef PVGATE_HAVE_REDIS
  if (!redis_url.empty()) {
    RedisStoreOptions o;
    o.url = redis_url;
    o.key_prefix = "pvgate-bench:";
    std::string error;
    auto redis = RedisStore::create(o, error);
    if (!redis) {
      std::fprintf(stderr, "redis: %s\n", error.c_str());
      return 1;
    }
    report("redis, all pass", run(*redis, config, seconds, true, step), base.per_second);
    report("redis, one phone refused", run(*redis, config, seconds, false), base.per_second);
  }
#else
  if (!redis_url.empty()) std::printf("redis: not in this build\n");
#endif
  return 0;
}
