// pvgate's one error vocabulary, and the one function that turns an outcome
// into the HTTP status, headers and JSON body the browser receives.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http.h"

namespace pvgate {

enum class Outcome {
  ok,                  // Pipwave accepted the call (status 200)
  invalid_input,       // a client field broke a rule: 400 / 9001, message names it
  upstream_rejected,   // Pipwave said no for the user's input (400, 5001, 5003, 5051, 5052, 9001)
  too_frequent,        // Pipwave's 5002 (or pvgate's throttle): 429 + Retry-After
  method_not_allowed,  // not POST: 405 + Allow
  not_found,           // unknown route: 404
  payload_too_large,   // body over the limit: 413
  unsupported_media,   // content type not JSON or form: 415
  country_denied,      // dialing code outside throttle.countries: 403 / 5001
  origin_denied,       // Origin/Referer not in the merchant's allowed_origins: 403 / 403
  preflight,           // CORS preflight (OPTIONS) from an allowed origin: 204, no body
  store_unavailable,   // throttle store failed and on_store_error is deny: 503
  bad_gateway,         // upstream fault or merchant-setup status; detail only in the log: 502
  gateway_timeout,     // upstream did not answer in time: 504
  reference_unknown,   // verify: reference unknown here, expired, used or another's: 400 / 5051
  invalid_phone,       // not a valid number, or of a type that gets no SMS: 400 / 5001
  challenge_required,  // no valid challenge solution where one is required: 403 / 403 + challenge
  challenge_unavailable,  // the CAPTCHA provider failed and on_error is deny: 503
  misconfigured,          // server-side problem (unknown merchant, internal error): 500
  // Keep misconfigured last: kOutcomeCount sizes per-outcome tables (metrics).
};

inline constexpr int kOutcomeCount = static_cast<int>(Outcome::misconfigured) + 1;

std::string_view outcome_name(Outcome outcome);

struct Result {
  Outcome outcome = Outcome::misconfigured;
  std::int64_t body_status = 500;  // the JSON "status"
  std::string message;             // cleaned before it is sent
  std::optional<std::int64_t> reference;
  std::optional<std::int64_t> seconds_till_resend;
  std::string verification_token;  // a verified answer's signed token (issue 12), or empty
  std::string_view challenge;      // challenge_required: the kind to solve ("altcha", ...)
};

// Result for a local decision (everything but ok/upstream_*), with the body
// status and message the table in the README gives.
Result local_result(Outcome outcome, std::string message = {});

// How a Pipwave status is classified (shared/pipwave-api.md, status appendix).
Outcome classify_upstream_status(std::int64_t status);

// Renders a result: HTTP status, Content-Type/Cache-Control, Allow for 405,
// Retry-After for 429; message cleaned of control characters, <= 255 bytes.
// `cors_origin` (an allowed origin, or "") adds Access-Control-Allow-Origin.
HttpReply make_reply(const Result& result, const std::string& cors_origin = {});

}  // namespace pvgate
