// Metrics: the exposition text, family by family, and the fault names.
#include "metrics.h"

#include <catch2/catch.hpp>
#include <string>

#include "version.h"

using namespace pvgate;

namespace {

// Every family once, in declaration order, with the counts below.
constexpr const char* kExpected =
    "# HELP pvgate_build_info pvgate's version.\n"
    "# TYPE pvgate_build_info gauge\n"
    "pvgate_build_info{version=\"" PVGATE_VERSION
    "\"} 1\n"
    "# HELP pvgate_requests_total Requests by action and outcome.\n"
    "# TYPE pvgate_requests_total counter\n"
    "pvgate_requests_total{action=\"send-token\",outcome=\"ok\"} 1\n"
    "pvgate_requests_total{action=\"verify-token-answer\",outcome=\"too_frequent\"} 1\n"
    "pvgate_requests_total{action=\"none\",outcome=\"not_found\"} 1\n"
    "# HELP pvgate_requests_in_flight Requests being handled now.\n"
    "# TYPE pvgate_requests_in_flight gauge\n"
    "pvgate_requests_in_flight 2\n"
    "# HELP pvgate_throttle_decisions_total Throttle decisions by rule and result (ok, over, "
    "over_dry_run).\n"
    "# TYPE pvgate_throttle_decisions_total counter\n"
    "pvgate_throttle_decisions_total{rule=\"ip-hour\",result=\"over\"} 1\n"
    "pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"ok\"} 2\n"
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
    "# HELP pvgate_store_errors_total Throttle store failures by kind.\n"
    "# TYPE pvgate_store_errors_total counter\n"
    "pvgate_store_errors_total{kind=\"unavailable\"} 2\n"
    "pvgate_store_errors_total{kind=\"full\"} 1\n"
    "pvgate_store_errors_total{kind=\"internal\"} 0\n"
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
    "pvgate_challenges_total{kind=\"recaptcha\",event=\"provider_error\"} 1\n";

}  // namespace

TEST_CASE("metrics exposition: every family, HELP and TYPE once, in order") {
  Metrics m;
  m.request(Action::send_token, Outcome::ok);
  m.request(Action::verify_token_answer, Outcome::too_frequent);
  m.request(std::nullopt, Outcome::not_found);
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
  CHECK(m.render() == kExpected);
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
