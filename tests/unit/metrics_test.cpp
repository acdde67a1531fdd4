// Metrics: the exposition text, family by family, and the fault names.
#include "metrics.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "metrics_file.h"
#include "version.h"

using namespace pvgate;

namespace {

// Every family once, in declaration order, with the counts below.
constexpr const char* kExpected =
    "# HELP pvgate_build_info pvgate's version.\n"
    "# TYPE pvgate_build_info gauge\n"
    "pvgate_build_info{version=\"" PVGATE_VERSION
    "\"} 1\n"
    "# HELP pvgate_requests_total API requests by merchant, action and outcome.\n"
    "# TYPE pvgate_requests_total counter\n";

// ... then every merchant x action x outcome (requests_block below), then:
constexpr const char* kAfterRequests =
    "# HELP pvgate_requests_in_flight Requests being handled now.\n"
    "# TYPE pvgate_requests_in_flight gauge\n"
    "pvgate_requests_in_flight 2\n"
    "# HELP pvgate_operations_requests_total Operations requests (healthz, metrics, jwks.json, "
    "challenge) by route.\n"
    "# TYPE pvgate_operations_requests_total counter\n"
    "pvgate_operations_requests_total{route=\"healthz\"} 2\n"
    "pvgate_operations_requests_total{route=\"metrics\"} 1\n"
    "pvgate_operations_requests_total{route=\"jwks.json\"} 0\n"
    "pvgate_operations_requests_total{route=\"challenge\"} 0\n"
    "# HELP pvgate_throttle_decisions_total Throttle decisions by rule and result (ok, over, "
    "over_dry_run).\n"
    "# TYPE pvgate_throttle_decisions_total counter\n"
    "pvgate_throttle_decisions_total{rule=\"ip-hour\",result=\"ok\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"ip-hour\",result=\"over\"} 1\n"
    "pvgate_throttle_decisions_total{rule=\"ip-hour\",result=\"over_dry_run\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"never-hit\",result=\"ok\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"never-hit\",result=\"over\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"never-hit\",result=\"over_dry_run\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"ok\"} 2\n"
    "pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"over\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"over_dry_run\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"(other)\",result=\"ok\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"(other)\",result=\"over\"} 0\n"
    "pvgate_throttle_decisions_total{rule=\"(other)\",result=\"over_dry_run\"} 0\n"
    "# HELP pvgate_upstream_latency_seconds Pipwave call latency.\n"
    "# TYPE pvgate_upstream_latency_seconds histogram\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.005\"} 1\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.01\"} 1\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.025\"} 1\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.05\"} 1\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.1\"} 1\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.25\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"0.5\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"1\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"2.5\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"5\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"10\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"30\"} 2\n"
    "pvgate_upstream_latency_seconds_bucket{le=\"+Inf\"} 3\n"
    "pvgate_upstream_latency_seconds_sum 40.203000\n"
    "pvgate_upstream_latency_seconds_count 3\n"
    "# HELP pvgate_upstream_errors_total Failed Pipwave calls by kind.\n"
    "# TYPE pvgate_upstream_errors_total counter\n"
    "pvgate_upstream_errors_total{kind=\"not_delivered\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"timeout\"} 1\n"
    "pvgate_upstream_errors_total{kind=\"tls\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"too_large\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"transport\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"bad_http\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"bad_answer\"} 0\n"
    "pvgate_upstream_errors_total{kind=\"bad_status\"} 1\n"
    "# HELP pvgate_upstream_connections_opened_total New connections (TCP + TLS) opened to "
    "Pipwave; the rest were reused.\n"
    "# TYPE pvgate_upstream_connections_opened_total counter\n"
    "pvgate_upstream_connections_opened_total 2\n"
    "# HELP pvgate_upstream_in_flight Upstream calls (Pipwave, CAPTCHA checks) in flight now.\n"
    "# TYPE pvgate_upstream_in_flight gauge\n"
    "pvgate_upstream_in_flight 1\n"
    "# HELP pvgate_upstream_max_connections Upstream calls allowed in flight at once "
    "(upstream.max_connections per worker, summed).\n"
    "# TYPE pvgate_upstream_max_connections gauge\n"
    "pvgate_upstream_max_connections 256\n"
    "# HELP pvgate_store_errors_total Throttle store failures by kind.\n"
    "# TYPE pvgate_store_errors_total counter\n"
    "pvgate_store_errors_total{kind=\"unavailable\"} 2\n"
    "pvgate_store_errors_total{kind=\"full\"} 1\n"
    "pvgate_store_errors_total{kind=\"internal\"} 0\n"
    "# HELP pvgate_store_used_bytes Throttle store space in use.\n"
    "# TYPE pvgate_store_used_bytes gauge\n"
    "pvgate_store_used_bytes 8192\n"
    "# HELP pvgate_store_max_bytes Throttle store size bound.\n"
    "# TYPE pvgate_store_max_bytes gauge\n"
    "pvgate_store_max_bytes 67108864\n"
    "# HELP pvgate_config_reloads_total SIGHUP reloads by result.\n"
    "# TYPE pvgate_config_reloads_total counter\n"
    "pvgate_config_reloads_total{result=\"ok\"} 1\n"
    "pvgate_config_reloads_total{result=\"rejected\"} 2\n"
    "# HELP pvgate_phone_refusals_total Phone numbers refused before any count or call, by "
    "number type (invalid: not a number).\n"
    "# TYPE pvgate_phone_refusals_total counter\n"
    "pvgate_phone_refusals_total{type=\"invalid\"} 1\n"
    "pvgate_phone_refusals_total{type=\"fixed_line\"} 0\n"
    "pvgate_phone_refusals_total{type=\"mobile\"} 0\n"
    "pvgate_phone_refusals_total{type=\"fixed_line_or_mobile\"} 0\n"
    "pvgate_phone_refusals_total{type=\"toll_free\"} 0\n"
    "pvgate_phone_refusals_total{type=\"premium_rate\"} 2\n"
    "pvgate_phone_refusals_total{type=\"shared_cost\"} 0\n"
    "pvgate_phone_refusals_total{type=\"voip\"} 0\n"
    "pvgate_phone_refusals_total{type=\"personal_number\"} 0\n"
    "pvgate_phone_refusals_total{type=\"pager\"} 0\n"
    "pvgate_phone_refusals_total{type=\"uan\"} 0\n"
    "pvgate_phone_refusals_total{type=\"voicemail\"} 0\n"
    "pvgate_phone_refusals_total{type=\"unknown\"} 0\n"
    "# HELP pvgate_verifications_total Verification sessions by event (issued, verified, "
    "wrong_answer, unknown_reference, locked).\n"
    "# TYPE pvgate_verifications_total counter\n"
    "pvgate_verifications_total{event=\"issued\"} 2\n"
    "pvgate_verifications_total{event=\"verified\"} 1\n"
    "pvgate_verifications_total{event=\"wrong_answer\"} 0\n"
    "pvgate_verifications_total{event=\"unknown_reference\"} 0\n"
    "pvgate_verifications_total{event=\"locked\"} 1\n"
    "# HELP pvgate_challenges_total Challenges by kind and event (issued, passed, missing, "
    "invalid, expired, too_easy, replayed, refused, provider_error, bypassed).\n"
    "# TYPE pvgate_challenges_total counter\n"
    "pvgate_challenges_total{kind=\"altcha\",event=\"issued\"} 2\n"
    "pvgate_challenges_total{kind=\"altcha\",event=\"passed\"} 1\n"
    "pvgate_challenges_total{kind=\"recaptcha\",event=\"provider_error\"} 1\n"
    "# HELP pvgate_workers Live pvgate processes sharing these metrics.\n"
    "# TYPE pvgate_workers gauge\n"
    "pvgate_workers 1\n"
    "# HELP process_start_time_seconds Start time of the oldest live pvgate process, seconds "
    "since the epoch.\n"
    "# TYPE process_start_time_seconds gauge\n"
    "process_start_time_seconds 1700000000.50\n"
    "# HELP process_resident_memory_bytes Resident memory of the live pvgate processes, summed.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 20971520\n"
    "# HELP process_open_fds Open file descriptors of the live pvgate processes, summed.\n"
    "# TYPE process_open_fds gauge\n"
    "process_open_fds 12\n"
    "# HELP process_threads Threads of the live pvgate processes, summed.\n"
    "# TYPE process_threads gauge\n"
    "process_threads 9\n";

// Every merchant's label set, zeros included; `counts` holds the others.
std::string requests_block(const std::map<std::string, int>& counts) {
  std::string out;
  for (const std::string merchant : {"shop-a", "shop-b", "(none)", "(other)"}) {
    const std::vector<std::string> actions =
        merchant == "(none)" ? std::vector<std::string>{"send-token", "verify-token-answer", "none"}
                             : std::vector<std::string>{"send-token", "verify-token-answer"};
    for (const auto& action : actions) {
      for (int o = 0; o < kOutcomeCount; ++o) {
        const std::string series = "pvgate_requests_total{merchant=\"" + merchant + "\",action=\"" +
                                   action + "\",outcome=\"" +
                                   std::string(outcome_name(static_cast<Outcome>(o))) + "\"}";
        const auto it = counts.find(series);
        out += series + " " + std::to_string(it == counts.end() ? 0 : it->second) + "\n";
      }
    }
  }
  return out;
}

std::optional<ProcessStats> fake_probe(std::int64_t, std::uint64_t) {
  ProcessStats s;
  s.start_time_seconds = 1700000000.5;
  s.resident_bytes = 20 << 20;
  s.open_fds = 12;
  s.threads = 9;
  return s;
}

}  // namespace

TEST_CASE("metrics exposition: every family, HELP and TYPE once, in order") {
  Metrics m;
  m.set_process_probe(fake_probe);
  m.declare_merchants({"shop-b", "shop-a"});
  m.declare_rules({"phone-cooldown", "never-hit", "ip-hour"});
  m.set_upstream_max(256);
  m.request("shop-a", Action::send_token, Outcome::ok);
  m.request("shop-a", Action::send_token, Outcome::ok);
  m.request("shop-b", Action::verify_token_answer, Outcome::too_frequent);
  m.request("", Action::send_token, Outcome::misconfigured);  // unknown merchant
  m.request("", std::nullopt, Outcome::not_found);
  m.operation("healthz");
  m.operation("healthz");
  m.operation("metrics");
  m.operation("send-token");  // not an operations route: not counted
  m.upstream_in_flight(2);
  m.upstream_in_flight(-1);
  const std::string cooldown = "phone-cooldown", ip_hour = "ip-hour";
  m.throttle({{&cooldown, "ok"}, {&ip_hour, "over"}});
  m.throttle({{&cooldown, "ok"}});
  m.upstream_latency(0.003);
  m.upstream_latency(0.2);
  m.upstream_latency(40);
  m.upstream_fault(UpstreamFault::timeout);
  m.upstream_fault(UpstreamFault::bad_status);
  m.upstream_connections_opened(2);
  m.store_error(StoreFault::full);
  m.store_error(StoreFault::unavailable);
  m.store_error(StoreFault::unavailable);
  m.reload(true);
  m.reload(false);
  m.reload(false);
  m.in_flight(3);
  m.in_flight(-1);
  m.phone_refused(std::nullopt);
  m.phone_refused(PhoneType::premium_rate);
  m.phone_refused(PhoneType::premium_rate);
  m.verification(VerificationEvent::issued);
  m.verification(VerificationEvent::issued);
  m.verification(VerificationEvent::verified);
  m.verification(VerificationEvent::locked);
  // Kinds by ChallengeKind's value (config.h): 1 altcha, 4 recaptcha; others ignored.
  m.challenge(1, ChallengeEvent::issued);
  m.challenge(1, ChallengeEvent::issued);
  m.challenge(1, ChallengeEvent::passed);
  m.challenge(4, ChallengeEvent::provider_error);
  m.challenge(0, ChallengeEvent::passed);
  m.challenge(5, ChallengeEvent::passed);
  ScrapeExtras extras;
  extras.store_used_bytes = 8192;
  extras.store_max_bytes = 64 << 20;
  const std::string requests = requests_block({
      {R"m(pvgate_requests_total{merchant="shop-a",action="send-token",outcome="ok"})m", 2},
      {R"m(pvgate_requests_total{merchant="shop-b",action="verify-token-answer",outcome="too_frequent"})m",
       1},
      {R"m(pvgate_requests_total{merchant="(none)",action="send-token",outcome="misconfigured"})m",
       1},
      {R"m(pvgate_requests_total{merchant="(none)",action="none",outcome="not_found"})m", 1},
  });
  // 2 merchants x 2 actions, (none) x 3, (other) x 2: every outcome each.
  CHECK(std::count(requests.begin(), requests.end(), '\n') == 9 * kOutcomeCount);
  const std::string rendered = m.render(extras);
  CHECK(rendered == std::string(kExpected) + requests + kAfterRequests);
  // No store bound known (Redis without maxmemory): no series rather than a guess.
  ScrapeExtras used_only;
  used_only.store_used_bytes = 1;
  const std::string partial = m.render(used_only);
  CHECK(partial.find("pvgate_store_used_bytes 1\n") != std::string::npos);
  CHECK(partial.find("pvgate_store_max_bytes") == std::string::npos);
}

TEST_CASE("fault names are the enumerators' names") {
  CHECK(fault_name(UpstreamFault::not_delivered) == "not_delivered");
  CHECK(fault_name(UpstreamFault::bad_status) == "bad_status");
  CHECK(fault_name(UpstreamFault::kCount) == "unknown");
  CHECK(fault_name(StoreFault::unavailable) == "unavailable");
  CHECK(fault_name(StoreFault::full) == "full");
  CHECK(fault_name(StoreFault::internal) == "internal");
  CHECK(metric_spec(MetricId::requests).name == "pvgate_requests_total");
  CHECK(metric_spec(MetricId::reloads).type == "counter");
  CHECK(event_name(VerificationEvent::unknown_reference) == "unknown_reference");
  CHECK(event_name(VerificationEvent::kCount) == "unknown");
}

namespace {

// A private directory for metrics files, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/pvgate-metrics-XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// The value of the series `series` ("name{labels}") in `text`, -1 if absent.
long long value_of(const std::string& text, const std::string& series) {
  const std::size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + series.size() + 2));
}

constexpr const char* kShopAOk =
    R"m(pvgate_requests_total{merchant="shop-a",action="send-token",outcome="ok"})m";

}  // namespace

TEST_CASE("metrics file: processes add to the same counts; a new mapping keeps them") {
  TempDir dir;
  const std::string path = dir.path + "/metrics";
  std::string note, error;
  auto parent = open_metrics_file(path, note, error);
  REQUIRE(parent != nullptr);
  CHECK(note.empty());
  CHECK(error.empty());
  parent->request("shop-a", Action::send_token, Outcome::ok);

  // Three child processes (like spawn-fcgi's workers), each mapping the file
  // on its own and counting 100 requests; one names a merchant first seen there.
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::string n, e;
      auto child = open_metrics_file(path, n, e);
      if (!child) ::_exit(1);
      for (int k = 0; k < 100; ++k) child->request("shop-a", Action::send_token, Outcome::ok);
      if (i == 0) child->request("shop-new", Action::send_token, Outcome::ok);
      child.reset();
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  const std::string text = parent->render();
  CHECK(value_of(text, kShopAOk) == 301);
  CHECK(value_of(
            text,
            R"m(pvgate_requests_total{merchant="shop-new",action="send-token",outcome="ok"})m") ==
        1);
  parent.reset();

  // A restarted process maps the same counts.
  auto again = open_metrics_file(path, note, error);
  REQUIRE(again != nullptr);
  CHECK(value_of(again->render(), kShopAOk) == 301);
  CHECK(again->source() == path);
}

TEST_CASE("metrics file: a gone process's gauges do not count") {
  TempDir dir;
  const std::string path = dir.path + "/metrics";
  std::string note, error;
  auto parent = open_metrics_file(path, note, error);
  REQUIRE(parent != nullptr);
  parent->in_flight(1);
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string n, e;
    auto child = open_metrics_file(path, n, e);
    if (!child) ::_exit(1);
    child->in_flight(5);
    child->upstream_in_flight(3);
    child->set_upstream_max(100);
    const char ready = 'r';
    if (::write(pipe_fds[1], &ready, 1) != 1) ::_exit(1);
    ::pause();  // killed below, mid-request as far as its slot says
    ::_exit(0);
  }
  char ready = 0;
  REQUIRE(::read(pipe_fds[0], &ready, 1) == 1);
  std::string text = parent->render();
  CHECK(value_of(text, "pvgate_requests_in_flight") == 6);
  CHECK(value_of(text, "pvgate_upstream_in_flight") == 3);
  CHECK(value_of(text, "pvgate_upstream_max_connections") == 100);
  CHECK(value_of(text, "pvgate_workers") == 2);
  ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  text = parent->render();
  CHECK(value_of(text, "pvgate_requests_in_flight") == 1);
  CHECK(value_of(text, "pvgate_upstream_in_flight") == 0);
  CHECK(value_of(text, "pvgate_upstream_max_connections") == 0);
  CHECK(value_of(text, "pvgate_workers") == 1);
  CHECK(value_of(text, "process_threads") >= 1);
  CHECK(value_of(text, "process_open_fds") >= 3);
  CHECK(value_of(text, "process_resident_memory_bytes") > 0);
}

TEST_CASE("metrics file: another layout is replaced, with a note") {
  TempDir dir;
  const std::string path = dir.path + "/metrics";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("not a metrics file", f);
    std::fclose(f);
  }
  std::string note, error;
  auto m = open_metrics_file(path, note, error);
  REQUIRE(m != nullptr);
  CHECK(note.find("has another layout") != std::string::npos);
  CHECK(note.find("start again from zero") != std::string::npos);
  m->request("shop-a", Action::send_token, Outcome::ok);
  m.reset();
  note.clear();
  m = open_metrics_file(path, note, error);
  REQUIRE(m != nullptr);
  CHECK(note.empty());
  CHECK(value_of(m->render(), kShopAOk) == 1);
  m.reset();

  // The right size, another layout version (the u32 after the u64 magic): replaced too.
  {
    std::FILE* f = std::fopen(path.c_str(), "r+");
    REQUIRE(f != nullptr);
    REQUIRE(std::fseek(f, 8, SEEK_SET) == 0);
    const std::uint32_t other_version = 99;
    REQUIRE(std::fwrite(&other_version, sizeof other_version, 1, f) == 1);
    std::fclose(f);
  }
  note.clear();
  m = open_metrics_file(path, note, error);
  REQUIRE(m != nullptr);
  CHECK(note.find("has another layout") != std::string::npos);
  CHECK(value_of(m->render(), kShopAOk) == -1);  // a fresh file: not even the name is known
  CHECK(value_of(m->render(), "pvgate_upstream_latency_seconds_count") == 0);

  // Unwritable place: a clear error naming the key and the path.
  auto bad = open_metrics_file("/proc/pvgate-no/metrics", note, error);
  CHECK(bad == nullptr);
  CHECK(error.find("metrics.file /proc/pvgate-no/metrics") == 0);
}

TEST_CASE("metrics: names past the table's capacity count as (other), warned once") {
  Metrics m;
  std::vector<std::string> warnings;
  m.set_warn([&warnings](const std::string& w) { warnings.push_back(w); });
  std::vector<std::string> merchants;
  for (int i = 0; i < 70; ++i) merchants.push_back("m" + std::to_string(i));
  m.declare_merchants(merchants);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("no free merchant slot") != std::string::npos);
  m.request("m69", Action::send_token, Outcome::ok);
  m.request("m1", Action::send_token, Outcome::ok);
  const std::string text = m.render();
  CHECK(
      value_of(text,
               R"m(pvgate_requests_total{merchant="(other)",action="send-token",outcome="ok"})m") ==
      1);
  CHECK(value_of(text,
                 R"m(pvgate_requests_total{merchant="m1",action="send-token",outcome="ok"})m") ==
        1);
  CHECK(value_of(text,
                 R"m(pvgate_requests_total{merchant="m69",action="send-token",outcome="ok"})m") ==
        -1);
  CHECK(warnings.size() == 1);
}
