// The stages of a request, in the order they run (kLocalStages, then the
// forward, then answer). Each is a function over the request's Exchange: it
// passes on (nullopt) or produces the final Result. Grouped by concern:
//   stage_route.cpp     operations routes, route, merchant
//   stage_origin.cpp    origin (allowed_origins, Referer), method (CORS preflight)
//   stage_decode.cpp    size, content type + decode, validate
//   stage_phone.cpp     phone: libphonenumber's E.164, number types, stored numbers
//   stage_challenge.cpp challenge: ALTCHA solutions, CAPTCHA siteverify, pressure
//   stage_throttle.cpp  throttle (countries, rules, answer attempts)
//   stage_session.cpp   session: a verify's reference checked against who asked for it
//   stage_sign.cpp      sign (Pipwave's SHA-1 over the call it builds)
//   stage_answer.cpp    answer: Pipwave's reply sanitized, quota refunded when unsent
// Cheap refusals come first: nothing is decoded for a request that the route,
// the merchant, the origin, the method or the size already refuses.
#pragma once

#include <optional>

#include "clock.h"
#include "exchange.h"
#include "log.h"
#include "metrics.h"
#include "outcome.h"
#include "throttle_store.h"

namespace pvgate {

// The collaborators a stage may use.
struct Services {
  const Clock& clock;
  Logger& log;
  ThrottleStore* store;  // null without a throttle store
  Metrics* metrics;      // null in tests that do not count
};

using StageResult = std::optional<Result>;
using Stage = StageResult (*)(Exchange&, const Services&);

// GET .../healthz, .../metrics, .../jwks.json and .../challenge: the whole
// reply, or nullopt when the request is for none (then ex.operations stays
// false).
std::optional<HttpReply> operations(Exchange& ex, const Services& s);

StageResult route(Exchange& ex, const Services& s);     // last path segment names the action
StageResult merchant(Exchange& ex, const Services& s);  // PVGATE_MERCHANT, a server setting
StageResult origin(Exchange& ex, const Services& s);    // Origin/Referer against allowed_origins
StageResult method(Exchange& ex, const Services& s);    // OPTIONS preflight, else POST only
StageResult size(Exchange& ex, const Services& s);      // body within limits.max_body_bytes
StageResult decode(Exchange& ex, const Services& s);    // content type, then the body's fields
StageResult validate(Exchange& ex, const Services& s);  // field rules; user id from nginx
StageResult phone(Exchange& ex, const Services& s);     // E.164 number, allowed types
// A send-token's challenge solution where the merchant requires one. For a
// CAPTCHA it prepares the siteverify call (ex.waiting = siteverify) and
// passes on; the handler makes the call and hands the answer to
// challenge_checked(), then goes on with the stages after this one.
StageResult challenge(Exchange& ex, const Services& s);
StageResult challenge_checked(Exchange& ex, const Services& s);
StageResult throttle(Exchange& ex, const Services& s);  // countries, rules, answer attempts
StageResult session(Exchange& ex, const Services& s);   // verify: reference, owner, attempts
StageResult sign(Exchange& ex, const Services& s);      // fills ex.call; always passes on

// Everything before the forward, in order.
inline constexpr Stage kLocalStages[] = {route,    merchant, origin,    method,   size,    decode,
                                         validate, phone,    challenge, throttle, session, sign};

// After the forward: Pipwave's answer (ex.answer) into the final Result.
Result answer(Exchange& ex, const Services& s);
// Then, with verification on: a sent code opens its session; a verified
// answer consumes it and gains the signed token (or becomes 5051 when a
// parallel answer consumed it first).
void settle_session(Exchange& ex, const Services& s, Result& result);
// Then a code Pipwave accepted to send counts towards the merchant's
// challenge pressure rules.
void count_challenge_pressure(Exchange& ex, const Services& s, const Result& result);

// GET .../challenge: a new ALTCHA challenge for the merchant's widget
// (merchant and origin checked as for the API routes).
std::optional<HttpReply> issue_challenge(Exchange& ex, const Services& s);

// The body field a kind's solution arrives in ("altcha",
// "cf-turnstile-response", ...); empty for none.
std::string_view challenge_field(ChallengeKind kind);

// Whether a Content-Type value names `type` (lower case): compared without
// case, parameters and blanks, and without building a string.
bool is_media_type(std::string_view content_type, std::string_view type);

// The last segment of a request path ("/pvgate/send-token" -> "send-token").
std::string_view last_segment(std::string_view path);

// Counts a throttle store failure in pvgate_store_errors_total by its kind
// (nothing for ok).
void count_store_status(const Services& s, StoreStatus status);

// Quotes a client-supplied value for the log line (the logger replaces
// control characters): at most `max` bytes, then "...".
std::string quoted(std::string_view s, std::size_t max = 120);

}  // namespace pvgate
