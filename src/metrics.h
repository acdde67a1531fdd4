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
#include "phone.h"
#include "validate.h"

namespace pvgate {

// Every metric pvgate exposes, declared once: X(id, name, type, help). The
// render order is this order; `id` names the family in Metrics::render.
#define PVGATE_METRICS(X)                                                                          \
  X(build_info, "pvgate_build_info", "gauge", "pvgate's version.")                                 \
  X(requests, "pvgate_requests_total", "counter", "Requests by action and outcome.")               \
  X(in_flight, "pvgate_requests_in_flight", "gauge", "Requests being handled now.")                \
  X(throttle, "pvgate_throttle_decisions_total", "counter",                                        \
    "Throttle decisions by rule and result (ok, over, over_dry_run).")                             \
  X(upstream_latency, "pvgate_upstream_latency_seconds", "histogram", "Pipwave call latency.")     \
  X(upstream_errors, "pvgate_upstream_errors_total", "counter", "Failed Pipwave calls by kind.")   \
  X(upstream_connections, "pvgate_upstream_connections_opened_total", "counter",                   \
    "New connections (TCP + TLS) opened to Pipwave; the rest were reused.")                        \
  X(store_errors, "pvgate_store_errors_total", "counter", "Throttle store failures by kind.")      \
  X(reloads, "pvgate_config_reloads_total", "counter", "SIGHUP reloads by result.")                \
  X(phone_refusals, "pvgate_phone_refusals_total", "counter",                                      \
    "Phone numbers refused before any count or call, by number type (invalid: not a number).")     \
  X(verifications, "pvgate_verifications_total", "counter",                                        \
    "Verification sessions by event (issued, verified, wrong_answer, unknown_reference, locked).") \
  X(challenges, "pvgate_challenges_total", "counter",                                              \
    "Challenges by kind and event (issued, passed, missing, invalid, expired, too_easy, "          \
    "replayed, refused, provider_error, bypassed).")

enum class MetricId {
#define PVGATE_METRIC_ID(id, name, type, help) id,
  PVGATE_METRICS(PVGATE_METRIC_ID)
#undef PVGATE_METRIC_ID
};

struct MetricSpec {
  std::string_view name;
  std::string_view type;  // counter | gauge | histogram
  std::string_view help;
};

inline constexpr MetricSpec kMetricSpecs[] = {
#define PVGATE_METRIC_SPEC(id, name, type, help) {name, type, help},
    PVGATE_METRICS(PVGATE_METRIC_SPEC)
#undef PVGATE_METRIC_SPEC
};

constexpr const MetricSpec& metric_spec(MetricId id) {
  return kMetricSpecs[static_cast<int>(id)];
}

// Why an upstream call failed, for pvgate_upstream_errors_total's `kind`
// label: X(name), the label value being the name.
#define PVGATE_UPSTREAM_FAULTS(X)                             \
  X(not_delivered) /* refused, DNS failure */                 \
  X(timeout)       /* no answer within upstream.timeout_ms */ \
  X(tls)           /* handshake or certificate failure */     \
  X(too_large)     /* answer over max_response_bytes */       \
  X(transport)     /* any other transport error */            \
  X(bad_http)      /* HTTP status outside 2xx-4xx */          \
  X(bad_answer)    /* not a JSON object with a status */      \
  X(bad_status)    /* a merchant-setup status (401, 403, 404, 500, 5004-5006, unknown) */

enum class UpstreamFault {
#define PVGATE_FAULT_ID(id) id,
  PVGATE_UPSTREAM_FAULTS(PVGATE_FAULT_ID)
#undef PVGATE_FAULT_ID
      kCount,
};

// Why the throttle store failed, for pvgate_store_errors_total's `kind` label.
#define PVGATE_STORE_FAULTS(X)                                       \
  X(unavailable) /* not reached, or it answered an error */          \
  X(full)        /* no room even after reclaiming expired entries */ \
  X(internal)    /* a broken invariant (a bug in pvgate): always refused */

enum class StoreFault {
#define PVGATE_FAULT_ID(id) id,
  PVGATE_STORE_FAULTS(PVGATE_FAULT_ID)
#undef PVGATE_FAULT_ID
      kCount,
};

// What happened to a verification session, for pvgate_verifications_total's
// `event` label.
#define PVGATE_VERIFICATION_EVENTS(X)                                                            \
  X(issued)            /* Pipwave sent a code: a session was opened */                           \
  X(verified)          /* Pipwave accepted the answer: the session was consumed, token signed */ \
  X(wrong_answer)      /* Pipwave's 5052 */                                                      \
  X(unknown_reference) /* never issued, expired, used, or another user's or phone's */           \
  X(locked)            /* the session's answer attempts were used up */

enum class VerificationEvent {
#define PVGATE_FAULT_ID(id) id,
  PVGATE_VERIFICATION_EVENTS(PVGATE_FAULT_ID)
#undef PVGATE_FAULT_ID
      kCount,
};

// What happened to a challenge, for pvgate_challenges_total's `event` label.
#define PVGATE_CHALLENGE_EVENTS(X)                                                     \
  X(issued)         /* an ALTCHA challenge was handed out */                           \
  X(passed)         /* a send-token's solution or token was accepted */                \
  X(missing)        /* a challenge was required and none was sent */                   \
  X(invalid)        /* malformed, forged or wrong ALTCHA solution */                   \
  X(expired)        /* an ALTCHA challenge past its expiresAt */                       \
  X(too_easy)       /* solved below the difficulty now required */                     \
  X(replayed)       /* an ALTCHA solution already used */                              \
  X(refused)        /* the CAPTCHA provider said no */                                 \
  X(provider_error) /* the CAPTCHA provider could not be asked or answered nonsense */ \
  X(bypassed)       /* a store or provider failure let it pass (on_store_error/on_error allow) */

enum class ChallengeEvent {
#define PVGATE_FAULT_ID(id) id,
  PVGATE_CHALLENGE_EVENTS(PVGATE_FAULT_ID)
#undef PVGATE_FAULT_ID
      kCount,
};

// The label values ("timeout", "full", "issued"), as declared above.
std::string_view fault_name(UpstreamFault fault);
std::string_view fault_name(StoreFault fault);
std::string_view event_name(VerificationEvent event);
std::string_view event_name(ChallengeEvent event);

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
  void store_error(StoreFault kind);
  void reload(bool ok);
  // A number refused by the phone stage: its type, or none for an invalid one.
  void phone_refused(std::optional<PhoneType> type) {
    const auto i = type ? static_cast<std::size_t>(*type) + 1 : 0;
    if (i < phone_refusals_.size()) phone_refusals_[i].fetch_add(1, std::memory_order_relaxed);
  }
  void verification(VerificationEvent event) {
    verifications_[static_cast<int>(event)].fetch_add(1, std::memory_order_relaxed);
  }
  // `kind`: ChallengeKind's value (config.h), 1 (altcha) .. 4 (recaptcha).
  void challenge(int kind, ChallengeEvent event) {
    if (kind < 1 || kind > static_cast<int>(challenges_.size())) return;
    challenges_[kind - 1][static_cast<int>(event)].fetch_add(1, std::memory_order_relaxed);
  }
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
  std::array<std::atomic<std::uint64_t>, static_cast<int>(StoreFault::kCount)> store_faults_{};
  std::array<std::atomic<std::uint64_t>, static_cast<int>(VerificationEvent::kCount)>
      verifications_{};
  // [0]: invalid; [1 + PhoneType]: refused for its type.
  std::array<std::atomic<std::uint64_t>, static_cast<int>(PhoneType::unknown) + 2>
      phone_refusals_{};
  std::array<std::array<std::atomic<std::uint64_t>, static_cast<int>(ChallengeEvent::kCount)>, 4>
      challenges_{};
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
