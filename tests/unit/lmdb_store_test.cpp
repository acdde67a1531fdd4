// What only the local store must prove: sharing across processes, surviving
// restarts and killed writers, and staying bounded.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
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

TEST_CASE("lmdb: worker processes share one set of counts") {
  pvgate_test::TempDir dir;
  const LmdbStoreOptions options{dir.path() + "/t", 4 << 20, 8};
  { LmdbStore create(options); }
  constexpr int kProcesses = 4;
  constexpr int kTries = 40;
  constexpr std::uint32_t kLimit = 23;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int granted = 0;
      try {
        LmdbStore store(options);  // each process opens its own environment
        for (int i = 0; i < kTries; ++i) {
          ThrottleDecision d;
          if (store.check_and_commit({hit("shared", kLimit, 60'000)}, kT0 + i, d) ==
                  StoreStatus::ok &&
              d.allowed) {
            ++granted;
          }
        }
      } catch (...) {
        ::_exit(255);
      }
      ::_exit(granted);
    }
    children.push_back(pid);
  }
  int total = 0;
  for (const pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) != 255);
    total += WEXITSTATUS(status);
  }
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
    const char byte = 'r';
    [[maybe_unused]] auto n = ::write(ready[1], &byte, 1);
    for (std::int64_t i = 0;; ++i) {  // hammer until killed, often inside a write txn
      ThrottleDecision d;
      store.check_and_commit({hit("k" + std::to_string(i % 1000), 5, 60'000)}, kT0 + i, d);
    }
  }
  char byte = 0;
  REQUIRE(::read(ready[0], &byte, 1) == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
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
