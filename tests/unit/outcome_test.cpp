#include <catch2/catch.hpp>

#include "outcome.h"
#include "sanitize.h"

using namespace pvgate;

namespace {
std::string header(const HttpReply& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}
}  // namespace

TEST_CASE("upstream statuses are classified as the status appendix says") {
  CHECK(classify_upstream_status(200) == Outcome::ok);
  for (int s : {400, 5001, 5003, 5051, 5052, 9001}) {
    INFO(s);
    CHECK(classify_upstream_status(s) == Outcome::upstream_rejected);
  }
  CHECK(classify_upstream_status(5002) == Outcome::too_frequent);
  for (int s : {401, 403, 404, 500, 5004, 5005, 5006, 0, 201, 7777}) {
    INFO(s);
    CHECK(classify_upstream_status(s) == Outcome::bad_gateway);
  }
}

TEST_CASE("each local outcome has its HTTP status and body status") {
  struct Row {
    Outcome outcome;
    int http;
    int body;
  };
  const Row rows[] = {
      {Outcome::invalid_input, 400, 9001},     {Outcome::method_not_allowed, 405, 400},
      {Outcome::not_found, 404, 404},          {Outcome::payload_too_large, 413, 9001},
      {Outcome::unsupported_media, 415, 9001}, {Outcome::bad_gateway, 502, 500},
      {Outcome::gateway_timeout, 504, 500},    {Outcome::misconfigured, 500, 500},
      {Outcome::reference_unknown, 400, 5051}, {Outcome::too_frequent, 429, 5002},
      {Outcome::invalid_phone, 400, 5001},
  };
  for (const auto& row : rows) {
    const Result r = local_result(row.outcome, "m");
    const HttpReply reply = make_reply(r);
    INFO(outcome_name(row.outcome));
    CHECK(reply.status == row.http);
    CHECK(r.body_status == row.body);
    CHECK(header(reply, "Cache-Control") == "no-store");
  }
}

TEST_CASE("405 carries Allow, 429 carries Retry-After and seconds_till_resend") {
  CHECK(header(make_reply(local_result(Outcome::method_not_allowed)), "Allow") == "POST");
  Result r = local_result(Outcome::too_frequent);
  r.seconds_till_resend = 42;
  const HttpReply reply = make_reply(r);
  CHECK(header(reply, "Retry-After") == "42");
  CHECK(reply.body.find("\"seconds_till_resend\":42") != std::string::npos);
  // Without a figure from upstream, a default wait is still given.
  const HttpReply fallback = make_reply(local_result(Outcome::too_frequent));
  CHECK_FALSE(header(fallback, "Retry-After").empty());
  CHECK(fallback.body.find("seconds_till_resend") != std::string::npos);
}

TEST_CASE("bad gateway replies never carry the cause") {
  const Result r = local_result(Outcome::bad_gateway, "upstream 403 invalid api key");
  CHECK(r.message.find("403") == std::string::npos);
  CHECK(make_reply(r).body.find("api key") == std::string::npos);
}

TEST_CASE("clean_message strips control characters and caps at 255 bytes") {
  CHECK(clean_message("a\r\nb\tc\x1b[31m\x7f"
                      "d") == "abc[31md");
  CHECK(clean_message(std::string(300, 'x')).size() == 255);
  CHECK(clean_message(std::string(255, 'x')).size() == 255);
  // A 2-byte UTF-8 character straddling the cut is dropped whole.
  const std::string text = std::string(254, 'x') + "\xc3\xa9" + "yy";
  const std::string cut = clean_message(text);
  CHECK(cut == std::string(254, 'x'));
  CHECK(clean_message(std::string("a\0b", 3)) == "ab");
}

TEST_CASE("reply messages are cleaned") {
  Result r = local_result(Outcome::invalid_input, "bad\r\nfield\x01");
  const HttpReply reply = make_reply(r);
  CHECK(reply.body.find("badfield") != std::string::npos);
}

TEST_CASE("mask_phone keeps only the last two digits") {
  CHECK(mask_phone("123456789") == "*******89");
  CHECK(mask_phone("1234") == "****");
  CHECK(mask_phone("") == "");
}

TEST_CASE("contains_any finds credentials and ignores empty ones") {
  CHECK(contains_any("key=abc123 here", {"abc123"}));
  CHECK_FALSE(contains_any("nothing", {"", "abc"}));
}

TEST_CASE("every outcome has a name and fits the per-outcome tables") {
  for (int i = 0; i < kOutcomeCount; ++i) {
    INFO(i);
    CHECK(outcome_name(static_cast<Outcome>(i)) != "unknown");
  }
  CHECK(static_cast<int>(Outcome::preflight) < kOutcomeCount);
  CHECK(static_cast<int>(Outcome::misconfigured) == kOutcomeCount - 1);
}
