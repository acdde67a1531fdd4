// The metrics' memory layout: one MetricsCells, in private memory or in a
// file every worker maps MAP_SHARED (metrics_file.h). Only std::atomic cells
// and their fixed-size tables, so processes and threads share them without
// locks and without data races. Any change here bumps kMetricsLayoutVersion:
// a file of another layout is replaced, never read as this one.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "metrics.h"

namespace pvgate {

// Shared memory holds only address-free, lock-free atomics (true on x86-64
// and aarch64); a lock-based atomic would lock a per-process table.
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

inline constexpr std::uint64_t kMetricsMagic = 0x3153434952544d50;  // "PMTRICS1", little endian
inline constexpr std::uint32_t kMetricsLayoutVersion = 1;

// Slots for names (merchants, throttle rules): a fixed capacity, the last
// slot counting every name past it ("(other)").
inline constexpr int kMerchantSlots = 64;     // [0] "(none)", [1] "(other)", then merchants
inline constexpr int kRuleSlots = 128;        // [0] "(other)", then rules
inline constexpr int kProcessSlots = 128;     // one per live process
inline constexpr int kActionColumns = 3;      // send-token, verify-token-answer, none
inline constexpr int kThrottleResults = 3;    // ok, over, over_dry_run
inline constexpr int kOperationRoutes = 4;    // healthz, metrics, jwks.json, challenge
inline constexpr std::size_t kNameWords = 8;  // names up to 64 bytes

// A name claimed once by CAS (empty -> claiming -> ready) and never freed, so
// a name is always in the first slot that holds it: a lookup scans in order.
struct NameSlot {
  static constexpr std::uint32_t kEmpty = 0, kClaiming = 1, kReady = 2;
  std::atomic<std::uint32_t> state;
  std::atomic<std::uint32_t> size;
  std::array<std::atomic<std::uint64_t>, kNameWords> words;
};

// One process's gauges. `owner` is the process, pid and start time in one
// word (owner_word), claimed by CAS in one step, so no reader ever sees a new
// pid with an old start time. A slot whose owner is gone (or whose pid now
// names another process) is ignored at render time and may be claimed again.
struct ProcessSlot {
  std::atomic<std::uint64_t> owner;  // 0: free
  std::atomic<std::int64_t> in_flight;
  std::atomic<std::int64_t> upstream_in_flight;
  std::atomic<std::int64_t> upstream_max;
};

// pid_max is at most 2^22 on Linux; start times in clock ticks since boot fit
// the other 42 bits for longer than any uptime.
inline constexpr int kPidBits = 22;
constexpr std::uint64_t owner_word(std::int64_t pid, std::uint64_t start_ticks) {
  return (start_ticks << kPidBits) | static_cast<std::uint64_t>(pid);
}
constexpr std::int64_t owner_pid(std::uint64_t owner) {
  return static_cast<std::int64_t>(owner & ((std::uint64_t{1} << kPidBits) - 1));
}
constexpr std::uint64_t owner_ticks(std::uint64_t owner) {
  return owner >> kPidBits;
}

struct MetricsHeader {
  std::atomic<std::uint64_t> magic;  // stored last when the file is made
  std::atomic<std::uint32_t> version;
  std::atomic<std::uint32_t> header_bytes;
  std::atomic<std::uint64_t> total_bytes;  // sizeof(MetricsCells)
  // What sizes the tables, so a build with other vocabularies is caught even
  // if someone forgot to bump the version.
  std::atomic<std::uint32_t> merchant_slots, rule_slots, process_slots, outcomes, upstream_faults,
      store_faults, verification_events, challenge_events, phone_types, buckets;
};

struct MetricsCells {
  MetricsHeader header;
  std::array<NameSlot, kMerchantSlots> merchants;
  std::array<std::array<std::array<std::atomic<std::uint64_t>, kOutcomeCount>, kActionColumns>,
             kMerchantSlots>
      requests;
  std::array<std::atomic<std::uint64_t>, kOperationRoutes> operations;
  std::array<NameSlot, kRuleSlots> rules;
  std::array<std::array<std::atomic<std::uint64_t>, kThrottleResults>, kRuleSlots> throttle;
  std::array<std::atomic<std::uint64_t>, Metrics::kLatencyBuckets.size() + 1> latency_buckets;
  std::atomic<std::uint64_t> latency_count;
  std::atomic<std::uint64_t> latency_sum_micros;
  std::array<std::atomic<std::uint64_t>, static_cast<int>(UpstreamFault::kCount)> faults;
  std::atomic<std::uint64_t> connections_opened;
  std::array<std::atomic<std::uint64_t>, static_cast<int>(StoreFault::kCount)> store_faults;
  std::array<std::atomic<std::uint64_t>, static_cast<int>(VerificationEvent::kCount)> verifications;
  // [0]: invalid; [1 + PhoneType]: refused for its type.
  std::array<std::atomic<std::uint64_t>, static_cast<int>(PhoneType::unknown) + 2> phone_refusals;
  std::array<std::array<std::atomic<std::uint64_t>, static_cast<int>(ChallengeEvent::kCount)>, 4>
      challenges;
  std::atomic<std::uint64_t> reloads_ok;
  std::atomic<std::uint64_t> reloads_rejected;
  std::array<ProcessSlot, kProcessSlots> procs;
};

// Zero memory is a valid MetricsCells with no header (all atomics start at 0).
static_assert(std::is_trivially_destructible_v<MetricsCells>);

// Fills in the header (magic last) of zeroed cells.
void init_header(MetricsCells& cells);
// True when `cells`'s header describes this build's layout.
bool header_matches(const MetricsCells& cells);

}  // namespace pvgate
