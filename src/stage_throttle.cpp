// Stage: throttle (country filter, rules and the wrong-answer lock, all or nothing).
#include <vector>

#include "stages.h"

namespace pvgate {

namespace {

void count(const ThrottleVerdict& verdict, Metrics& metrics) {
  thread_local std::vector<Metrics::ThrottleCount> counts;
  counts.clear();
  for (const auto& rv : verdict.rules) {
    counts.push_back({&rv.rule, !rv.over ? "ok" : rv.dry_run ? "over_dry_run" : "over"});
  }
  metrics.throttle(counts);
}

}  // namespace

void count_store_status(const Services& s, StoreStatus status) {
  if (s.metrics == nullptr) return;
  switch (status) {
    case StoreStatus::ok:
      return;
    case StoreStatus::unavailable:
      return s.metrics->store_error(StoreFault::unavailable);
    case StoreStatus::full:
      return s.metrics->store_error(StoreFault::full);
    case StoreStatus::internal:
      return s.metrics->store_error(StoreFault::internal);
  }
}

StageResult throttle(Exchange& ex, const Services& s) {
  const ThrottleConfig& config = ex.config->throttle;
  if (!config.enabled) return std::nullopt;
  Trace& trace = ex.trace;
  if (s.store == nullptr && !config.rules.empty()) {
    trace.detail = "throttle rules configured but no store open (restart to apply)";
  }
  const ClientFields& client = ex.client;
  // With verification sessions the answer attempts count per session (the
  // session stage), not per merchant and reference: a reference alone would
  // let a stranger lock the owner's code check.
  const bool per_session = ex.config->verification.enabled;
  const ThrottleSubject subject{*ex.action,
                                ex.merchant->name,
                                client.user_id,
                                client.dialing_code,
                                client.contact_no,
                                per_session ? std::nullopt : client.reference,
                                ex.request.remote_addr,
                                ex.phone ? ex.phone->region : std::string()};
  ThrottleVerdict& verdict = ex.verdict;
  verdict = throttle_check(config, s.store, subject, s.clock.unix_ms());
  trace.throttle = describe_verdict(verdict);
  if (s.metrics != nullptr) count(verdict, *s.metrics);
  count_store_status(s, verdict.store_status);
  switch (verdict.result) {
    case ThrottleResult::pass:
      return std::nullopt;
    case ThrottleResult::reject: {
      Result r = local_result(Outcome::too_frequent);
      r.seconds_till_resend = verdict.retry_after_s;
      return r;
    }
    case ThrottleResult::country_denied:
      return local_result(Outcome::country_denied);
    case ThrottleResult::store_denied:
      trace.detail = "throttle store failed; on_store_error: deny";
      return local_result(Outcome::store_unavailable);
    case ThrottleResult::store_bypassed:
      trace.detail = "throttle store failed; on_store_error: allow";
      return std::nullopt;
    case ThrottleResult::store_internal:
      // A bug in pvgate, not an outage: refused whatever on_store_error says,
      // and logged at error so it is seen, not only counted.
      trace.detail = "throttle store: broken invariant: " + verdict.broken + "; refused";
      s.log.error(trace.detail);
      return local_result(Outcome::store_unavailable);
  }
  return std::nullopt;
}

}  // namespace pvgate
