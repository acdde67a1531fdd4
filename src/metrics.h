// Prometheus counters, gauges and one histogram, kept with atomics (no
// third-party library). Labels never carry a phone number, user id or IP:
// only fixed vocabularies (action, outcome, error kind) and operator-chosen
// rule names.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outcome.h"
#include "phone.h"
#include "validate.h"

namespace pvgate {

// Every metric pvgate exposes, declared once: X(id, name, type, help). The
// render order is this order; `id` names the family in Metrics::render.
#define PVGATE_METRICS(X)                                                                          \
  X(build_info, "pvgate_build_info", "gauge", "pvgate's version.")                                 \
  X(requests, "pvgate_requests_total", "counter", "API requests by merchant, action and outcome.") \
  X(in_flight, "pvgate_requests_in_flight", "gauge", "Requests being handled now.")                \
  X(operations, "pvgate_operations_requests_total", "counter",                                     \
    "Operations requests (healthz, metrics, jwks.json, challenge) by route.")                      \
  X(throttle, "pvgate_throttle_decisions_total", "counter",                                        \
    "Throttle decisions by rule and result (ok, over, over_dry_run).")                             \
  X(upstream_latency, "pvgate_upstream_latency_seconds", "histogram", "Pipwave call latency.")     \
  X(upstream_errors, "pvgate_upstream_errors_total", "counter", "Failed Pipwave calls by kind.")   \
  X(upstream_connections, "pvgate_upstream_connections_opened_total", "counter",                   \
    "New connections (TCP + TLS) opened to Pipwave; the rest were reused.")                        \
  X(upstream_in_flight, "pvgate_upstream_in_flight", "gauge",                                      \
    "Upstream calls (Pipwave, CAPTCHA checks) in flight now.")                                     \
  X(upstream_max, "pvgate_upstream_max_connections", "gauge",                                      \
    "Upstream calls allowed in flight at once (upstream.max_connections per worker, summed).")     \
  X(store_errors, "pvgate_store_errors_total", "counter", "Throttle store failures by kind.")      \
  X(store_used, "pvgate_store_used_bytes", "gauge", "Throttle store space in use.")                \
  X(store_max, "pvgate_store_max_bytes", "gauge", "Throttle store size bound.")                    \
  X(reloads, "pvgate_config_reloads_total", "counter", "SIGHUP reloads by result.")                \
  X(phone_refusals, "pvgate_phone_refusals_total", "counter",                                      \
    "Phone numbers refused before any count or call, by number type (invalid: not a number).")     \
  X(verifications, "pvgate_verifications_total", "counter",                                        \
    "Verification sessions by event (issued, verified, wrong_answer, unknown_reference, locked).") \
  X(challenges, "pvgate_challenges_total", "counter",                                              \
    "Challenges by kind and event (issued, passed, missing, invalid, expired, too_easy, "          \
    "replayed, refused, provider_error, bypassed).")                                               \
  X(workers, "pvgate_workers", "gauge", "Live pvgate processes sharing these metrics.")            \
  X(process_start, "process_start_time_seconds", "gauge",                                          \
    "Start time of the oldest live pvgate process, seconds since the epoch.")                      \
  X(process_rss, "process_resident_memory_bytes", "gauge",                                         \
    "Resident memory of the live pvgate processes, summed.")                                       \
  X(process_fds, "process_open_fds", "gauge",                                                      \
    "Open file descriptors of the live pvgate processes, summed.")                                 \
  X(process_threads, "process_threads", "gauge", "Threads of the live pvgate processes, summed.")

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

// What one process reports about itself, for the process_* families.
struct ProcessStats {
  double start_time_seconds = 0;  // since the epoch
  std::uint64_t resident_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t threads = 0;
};
// Reads a process's stats (/proc/PID/...), or nullopt when that process is
// gone or is not the one started at `start_ticks` (a reused pid); 0 matches any.
using ProcessProbe = std::optional<ProcessStats> (*)(std::int64_t pid, std::uint64_t start_ticks);
std::optional<ProcessStats> proc_probe(std::int64_t pid, std::uint64_t start_ticks);
// This process's start time in clock ticks since boot (/proc/self/stat field 22).
std::uint64_t proc_start_ticks(std::int64_t pid);

// Values read at scrape time from elsewhere (the throttle store).
struct ScrapeExtras {
  std::optional<std::uint64_t> store_used_bytes;
  std::optional<std::uint64_t> store_max_bytes;  // unknown (unset) for a store without a bound
};

struct MetricsCells;  // metrics_cells.h: the layout, in a file or in private memory

// The counters live in MetricsCells: in private memory (Metrics()), or in a
// file every worker on the host maps (open_metrics_file, metrics_file.h), so
// a scrape of any worker shows the host's totals. Counters only ever grow;
// gauges are per-process slots summed over live processes at render time.
class Metrics {
 public:
  // Private memory: this process's counts only.
  Metrics();
  // `cells`: a mapping of the metrics file (open_metrics_file); `release`
  // unmaps it; `source` is the file's path.
  Metrics(MetricsCells* cells, std::function<void()> release, std::string source);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Where the counts live ("" for private memory), for the start-up lines.
  const std::string& source() const { return source_; }
  // A table overflow (more merchants or rules than slots) is reported once
  // per process through `warn`, if set (before serving).
  void set_warn(std::function<void(const std::string&)> warn) { warn_ = std::move(warn); }
  // Tests: a fake for /proc.
  void set_process_probe(ProcessProbe probe) { probe_ = probe; }

  // Label sets up front: every merchant and rule rendered from the start.
  void declare_merchants(const std::vector<std::string>& names);
  void declare_rules(const std::vector<std::string>& names);
  // This process's upstream.max_connections (summed over live processes).
  void set_upstream_max(long max_connections);

  // An API request: `merchant` empty when none was found (label "(none)");
  // no action: an unknown route.
  void request(std::string_view merchant, std::optional<Action> action, Outcome outcome);
  // An operations request: `route` one of healthz, metrics, jwks.json, challenge.
  void operation(std::string_view route);
  // One request's throttle decisions.
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
  void phone_refused(std::optional<PhoneType> type);
  void verification(VerificationEvent event);
  // `kind`: ChallengeKind's value (config.h), 1 (altcha) .. 4 (recaptcha).
  void challenge(int kind, ChallengeEvent event);
  void in_flight(int delta);
  void upstream_in_flight(int delta);

  // The Prometheus text exposition format (version 0.0.4).
  std::string render(const ScrapeExtras& extras = {}) const;

  static constexpr std::array<double, 12> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                             0.5,   1,    2.5,   5,    10,  30};

 private:
  // Claims this process's gauge slot (reclaiming a dead process's).
  void claim_process_slot();
  void overflowed(const char* table, std::string_view name);

  MetricsCells* cells_;
  std::function<void()> release_;
  std::string source_;
  int slot_ = -1;  // this process's slot in cells_->procs, -1 when all are taken
  ProcessProbe probe_ = proc_probe;
  std::function<void(const std::string&)> warn_;
  std::atomic<bool> merchant_overflow_logged_{false};
  std::atomic<bool> rule_overflow_logged_{false};
};

}  // namespace pvgate
