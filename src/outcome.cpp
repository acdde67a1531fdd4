#include "outcome.h"

#include "json_codec.h"
#include "sanitize.h"

namespace pvgate {
namespace {

constexpr std::int64_t kDefaultRetrySeconds = 60;

int http_status(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok:
      return 200;
    case Outcome::invalid_input:
      return 400;
    case Outcome::upstream_rejected:
      return 400;
    case Outcome::too_frequent:
      return 429;
    case Outcome::method_not_allowed:
      return 405;
    case Outcome::not_found:
      return 404;
    case Outcome::payload_too_large:
      return 413;
    case Outcome::unsupported_media:
      return 415;
    case Outcome::country_denied:
      return 403;
    case Outcome::origin_denied:
      return 403;
    case Outcome::preflight:
      return 204;
    case Outcome::store_unavailable:
      return 503;
    case Outcome::bad_gateway:
      return 502;
    case Outcome::gateway_timeout:
      return 504;
    case Outcome::reference_unknown:
      return 400;
    case Outcome::invalid_phone:
      return 400;
    case Outcome::challenge_required:
      return 403;
    case Outcome::challenge_unavailable:
      return 503;
    case Outcome::misconfigured:
      return 500;
  }
  return 500;
}

}  // namespace

std::string_view outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok:
      return "ok";
    case Outcome::invalid_input:
      return "invalid_input";
    case Outcome::upstream_rejected:
      return "upstream_rejected";
    case Outcome::too_frequent:
      return "too_frequent";
    case Outcome::method_not_allowed:
      return "method_not_allowed";
    case Outcome::not_found:
      return "not_found";
    case Outcome::payload_too_large:
      return "payload_too_large";
    case Outcome::unsupported_media:
      return "unsupported_media";
    case Outcome::country_denied:
      return "country_denied";
    case Outcome::origin_denied:
      return "origin_denied";
    case Outcome::preflight:
      return "preflight";
    case Outcome::store_unavailable:
      return "store_unavailable";
    case Outcome::bad_gateway:
      return "bad_gateway";
    case Outcome::gateway_timeout:
      return "gateway_timeout";
    case Outcome::reference_unknown:
      return "reference_unknown";
    case Outcome::invalid_phone:
      return "invalid_phone";
    case Outcome::challenge_required:
      return "challenge_required";
    case Outcome::challenge_unavailable:
      return "challenge_unavailable";
    case Outcome::misconfigured:
      return "misconfigured";
  }
  return "unknown";
}

Result local_result(Outcome outcome, std::string message) {
  Result r;
  r.outcome = outcome;
  switch (outcome) {
    case Outcome::ok:
      r.body_status = 200;
      break;
    case Outcome::invalid_input:
    case Outcome::upstream_rejected:
    case Outcome::payload_too_large:
    case Outcome::unsupported_media:
      r.body_status = 9001;
      break;
    case Outcome::too_frequent:
      r.body_status = 5002;
      if (message.empty()) message = "Too many requests; try again later.";
      break;
    case Outcome::method_not_allowed:
      r.body_status = 400;
      if (message.empty()) message = "Method not allowed; use POST.";
      break;
    case Outcome::not_found:
      r.body_status = 404;
      if (message.empty()) message = "Unknown route; use send-token or verify-token-answer.";
      break;
    case Outcome::origin_denied:
      r.body_status = 403;
      if (message.empty()) message = "This site is not allowed to use phone verification.";
      break;
    case Outcome::preflight:
      r.body_status = 204;
      break;
    case Outcome::country_denied:
      r.body_status = 5001;
      if (message.empty()) message = "Phone numbers from this country are not accepted.";
      break;
    case Outcome::store_unavailable:
      r.body_status = 500;
      message = "Phone verification is temporarily unavailable; try again shortly.";
      break;
    case Outcome::bad_gateway:
      r.body_status = 500;
      message = "Phone verification is temporarily unavailable.";
      break;
    case Outcome::gateway_timeout:
      r.body_status = 500;
      message = "Phone verification did not answer in time; try again.";
      break;
    case Outcome::misconfigured:
      r.body_status = 500;
      message = "Phone verification is not available.";
      break;
    case Outcome::invalid_phone:
      r.body_status = 5001;
      if (message.empty()) message = "Invalid phone number.";
      break;
    case Outcome::challenge_required:
      r.body_status = 403;
      if (message.empty()) message = "Solve the challenge first.";
      break;
    case Outcome::challenge_unavailable:
      r.body_status = 500;
      message = "The challenge check is temporarily unavailable; try again shortly.";
      break;
    case Outcome::reference_unknown:
      // One answer for never issued, expired, used and another user's or
      // phone's, so it tells a prober nothing.
      r.body_status = 5051;
      message = "Session expired or reference not found.";
      break;
  }
  r.message = std::move(message);
  return r;
}

Outcome classify_upstream_status(std::int64_t status) {
  switch (status) {
    case 200:
      return Outcome::ok;
    case 400:
    case 5001:
    case 5003:
    case 5051:
    case 5052:
    case 9001:
      return Outcome::upstream_rejected;
    case 5002:
      return Outcome::too_frequent;
    default:
      return Outcome::bad_gateway;  // 401, 403, 404, 500, 5004-5006 and the unknown
  }
}

HttpReply make_reply(const Result& result, const std::string& cors_origin) {
  HttpReply reply;
  reply.status = http_status(result.outcome);
  reply.headers.reserve(cors_origin.empty() ? 3 : 5);
  reply.headers.emplace_back("Cache-Control", "no-store");
  reply.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (!cors_origin.empty()) {
    // Never "*": only an origin the merchant listed, echoed back.
    reply.headers.emplace_back("Access-Control-Allow-Origin", cors_origin);
    reply.headers.emplace_back("Vary", "Origin");
  }
  if (result.outcome == Outcome::preflight) {
    reply.headers.emplace_back("Access-Control-Allow-Methods", "POST");
    reply.headers.emplace_back("Access-Control-Allow-Headers", "Content-Type");
    reply.headers.emplace_back("Access-Control-Max-Age", "600");
    return reply;  // 204: no body
  }
  std::optional<std::int64_t> wait = result.seconds_till_resend;
  if (result.outcome == Outcome::method_not_allowed) reply.headers.emplace_back("Allow", "POST");
  if (result.outcome == Outcome::too_frequent) {
    if (!wait || *wait < 1) wait = kDefaultRetrySeconds;
    reply.headers.emplace_back("Retry-After", std::to_string(*wait));
  }
  reply.body = encode_client_reply(
      result.body_status, clean_message(result.message), result.reference, wait,
      result.verification_token,
      result.outcome == Outcome::challenge_required ? result.challenge : std::string_view());
  return reply;
}

}  // namespace pvgate
