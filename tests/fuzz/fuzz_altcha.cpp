// The ALTCHA payload (src/altcha.h): the input is the JSON the widget
// base64-encodes. read_altcha_payload is checked against nlohmann's DOM
// parser, and altcha_verify is fed the input both base64-encoded (reaching
// every check; the seed kat-valid.json is altcha_test's known answer, which
// verifies under this target's secrets and clock) and as it is (the base64
// stage).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "altcha.h"
#include "fuzz_check.h"
#include "json_codec.h"
#include "text.h"

using namespace pvgate;
using nlohmann::json;
using pvgate_fuzz::as_text;

namespace {

// altcha_test's known answer: its key file, merchant and a time before its expiresAt.
constexpr std::int64_t kNowMs = 1'800'000'000'000;
const AltchaSecrets& secrets() {
  static const AltchaSecrets s = altcha_secrets("pvgate altcha test key 0123456789\n", "shop-a");
  return s;
}

bool is_int64(const json& v) {
  return v.is_number_integer() &&
         (!v.is_number_unsigned() || v.get<std::uint64_t>() <= std::uint64_t{INT64_MAX});
}

// Whether `object` is an object whose keys are all in `keys`.
bool keys_within(const json& object, const std::set<std::string>& keys) {
  if (!object.is_object()) return false;
  for (const auto& item : object.items()) {
    if (keys.count(item.key()) == 0) return false;
  }
  return true;
}

// The payload's shape as altcha.h's read_altcha_payload states it, on a DOM.
bool fits_shape(const json& doc) {
  if (!keys_within(doc, {"challenge", "solution"})) return false;
  if (doc.contains("challenge")) {
    const json& c = doc["challenge"];
    if (!keys_within(c, {"parameters", "signature"})) return false;
    if (c.contains("signature") && c["signature"].is_structured()) return false;
    if (c.contains("parameters")) {
      const json& p = c["parameters"];
      if (!keys_within(p, {"algorithm", "cost", "expiresAt", "keyLength", "keyPrefix",
                           "keySignature", "nonce", "salt"}))
        return false;
      for (const auto& item : p.items()) {
        if (item.value().is_structured()) return false;
      }
    }
  }
  if (doc.contains("solution")) {
    const json& s = doc["solution"];
    if (!keys_within(s, {"counter", "derivedKey", "time"})) return false;
    for (const auto& item : s.items()) {
      if (item.value().is_structured()) return false;
    }
  }
  return true;
}

// One member read by read_altcha_payload against the DOM's value (or its absence).
void check_string(const JsonStringMember& m, const json& object, const char* key) {
  const bool there = object.is_object() && object.contains(key);
  FUZZ_CHECK(m.present == there, key);
  if (!there) return;
  const json& v = object[key];
  FUZZ_CHECK(m.wrong_type == !v.is_string(), key);
  if (v.is_string()) FUZZ_CHECK(m.value == v.get<std::string>(), key);
}
void check_integer(const JsonIntegerMember& m, const json& object, const char* key) {
  const bool there = object.is_object() && object.contains(key);
  FUZZ_CHECK(m.present == there, key);
  if (!there) return;
  const json& v = object[key];
  FUZZ_CHECK(m.wrong_type == !is_int64(v), key);
  if (is_int64(v)) FUZZ_CHECK(m.value == v.get<std::int64_t>(), key);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = as_text(data, size);

  const std::optional<AltchaPayloadJson> read = read_altcha_payload(text);
  const json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (read) {
    // Accepted: the DOM parser reads the same JSON, of the shape, with the same values.
    FUZZ_CHECK(!doc.is_discarded(), "accepted, but not JSON to nlohmann's DOM parser");
    FUZZ_CHECK(fits_shape(doc), "accepted, but not of the payload's shape");
    const json none = json::object();
    const json& challenge = doc.contains("challenge") ? doc["challenge"] : none;
    const json& parameters = challenge.contains("parameters") ? challenge["parameters"] : none;
    const json& solution = doc.contains("solution") ? doc["solution"] : none;
    check_string(read->algorithm, parameters, "algorithm");
    check_integer(read->cost, parameters, "cost");
    check_integer(read->expires_at, parameters, "expiresAt");
    check_integer(read->key_length, parameters, "keyLength");
    check_string(read->key_prefix, parameters, "keyPrefix");
    check_string(read->key_signature, parameters, "keySignature");
    check_string(read->nonce, parameters, "nonce");
    check_string(read->salt, parameters, "salt");
    check_string(read->signature, challenge, "signature");
    check_integer(read->counter, solution, "counter");
    check_string(read->derived_key, solution, "derivedKey");
    FUZZ_CHECK(read->time_present == solution.contains("time"), "time");
    if (read->time_present)
      FUZZ_CHECK(read->time_wrong_type == !solution["time"].is_number(), "time");
  } else if (!doc.is_discarded() && fits_shape(doc)) {
    // Refused though the DOM fits: only for a repeated key, which the DOM merged. Its
    // rendering has each key once and must be read.
    FUZZ_CHECK(read_altcha_payload(doc.dump()).has_value(), doc.dump());
  }

  // The whole check, on the input as the widget would send it.
  const std::string payload = base64_encode(text);
  const AltchaCheck check = altcha_verify(secrets(), payload, kNowMs, 0);
  if (!read || payload.size() > kAltchaMaxPayloadBytes) {
    FUZZ_CHECK(check.result == AltchaResult::malformed, altcha_result_name(check.result));
  }
  if (check.result == AltchaResult::ok) {
    FUZZ_CHECK(check.claim_key == "altcha:" + read->signature.value, check.claim_key);
    FUZZ_CHECK(check.expires_ms == read->expires_at.value * 1000, std::to_string(check.expires_ms));
    FUZZ_CHECK(check.counter == static_cast<std::uint64_t>(read->counter.value),
               std::to_string(check.counter));
    // A higher minimum refuses the same solution as too easy, and only that.
    const AltchaCheck harder = altcha_verify(secrets(), payload, kNowMs, check.counter + 1u);
    if (check.counter < UINT32_MAX) {
      FUZZ_CHECK(harder.result == AltchaResult::too_easy, altcha_result_name(harder.result));
    }
  } else {
    FUZZ_CHECK(check.claim_key.empty() && check.expires_ms == 0, check.claim_key);
  }

  // The input itself as a payload: the size and base64 stages.
  const AltchaCheck raw = altcha_verify(secrets(), text, kNowMs, 0);
  if (text.size() > kAltchaMaxPayloadBytes || !base64_decode(text)) {
    FUZZ_CHECK(raw.result == AltchaResult::malformed, altcha_result_name(raw.result));
  }
  return 0;
}
