// Time as a collaborator: the handler never reads a global clock, so tests
// drive it with a fake.
#pragma once

#include <chrono>
#include <cstdint>

namespace pvgate {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t unix_seconds() const = 0;                     // for Pipwave's timestamp
  virtual std::chrono::steady_clock::time_point steady() const = 0;  // for latencies
};

class SystemClock final : public Clock {
 public:
  std::int64_t unix_seconds() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::chrono::steady_clock::time_point steady() const override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace pvgate
