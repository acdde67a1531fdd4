// What only the local store must prove: sharing across processes, surviving
// restarts and killed writers, staying bounded, and that its segmented long
// logs decide exactly as one plain sliding log would.
#include <catch2/catch.hpp>
// Only to write a store as the layout before segments did, byte for byte.
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "lmdb_fixture.h"

using namespace pvgate;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;

ThrottleHit hit(const std::string& key, std::uint32_t limit, std::int64_t period_ms) {
  return ThrottleHit{key, limit, period_ms, true};
}

std::size_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_blocks) * 512 : 0;
}

// Runs `work(store, p)` in `processes` forked children, each with its own
// LmdbStore on `options` (as spawn-fcgi's workers have), all released at
// once. `work` returns a count under 255 and must not use Catch's assertions
// (they would run in the child). Returns the sum of the counts.
template <class Work>
int sum_over_processes(int processes, const LmdbStoreOptions& options, const Work& work) {
  int start[2];
  REQUIRE(::pipe(start) == 0);
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(start[1]);
      int count = 255;
      try {
        LmdbStore store(options);  // each process opens its own environment
        char byte = 0;
        if (::read(start[0], &byte, 1) == 0) count = work(store, p);  // EOF: go
      } catch (...) {
      }
      ::_exit(count);
    }
    children.push_back(pid);
  }
  ::close(start[0]);
  ::close(start[1]);  // every child's read returns now
  int total = 0;
  for (const pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) != 255);
    total += WEXITSTATUS(status);
  }
  return total;
}

}  // namespace

TEST_CASE("lmdb: counts survive closing and reopening the store") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  ThrottleDecision d;
  {
    LmdbStore store(options);
    REQUIRE(store.check_and_commit({hit("k", 1, 60'000)}, kT0, d) == StoreStatus::ok);
    REQUIRE(d.allowed);
  }
  LmdbStore reopened(options);
  REQUIRE(reopened.check_and_commit({hit("k", 1, 60'000)}, kT0 + 1, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
}

TEST_CASE("lmdb: usage is the pages holding data, against the map size (metrics)") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  LmdbStore store(options);
  const ThrottleStore::Usage empty = store.usage();
  REQUIRE(empty.used_bytes);
  REQUIRE(empty.max_bytes);
  CHECK(*empty.max_bytes == 4u << 20);
  CHECK(*empty.used_bytes > 0);
  ThrottleDecision d;
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(store.check_and_commit({hit("key-" + std::to_string(i), 5, 60'000)}, kT0, d) ==
            StoreStatus::ok);
  }
  const ThrottleStore::Usage full = store.usage();
  REQUIRE(full.used_bytes);
  CHECK(*full.used_bytes > *empty.used_bytes + 2000 * 16);  // at least the keys' bytes
  CHECK(*full.used_bytes < *full.max_bytes);
  // Expired entries swept: the pages are free again (reused, so not counted).
  store.sweep_all(kT0 + 120'000);
  CHECK(*store.usage().used_bytes < *full.used_bytes);
}

TEST_CASE("lmdb: worker processes share one set of counts") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  { LmdbStore create(options); }
  constexpr int kTries = 40;
  constexpr std::uint32_t kLimit = 23;
  const int total = sum_over_processes(4, options, [](LmdbStore& store, int) {
    int granted = 0;
    for (int i = 0; i < kTries; ++i) {
      ThrottleDecision d;
      if (store.check_and_commit({hit("shared", kLimit, 60'000)}, kT0 + i, d) == StoreStatus::ok &&
          d.allowed) {
        ++granted;
      }
    }
    return granted;
  });
  CHECK(total == static_cast<int>(kLimit));
}

TEST_CASE("lmdb: a writer killed mid-flight does not wedge the store") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  { LmdbStore create(options); }
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    LmdbStore store(options);
    for (std::int64_t i = 0;; ++i) {  // hammer until killed, often inside a write txn
      ThrottleDecision d;
      store.check_and_commit({hit("k" + std::to_string(i % 1000), 5, 60'000)}, kT0 + i, d);
      if (i == 500) {  // well into the loop: the parent may kill from now on
        const char byte = 'r';
        [[maybe_unused]] auto n = ::write(ready[1], &byte, 1);
      }
    }
  }
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);  // the child has committed 500 times
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(ready[0]);
  ::close(ready[1]);

  LmdbStore store(options);
  ThrottleDecision d;
  CHECK(store.check_and_commit({hit("after", 1, 60'000)}, kT0, d) == StoreStatus::ok);
  CHECK(d.allowed);
}

TEST_CASE("lmdb: full of live entries -> `full`, never eviction; expired entries are reclaimed") {
  pvgate_test::TempLmdbStore store(1 << 20);  // 1 MiB
  ThrottleDecision d;
  int stored = 0;
  StoreStatus status = StoreStatus::ok;
  for (int i = 0; i < 100'000 && status == StoreStatus::ok; ++i) {
    status = store.check_and_commit({hit("spray" + std::to_string(i), 1, 60'000)}, kT0, d);
    if (status == StoreStatus::ok) ++stored;
  }
  CHECK(status == StoreStatus::full);
  CHECK(stored > 1000);
  // Every live cooldown is still there: none was evicted to make room.
  for (int i = 0; i < stored; i += 97) {
    REQUIRE(store.check_and_commit({hit("spray" + std::to_string(i), 1, 60'000)}, kT0 + 1, d) ==
            StoreStatus::ok);
    CHECK_FALSE(d.allowed);
  }
  CHECK(file_size(store.dir() + "/throttle/data.mdb") <= (1 << 20));
  // Once they expire, a new key finds room again.
  CHECK(store.check_and_commit({hit("fresh", 1, 60'000)}, kT0 + 60'000, d) == StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(store.store().entries() < static_cast<std::size_t>(stored));
}

TEST_CASE("lmdb: a spray of 1,000,000 distinct keys stays bounded") {
  // 1 ms apart with a 10 s period: at most 10,000 live keys at any time. The
  // sweep that rides on every write must keep the store from filling up.
  pvgate_test::TempLmdbStore store(8 << 20);
  ThrottleDecision d;
  int failures = 0;
  std::size_t peak = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    if (store.check_and_commit({hit("k" + std::to_string(i), 1, 10'000)}, kT0 + i, d) !=
        StoreStatus::ok) {
      ++failures;
    }
    if (i % 100'000 == 99'999) peak = std::max(peak, store.store().entries());
  }
  CHECK(failures == 0);
  // The sweep walks the keys in order, so some expired entries wait for its
  // next lap: dead entries stay a fraction of the live ones, not a multiple.
  CHECK(peak < 2 * 10'000);
  CHECK(file_size(store.dir() + "/throttle/data.mdb") <= (8 << 20));
}

TEST_CASE("lmdb: a decision's writes land right when its own sweep empties their pages") {
  // Each hit is written through the cursor its check left at the key. Here
  // the sweep of the same transaction, between the checks and the writes,
  // deletes thousands of expired entries around those keys (pages merged
  // and freed under the cursors), among them one hit's own expired log.
  pvgate_test::TempDir dir;
  LmdbStore store(LmdbStoreOptions{dir.path() + "/t", 16 << 20, 100'000});
  ThrottleDecision d;
  std::vector<ThrottleHit> filler;
  for (int i = 0; i < 3000; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "k%04d", i);
    filler.push_back(hit(key, 1, 1000));
  }
  REQUIRE(store.check_and_commit(filler, kT0, d) == StoreStatus::ok);
  REQUIRE(store.check_and_commit({hit("live", 3, 600'000)}, kT0, d) == StoreStatus::ok);
  REQUIRE(store.check_and_commit({hit("live", 3, 600'000)}, kT0 + 1, d) == StoreStatus::ok);
  REQUIRE(store.entries() == 3001);

  const std::vector<ThrottleHit> hits = {hit("k0500x", 2, 60'000), hit("k1000", 1, 60'000),
                                         hit("k1500x", 1, 60'000), hit("live", 3, 600'000),
                                         hit("k2999x", 1, 60'000)};
  const std::int64_t t = kT0 + 5000;  // every filler log has expired
  REQUIRE(store.check_and_commit(hits, t, d) == StoreStatus::ok);
  CHECK(d.allowed);
  // The sweep took the 2,999 other fillers; the five logs remain.
  CHECK(store.entries() == 5);
  // Each log holds exactly what was recorded: one event each, three in "live".
  for (const ThrottleHit& h : hits) {
    const std::uint32_t recorded = h.key == "live" ? 3 : 1;
    ThrottleDecision p;
    REQUIRE(store.peek({ThrottleHit{h.key, recorded, h.period_ms, true}}, t, p) == StoreStatus::ok);
    CHECK_FALSE(p.allowed);
    REQUIRE(store.peek({ThrottleHit{h.key, recorded + 1, h.period_ms, true}}, t, p) ==
            StoreStatus::ok);
    CHECK(p.allowed);
  }
}

TEST_CASE("lmdb: after a refusal, decisions still commit and refuse exactly") {
  // A refused decision leaves nothing behind; the next allowed one commits
  // every hit it names.
  pvgate_test::TempDir dir;
  LmdbStore store(LmdbStoreOptions{dir.path() + "/t", 4 << 20, 8});
  ThrottleDecision d;
  REQUIRE(store.check_and_commit({hit("a", 1, 60'000)}, kT0, d) == StoreStatus::ok);
  REQUIRE(d.allowed);
  REQUIRE(store.check_and_commit({hit("a", 1, 60'000)}, kT0 + 1, d) == StoreStatus::ok);
  REQUIRE_FALSE(d.allowed);
  // Still refused, with the wait until kT0 + 60 s.
  REQUIRE(store.check_and_commit({hit("a", 1, 60'000)}, kT0 + 10'000, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  REQUIRE(d.wait_ms.size() == 1);
  CHECK(d.wait_ms[0] == 50'000);
  // Allowed, so written: "b" and "a" (both in one decision)
  // now hold one event each, and "a" the one of kT0 too.
  REQUIRE(store.check_and_commit({hit("b", 2, 60'000), hit("a", 2, 60'000)}, kT0 + 20'000, d) ==
          StoreStatus::ok);
  CHECK(d.allowed);
  REQUIRE(store.check_and_commit({hit("b", 1, 60'000)}, kT0 + 20'001, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  REQUIRE(store.check_and_commit({hit("a", 2, 60'000)}, kT0 + 20'002, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  // Dry-run hits never refuse: they are committed.
  REQUIRE(store.check_and_commit({ThrottleHit{"a", 1, 60'000, false}}, kT0 + 20'003, d) ==
          StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(store.entries() == 2);
}

TEST_CASE("lmdb: threads refused together never let one through") {
  // Decisions from many threads at once on one key: exactly `limit` pass.
  pvgate_test::TempDir dir;
  LmdbStore store(LmdbStoreOptions{dir.path() + "/t", 16 << 20, 8});
  constexpr int kThreads = 8;
  constexpr int kTries = 300;
  constexpr std::uint32_t kLimit = 5;
  std::atomic<int> granted{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      ThrottleDecision d;
      for (int i = 0; i < kTries; ++i) {
        if (store.check_and_commit({hit("shared", kLimit, 600'000)}, kT0 + t * kTries + i, d) ==
                StoreStatus::ok &&
            d.allowed) {
          ++granted;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(granted.load() == static_cast<int>(kLimit));
}

namespace {

// The sliding log every store implements, kept the plain way: the newest
// `limit` live stamps, ascending.
class ReferenceLog {
 public:
  // The wait at `now` (0: a slot is free).
  std::int64_t wait(std::uint32_t limit, std::int64_t period_ms, std::int64_t now) const {
    const std::int64_t floor = now - period_ms;
    const auto live = static_cast<std::size_t>(
        stamps_.end() - std::upper_bound(stamps_.begin(), stamps_.end(), floor));
    if (live < limit) return 0;
    const std::int64_t pivot = stamps_[stamps_.size() - limit];
    return std::clamp<std::int64_t>(pivot + period_ms - now, 1, period_ms);
  }
  void record(std::uint32_t limit, std::int64_t period_ms, std::int64_t now) {
    const std::int64_t floor = now - period_ms;
    stamps_.erase(stamps_.begin(), std::upper_bound(stamps_.begin(), stamps_.end(), floor));
    stamps_.insert(std::upper_bound(stamps_.begin(), stamps_.end(), now), now);
    if (stamps_.size() > limit) {
      stamps_.erase(stamps_.begin(),
                    stamps_.begin() + static_cast<std::ptrdiff_t>(stamps_.size() - limit));
    }
  }
  void refund(std::int64_t now) {
    const auto at = std::find(stamps_.begin(), stamps_.end(), now);
    if (at != stamps_.end()) stamps_.erase(at);
  }

  std::size_t size() const { return stamps_.size(); }

 private:
  std::vector<std::int64_t> stamps_;
};

}  // namespace

TEST_CASE("lmdb: a long log in segments decides exactly as one plain sliding log") {
  // Limits of 100 and 300 keep 64-stamp segments; the walk goes back in time
  // now and then (workers committing out of clock order), mixes dry-run hits
  // that commit past the limit, refunds, idle gaps longer than the period,
  // and a reload lowering the limit (to 40: below one segment). Every
  // decision must match the plain log to the ms.
  const auto seed = GENERATE(1u, 2u, 3u, 4u);
  pvgate_test::TempLmdbStore store;
  ReferenceLog ref;
  constexpr std::int64_t kPeriod = 10'000;
  std::mt19937 rng(seed);
  std::int64_t t = kT0;
  std::vector<std::int64_t> granted;
  int refused = 0;
  int passed = 0;
  for (int step = 0; step < 20'000; ++step) {
    const auto roll = rng() % 1000;
    if (roll < 2) {
      t += kPeriod + static_cast<std::int64_t>(rng() % 3000);  // idle: everything expires
    } else if (roll < 60) {
      t -= static_cast<std::int64_t>(rng() % 40);  // out of clock order
    } else {
      t += static_cast<std::int64_t>(rng() % 70);
    }
    if (roll >= 60 && roll < 90 && !granted.empty()) {
      const std::int64_t back = granted[rng() % granted.size()];
      REQUIRE(store.refund({hit("long", 300, kPeriod)}, back) == StoreStatus::ok);
      ref.refund(back);
      continue;
    }
    const std::uint32_t limit = step < 15'000 ? (seed % 2 ? 300 : 100) : (seed < 3 ? 120 : 40);
    const bool enforce = roll % 7 != 0;
    const std::int64_t expected = ref.wait(limit, kPeriod, t);
    ThrottleDecision d;
    REQUIRE(store.check_and_commit({ThrottleHit{"long", limit, kPeriod, enforce}}, t, d) ==
            StoreStatus::ok);
    REQUIRE(d.wait_ms.size() == 1);
    INFO("seed " << seed << " step " << step << " at " << t - kT0 << " limit " << limit << ", "
                 << ref.size() << " kept");
    REQUIRE(d.wait_ms[0] == expected);
    REQUIRE(d.allowed == (expected == 0 || !enforce));
    if (d.allowed) {
      ref.record(limit, kPeriod, t);
      granted.push_back(t);
      if (granted.size() > 500) granted.erase(granted.begin());
      ++passed;
    } else {
      ++refused;
    }
  }
  // The walk really ran into the limit, and past segment boundaries.
  CHECK(refused > 1000);
  CHECK(passed > 5000);
}

TEST_CASE("lmdb: a long log at its limit across a segment boundary, and its segments reclaimed") {
  pvgate_test::TempLmdbStore store;
  constexpr std::uint32_t kLimit = 1000;
  constexpr std::int64_t kHour = 3'600'000;
  const std::vector<ThrottleHit> hits{hit("merchant", kLimit, kHour)};
  ThrottleDecision d;
  for (std::uint32_t i = 0; i < kLimit; ++i) {
    REQUIRE(store.check_and_commit(hits, kT0 + 1000 * i, d) == StoreStatus::ok);
    REQUIRE(d.allowed);
  }
  // 15 sealed segments of 64 stamps and a tail of 40, not one 8 KB value.
  CHECK(store.store().entries() == 16);
  // The limit-th newest is the oldest stamp, first of the oldest segment.
  REQUIRE(store.check_and_commit(hits, kT0 + kHour - 1, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == 1);
  // Slide the window over the first segment's last stamp (kT0 + 63 s) and the
  // second's first (kT0 + 64 s): exactly one slot frees each second.
  for (std::int64_t i = 0; i < 66; ++i) {
    const std::int64_t at = kT0 + kHour + 1000 * i;
    REQUIRE(store.check_and_commit(hits, at, d) == StoreStatus::ok);
    REQUIRE(d.allowed);
    REQUIRE(store.check_and_commit(hits, at + 1, d) == StoreStatus::ok);
    REQUIRE_FALSE(d.allowed);
    REQUIRE(d.wait_ms[0] == 999);
  }
  // A refund of a stamp in a sealed segment frees exactly one slot.
  REQUIRE(store.refund(hits, kT0 + 500'000) == StoreStatus::ok);
  REQUIRE(store.check_and_commit(hits, kT0 + kHour + 66'000 - 10, d) == StoreStatus::ok);
  CHECK(d.allowed);
  REQUIRE(store.check_and_commit(hits, kT0 + kHour + 66'000 - 9, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  // Segments out of the window were deleted as the log moved on: at most
  // one segment's worth of stamps past the limit is ever kept.
  CHECK(store.store().entries() <= 1 + kLimit / 64 + 2);
  // Once the last event is an hour old, the log and every segment go.
  CHECK(store.store().sweep_all(kT0 + 2 * kHour + 66'000) > 0);
  CHECK(store.store().entries() == 0);
}

TEST_CASE("lmdb: a store written before segments existed is read as it is") {
  // The layout before segments: [int64 expires][uint32 count][uint32 0]
  // [int64 stamps], one value per key however long. It is the layout of a log
  // without segments, so such a store needs no migration: a long log is
  // sealed into one segment at its next event.
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  constexpr std::int64_t kHour = 3'600'000;
  { LmdbStore create(options); }
  {
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_mapsize(env, options.max_bytes) == 0);
    REQUIRE(mdb_env_open(env, options.path.c_str(), 0, 0600) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi dbi = 0;
    REQUIRE(mdb_dbi_open(txn, nullptr, 0, &dbi) == 0);
    const auto put_old = [&](const std::string& key, const std::vector<std::int64_t>& stamps,
                             std::int64_t period) {
      std::vector<unsigned char> v(16 + 8 * stamps.size());
      const std::int64_t expires = stamps.back() + period;
      const auto count = static_cast<std::uint32_t>(stamps.size());
      std::memcpy(v.data(), &expires, 8);
      std::memcpy(v.data() + 8, &count, 4);
      std::memcpy(v.data() + 16, stamps.data(), 8 * stamps.size());
      MDB_val k{key.size(), const_cast<char*>(key.data())};
      MDB_val d{v.size(), v.data()};
      REQUIRE(mdb_put(txn, dbi, &k, &d, 0) == 0);
    };
    std::vector<std::int64_t> long_log;
    for (int i = 0; i < 900; ++i) long_log.push_back(kT0 + 4000 * i);
    put_old("merchant-hour:old", long_log, kHour);
    put_old("phone-cooldown:old", {kT0 + 3'596'000}, 60'000);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  LmdbStore store(options);
  const std::int64_t now = kT0 + 3'600'000;  // the first old stamp has just left
  ThrottleDecision d;
  REQUIRE(store.check_and_commit({hit("phone-cooldown:old", 1, 60'000)}, now, d) ==
          StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == 56'000);
  // 899 of the old stamps are live: 101 more fit, the 102nd waits for the
  // second old stamp (kT0 + 4 s) to leave.
  const std::vector<ThrottleHit> merchant{hit("merchant-hour:old", 1000, kHour)};
  for (int i = 0; i < 101; ++i) {
    REQUIRE(store.check_and_commit(merchant, now + i, d) == StoreStatus::ok);
    REQUIRE(d.allowed);
  }
  REQUIRE(store.check_and_commit(merchant, now + 101, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == 4000 - 101);
  // A refund of an old stamp (now inside the sealed segment) frees one slot.
  REQUIRE(store.refund(merchant, kT0 + 4000 * 500) == StoreStatus::ok);
  REQUIRE(store.check_and_commit(merchant, now + 102, d) == StoreStatus::ok);
  CHECK(d.allowed);
  REQUIRE(store.check_and_commit(merchant, now + 103, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
}

TEST_CASE("lmdb: a damaged segment is dropped, never read past") {
  // A sealed segment whose value no longer parses (a torn write after a host
  // crash, a foreign tool) reads as empty. The log must go on without it,
  // not index into the empty segment.
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  constexpr std::uint32_t kLimit = 1000;
  constexpr std::int64_t kHour = 3'600'000;
  const std::vector<ThrottleHit> hits{hit("merchant", kLimit, kHour)};
  ThrottleDecision d;
  std::size_t before = 0;
  {
    LmdbStore store(options);
    for (std::uint32_t i = 0; i < kLimit; ++i) {
      REQUIRE(store.check_and_commit(hits, kT0 + 1000 * i, d) == StoreStatus::ok);
      REQUIRE(d.allowed);
    }
    before = store.entries();
    REQUIRE(before == 16);  // 15 sealed segments and the log
  }
  {
    // Overwrite the oldest segment (id 0) with bytes that do not parse.
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_mapsize(env, options.max_bytes) == 0);
    REQUIRE(mdb_env_open(env, options.path.c_str(), 0, 0600) == 0);
    MDB_txn* txn = nullptr;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    MDB_dbi dbi = 0;
    REQUIRE(mdb_dbi_open(txn, nullptr, 0, &dbi) == 0);
    std::string key = "merchant";
    key.push_back('\x01');
    key.append(4, '\0');
    MDB_val k{key.size(), key.data()};
    MDB_val probe;
    REQUIRE(mdb_get(txn, dbi, &k, &probe) == 0);
    char junk[5] = {1, 2, 3, 4, 5};
    MDB_val v{sizeof junk, junk};
    REQUIRE(mdb_put(txn, dbi, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  LmdbStore store(options);
  // Every stamp is still inside the window: with segment 0's 64 stamps gone
  // the log holds 936, so the decision passes and drops the damaged segment.
  REQUIRE(store.check_and_commit(hits, kT0 + 1000 * kLimit, d) == StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(store.entries() == before - 1);
  // The log goes on deciding: 63 more fit (936 + 1 + 63 = 1000), the next waits.
  for (std::uint32_t i = 1; i <= 63; ++i) {
    REQUIRE(store.check_and_commit(hits, kT0 + 1000 * kLimit + i, d) == StoreStatus::ok);
    REQUIRE(d.allowed);
  }
  REQUIRE(store.check_and_commit(hits, kT0 + 1000 * kLimit + 64, d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
}

// ---- one-time claims (issue 14) -----------------------------------------------

TEST_CASE("lmdb: a claim lives until exactly now_ms + ttl_ms; the sweeps reclaim it then") {
  pvgate_test::TempLmdbStore store;
  bool fresh = false;
  REQUIRE(store.claim_once("short", kT0, 60'000, fresh) == StoreStatus::ok);
  REQUIRE(fresh);
  REQUIRE(store.claim_once("long", kT0, 600'000, fresh) == StoreStatus::ok);
  REQUIRE(fresh);
  REQUIRE(store.claim_once("short", kT0 + 59'999, 60'000, fresh) == StoreStatus::ok);
  CHECK_FALSE(fresh);  // a refused claim does not extend it either
  CHECK(store.store().entries() == 2);
  // At kT0 + 60 s the short claim is gone for the sweep, and only it.
  CHECK(store.store().sweep_all(kT0 + 59'999) == 0);
  CHECK(store.store().sweep_all(kT0 + 60'000) == 1);
  CHECK(store.store().entries() == 1);
  REQUIRE(store.claim_once("long", kT0 + 60'000, 600'000, fresh) == StoreStatus::ok);
  CHECK_FALSE(fresh);
  REQUIRE(store.claim_once("short", kT0 + 60'000, 60'000, fresh) == StoreStatus::ok);
  CHECK(fresh);
  // An expired claim nobody swept yet is taken over in place.
  REQUIRE(store.claim_once("long", kT0 + 600'000, 60'000, fresh) == StoreStatus::ok);
  CHECK(fresh);
  CHECK(store.store().entries() == 2);
  // The sweep that rides on every decision reclaims claims too.
  ThrottleDecision d;
  REQUIRE(store.check_and_commit({hit("rule", 1, 1000)}, kT0 + 10 * 600'000, d) == StoreStatus::ok);
  CHECK(store.store().entries() == 1);  // the rule's log alone
}

TEST_CASE("lmdb: worker processes share one set of claims: one fresh per key") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  { LmdbStore create(options); }
  constexpr int kKeys = 60;
  const int total = sum_over_processes(4, options, [](LmdbStore& store, int p) {
    int won = 0;
    for (int k = 0; k < kKeys; ++k) {
      bool fresh = false;
      if (store.claim_once("solution" + std::to_string(k), kT0 + p, 60'000, fresh) !=
          StoreStatus::ok) {
        return 255;
      }
      if (fresh) ++won;
    }
    return won;
  });
  CHECK(total == kKeys);
  LmdbStore store(options);
  bool fresh = true;
  REQUIRE(store.claim_once("solution0", kT0 + 1000, 60'000, fresh) == StoreStatus::ok);
  CHECK_FALSE(fresh);
}

TEST_CASE("lmdb: full of live claims -> `full`, never eviction, nothing claimed") {
  pvgate_test::TempLmdbStore store(1 << 20);  // 1 MiB
  int stored = 0;
  StoreStatus status = StoreStatus::ok;
  bool fresh = false;
  for (int i = 0; i < 100'000 && status == StoreStatus::ok; ++i) {
    status = store.claim_once("claim" + std::to_string(i), kT0, 60'000, fresh);
    if (status == StoreStatus::ok) {
      REQUIRE(fresh);
      ++stored;
    }
  }
  CHECK(status == StoreStatus::full);
  CHECK_FALSE(fresh);
  CHECK(stored > 1000);
  CHECK(store.store().entries() == static_cast<std::size_t>(stored));  // the refused one: none
  // Every live claim is still there: none was evicted to make room.
  for (int i = 0; i < stored; i += 97) {
    REQUIRE(store.claim_once("claim" + std::to_string(i), kT0 + 1, 60'000, fresh) ==
            StoreStatus::ok);
    CHECK_FALSE(fresh);
  }
}
