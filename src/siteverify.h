// The CAPTCHA providers' server-side check (issue 14): before any SMS, the
// token the provider's widget gave the browser is posted, with the merchant's
// secret, to the provider's siteverify endpoint, on the same curl loop as the
// calls to Pipwave (upstream.h). This module knows the three providers' names,
// fields, endpoints, the request body and how to read the answer; the request
// stage makes the call and applies the merchant's policy.
//
// The three APIs agree on the shape: POST application/x-www-form-urlencoded
// `secret` and `response` (and an optional `remoteip`, which pvgate does not
// send: the customer's address stays with the shop), answered by a JSON
// object with a boolean "success" and, on failure, an "error-codes" array.
//   Cloudflare Turnstile  developers.cloudflare.com/turnstile/get-started/server-side-validation/
//   hCaptcha              docs.hcaptcha.com/#verify-the-user-response-server-side
//   Google reCAPTCHA      developers.google.com/recaptcha/docs/verify (v3: "score", 0.0 .. 1.0)
// A token is valid once: a second check of the same token fails
// (timeout-or-duplicate, already-seen-response).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "upstream.h"

namespace pvgate {

enum class CaptchaKind { turnstile, hcaptcha, recaptcha };

// "turnstile", "hcaptcha", "recaptcha": the names config and logs use.
std::string_view captcha_kind_name(CaptchaKind kind);
// The inverse; nullopt for any other text (names are exact, lower case).
std::optional<CaptchaKind> captcha_kind_from_name(std::string_view name);

// The body field the provider's widget submits the token in:
// cf-turnstile-response, h-captcha-response, g-recaptcha-response.
std::string_view captcha_field(CaptchaKind kind);
// The provider of a CAPTCHA challenge kind (config.h); `kind` is turnstile,
// hcaptcha or recaptcha.
CaptchaKind captcha_of(ChallengeKind kind);

// The provider's documented siteverify endpoint:
//   turnstile  https://challenges.cloudflare.com/turnstile/v0/siteverify
//   hcaptcha   https://api.hcaptcha.com/siteverify
//   recaptcha  https://www.google.com/recaptcha/api/siteverify
std::string_view captcha_default_url(CaptchaKind kind);

// What siteverify_body() is sent as (UpstreamCall::content_type).
inline constexpr std::string_view kSiteverifyContentType = "application/x-www-form-urlencoded";

// The form body: secret=<percent-encoded>&response=<percent-encoded>. It
// holds the secret: it goes only into an UpstreamCall, never into a log.
std::string siteverify_body(std::string_view secret, std::string_view token);

// The whole call: that body, kSiteverifyContentType, and no x-api-key.
UpstreamCall siteverify_call(std::string_view secret, std::string_view token);

enum class SiteverifyVerdict {
  passed,   // the provider says the token is good (and, where asked, its score is high enough)
  refused,  // the provider answered, and says no: the browser's challenge failed
  fault,    // no usable answer: the caller applies the merchant's on_error policy
};

// Longest `detail` read_siteverify() writes.
inline constexpr std::size_t kMaxSiteverifyDetailBytes = 120;

// Reads the provider's answer: HTTP 200 with a JSON object whose "success" is
// a boolean -> passed / refused; anything else (transport error, timeout,
// other HTTP status, not JSON, no boolean success) -> fault. Any success:false
// is refused, whatever its error-codes say (a wrong secret, too: that fails
// closed, and the codes in `detail` tell the operator).
//
// min_score: for reCAPTCHA v3 only (the caller passes 0 for the other kinds:
// hCaptcha Enterprise's "score" is a risk score, higher is worse). When it is
// above 0 and a successful answer has a numeric "score" below it -> refused;
// a "score" that is not a number -> fault; no "score" (v2) -> passed.
//
// `detail` (replaced) gets a short description for the log, at most
// kMaxSiteverifyDetailBytes of printable ASCII: the error codes, the score, the
// HTTP status or the transport's error. Error codes are kept only when they
// look like the providers' documented ones (lower-case letters, digits and
// '-', at most 40 bytes; anything else shows as "?"), so an answer that
// echoes the token or the secret cannot carry them into the log.
SiteverifyVerdict read_siteverify(const UpstreamResult& r, double min_score, std::string& detail);

}  // namespace pvgate
