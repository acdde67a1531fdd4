// Test doubles for the handler's collaborators, shared by the unit tests and
// the whole-pipeline fuzz target: a settable clock, a scripted upstream that
// records its calls, a logger that keeps its lines, a store that is down.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "clock.h"
#include "log.h"
#include "throttle_store.h"
#include "upstream.h"

namespace pvgate_test {

class FakeClock final : public pvgate::Clock {
 public:
  std::int64_t unix_ms() const override { return now_ms; }
  std::chrono::steady_clock::time_point steady() const override { return {}; }
  std::int64_t now_ms = 1539677150'000;  // the API document's example timestamp
};

class FakeUpstream final : public pvgate::Upstream {
 public:
  pvgate::UpstreamResult next;
  // Answers for the next calls, first first (a CAPTCHA check, then the
  // forward); `next` once it is empty.
  std::deque<pvgate::UpstreamResult> script;
  bool throw_instead = false;
  std::vector<pvgate::UpstreamCall> calls;
  std::vector<std::string> urls;  // each call's target
  pvgate::UpstreamResult post(const pvgate::UpstreamConfig& config,
                              const pvgate::UpstreamCall& call) override {
    calls.push_back(call);
    urls.push_back(config.url);
    if (throw_instead) throw std::runtime_error("boom");
    if (script.empty()) return next;
    pvgate::UpstreamResult r = std::move(script.front());
    script.pop_front();
    return r;
  }
  void answer(const std::string& body, long http = 200) {
    next = pvgate::UpstreamResult{};
    next.http_status = http;
    next.body = body;
  }
};

// An upstream that keeps every call and answers only when told, from a
// thread of the test's choosing: the completion arrives after run() returned,
// on another thread, as CurlUpstream's does.
class DeferredUpstream final : public pvgate::Upstream {
 public:
  struct Pending {
    pvgate::UpstreamCall call;
    Done done;
  };
  void post_async(const pvgate::UpstreamConfig&, pvgate::UpstreamCall call, Done done) override {
    std::lock_guard<std::mutex> lock(mutex);
    pending.push_back({std::move(call), std::move(done)});
  }
  pvgate::UpstreamResult post(const pvgate::UpstreamConfig&, const pvgate::UpstreamCall&) override {
    throw std::logic_error("DeferredUpstream answers only asynchronously");
  }
  // Answers call `i` with `result` on a new thread and waits for that thread.
  // Returns the id of the thread that ran the completion.
  std::thread::id answer_from_thread(std::size_t i, pvgate::UpstreamResult result) {
    Done done;
    {
      std::lock_guard<std::mutex> lock(mutex);
      done = std::move(pending.at(i).done);
    }
    std::thread::id ran_on;
    std::thread t([&] {
      ran_on = std::this_thread::get_id();
      done(std::move(result));
    });
    t.join();
    return ran_on;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex);
    return pending.size();
  }

  std::mutex mutex;
  std::vector<Pending> pending;
};

class CapturingLogger final : public pvgate::Logger {
 public:
  std::vector<std::string> lines;
  void emit(pvgate::LogLevel, const std::string& line) override { lines.push_back(line); }
  std::string all() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
};

// A store that never answers, as a dead Redis or a broken LMDB would.
class DownStore final : public pvgate::ThrottleStore {
 public:
  pvgate::StoreStatus check_and_commit(const std::vector<pvgate::ThrottleHit>&, std::int64_t,
                                       pvgate::ThrottleDecision&) override {
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus refund(const std::vector<pvgate::ThrottleHit>&, std::int64_t) override {
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus peek(const std::vector<pvgate::ThrottleHit>&, std::int64_t,
                           pvgate::ThrottleDecision&) override {
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus session_open(const std::string&, const std::string&, std::int64_t,
                                   std::int64_t) override {
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus session_attempt(const std::string&, const std::string&, std::uint32_t,
                                      std::int64_t, pvgate::SessionAttempt&) override {
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus session_consume(const std::string&, const std::string&, std::int64_t,
                                      bool& consumed) override {
    consumed = false;
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus claim_once(const std::string&, std::int64_t, std::int64_t,
                                 bool& fresh) override {
    fresh = false;
    return pvgate::StoreStatus::unavailable;
  }
  pvgate::StoreStatus ping() override { return pvgate::StoreStatus::unavailable; }
};

}  // namespace pvgate_test
