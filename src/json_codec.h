// Every use of nlohmann-json in pvgate: request bodies in, the upstream call
// out, Pipwave's answer in, and the browser's answer out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fields.h"

namespace pvgate {

// Decodes a flat JSON object whose values are strings or non-negative
// integers (rendered in decimal). Nested values, floats, booleans and null are
// rejected with the field's name. Duplicate keys are all kept (validation
// rejects them); nothing is silently merged.
std::optional<DecodeError> decode_json_fields(std::string_view body, FieldList& out);

// A JSON object whose members are all strings, in the given order.
std::string encode_string_object(const std::vector<std::pair<std::string, std::string>>& members);

// What pvgate takes from Pipwave's answer; everything else is dropped here.
struct UpstreamReply {
  std::int64_t status = 0;
  std::optional<std::string> message;
  std::optional<std::int64_t> reference;
  std::optional<std::int64_t> seconds_till_resend;
};

// Parses Pipwave's answer. `status` may be a number or a string of digits
// (the documents say "string, up to 5 characters"). Returns nullopt and sets
// `why` (for the log only) when the body is not such an object.
std::optional<UpstreamReply> parse_upstream_reply(std::string_view body, std::string& why);

// The browser's answer: {["challenge":..,]"message":..[,"reference":..]
// [,"seconds_till_resend":..],"status":..[,"verification_token":..]} (the
// challenge kind and the token only when not empty). Invalid UTF-8 in
// `message` is replaced, never thrown on.
std::string encode_client_reply(std::int64_t status, std::string_view message,
                                std::optional<std::int64_t> reference,
                                std::optional<std::int64_t> seconds_till_resend,
                                std::string_view verification_token = {},
                                std::string_view challenge = {});

// Appends `text` as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view text);

}  // namespace pvgate
