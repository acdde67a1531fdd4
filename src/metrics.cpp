#include "metrics.h"

#include <cstdio>

#include "version.h"

namespace pvgate {
namespace {

constexpr std::array<std::string_view, 3> kActions = {"send-token", "verify-token-answer", "none"};

std::string_view fault_name(int i) {
  switch (static_cast<UpstreamFault>(i)) {
    case UpstreamFault::not_delivered:
      return "not_delivered";
    case UpstreamFault::timeout:
      return "timeout";
    case UpstreamFault::tls:
      return "tls";
    case UpstreamFault::too_large:
      return "too_large";
    case UpstreamFault::transport:
      return "transport";
    case UpstreamFault::bad_http:
      return "bad_http";
    case UpstreamFault::bad_answer:
      return "bad_answer";
    case UpstreamFault::bad_status:
      return "bad_status";
    case UpstreamFault::kCount:
      break;
  }
  return "unknown";
}

// Label values here are rule names (a-z 0-9 - _) or fixed words: nothing to escape.
void line(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

void help(std::string& out, std::string_view name, std::string_view type, std::string_view text) {
  out.append("# HELP ").append(name).append(" ").append(text).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

Metrics::Metrics() = default;

void Metrics::request(std::optional<Action> action, Outcome outcome) {
  // kActions' last column counts requests that named no action.
  const std::size_t a = action ? static_cast<std::size_t>(*action) : kActions.size() - 1;
  if (static_cast<int>(outcome) < 0 || static_cast<int>(outcome) >= kOutcomes) return;
  requests_[a][static_cast<int>(outcome)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::throttle(const std::vector<ThrottleCount>& counts) {
  std::lock_guard<std::mutex> lock(throttle_mutex_);
  for (const auto& [rule, result] : counts) {
    const auto it = throttle_.find(std::pair<std::string_view, std::string_view>(*rule, result));
    if (it != throttle_.end()) {
      ++it->second;
    } else {
      throttle_.emplace(std::make_pair(*rule, std::string(result)), 1);
    }
  }
}

void Metrics::upstream_latency(double seconds) {
  std::size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  latency_buckets_[i].fetch_add(1, std::memory_order_relaxed);
  latency_count_.fetch_add(1, std::memory_order_relaxed);
  latency_sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6),
                                std::memory_order_relaxed);
}

void Metrics::upstream_fault(UpstreamFault kind) {
  faults_[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::upstream_connections_opened(long n) {
  if (n > 0)
    connections_opened_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
}

void Metrics::store_error(std::string_view kind) {
  (kind == "full" ? store_full_ : store_unavailable_).fetch_add(1, std::memory_order_relaxed);
}

void Metrics::reload(bool ok) {
  (ok ? reloads_ok_ : reloads_rejected_).fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  help(out, "pvgate_build_info", "gauge", "pvgate's version.");
  line(out, "pvgate_build_info", "version=\"" PVGATE_VERSION "\"", 1);

  help(out, "pvgate_requests_total", "counter", "Requests by action and outcome.");
  for (std::size_t a = 0; a < kActions.size(); ++a) {
    for (int o = 0; o < kOutcomes; ++o) {
      const std::uint64_t v = requests_[a][o].load(std::memory_order_relaxed);
      if (v == 0) continue;
      line(out, "pvgate_requests_total",
           "action=\"" + std::string(kActions[a]) + "\",outcome=\"" +
               std::string(outcome_name(static_cast<Outcome>(o))) + "\"",
           v);
    }
  }

  help(out, "pvgate_requests_in_flight", "gauge", "Requests being handled now.");
  line(out, "pvgate_requests_in_flight", "",
       static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load())));

  help(out, "pvgate_throttle_decisions_total", "counter",
       "Throttle decisions by rule and result (ok, over, over_dry_run).");
  {
    std::lock_guard<std::mutex> lock(throttle_mutex_);
    for (const auto& [key, v] : throttle_) {
      line(out, "pvgate_throttle_decisions_total",
           "rule=\"" + key.first + "\",result=\"" + key.second + "\"", v);
    }
  }

  help(out, "pvgate_upstream_latency_seconds", "histogram", "Pipwave call latency.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
    cumulative += latency_buckets_[i].load(std::memory_order_relaxed);
    char le[32];
    if (i < kLatencyBuckets.size()) {
      std::snprintf(le, sizeof le, "le=\"%g\"", kLatencyBuckets[i]);
    } else {
      std::snprintf(le, sizeof le, "le=\"+Inf\"");
    }
    line(out, "pvgate_upstream_latency_seconds_bucket", le, cumulative);
  }
  char sum[64];
  std::snprintf(sum, sizeof sum, "pvgate_upstream_latency_seconds_sum %.6f\n",
                static_cast<double>(latency_sum_micros_.load()) / 1e6);
  out.append(sum);
  line(out, "pvgate_upstream_latency_seconds_count", "", latency_count_.load());

  help(out, "pvgate_upstream_errors_total", "counter", "Failed Pipwave calls by kind.");
  for (int i = 0; i < static_cast<int>(UpstreamFault::kCount); ++i) {
    line(out, "pvgate_upstream_errors_total", "kind=\"" + std::string(fault_name(i)) + "\"",
         faults_[i].load(std::memory_order_relaxed));
  }
  help(out, "pvgate_upstream_connections_opened_total", "counter",
       "New connections (TCP + TLS) opened to Pipwave; the rest were reused.");
  line(out, "pvgate_upstream_connections_opened_total", "", connections_opened_.load());

  help(out, "pvgate_store_errors_total", "counter", "Throttle store failures by kind.");
  line(out, "pvgate_store_errors_total", "kind=\"unavailable\"", store_unavailable_.load());
  line(out, "pvgate_store_errors_total", "kind=\"full\"", store_full_.load());

  help(out, "pvgate_config_reloads_total", "counter", "SIGHUP reloads by result.");
  line(out, "pvgate_config_reloads_total", "result=\"ok\"", reloads_ok_.load());
  line(out, "pvgate_config_reloads_total", "result=\"rejected\"", reloads_rejected_.load());
  return out;
}

}  // namespace pvgate
