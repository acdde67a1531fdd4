#include "run_gate.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

namespace pvgate {
namespace {

using namespace std::chrono_literals;

// Waits up to 5 s for `pred`.
template <class Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Workers as FcgiServer runs them: arrive, then admit() before each unit of work.
struct Pool {
  RunGate gate;
  std::atomic<int> inside{0};  // between admit() and the end of a unit of work
  std::atomic<int> most{0};
  std::atomic<int> units{0};
  std::atomic<bool> block{false};  // units wait in a BlockingSection while set
  std::atomic<int> blocked{0};
  std::vector<std::thread> threads;

  Pool(int limit, int n) : gate(limit) {
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this] {
        RunGate::current() = &gate;
        gate.arrive();
        while (gate.admit()) {
          const int now = inside.fetch_add(1) + 1;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          if (block.load()) {
            inside.fetch_sub(1);  // a waiting worker does not run
            const BlockingSection waiting;
            blocked.fetch_add(1);
            while (block.load()) std::this_thread::sleep_for(1ms);
            blocked.fetch_sub(1);
          } else {
            std::this_thread::sleep_for(200us);
            inside.fetch_sub(1);
          }
          units.fetch_add(1);
        }
        gate.depart();
      });
    }
  }
  ~Pool() {
    block = false;
    gate.stop();
    for (auto& t : threads) t.join();
  }
};

TEST_CASE("run gate: at most `limit` of many workers run at once") {
  Pool pool(3, 16);
  REQUIRE(eventually([&] { return pool.units.load() > 500; }));
  CHECK(pool.most.load() <= 3);
  CHECK(pool.most.load() >= 1);
  CHECK(pool.gate.running() <= 3);
}

TEST_CASE("run gate: a worker waiting in a BlockingSection lets a spare run") {
  Pool pool(2, 8);
  pool.block = true;
  // Every worker ends up waiting on the "network": none of them counts, so
  // all 8 get in, not 2.
  REQUIRE(eventually([&] { return pool.blocked.load() == 8; }));
  CHECK(pool.gate.running() == 0);
  pool.block = false;
  // Back from the wait they run at once, then step back to the limit.
  REQUIRE(eventually([&] { return pool.units.load() > 300; }));
  const int before = pool.units.load();
  pool.most = 0;
  REQUIRE(eventually([&] { return pool.units.load() > before + 300; }));
  CHECK(pool.most.load() <= 2);
}

TEST_CASE("run gate: stop() releases every spare") {
  auto pool = std::make_unique<Pool>(1, 6);
  REQUIRE(eventually([&] { return pool->units.load() > 50; }));
  pool.reset();  // joins: would hang if a spare were never woken
  SUCCEED();
}

TEST_CASE("run gate: a section inside another counts once") {
  RunGate gate(4);
  RunGate::current() = &gate;
  gate.arrive();
  CHECK(gate.running() == 1);
  {
    const BlockingSection outer;
    CHECK(gate.running() == 0);
    {
      const BlockingSection inner;
      CHECK(gate.running() == 0);
    }
    CHECK(gate.running() == 0);
  }
  CHECK(gate.running() == 1);
  gate.depart();
  RunGate::current() = nullptr;
  const BlockingSection outside;  // no gate: nothing happens
  CHECK(gate.running() == 0);
}

}  // namespace
}  // namespace pvgate
