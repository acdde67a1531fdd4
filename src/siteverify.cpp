#include "siteverify.h"

#include <algorithm>
#include <cstdio>

#include "json_codec.h"
#include "text.h"

namespace pvgate {
namespace {

struct KindInfo {
  CaptchaKind kind;
  std::string_view name;
  std::string_view field;
  std::string_view url;
};

constexpr KindInfo kKinds[] = {
    {CaptchaKind::turnstile, "turnstile", "cf-turnstile-response",
     "https://challenges.cloudflare.com/turnstile/v0/siteverify"},
    {CaptchaKind::hcaptcha, "hcaptcha", "h-captcha-response",
     "https://api.hcaptcha.com/siteverify"},
    {CaptchaKind::recaptcha, "recaptcha", "g-recaptcha-response",
     "https://www.google.com/recaptcha/api/siteverify"},
};

const KindInfo& info(CaptchaKind kind) {
  for (const KindInfo& k : kKinds) {
    if (k.kind == kind) return k;
  }
  return kKinds[0];  // unreachable: every enumerator is in the table
}

// The providers' documented error codes ("invalid-input-response",
// "timeout-or-duplicate", ...) are short, lower case and hyphenated. Tokens
// (hundreds of bytes, mixed case) and secrets (mixed case, or 42 bytes) are not.
constexpr std::size_t kMaxErrorCodeBytes = 40;

bool looks_like_error_code(std::string_view code) {
  if (code.empty() || code.size() > kMaxErrorCodeBytes) return false;
  for (const char c : code) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// Keeps `detail` within its contract: printable ASCII, at most
// kMaxSiteverifyDetailBytes.
std::string clean_detail(std::string_view text) {
  std::string out;
  out.reserve(std::min(text.size(), kMaxSiteverifyDetailBytes));
  for (const char c : text) {
    if (out.size() == kMaxSiteverifyDetailBytes) break;
    const auto b = static_cast<unsigned char>(c);
    out.push_back(b >= 0x20 && b < 0x7F ? c : '?');
  }
  return out;
}

std::string error_codes_text(const SiteverifyReply& reply) {
  if (reply.error_codes.empty()) return "no error-codes";
  std::string out = "error-codes:";
  for (std::size_t i = 0; i < reply.error_codes.size(); ++i) {
    out += i == 0 ? " " : ",";
    out += looks_like_error_code(reply.error_codes[i]) ? reply.error_codes[i] : "?";
  }
  return out;
}

std::string score_text(double score) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", score);
  return buf;
}

std::string_view error_name(UpstreamError e) {
  switch (e) {
    case UpstreamError::none:
      return "none";
    case UpstreamError::not_delivered:
      return "not delivered";
    case UpstreamError::timeout:
      return "timeout";
    case UpstreamError::tls:
      return "tls";
    case UpstreamError::too_large:
      return "answer too large";
    case UpstreamError::transport:
      return "transport";
  }
  return "transport";
}

}  // namespace

std::string_view captcha_kind_name(CaptchaKind kind) {
  return info(kind).name;
}

std::optional<CaptchaKind> captcha_kind_from_name(std::string_view name) {
  for (const KindInfo& k : kKinds) {
    if (k.name == name) return k.kind;
  }
  return std::nullopt;
}

CaptchaKind captcha_of(ChallengeKind kind) {
  return kind == ChallengeKind::turnstile  ? CaptchaKind::turnstile
         : kind == ChallengeKind::hcaptcha ? CaptchaKind::hcaptcha
                                           : CaptchaKind::recaptcha;
}

std::string_view captcha_field(CaptchaKind kind) {
  return info(kind).field;
}

std::string_view captcha_default_url(CaptchaKind kind) {
  return info(kind).url;
}

std::string siteverify_body(std::string_view secret, std::string_view token) {
  std::string body;
  body.reserve(17 + 3 * (secret.size() + token.size()));
  body += "secret=";
  append_percent_encoded(body, secret);
  body += "&response=";
  append_percent_encoded(body, token);
  return body;
}

UpstreamCall siteverify_call(std::string_view secret, std::string_view token) {
  UpstreamCall call;
  call.body = siteverify_body(secret, token);
  call.content_type = std::string(kSiteverifyContentType);
  return call;  // api_key stays empty: no x-api-key header
}

SiteverifyVerdict read_siteverify(const UpstreamResult& r, double min_score, std::string& detail) {
  if (r.error != UpstreamError::none) {
    std::string text(error_name(r.error));
    if (!r.detail.empty()) text += ": " + r.detail;
    detail = clean_detail(text);
    return SiteverifyVerdict::fault;
  }
  if (r.http_status != 200) {
    detail = clean_detail("HTTP " + std::to_string(r.http_status));
    return SiteverifyVerdict::fault;
  }
  std::string why;
  const std::optional<SiteverifyReply> reply = parse_siteverify_reply(r.body, why);
  if (!reply) {
    detail = clean_detail(why);
    return SiteverifyVerdict::fault;
  }
  if (!reply->success) {
    detail = clean_detail(error_codes_text(*reply));
    return SiteverifyVerdict::refused;
  }
  if (min_score > 0) {
    if (reply->score_not_number) {
      detail = "score is not a number";
      return SiteverifyVerdict::fault;
    }
    if (reply->score && *reply->score < min_score) {
      detail =
          clean_detail("score " + score_text(*reply->score) + " below " + score_text(min_score));
      return SiteverifyVerdict::refused;
    }
  }
  detail = reply->score ? clean_detail("success, score " + score_text(*reply->score)) : "success";
  return SiteverifyVerdict::passed;
}

}  // namespace pvgate
