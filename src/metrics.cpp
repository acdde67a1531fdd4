#include "metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "metrics_cells.h"

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

namespace {

template <class Table>
constexpr std::uint32_t table_size = static_cast<std::uint32_t>(std::tuple_size_v<Table>);

// This build's header (magic last).
void fill_header(MetricsHeader& h) {
  h.version.store(kMetricsLayoutVersion, std::memory_order_relaxed);
  h.header_bytes.store(sizeof(MetricsHeader), std::memory_order_relaxed);
  h.total_bytes.store(sizeof(MetricsCells), std::memory_order_relaxed);
  h.merchant_slots.store(kMerchantSlots, std::memory_order_relaxed);
  h.rule_slots.store(kRuleSlots, std::memory_order_relaxed);
  h.process_slots.store(kProcessSlots, std::memory_order_relaxed);
  h.outcomes.store(kOutcomeCount, std::memory_order_relaxed);
  h.upstream_faults.store(table_size<decltype(MetricsCells::faults)>, std::memory_order_relaxed);
  h.store_faults.store(table_size<decltype(MetricsCells::store_faults)>, std::memory_order_relaxed);
  h.verification_events.store(table_size<decltype(MetricsCells::verifications)>,
                              std::memory_order_relaxed);
  h.challenge_events.store(table_size<decltype(MetricsCells::challenges)::value_type>,
                           std::memory_order_relaxed);
  h.phone_types.store(table_size<decltype(MetricsCells::phone_refusals)>,
                      std::memory_order_relaxed);
  h.buckets.store(table_size<decltype(MetricsCells::latency_buckets)>, std::memory_order_relaxed);
  h.magic.store(kMetricsMagic, std::memory_order_release);
}

}  // namespace

void init_header(MetricsCells& cells) {
  fill_header(cells.header);
}

bool header_matches(const MetricsCells& cells) {
  MetricsHeader expected{};
  fill_header(expected);
  const MetricsHeader &h = cells.header, &e = expected;
  const auto same = [](const auto& a, const auto& b) {
    return a.load(std::memory_order_acquire) == b.load(std::memory_order_relaxed);
  };
  return same(h.magic, e.magic) && same(h.version, e.version) &&
         same(h.header_bytes, e.header_bytes) && same(h.total_bytes, e.total_bytes) &&
         same(h.merchant_slots, e.merchant_slots) && same(h.rule_slots, e.rule_slots) &&
         same(h.process_slots, e.process_slots) && same(h.outcomes, e.outcomes) &&
         same(h.upstream_faults, e.upstream_faults) && same(h.store_faults, e.store_faults) &&
         same(h.verification_events, e.verification_events) &&
         same(h.challenge_events, e.challenge_events) && same(h.phone_types, e.phone_types) &&
         same(h.buckets, e.buckets);
}

namespace {

constexpr std::string_view kNoMerchant = "(none)";  // not a valid merchant or rule name
constexpr std::string_view kOther = "(other)";
constexpr int kNoMerchantSlot = 0, kOtherMerchantSlot = 1, kOtherRuleSlot = 0;
constexpr int kFirstMerchantSlot = 2, kFirstRuleSlot = 1;  // the first slots names may claim
constexpr std::array<std::string_view, kThrottleResults> kThrottleResultNames = {"ok", "over",
                                                                                 "over_dry_run"};
constexpr std::array<std::string_view, kOperationRoutes> kOperationRouteNames = {
    "healthz", "metrics", "jwks.json", "challenge"};

// A name as kNameWords words, zero padded.
std::array<std::uint64_t, kNameWords> pack(std::string_view name) {
  std::array<std::uint64_t, kNameWords> words{};
  std::memcpy(words.data(), name.data(), std::min(name.size(), sizeof words));
  return words;
}

std::string unpack(const NameSlot& slot) {
  std::array<std::uint64_t, kNameWords> words;
  for (std::size_t i = 0; i < kNameWords; ++i)
    words[i] = slot.words[i].load(std::memory_order_relaxed);
  const std::size_t size =
      std::min<std::size_t>(slot.size.load(std::memory_order_relaxed), sizeof words);
  return std::string(reinterpret_cast<const char*>(words.data()), size);
}

bool holds(const NameSlot& slot, std::string_view name,
           const std::array<std::uint64_t, kNameWords>& words) {
  if (slot.size.load(std::memory_order_relaxed) != name.size()) return false;
  for (std::size_t i = 0; i < kNameWords; ++i) {
    if (slot.words[i].load(std::memory_order_relaxed) != words[i]) return false;
  }
  return true;
}

// Waits out another claimer of `slot` (a few microseconds of stores); a
// claimer that died mid-claim leaves the slot claiming forever: skipped.
std::uint32_t settled_state(const NameSlot& slot) {
  std::uint32_t state = slot.state.load(std::memory_order_acquire);
  for (int spins = 0; state == NameSlot::kClaiming && spins < 10000; ++spins) {
    std::this_thread::yield();
    state = slot.state.load(std::memory_order_acquire);
  }
  return state;
}

// The slot holding `name` in slots [first, N), claiming the first empty one
// if none does; -1 when the table is full.
template <std::size_t N>
int find_or_claim(std::array<NameSlot, N>& slots, int first, std::string_view name) {
  if (name.empty() || name.size() > kNameWords * 8) return -1;
  const auto words = pack(name);
  for (std::size_t i = static_cast<std::size_t>(first); i < N; ++i) {
    NameSlot& slot = slots[i];
    std::uint32_t state = settled_state(slot);
    if (state == NameSlot::kEmpty) {
      if (slot.state.compare_exchange_strong(state, NameSlot::kClaiming,
                                             std::memory_order_acq_rel)) {
        slot.size.store(static_cast<std::uint32_t>(name.size()), std::memory_order_relaxed);
        for (std::size_t w = 0; w < kNameWords; ++w) {
          slot.words[w].store(words[w], std::memory_order_relaxed);
        }
        slot.state.store(NameSlot::kReady, std::memory_order_release);
        return static_cast<int>(i);
      }
      state = settled_state(slot);  // another process claimed it first: maybe for this name
    }
    if (state == NameSlot::kReady && holds(slot, name, words)) return static_cast<int>(i);
  }
  return -1;
}

// The ready names in [first, N) with their slots, sorted by name.
template <std::size_t N>
std::vector<std::pair<std::string, int>> names_in(const std::array<NameSlot, N>& slots, int first) {
  std::vector<std::pair<std::string, int>> out;
  for (std::size_t i = static_cast<std::size_t>(first); i < N; ++i) {
    if (slots[i].state.load(std::memory_order_acquire) == NameSlot::kReady) {
      out.emplace_back(unpack(slots[i]), static_cast<int>(i));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void bump(std::atomic<std::uint64_t>& cell, std::uint64_t n = 1) {
  cell.fetch_add(n, std::memory_order_relaxed);
}

std::uint64_t get(const std::atomic<std::uint64_t>& cell) {
  return cell.load(std::memory_order_relaxed);
}

}  // namespace

Metrics::Metrics() : cells_(new MetricsCells()) {
  init_header(*cells_);
  release_ = [cells = cells_] { delete cells; };
  claim_process_slot();
}

Metrics::Metrics(MetricsCells* cells, std::function<void()> release, std::string source)
    : cells_(cells), release_(std::move(release)), source_(std::move(source)) {
  claim_process_slot();
}

Metrics::~Metrics() {
  if (slot_ >= 0) {
    // Gone: the slot is free again (a crash leaves it to the liveness check).
    ProcessSlot& p = cells_->procs[slot_];
    p.in_flight.store(0, std::memory_order_relaxed);
    p.upstream_in_flight.store(0, std::memory_order_relaxed);
    p.upstream_max.store(0, std::memory_order_relaxed);
    p.owner.store(0, std::memory_order_release);
  }
  if (release_) release_();
}

void Metrics::claim_process_slot() {
  const std::int64_t pid = ::getpid();
  const std::uint64_t me = owner_word(pid, proc_start_ticks(pid));
  for (int pass = 0; pass < 2 && slot_ < 0; ++pass) {
    for (int i = 0; i < kProcessSlots; ++i) {
      ProcessSlot& p = cells_->procs[i];
      std::uint64_t owner = p.owner.load(std::memory_order_acquire);
      // First pass: free slots; second: slots of processes that are gone.
      if (owner != 0 && (pass == 0 || proc_probe(owner_pid(owner), owner_ticks(owner)))) {
        continue;
      }
      if (!p.owner.compare_exchange_strong(owner, me, std::memory_order_acq_rel)) continue;
      // A dead owner's values are stale; a live process's slot only ever has
      // that process writing its gauges.
      p.in_flight.store(0, std::memory_order_relaxed);
      p.upstream_in_flight.store(0, std::memory_order_relaxed);
      p.upstream_max.store(0, std::memory_order_relaxed);
      slot_ = i;
      break;
    }
  }
}

void Metrics::overflowed(const char* table, std::string_view name) {
  std::atomic<bool>& logged = table[0] == 'm' ? merchant_overflow_logged_ : rule_overflow_logged_;
  if (logged.exchange(true) || !warn_) return;
  warn_(std::string("metrics: no free ") + table + " slot for '" + std::string(name) +
        "' (the table holds " +
        std::to_string(table[0] == 'm' ? kMerchantSlots - 2 : kRuleSlots - 1) +
        "): counted as (other)");
}

void Metrics::declare_merchants(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (find_or_claim(cells_->merchants, kFirstMerchantSlot, name) < 0)
      overflowed("merchant", name);
  }
}

void Metrics::declare_rules(const std::vector<std::string>& names) {
  for (const auto& name : names) {
    if (find_or_claim(cells_->rules, kFirstRuleSlot, name) < 0) overflowed("rule", name);
  }
}

void Metrics::set_upstream_max(long max_connections) {
  if (slot_ >= 0)
    cells_->procs[slot_].upstream_max.store(max_connections, std::memory_order_relaxed);
}

void Metrics::request(std::string_view merchant, std::optional<Action> action, Outcome outcome) {
  // kActions' last column counts requests that named no action.
  const std::size_t a = action ? static_cast<std::size_t>(*action) : kActions.size() - 1;
  if (static_cast<int>(outcome) < 0 || static_cast<int>(outcome) >= kOutcomeCount) return;
  int m = kNoMerchantSlot;
  if (!merchant.empty()) {
    m = find_or_claim(cells_->merchants, kFirstMerchantSlot, merchant);
    if (m < 0) {
      overflowed("merchant", merchant);
      m = kOtherMerchantSlot;
    }
  }
  bump(cells_->requests[m][a][static_cast<int>(outcome)]);
}

void Metrics::operation(std::string_view route) {
  for (std::size_t i = 0; i < kOperationRouteNames.size(); ++i) {
    if (kOperationRouteNames[i] == route) bump(cells_->operations[i]);
  }
}

void Metrics::throttle(const std::vector<ThrottleCount>& counts) {
  for (const auto& [rule, result] : counts) {
    int r = find_or_claim(cells_->rules, kFirstRuleSlot, *rule);
    if (r < 0) {
      overflowed("rule", *rule);
      r = kOtherRuleSlot;
    }
    for (std::size_t i = 0; i < kThrottleResultNames.size(); ++i) {
      if (kThrottleResultNames[i] == result) bump(cells_->throttle[r][i]);
    }
  }
}

void Metrics::upstream_latency(double seconds) {
  std::size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  bump(cells_->latency_buckets[i]);
  bump(cells_->latency_count);
  bump(cells_->latency_sum_micros, static_cast<std::uint64_t>(seconds * 1e6));
}

void Metrics::upstream_fault(UpstreamFault kind) {
  bump(cells_->faults[static_cast<int>(kind)]);
}

void Metrics::upstream_connections_opened(long n) {
  if (n > 0) bump(cells_->connections_opened, static_cast<std::uint64_t>(n));
}

void Metrics::store_error(StoreFault kind) {
  bump(cells_->store_faults[static_cast<int>(kind)]);
}

void Metrics::reload(bool ok) {
  bump(ok ? cells_->reloads_ok : cells_->reloads_rejected);
}

void Metrics::phone_refused(std::optional<PhoneType> type) {
  const auto i = type ? static_cast<std::size_t>(*type) + 1 : 0;
  if (i < cells_->phone_refusals.size()) bump(cells_->phone_refusals[i]);
}

void Metrics::verification(VerificationEvent event) {
  bump(cells_->verifications[static_cast<int>(event)]);
}

void Metrics::challenge(int kind, ChallengeEvent event) {
  if (kind < 1 || kind > static_cast<int>(cells_->challenges.size())) return;
  bump(cells_->challenges[kind - 1][static_cast<int>(event)]);
}

void Metrics::in_flight(int delta) {
  if (slot_ >= 0) cells_->procs[slot_].in_flight.fetch_add(delta, std::memory_order_relaxed);
}

void Metrics::upstream_in_flight(int delta) {
  if (slot_ >= 0)
    cells_->procs[slot_].upstream_in_flight.fetch_add(delta, std::memory_order_relaxed);
}

std::string Metrics::render(const ScrapeExtras& extras) const {
  const MetricsCells& c = *cells_;
  // The live processes' gauges: a process that is gone (crashed, killed)
  // no longer counts, whatever its slot last said.
  struct Live {
    std::int64_t in_flight = 0, upstream_in_flight = 0, upstream_max = 0;
    std::uint64_t workers = 0, rss = 0, fds = 0, threads = 0;
    double start = 0;
  } live;
  for (const ProcessSlot& p : c.procs) {
    const std::uint64_t owner = p.owner.load(std::memory_order_acquire);
    if (owner == 0) continue;
    const auto stats = probe_(owner_pid(owner), owner_ticks(owner));
    if (!stats) continue;
    ++live.workers;
    live.in_flight += std::max<std::int64_t>(0, p.in_flight.load(std::memory_order_relaxed));
    live.upstream_in_flight +=
        std::max<std::int64_t>(0, p.upstream_in_flight.load(std::memory_order_relaxed));
    live.upstream_max += std::max<std::int64_t>(0, p.upstream_max.load(std::memory_order_relaxed));
    live.rss += stats->resident_bytes;
    live.fds += stats->open_fds;
    live.threads += stats->threads;
    if (live.start == 0 || stats->start_time_seconds < live.start)
      live.start = stats->start_time_seconds;
  }

  std::string out;
  out.reserve(32768);
  std::string_view name = help(out, MetricId::build_info);
  line(out, name, "version=\"" PVGATE_VERSION "\"", 1);

  // Every declared merchant (and (none), (other)) x action x outcome, zeros
  // included, so series do not come and go. Unknown routes (action none)
  // are seen before any merchant: only under (none).
  name = help(out, MetricId::requests);
  auto merchants = names_in(c.merchants, kFirstMerchantSlot);
  merchants.emplace_back(std::string(kNoMerchant), kNoMerchantSlot);
  merchants.emplace_back(std::string(kOther), kOtherMerchantSlot);
  for (const auto& [merchant, m] : merchants) {
    const std::size_t actions = m == kNoMerchantSlot ? kActions.size() : kActions.size() - 1;
    for (std::size_t a = 0; a < actions; ++a) {
      for (int o = 0; o < kOutcomeCount; ++o) {
        line(out, name,
             "merchant=\"" + merchant + "\",action=\"" + std::string(kActions[a]) +
                 "\",outcome=\"" + std::string(outcome_name(static_cast<Outcome>(o))) + "\"",
             get(c.requests[m][a][o]));
      }
    }
  }

  name = help(out, MetricId::in_flight);
  line(out, name, "", static_cast<std::uint64_t>(live.in_flight));

  name = help(out, MetricId::operations);
  for (std::size_t i = 0; i < kOperationRouteNames.size(); ++i) {
    line(out, name, "route=\"" + std::string(kOperationRouteNames[i]) + "\"", get(c.operations[i]));
  }

  name = help(out, MetricId::throttle);
  auto rules = names_in(c.rules, kFirstRuleSlot);
  rules.emplace_back(std::string(kOther), kOtherRuleSlot);
  for (const auto& [rule, r] : rules) {
    for (std::size_t i = 0; i < kThrottleResultNames.size(); ++i) {
      line(out, name,
           "rule=\"" + rule + "\",result=\"" + std::string(kThrottleResultNames[i]) + "\"",
           get(c.throttle[r][i]));
    }
  }

  name = help(out, MetricId::upstream_latency);
  const std::string bucket = joined(name, "_bucket");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
    cumulative += get(c.latency_buckets[i]);
    char le[32];
    if (i < kLatencyBuckets.size()) {
      std::snprintf(le, sizeof le, "le=\"%g\"", kLatencyBuckets[i]);
    } else {
      std::snprintf(le, sizeof le, "le=\"+Inf\"");
    }
    line(out, bucket, le, cumulative);
  }
  char sum[32];
  std::snprintf(sum, sizeof sum, " %.6f\n", static_cast<double>(get(c.latency_sum_micros)) / 1e6);
  out.append(name).append("_sum").append(sum);
  line(out, joined(name, "_count"), "", get(c.latency_count));

  name = help(out, MetricId::upstream_errors);
  for (int i = 0; i < static_cast<int>(UpstreamFault::kCount); ++i) {
    line(out, name, "kind=\"" + std::string(fault_name(static_cast<UpstreamFault>(i))) + "\"",
         get(c.faults[i]));
  }
  name = help(out, MetricId::upstream_connections);
  line(out, name, "", get(c.connections_opened));
  name = help(out, MetricId::upstream_in_flight);
  line(out, name, "", static_cast<std::uint64_t>(live.upstream_in_flight));
  name = help(out, MetricId::upstream_max);
  line(out, name, "", static_cast<std::uint64_t>(live.upstream_max));

  name = help(out, MetricId::store_errors);
  for (int i = 0; i < static_cast<int>(StoreFault::kCount); ++i) {
    line(out, name, "kind=\"" + std::string(fault_name(static_cast<StoreFault>(i))) + "\"",
         get(c.store_faults[i]));
  }
  // Only what the store can tell: no series rather than a made-up number.
  if (extras.store_used_bytes) {
    name = help(out, MetricId::store_used);
    line(out, name, "", *extras.store_used_bytes);
  }
  if (extras.store_max_bytes) {
    name = help(out, MetricId::store_max);
    line(out, name, "", *extras.store_max_bytes);
  }

  name = help(out, MetricId::reloads);
  line(out, name, "result=\"ok\"", get(c.reloads_ok));
  line(out, name, "result=\"rejected\"", get(c.reloads_rejected));

  name = help(out, MetricId::phone_refusals);
  for (std::size_t i = 0; i < c.phone_refusals.size(); ++i) {
    const std::string_view type =
        i == 0 ? std::string_view("invalid") : phone_type_name(static_cast<PhoneType>(i - 1));
    line(out, name, "type=\"" + std::string(type) + "\"", get(c.phone_refusals[i]));
  }

  name = help(out, MetricId::verifications);
  for (int i = 0; i < static_cast<int>(VerificationEvent::kCount); ++i) {
    line(out, name, "event=\"" + std::string(event_name(static_cast<VerificationEvent>(i))) + "\"",
         get(c.verifications[i]));
  }

  // Only the kinds in use: a merchant has one kind, a site mostly one.
  name = help(out, MetricId::challenges);
  for (std::size_t k = 0; k < c.challenges.size(); ++k) {
    for (int i = 0; i < static_cast<int>(ChallengeEvent::kCount); ++i) {
      const std::uint64_t v = get(c.challenges[k][i]);
      if (v == 0) continue;
      line(out, name,
           "kind=\"" + std::string(kChallengeKinds[k]) + "\",event=\"" +
               std::string(event_name(static_cast<ChallengeEvent>(i))) + "\"",
           v);
    }
  }

  // Host-wide, like every family above: sums over the live processes, and
  // the oldest one's start time (see README, Metrics).
  name = help(out, MetricId::workers);
  line(out, name, "", live.workers);
  name = help(out, MetricId::process_start);
  char start[48];
  std::snprintf(start, sizeof start, " %.2f\n", live.start);
  out.append(name).append(start);
  name = help(out, MetricId::process_rss);
  line(out, name, "", live.rss);
  name = help(out, MetricId::process_fds);
  line(out, name, "", live.fds);
  name = help(out, MetricId::process_threads);
  line(out, name, "", live.threads);
  return out;
}

namespace {

// The whole of a small /proc file, or "" when it cannot be read.
std::string read_small(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "re")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// /proc/PID/stat's field `field` (1-based) past the command name, which may
// hold spaces and parentheses: fields 3.. follow the last ')'.
std::optional<std::uint64_t> stat_field(const std::string& stat, int field) {
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  const char* p = stat.c_str() + close + 1;
  for (int f = 3; f <= field; ++f) {
    while (*p == ' ') ++p;
    if (*p == '\0') return std::nullopt;
    if (f == field) return std::strtoull(p, nullptr, 10);
    while (*p != ' ' && *p != '\0') ++p;
  }
  return std::nullopt;
}

// A "Key:   value" line of /proc/PID/status.
std::uint64_t status_value(const std::string& status, std::string_view key) {
  const std::size_t at = status.find(std::string("\n").append(key).append(":"));
  if (at == std::string::npos) return 0;
  return std::strtoull(status.c_str() + at + key.size() + 2, nullptr, 10);
}

double boot_time_seconds() {
  const std::string stat = read_small("/proc/stat");
  const std::size_t at = stat.find("\nbtime ");
  return at == std::string::npos ? 0 : std::strtod(stat.c_str() + at + 7, nullptr);
}

}  // namespace

std::uint64_t proc_start_ticks(std::int64_t pid) {
  return stat_field(read_small("/proc/" + std::to_string(pid) + "/stat"), 22).value_or(0);
}

std::optional<ProcessStats> proc_probe(std::int64_t pid, std::uint64_t start_ticks) {
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string stat = read_small(dir + "/stat");
  const auto ticks = stat_field(stat, 22);
  if (!ticks || (start_ticks != 0 && *ticks != start_ticks)) return std::nullopt;
  // A zombie (state Z) has exited: its gauges no longer count.
  const std::size_t close = stat.rfind(')');
  if (close + 2 < stat.size() && stat[close + 2] == 'Z') return std::nullopt;
  ProcessStats s;
  static const double boot = boot_time_seconds();
  static const long hz = ::sysconf(_SC_CLK_TCK);
  s.start_time_seconds = boot + static_cast<double>(*ticks) / static_cast<double>(hz);
  const std::string status = read_small(dir + "/status");
  s.resident_bytes = status_value(status, "VmRSS") * 1024;
  s.threads = status_value(status, "Threads");
  if (DIR* d = ::opendir((dir + "/fd").c_str())) {
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++s.open_fds;
    }
    ::closedir(d);
    // Our own opendir's descriptor is not one of the process's.
    if (pid == ::getpid() && s.open_fds > 0) --s.open_fds;
  }
  return s;
}

}  // namespace pvgate
