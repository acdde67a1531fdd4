// siteverify.h: the providers' names, fields and endpoints; the form body for
// awkward tokens and secrets (decoded back by pvgate's own form decoder); every
// path of read_siteverify() to passed, refused and fault; and `detail` held to
// its contract (short, printable ASCII, never the token or the secret).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "config.h"
#include "form.h"
#include "siteverify.h"

using namespace pvgate;

namespace {

// A token as the widgets make them (long, mixed case) and a secret in
// Turnstile's and reCAPTCHA's shape: what must never reach the log.
const std::string kToken =
    "0.Xk9qT2ZfR1pVbW1hR3RqY0ZoN0xBb3dQcGV6d0JTa2N4dWZ2VkRyTlRhUXhQcGtYd0pqS2VhZ2JpY3RsdmRGbWxf"
    "Rk9qT2ZfR1pVbW1hR3RqY0ZoN0xBb3dQcGV6d0JTa2N4dWZ2VkRyTlRhUXhQcGtYd0pqS2VhZ2JpY3RsdmRGbWxf";
const std::string kSecret = "0x4AAAAAAAbCdEfGhIjKlMnOpQrStUvWxYz";

UpstreamResult answer(long http, std::string body) {
  UpstreamResult r;
  r.http_status = http;
  r.body = std::move(body);
  return r;
}

UpstreamResult failed(UpstreamError e, std::string why) {
  UpstreamResult r;
  r.error = e;
  r.detail = std::move(why);
  return r;
}

SiteverifyVerdict verdict(const UpstreamResult& r, double min_score = 0) {
  std::string detail;
  return read_siteverify(r, min_score, detail);
}

std::string detail_of(const UpstreamResult& r, double min_score = 0) {
  std::string detail = "stale";
  read_siteverify(r, min_score, detail);
  return detail;
}

bool printable_ascii(const std::string& s) {
  for (const char c : s) {
    if (c < 0x20 || c > 0x7E) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("siteverify: kinds, names, fields and the documented endpoints") {
  const std::vector<CaptchaKind> kinds = {CaptchaKind::turnstile, CaptchaKind::hcaptcha,
                                          CaptchaKind::recaptcha};
  for (const CaptchaKind k : kinds) {
    CHECK(captcha_kind_from_name(captcha_kind_name(k)) == k);
  }
  CHECK(captcha_kind_name(CaptchaKind::turnstile) == "turnstile");
  CHECK(captcha_kind_name(CaptchaKind::hcaptcha) == "hcaptcha");
  CHECK(captcha_kind_name(CaptchaKind::recaptcha) == "recaptcha");
  for (const char* other : {"", "Turnstile", "RECAPTCHA", "hcaptcha ", "altcha", "recaptcha-v3"}) {
    INFO(other);
    CHECK_FALSE(captcha_kind_from_name(other));
  }

  CHECK(captcha_field(CaptchaKind::turnstile) == "cf-turnstile-response");
  CHECK(captcha_field(CaptchaKind::hcaptcha) == "h-captcha-response");
  CHECK(captcha_field(CaptchaKind::recaptcha) == "g-recaptcha-response");

  CHECK(captcha_default_url(CaptchaKind::turnstile) ==
        "https://challenges.cloudflare.com/turnstile/v0/siteverify");
  CHECK(captcha_default_url(CaptchaKind::hcaptcha) == "https://api.hcaptcha.com/siteverify");
  CHECK(captcha_default_url(CaptchaKind::recaptcha) ==
        "https://www.google.com/recaptcha/api/siteverify");
  // Each is a URL the upstream accepts: https, not loopback.
  for (const CaptchaKind k : kinds) {
    bool loopback = true;
    INFO(captcha_default_url(k));
    CHECK(check_upstream_url(std::string(captcha_default_url(k)), loopback).empty());
    CHECK_FALSE(loopback);
  }
}

TEST_CASE("siteverify: the form body encodes awkward tokens and secrets") {
  struct Case {
    std::string secret, token, body;
  };
  const std::vector<Case> cases = {
      {"s3cr3t", "pass-1", "secret=s3cr3t&response=pass-1"},
      {"a+b", "c+d", "secret=a%2Bb&response=c%2Bd"},
      {"x&response=evil", "t&secret=evil", "secret=x%26response%3Devil&response=t%26secret%3Devil"},
      {"=", "==", "secret=%3D&response=%3D%3D"},
      {"100%", "%41%", "secret=100%25&response=%2541%25"},
      {"sp ace", "tab\there", "secret=sp%20ace&response=tab%09here"},
      {"s\xC3\xA9", "t\xE2\x82\xAC\xFF", "secret=s%C3%A9&response=t%E2%82%AC%FF"},
      {"", "", "secret=&response="},
      {"0x4AAA_-.~", "A.b_c-d~", "secret=0x4AAA_-.~&response=A.b_c-d~"},
  };
  for (const Case& c : cases) {
    INFO(c.body);
    const std::string body = siteverify_body(c.secret, c.token);
    CHECK(body == c.body);
    // What a provider decodes: exactly the two fields, with their values.
    FieldList fields;
    CHECK_FALSE(decode_form(body, fields));
    const FieldList want = {{"secret", c.secret}, {"response", c.token}};
    CHECK(fields == want);
  }
}

TEST_CASE("siteverify: the call is a form without x-api-key") {
  const UpstreamCall call = siteverify_call("s+1", "t&2");
  CHECK(call.body == "secret=s%2B1&response=t%262");
  CHECK(call.content_type == "application/x-www-form-urlencoded");
  CHECK(call.api_key.empty());
}

TEST_CASE("siteverify: HTTP 200 with a boolean success passes or refuses") {
  CHECK(verdict(answer(200, R"({"success":true})")) == SiteverifyVerdict::passed);
  CHECK(
      verdict(answer(200, R"({"success":true,"challenge_ts":"2024-05-01T10:00:00Z",)"
                          R"("hostname":"localhost","error-codes":[],"action":"","cdata":""})")) ==
      SiteverifyVerdict::passed);
  CHECK(verdict(answer(200, " \n{\"success\" : true}\n")) == SiteverifyVerdict::passed);
  CHECK(verdict(answer(200, R"({"success":false})")) == SiteverifyVerdict::refused);
  CHECK(verdict(answer(200, R"({"success":false,"error-codes":["invalid-input-response"]})")) ==
        SiteverifyVerdict::refused);
  // A wrong secret is refused too (fails closed; the code is in the detail).
  const UpstreamResult secret =
      answer(200, R"({"success":false,"error-codes":["invalid-input-secret"]})");
  CHECK(verdict(secret) == SiteverifyVerdict::refused);
  CHECK(detail_of(secret) == "error-codes: invalid-input-secret");
  // error-codes beside success:true do not refuse.
  CHECK(verdict(answer(200, R"({"success":true,"error-codes":["x"]})")) ==
        SiteverifyVerdict::passed);
}

TEST_CASE("siteverify: anything but a boolean success in an HTTP 200 JSON object is a fault") {
  for (const char* body : {
           R"({"success":"true"})",
           R"({"success":"false"})",
           R"({"success":1})",
           R"({"success":0})",
           R"({"success":null})",
           R"({"success":[true]})",
           R"({"Success":true})",
           R"({})",
           R"({"error-codes":["internal-error"]})",
           R"([{"success":true}])",
           "true",
           "",
           "not json{",
           "{\"success\":true",  // truncated
           "{\"success\":true}{}",
           "<html><body>502 Bad Gateway</body></html>",
       }) {
    INFO(body);
    CHECK(verdict(answer(200, body)) == SiteverifyVerdict::fault);
    CHECK(verdict(answer(200, body), 0.5) == SiteverifyVerdict::fault);
  }
  CHECK(verdict(answer(200, std::string("{\"success\":true}\0", 17))) == SiteverifyVerdict::fault);
  CHECK(detail_of(answer(200, "not json{")) == "siteverify answer is not JSON");
  CHECK(detail_of(answer(200, R"({"success":"true"})")) == "siteverify success is not a boolean");
  CHECK(detail_of(answer(200, "{}")) == "siteverify answer has no success");
}

TEST_CASE("siteverify: another HTTP status is a fault, whatever the body says") {
  for (const long status : {500L, 502L, 503L, 429L, 404L, 400L, 403L, 301L, 302L, 204L, 201L, 0L}) {
    INFO(status);
    CHECK(verdict(answer(status, R"({"success":true})")) == SiteverifyVerdict::fault);
    CHECK(verdict(answer(status, R"({"success":false})")) == SiteverifyVerdict::fault);
  }
  CHECK(detail_of(answer(500, "boom")) == "HTTP 500");
}

TEST_CASE("siteverify: a transport failure or a timeout is a fault") {
  const UpstreamError errors[] = {UpstreamError::not_delivered, UpstreamError::timeout,
                                  UpstreamError::tls, UpstreamError::too_large,
                                  UpstreamError::transport};
  for (const UpstreamError e : errors) {
    UpstreamResult r = failed(e, "some curl text");
    r.http_status = 200;  // whatever came before the failure does not count
    r.body = R"({"success":true})";
    CHECK(verdict(r) == SiteverifyVerdict::fault);
  }
  CHECK(detail_of(failed(UpstreamError::timeout,
                         "Timeout was reached: Operation timed out after 1500 milliseconds")) ==
        "timeout: Timeout was reached: Operation timed out after 1500 milliseconds");
  CHECK(detail_of(failed(UpstreamError::not_delivered, "")) == "not delivered");
  CHECK(detail_of(failed(UpstreamError::tls, "SSL peer certificate was not OK")) ==
        "tls: SSL peer certificate was not OK");
}

TEST_CASE("siteverify: reCAPTCHA v3's score against min_score") {
  const auto with_score = [](const char* score) {
    return answer(200, std::string(R"({"success":true,"action":"send","score":)") + score + "}");
  };
  CHECK(verdict(with_score("0.1"), 0.5) == SiteverifyVerdict::refused);
  CHECK(detail_of(with_score("0.1"), 0.5) == "score 0.1 below 0.5");
  CHECK(verdict(with_score("0.9"), 0.5) == SiteverifyVerdict::passed);
  CHECK(detail_of(with_score("0.9"), 0.5) == "success, score 0.9");
  CHECK(verdict(with_score("0.5"), 0.5) == SiteverifyVerdict::passed);  // not below
  CHECK(verdict(with_score("0.49"), 0.5) == SiteverifyVerdict::refused);
  CHECK(verdict(with_score("0"), 0.1) == SiteverifyVerdict::refused);
  CHECK(verdict(with_score("1"), 1.0) == SiteverifyVerdict::passed);
  // min_score 0: the score is not looked at (the other kinds, or v3 unchecked).
  CHECK(verdict(with_score("0.1"), 0) == SiteverifyVerdict::passed);
  CHECK(verdict(with_score("\"low\""), 0) == SiteverifyVerdict::passed);
  // A score that is not a number, when one is asked for: no usable answer.
  for (const char* bad : {"\"0.9\"", "null", "true", "[0.9]"}) {
    INFO(bad);
    CHECK(verdict(with_score(bad), 0.5) == SiteverifyVerdict::fault);
  }
  // No score at all (a v2 answer): passed.
  CHECK(verdict(answer(200, R"({"success":true})"), 0.5) == SiteverifyVerdict::passed);
  // success:false stays refused whatever the score.
  CHECK(verdict(answer(200, R"({"success":false,"score":0.9})"), 0.5) ==
        SiteverifyVerdict::refused);
}

TEST_CASE("siteverify: detail is short printable ASCII and never the token or the secret") {
  const std::string echoes =
      R"({"success":false,"error-codes":[")" + kToken + R"(",")" + kSecret +
      R"(","invalid-input-response","timeout-or-duplicate","\u0007bell","UPPER","sp ace",)"
      R"("a-very-long-error-code-that-no-provider-documents-anywhere",7,"x"],)"
      R"("secret":")" +
      kSecret + R"(","response":")" + kToken + R"("})";
  const std::string d = detail_of(answer(200, echoes));
  CHECK(d == "error-codes: ?,?,invalid-input-response,timeout-or-duplicate,?,?,?,?");  // 8 kept
  CHECK(verdict(answer(200, echoes)) == SiteverifyVerdict::refused);

  std::vector<UpstreamResult> results = {
      answer(200, echoes),
      answer(200, R"({"success":false,"error-codes":[)" + std::string(40, '\0') + "]}"),
      answer(200, "not json " + kToken + " " + kSecret),
      answer(500, kToken + kSecret),
      answer(200, R"({"success":")" + kToken + R"("})"),
      answer(200, R"({"success":true,"score":")" + kSecret + R"("})"),
      answer(200, R"({"success":true,"hostname":")" + kToken + R"(","score":0.2})"),
      failed(UpstreamError::transport, std::string(500, 'e') + "\r\n\x1b[31m\xC3\xA9"),
      failed(UpstreamError::timeout, "\ttimed out\n"),
  };
  // Many plausible codes: cut at the limit, not at a code's end.
  std::string many = R"({"success":false,"error-codes":[)";
  for (int i = 0; i < 8; ++i)
    many += std::string(i ? "," : "") + "\"" + std::string(39, 'a') + "\"";
  results.push_back(answer(200, many + "]}"));

  for (const double min_score : {0.0, 0.5}) {
    for (const UpstreamResult& r : results) {
      const std::string detail = detail_of(r, min_score);
      INFO(detail);
      CHECK_FALSE(detail.empty());
      CHECK(detail.size() <= kMaxSiteverifyDetailBytes);
      CHECK(printable_ascii(detail));
      CHECK(detail.find(kToken.substr(0, 12)) == std::string::npos);
      CHECK(detail.find(kSecret.substr(0, 12)) == std::string::npos);
    }
  }
  CHECK(detail_of(results.back()).size() == kMaxSiteverifyDetailBytes);
  CHECK(detail_of(failed(UpstreamError::timeout, "\ttimed out\n")) == "timeout: ?timed out?");
}
