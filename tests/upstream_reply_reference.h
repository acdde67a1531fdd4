// The reference parse_upstream_reply (src/json_codec.cpp) must agree with,
// answer for answer and error for error: pvgate's former reader, nlohmann's
// DOM of the whole answer, then the four members looked up in it. Used by
// tests/unit/decode_test.cpp and the fuzz_upstream_reply target only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "json_codec.h"

namespace pvgate_test {

inline std::optional<std::int64_t> reference_as_integer(const nlohmann::json& v) {
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::int64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return n;
  }
  return std::nullopt;
}

inline std::optional<pvgate::UpstreamReply> reference_upstream_reply(std::string_view body,
                                                                     std::string& why) {
  using nlohmann::json;
  if (body.find('\0') != std::string_view::npos) {
    why = "upstream answer holds a NUL byte";
    return std::nullopt;
  }
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    why = "upstream answer is not JSON";
    return std::nullopt;
  }
  if (!doc.is_object()) {
    why = "upstream answer is not a JSON object";
    return std::nullopt;
  }
  pvgate::UpstreamReply reply;
  const auto status = doc.find("status");
  if (status == doc.end()) {
    why = "upstream answer has no status";
    return std::nullopt;
  }
  const auto code = reference_as_integer(*status);
  if (!code || *code < 0 || *code > 99999) {
    why = "upstream status is not a non-negative integer of at most 5 digits";
    return std::nullopt;
  }
  reply.status = *code;
  if (const auto m = doc.find("message"); m != doc.end() && m->is_string()) {
    reply.message = m->get<std::string>();
  }
  if (const auto r = doc.find("reference"); r != doc.end()) {
    reply.reference = reference_as_integer(*r);
  }
  if (const auto s = doc.find("seconds_till_resend"); s != doc.end()) {
    reply.seconds_till_resend = reference_as_integer(*s);
  }
  return reply;
}

}  // namespace pvgate_test
