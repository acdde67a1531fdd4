// Time as a collaborator: the handler never reads a global clock, so tests
// drive it with a fake.
#pragma once

#include <chrono>
#include <cstdint>

namespace pvgate {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t unix_ms() const = 0;  // Pipwave's timestamp and throttle windows
  std::int64_t unix_seconds() const { return unix_ms() / 1000; }
  virtual std::chrono::steady_clock::time_point steady() const = 0;  // for latencies
};

class SystemClock final : public Clock {
 public:
  std::int64_t unix_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::chrono::steady_clock::time_point steady() const override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace pvgate
