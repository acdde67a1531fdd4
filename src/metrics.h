// Prometheus counters, gauges and one histogram, kept with atomics (no
// third-party library). Labels never carry a phone number, user id or IP:
// only fixed vocabularies (action, outcome, error kind) and operator-chosen
// rule names.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outcome.h"
#include "validate.h"

namespace pvgate {

// Why an upstream call failed, for the metric's `kind` label.
enum class UpstreamFault {
  not_delivered,  // refused, DNS failure
  timeout,
  tls,
  too_large,
  transport,
  bad_http,    // HTTP status outside 2xx-4xx
  bad_answer,  // not a JSON object with a status
  bad_status,  // a merchant-setup status (401, 403, 404, 500, 5004-5006, unknown)
  kCount,
};

class Metrics {
 public:
  Metrics();

  // No action: an unknown route, healthz or metrics.
  void request(std::optional<Action> action, Outcome outcome);
  // One request's throttle decisions, counted under one lock.
  struct ThrottleCount {
    const std::string* rule;
    std::string_view result;  // ok | over | over_dry_run
  };
  void throttle(const std::vector<ThrottleCount>& counts);
  void upstream_latency(double seconds);
  void upstream_fault(UpstreamFault kind);
  void upstream_connections_opened(long n);
  void store_error(std::string_view kind);  // unavailable | full
  void reload(bool ok);
  void in_flight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }

  // The Prometheus text exposition format (version 0.0.4).
  std::string render() const;

  static constexpr std::array<double, 12> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                             0.5,   1,    2.5,   5,    10,  30};

 private:
  static constexpr int kOutcomes = kOutcomeCount;
  std::array<std::array<std::atomic<std::uint64_t>, kOutcomes>, 3> requests_{};
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> latency_buckets_{};
  std::atomic<std::uint64_t> latency_count_{0};
  std::atomic<std::uint64_t> latency_sum_micros_{0};
  std::array<std::atomic<std::uint64_t>, static_cast<int>(UpstreamFault::kCount)> faults_{};
  std::atomic<std::uint64_t> connections_opened_{0};
  std::atomic<std::uint64_t> store_unavailable_{0};
  std::atomic<std::uint64_t> store_full_{0};
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_rejected_{0};
  std::atomic<std::int64_t> in_flight_{0};

  // (rule, result) in any mix of std::string and std::string_view, so a count
  // is found without building a key.
  struct RuleResultLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      const std::string_view a1 = a.first, b1 = b.first;
      if (a1 != b1) return a1 < b1;
      return std::string_view(a.second) < std::string_view(b.second);
    }
  };
  mutable std::mutex throttle_mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t, RuleResultLess> throttle_;
};

}  // namespace pvgate
