// Shared by the fuzz targets: a check that aborts (libFuzzer then reports a
// crash and saves the input), and the invariants every decoded field list and
// every browser reply must keep whatever the input was.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fields.h"
#include "http.h"
#include "sanitize.h"
#include "validate.h"

namespace pvgate_fuzz {

// A value for the crash report: non-printable bytes as \xNN, at most 400 bytes shown.
inline std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 400)) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && c != '\\') {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  if (s.size() > 400) out += "...";
  return out;
}

[[noreturn]] inline void fail(const char* file, int line, const char* what,
                              std::string_view detail) {
  std::fprintf(stderr, "\n%s:%d: fuzz invariant broken: %s\n", file, line, what);
  if (!detail.empty()) std::fprintf(stderr, "  value: %s\n", printable(detail).c_str());
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(condition, value shown in the report when it fails)
#define FUZZ_CHECK(cond, detail)                                           \
  do {                                                                     \
    if (!(cond)) ::pvgate_fuzz::fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

inline bool has_ascii_control(std::string_view s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return true;
  }
  return false;
}

// Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// Decoder output limits (fields.h), whatever the body was.
inline void check_field_limits(const pvgate::FieldList& fields) {
  FUZZ_CHECK(fields.size() <= pvgate::kMaxFields, std::to_string(fields.size()));
  for (const auto& [name, value] : fields) {
    FUZZ_CHECK(name.size() <= pvgate::kMaxFieldNameBytes, name);
    FUZZ_CHECK(value.size() <= pvgate::kMaxFieldValueBytes, value);
  }
}

inline bool all_of_set(std::string_view v, std::string_view allowed_extra, bool letters) {
  for (const char c : v) {
    const bool digit = c >= '0' && c <= '9';
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!digit && !(letters && letter) && allowed_extra.find(c) == std::string_view::npos)
      return false;
  }
  return true;
}

// Validates `fields` for both actions. What passes must obey the README's field
// table, checked here independently of validate.cpp: these values are signed by
// plain concatenation, so a stray ':' or letter could forge another field.
inline void validate_both(const pvgate::FieldList& fields) {
  static const std::set<std::string> kSend = {"user_id", "contact_no_country_dialing_code",
                                              "contact_no"};
  static const std::set<std::string> kVerify = {"user_id", "contact_no_country_dialing_code",
                                                "contact_no", "reference", "answer"};
  for (const auto action : {pvgate::Action::send_token, pvgate::Action::verify_token_answer}) {
    const bool verify = action == pvgate::Action::verify_token_answer;
    pvgate::ClientFields client;
    const auto error = pvgate::validate_fields(action, fields, client);
    if (error) {
      FUZZ_CHECK(!error->message.empty(), error->field);
      continue;
    }
    std::set<std::string> names;
    for (const auto& [name, value] : fields) {
      FUZZ_CHECK((verify ? kVerify : kSend).count(name) == 1, name);
      FUZZ_CHECK(names.insert(name).second, "duplicate accepted: " + name);
    }
    const auto& u = client.user_id;
    FUZZ_CHECK(!u.empty() && u.size() <= 32 && all_of_set(u, "._@-", true), u);
    const auto& d = client.dialing_code;
    FUZZ_CHECK(!d.empty() && d.size() <= 5 && all_of_set(d, "", false), d);
    if (client.contact_no) {
      const auto& n = *client.contact_no;
      FUZZ_CHECK(!n.empty() && n.size() <= 32 && all_of_set(n, "", false), n);
    }
    if (verify) {
      FUZZ_CHECK(client.reference && client.answer, "verify accepted without reference/answer");
      const auto& r = *client.reference;
      FUZZ_CHECK(!r.empty() && r.size() <= 18 && r[0] != '0' && all_of_set(r, "", false), r);
      const auto& a = *client.answer;
      FUZZ_CHECK(!a.empty() && a.size() <= 6 && all_of_set(a, "", true), a);
    } else {
      FUZZ_CHECK(!client.reference && !client.answer, "send-token kept reference/answer");
    }
    // What is forwarded is exactly what was sent.
    for (const auto& [name, value] : fields) {
      if (name == "user_id") FUZZ_CHECK(value == client.user_id, value);
      if (name == "contact_no_country_dialing_code")
        FUZZ_CHECK(value == client.dialing_code, value);
      if (name == "contact_no" && !value.empty())
        FUZZ_CHECK(client.contact_no && value == *client.contact_no, value);
    }
  }
}

// Every browser reply: valid JSON holding only status/message/reference/
// seconds_till_resend, a message of at most kMaxMessageBytes bytes without
// control characters, no header that could split the response. Returns the body.
inline nlohmann::json check_client_reply(const pvgate::HttpReply& reply) {
  static const std::set<int> kHttp = {200, 204, 400, 403, 404, 405, 413,
                                      415, 429, 500, 502, 503, 504};
  FUZZ_CHECK(kHttp.count(reply.status) == 1, std::to_string(reply.status));
  if (reply.status == 204) {  // a CORS preflight: no body at all
    FUZZ_CHECK(reply.body.empty(), reply.body);
    return nlohmann::json::object();
  }
  const nlohmann::json body = nlohmann::json::parse(reply.body, nullptr, false);
  FUZZ_CHECK(!body.is_discarded() && body.is_object(), reply.body);
  for (const auto& [key, value] : body.items()) {
    FUZZ_CHECK(
        key == "status" || key == "message" || key == "reference" || key == "seconds_till_resend",
        reply.body);
    if (key == "message") {
      FUZZ_CHECK(value.is_string(), reply.body);
    } else {
      FUZZ_CHECK(value.is_number_integer(), reply.body);
    }
  }
  FUZZ_CHECK(body.contains("status") && body.contains("message"), reply.body);
  const auto message = body["message"].get<std::string>();
  FUZZ_CHECK(message.size() <= pvgate::kMaxMessageBytes, reply.body);
  FUZZ_CHECK(!has_ascii_control(message), reply.body);

  bool no_store = false;
  std::string retry_after;
  for (const auto& [name, value] : reply.headers) {
    FUZZ_CHECK(!has_ascii_control(name) && !has_ascii_control(value), name + ": " + value);
    if (name == "Cache-Control" && value == "no-store") no_store = true;
    if (name == "Retry-After") retry_after = value;
  }
  FUZZ_CHECK(no_store, reply.body);
  if (reply.status == 429) {
    FUZZ_CHECK(body["status"] == 5002 && body.contains("seconds_till_resend"), reply.body);
    const auto wait = body["seconds_till_resend"].get<std::int64_t>();
    FUZZ_CHECK(wait >= 1 && retry_after == std::to_string(wait), retry_after);
  } else {
    FUZZ_CHECK(retry_after.empty(), retry_after);
  }
  return body;
}

}  // namespace pvgate_fuzz
