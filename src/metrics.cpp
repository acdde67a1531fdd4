#include "metrics.h"

#include <cstdio>

#include "version.h"

namespace pvgate {
namespace {

constexpr std::array<std::string_view, 3> kActions = {"send-token", "verify-token-answer", "none"};

// Label values here are rule names (a-z 0-9 - _) or fixed words: nothing to escape.
void line(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

// The family's HELP and TYPE lines; returns its name.
std::string_view help(std::string& out, MetricId id) {
  const MetricSpec& spec = metric_spec(id);
  out.append("# HELP ").append(spec.name).append(" ").append(spec.help).append("\n");
  out.append("# TYPE ").append(spec.name).append(" ").append(spec.type).append("\n");
  return spec.name;
}

// `name` + `suffix` (a histogram's _bucket, _sum, _count).
std::string joined(std::string_view name, std::string_view suffix) {
  return std::string(name).append(suffix);
}

}  // namespace

namespace {

// The name at `i` of a label table declared by an X-macro, "unknown" past it.
template <std::size_t N>
std::string_view name_at(const std::string_view (&names)[N], std::size_t i) {
  return i < N ? names[i] : "unknown";
}

#define PVGATE_LABEL_NAME(id) #id,
constexpr std::string_view kUpstreamFaultNames[] = {PVGATE_UPSTREAM_FAULTS(PVGATE_LABEL_NAME)};
constexpr std::string_view kStoreFaultNames[] = {PVGATE_STORE_FAULTS(PVGATE_LABEL_NAME)};
constexpr std::string_view kEventNames[] = {PVGATE_VERIFICATION_EVENTS(PVGATE_LABEL_NAME)};
constexpr std::string_view kChallengeEventNames[] = {PVGATE_CHALLENGE_EVENTS(PVGATE_LABEL_NAME)};
// ChallengeKind's names past none, in its order (config.h).
constexpr std::string_view kChallengeKinds[] = {"altcha", "turnstile", "hcaptcha", "recaptcha"};
#undef PVGATE_LABEL_NAME

}  // namespace

std::string_view fault_name(UpstreamFault fault) {
  return name_at(kUpstreamFaultNames, static_cast<std::size_t>(fault));
}

std::string_view fault_name(StoreFault fault) {
  return name_at(kStoreFaultNames, static_cast<std::size_t>(fault));
}

std::string_view event_name(VerificationEvent event) {
  return name_at(kEventNames, static_cast<std::size_t>(event));
}

std::string_view event_name(ChallengeEvent event) {
  return name_at(kChallengeEventNames, static_cast<std::size_t>(event));
}

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

void Metrics::store_error(StoreFault kind) {
  store_faults_[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::reload(bool ok) {
  (ok ? reloads_ok_ : reloads_rejected_).fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  std::string_view name = help(out, MetricId::build_info);
  line(out, name, "version=\"" PVGATE_VERSION "\"", 1);

  name = help(out, MetricId::requests);
  for (std::size_t a = 0; a < kActions.size(); ++a) {
    for (int o = 0; o < kOutcomes; ++o) {
      const std::uint64_t v = requests_[a][o].load(std::memory_order_relaxed);
      if (v == 0) continue;
      line(out, name,
           "action=\"" + std::string(kActions[a]) + "\",outcome=\"" +
               std::string(outcome_name(static_cast<Outcome>(o))) + "\"",
           v);
    }
  }

  name = help(out, MetricId::in_flight);
  line(out, name, "", static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load())));

  name = help(out, MetricId::throttle);
  {
    std::lock_guard<std::mutex> lock(throttle_mutex_);
    for (const auto& [key, v] : throttle_) {
      line(out, name, "rule=\"" + key.first + "\",result=\"" + key.second + "\"", v);
    }
  }

  name = help(out, MetricId::upstream_latency);
  const std::string bucket = joined(name, "_bucket");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
    cumulative += latency_buckets_[i].load(std::memory_order_relaxed);
    char le[32];
    if (i < kLatencyBuckets.size()) {
      std::snprintf(le, sizeof le, "le=\"%g\"", kLatencyBuckets[i]);
    } else {
      std::snprintf(le, sizeof le, "le=\"+Inf\"");
    }
    line(out, bucket, le, cumulative);
  }
  char sum[32];
  std::snprintf(sum, sizeof sum, " %.6f\n", static_cast<double>(latency_sum_micros_.load()) / 1e6);
  out.append(name).append("_sum").append(sum);
  line(out, joined(name, "_count"), "", latency_count_.load());

  name = help(out, MetricId::upstream_errors);
  for (int i = 0; i < static_cast<int>(UpstreamFault::kCount); ++i) {
    line(out, name, "kind=\"" + std::string(fault_name(static_cast<UpstreamFault>(i))) + "\"",
         faults_[i].load(std::memory_order_relaxed));
  }
  name = help(out, MetricId::upstream_connections);
  line(out, name, "", connections_opened_.load());

  name = help(out, MetricId::store_errors);
  for (int i = 0; i < static_cast<int>(StoreFault::kCount); ++i) {
    line(out, name, "kind=\"" + std::string(fault_name(static_cast<StoreFault>(i))) + "\"",
         store_faults_[i].load(std::memory_order_relaxed));
  }

  name = help(out, MetricId::reloads);
  line(out, name, "result=\"ok\"", reloads_ok_.load());
  line(out, name, "result=\"rejected\"", reloads_rejected_.load());

  name = help(out, MetricId::phone_refusals);
  for (std::size_t i = 0; i < phone_refusals_.size(); ++i) {
    const std::string_view type =
        i == 0 ? std::string_view("invalid") : phone_type_name(static_cast<PhoneType>(i - 1));
    line(out, name, "type=\"" + std::string(type) + "\"",
         phone_refusals_[i].load(std::memory_order_relaxed));
  }

  name = help(out, MetricId::verifications);
  for (int i = 0; i < static_cast<int>(VerificationEvent::kCount); ++i) {
    line(out, name, "event=\"" + std::string(event_name(static_cast<VerificationEvent>(i))) + "\"",
         verifications_[i].load(std::memory_order_relaxed));
  }

  // Only the kinds in use: a merchant has one kind, a site mostly one.
  name = help(out, MetricId::challenges);
  for (std::size_t k = 0; k < challenges_.size(); ++k) {
    for (int i = 0; i < static_cast<int>(ChallengeEvent::kCount); ++i) {
      const std::uint64_t v = challenges_[k][i].load(std::memory_order_relaxed);
      if (v == 0) continue;
      line(out, name,
           "kind=\"" + std::string(kChallengeKinds[k]) + "\",event=\"" +
               std::string(event_name(static_cast<ChallengeEvent>(i))) + "\"",
           v);
    }
  }
  return out;
}

}  // namespace pvgate
