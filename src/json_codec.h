// Every use of nlohmann-json in pvgate: request bodies in, the upstream call
// out, Pipwave's and the CAPTCHA providers' answers in, and the browser's
// answer out.
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

// ---- The ALTCHA payload (altcha.h) ----------------------------------------

// One scalar member of the payload as read, before its value is checked.
struct JsonStringMember {
  bool present = false;
  bool wrong_type = false;  // present, but not a JSON string
  std::string value;
};
struct JsonIntegerMember {
  bool present = false;
  bool wrong_type = false;  // present, but not an integer within int64 (a fraction, a string...)
  std::int64_t value = 0;
};

// The raw fields of the JSON the ALTCHA widget submits, by their JSON names.
struct AltchaPayloadJson {
  // challenge.parameters
  JsonStringMember algorithm;
  JsonIntegerMember cost;
  JsonIntegerMember expires_at;    // expiresAt
  JsonIntegerMember key_length;    // keyLength
  JsonStringMember key_prefix;     // keyPrefix
  JsonStringMember key_signature;  // keySignature
  JsonStringMember nonce;
  JsonStringMember salt;
  // challenge
  JsonStringMember signature;
  // solution
  JsonIntegerMember counter;
  JsonStringMember derived_key;  // derivedKey
  bool time_present = false;     // time: the solver's milliseconds, any number
  bool time_wrong_type = false;  // present, but not a number
};

// Reads {"challenge":{"parameters":{...},"signature":..},"solution":{"counter":..,
// "derivedKey":..,"time":..}}, members in any order. nullopt when `text` is
// not one strict JSON value (RFC 8259; a NUL byte anywhere refused), or not
// of that shape: the top level, challenge, parameters or solution not an
// object; a key not named above (parameters' keys are algorithm, cost,
// expiresAt, keyLength, keyPrefix, keySignature, nonce, salt); one key twice
// in an object; an object or array where a scalar belongs. A scalar of the
// wrong type is flagged in its member and a member left out is not present:
// the caller decides what it needs.
std::optional<AltchaPayloadJson> read_altcha_payload(std::string_view text);

// ---- end of the ALTCHA payload ------------------------------------------

// A JSON object whose members are all strings, keys in byte order (a key
// given twice has its last value), compact, invalid UTF-8 replaced by U+FFFD:
// what nlohmann::json's dump gives for it, without building the json.
std::string encode_string_object(
    const std::vector<std::pair<std::string_view, std::string_view>>& members);

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

// What pvgate takes from a CAPTCHA provider's siteverify answer (siteverify.h
// decides what it means); everything else is dropped here.
struct SiteverifyReply {
  bool success = false;
  // The string members of "error-codes", at most kMaxErrorCodes, as sent
  // (unsanitized: for siteverify.cpp to clean before any log sees them).
  std::vector<std::string> error_codes;
  std::optional<double> score;    // "score" when it is a JSON number (reCAPTCHA v3)
  bool score_not_number = false;  // "score" present but not a number
  static constexpr std::size_t kMaxErrorCodes = 8;
};

// Parses a siteverify answer: a JSON object whose "success" is a boolean (the
// string "true" is not). Returns nullopt and sets `why` (for the log only;
// it never quotes the body) when the body is not such an object.
std::optional<SiteverifyReply> parse_siteverify_reply(std::string_view body, std::string& why);

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
