// Pipwave's answer on its way to the browser, as the handler treats it:
// parse_upstream_reply -> classify_upstream_status -> Result -> make_reply
// (clean_message + encode_client_reply). Invariants: the reply is valid JSON
// with only status/message/reference/seconds_till_resend, its message is at
// most 255 bytes with no control characters, and nothing the handler drops
// (unknown members, merchant-setup statuses) reaches the browser; and
// parse_upstream_reply answers as the former DOM reader did
// (tests/upstream_reply_reference.h).
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "../upstream_reply_reference.h"
#include "fuzz_check.h"
#include "json_codec.h"
#include "outcome.h"

using namespace pvgate;
using nlohmann::json;
using pvgate_fuzz::as_text;

namespace {

// clean_message alone, at the limit the handler uses and at one chosen by the input.
void check_clean_message(std::string_view text, std::size_t max_bytes) {
  const std::string clean = clean_message(text, max_bytes);
  FUZZ_CHECK(clean.size() <= max_bytes, clean);
  FUZZ_CHECK(!pvgate_fuzz::has_ascii_control(clean), clean);
  // Valid UTF-8 in, valid UTF-8 out: truncation never splits a sequence.
  if (pvgate_fuzz::valid_utf8(text)) FUZZ_CHECK(pvgate_fuzz::valid_utf8(clean), clean);
  // Only removal and truncation: the result is a prefix of the text without controls.
  std::string stripped;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7F) stripped.push_back(c);
  }
  FUZZ_CHECK(stripped.compare(0, clean.size(), clean) == 0, clean);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = as_text(data, size);
  check_clean_message(body, kMaxMessageBytes);
  if (size > 0) check_clean_message(body.substr(1), data[0]);

  // Any message, even one never cleaned, must still encode as valid JSON.
  const json raw = json::parse(encode_client_reply(200, body, std::nullopt, 1), nullptr, false);
  FUZZ_CHECK(!raw.is_discarded() && raw.is_object(), body);

  std::string why;
  const auto reply = parse_upstream_reply(body, why);
  // The streaming reader agrees with the former DOM reader on every input.
  std::string reference_why;
  const auto reference = pvgate_test::reference_upstream_reply(body, reference_why);
  FUZZ_CHECK(reply.has_value() == reference.has_value(), body);
  if (reply) {
    FUZZ_CHECK(reply->status == reference->status && reply->message == reference->message &&
                   reply->reference == reference->reference &&
                   reply->seconds_till_resend == reference->seconds_till_resend,
               body);
  } else {
    FUZZ_CHECK(why == reference_why, body);
  }
  Result result;
  if (!reply) {
    FUZZ_CHECK(!why.empty(), body);
    result = local_result(Outcome::bad_gateway);
  } else {
    FUZZ_CHECK(reply->status <= 99999, std::to_string(reply->status));
    const Outcome outcome = classify_upstream_status(reply->status);
    if (outcome == Outcome::bad_gateway) {
      result = local_result(Outcome::bad_gateway);
    } else {
      // As Handler::forward builds it.
      result.outcome = outcome;
      result.body_status = reply->status;
      result.message = reply->message.value_or("Request failed.");
      if (reply->reference && *reply->reference > 0) result.reference = reply->reference;
      if (reply->seconds_till_resend && *reply->seconds_till_resend >= 0)
        result.seconds_till_resend = reply->seconds_till_resend;
    }
  }

  const HttpReply http = make_reply(result);
  const json out = pvgate_fuzz::check_client_reply(http);
  FUZZ_CHECK(out["status"] == result.body_status, http.body);
  if (result.outcome == Outcome::bad_gateway) {
    // Merchant-setup statuses and unparseable answers: a fixed text, nothing passed on.
    FUZZ_CHECK(http.status == 502 && out["status"] == 500 && out.size() == 2, http.body);
    FUZZ_CHECK(out["message"] == local_result(Outcome::bad_gateway).message, http.body);
  }
  if (result.reference) {
    FUZZ_CHECK(out.contains("reference") && out["reference"] == *result.reference, http.body);
  } else {
    FUZZ_CHECK(!out.contains("reference"), http.body);
  }
  const std::string clean = clean_message(result.message);
  if (pvgate_fuzz::valid_utf8(clean)) FUZZ_CHECK(out["message"] == clean, http.body);
  return 0;
}
