#include "altcha.h"

#include <cstdint>
#include <optional>
#include <string>

#include "crypto.h"
#include "json_codec.h"
#include "text.h"

namespace pvgate {

namespace {

// The one set of parameters pvgate issues and accepts (see altcha.h).
constexpr std::string_view kAlgorithm = "SHA-256";
constexpr std::int64_t kCost = 1;
constexpr std::int64_t kKeyLength = 32;       // bytes of the derived key (all of SHA-256's)
constexpr std::size_t kRandomBytes = 16;      // of the salt, and of the nonce
constexpr std::size_t kKeyPrefixBytes = 16;   // altcha-lib's default: keyLength / 2
constexpr std::size_t kMaxKeyPrefixHex = 64;  // the whole key, the most a prefix can hold
constexpr std::int64_t kMaxExpiresAt = (std::int64_t{1} << 53) - 1;  // JavaScript's safe integers
constexpr std::size_t kHmacHex = 2 * kSha256Bytes;
// A draw of the secret counter is retried when it falls past the largest
// multiple of the range (no modulo bias); each retry has a chance under 1/2,
// so 64 of them in a row mean the CSPRNG is broken.
constexpr int kMaxCounterDraws = 64;

constexpr std::string_view kClaimPrefix = "altcha:";

// The parameters of a challenge whose fixed members (algorithm, cost,
// keyLength) have been checked; strings are lowercase hex.
struct Parameters {
  std::int64_t expires_at = 0;
  std::string key_prefix;
  std::string key_signature;
  std::string nonce;
  std::string salt;
};

std::string hex(std::string_view bytes) {
  std::string out;
  append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

// Lowercase hex digits in whole bytes (what altcha-lib's bufferToHex writes),
// min_digits..max_digits of them.
bool is_lower_hex(std::string_view s, std::size_t min_digits, std::size_t max_digits) {
  if (s.size() < min_digits || s.size() > max_digits || s.size() % 2 != 0) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// The bytes of lowercase hex already checked by is_lower_hex.
std::string unhex(std::string_view s) {
  std::string out(s.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<char>(hex_value(s[2 * i]) * 16 + hex_value(s[2 * i + 1]));
  }
  return out;
}

// derive(counter) of altcha.h: SHA-256(salt || nonce || counter big-endian),
// raw bytes. Empty if OpenSSL fails.
std::string derive(std::string_view salt, std::string_view nonce, std::uint32_t counter) {
  std::string input;
  input.reserve(salt.size() + nonce.size() + 4);
  input.append(salt);
  input.append(nonce);
  for (int shift = 24; shift >= 0; shift -= 8) {
    input.push_back(static_cast<char>((counter >> shift) & 0xFF));
  }
  return sha256(input);
}

// JSON.stringify(sortKeys(parameters)) for the parameters pvgate accepts:
// every string is hex or "SHA-256" (nothing to escape), every number an
// integer JavaScript holds exactly (so it renders as its decimal digits).
std::string canonical_parameters(const Parameters& p) {
  std::string out;
  out.reserve(240);
  out += R"({"algorithm":")";
  out += kAlgorithm;
  out += R"(","cost":)" + std::to_string(kCost);
  out += R"(,"expiresAt":)" + std::to_string(p.expires_at);
  out += R"(,"keyLength":)" + std::to_string(kKeyLength);
  out += R"(,"keyPrefix":")" + p.key_prefix;
  out += R"(","keySignature":")" + p.key_signature;
  out += R"(","nonce":")" + p.nonce;
  out += R"(","salt":")" + p.salt;
  out += R"("})";
  return out;
}

// A uniform counter in [lo, hi] from the CSPRNG; false if it fails.
bool random_counter(std::uint32_t lo, std::uint32_t hi, std::uint32_t& out) {
  const std::uint64_t span = std::uint64_t{hi} - lo + 1;  // 1..2^32
  const std::uint64_t draws = std::uint64_t{1} << 32;
  const std::uint64_t limit = draws - draws % span;  // a multiple of span
  for (int attempt = 0; attempt < kMaxCounterDraws; ++attempt) {
    unsigned char b[4];
    if (!random_bytes(b, sizeof b)) return false;
    const std::uint64_t r = (std::uint64_t{b[0]} << 24) | (std::uint64_t{b[1]} << 16) |
                            (std::uint64_t{b[2]} << 8) | std::uint64_t{b[3]};
    if (r < limit) {
      out = static_cast<std::uint32_t>(lo + r % span);
      return true;
    }
  }
  return false;
}

// Floor division by 1000 (for negative times too).
std::int64_t floor_seconds(std::int64_t ms) {
  return ms >= 0 ? ms / 1000 : -((-(ms + 1)) / 1000) - 1;
}

bool present_string(const JsonStringMember& m) {
  return m.present && !m.wrong_type;
}
bool present_integer(const JsonIntegerMember& m) {
  return m.present && !m.wrong_type;
}

// Step 1 of altcha_verify for the challenge: every member present, of its
// type and of the one form pvgate issues.
bool read_parameters(const AltchaPayloadJson& j, Parameters& p) {
  if (!present_string(j.algorithm) || j.algorithm.value != kAlgorithm) return false;
  if (!present_integer(j.cost) || j.cost.value != kCost) return false;
  if (!present_integer(j.key_length) || j.key_length.value != kKeyLength) return false;
  if (!present_integer(j.expires_at) || j.expires_at.value < 1 ||
      j.expires_at.value > kMaxExpiresAt)
    return false;
  if (!present_string(j.key_prefix) || !is_lower_hex(j.key_prefix.value, 2, kMaxKeyPrefixHex))
    return false;
  if (!present_string(j.key_signature) || !is_lower_hex(j.key_signature.value, kHmacHex, kHmacHex))
    return false;
  if (!present_string(j.nonce) || !is_lower_hex(j.nonce.value, 2 * kRandomBytes, 2 * kRandomBytes))
    return false;
  if (!present_string(j.salt) || !is_lower_hex(j.salt.value, 2 * kRandomBytes, 2 * kRandomBytes))
    return false;
  p.expires_at = j.expires_at.value;
  p.key_prefix = j.key_prefix.value;
  p.key_signature = j.key_signature.value;
  p.nonce = j.nonce.value;
  p.salt = j.salt.value;
  return true;
}

}  // namespace

AltchaSecrets altcha_secrets(std::string_view key, std::string_view merchant) {
  const auto secret = [&](std::string_view label) {
    std::string data(label);
    data.append(merchant);
    std::string mac = hmac_sha256(key, data);
    std::string out = hex(mac);
    wipe(mac);
    return out;
  };
  return AltchaSecrets{secret("pvgate-altcha-signature:"), secret("pvgate-altcha-key-signature:")};
}

std::string altcha_issue(const AltchaSecrets& s, std::uint32_t difficulty, std::int64_t now_ms,
                         std::int64_t ttl_ms) {
  std::int64_t expires_ms = 0;
  if (__builtin_add_overflow(now_ms, ttl_ms, &expires_ms)) return {};
  const std::int64_t expires_at = floor_seconds(expires_ms);
  if (expires_at < 1 || expires_at > kMaxExpiresAt) return {};

  unsigned char random[2 * kRandomBytes];
  if (!random_bytes(random, sizeof random)) return {};
  const std::string salt(reinterpret_cast<const char*>(random), kRandomBytes);
  const std::string nonce(reinterpret_cast<const char*>(random) + kRandomBytes, kRandomBytes);
  // ceil(difficulty / 2) without overflowing at 2^32 - 1.
  const std::uint32_t lo = difficulty / 2 + difficulty % 2;
  std::uint32_t counter = 0;
  if (!random_counter(lo, difficulty, counter)) return {};

  const std::string key = derive(salt, nonce, counter);
  const std::string key_mac = hmac_sha256(s.key_signature, key);
  if (key.size() != kSha256Bytes || key_mac.size() != kSha256Bytes) return {};
  Parameters p;
  p.expires_at = expires_at;
  p.key_prefix = hex(std::string_view(key).substr(0, kKeyPrefixBytes));
  p.key_signature = hex(key_mac);
  p.nonce = hex(nonce);
  p.salt = hex(salt);
  const std::string parameters = canonical_parameters(p);
  const std::string signature = hmac_sha256(s.signature, parameters);
  if (signature.size() != kSha256Bytes) return {};

  std::string out;
  out.reserve(parameters.size() + 100);
  out += R"({"parameters":)";
  out += parameters;
  out += R"(,"signature":")";
  append_hex(out, reinterpret_cast<const unsigned char*>(signature.data()), signature.size());
  out += R"("})";
  return out;
}

AltchaCheck altcha_verify(const AltchaSecrets& s, std::string_view payload, std::int64_t now_ms,
                          std::uint32_t min_counter) {
  AltchaCheck check;
  check.result = AltchaResult::malformed;

  // 1. Size, base64, JSON shape, types and the one form of parameters.
  if (payload.size() > kAltchaMaxPayloadBytes) return check;
  const std::optional<std::string> json = base64_decode(payload);
  if (!json) return check;
  const std::optional<AltchaPayloadJson> j = read_altcha_payload(*json);
  if (!j) return check;
  Parameters p;
  if (!read_parameters(*j, p)) return check;
  if (!present_string(j->signature) || !is_lower_hex(j->signature.value, kHmacHex, kHmacHex))
    return check;
  if (!present_integer(j->counter) || !present_string(j->derived_key) || j->time_wrong_type)
    return check;

  // 2. The signature over the parameters as issued (an OpenSSL failure gives
  // an empty MAC, which matches nothing: refused, never accepted).
  const std::string expected = hex(hmac_sha256(s.signature, canonical_parameters(p)));
  if (!equal_constant_time(expected, j->signature.value)) {
    check.result = AltchaResult::forged;
    return check;
  }

  // 3. Expiry. expiresAt <= 2^53 - 1, so the product fits in 64 bits.
  const std::int64_t expires_ms = p.expires_at * 1000;
  if (now_ms > expires_ms) {
    check.result = AltchaResult::expired;
    return check;
  }

  // 4. The solution. Both of derive(counter) == derivedKey and the key
  // signature are checked: the first proves the counter is the one solved
  // for, the second that the key is the one the issuer derived.
  check.result = AltchaResult::wrong;
  const std::int64_t counter_value = j->counter.value;
  const std::string& derived_hex = j->derived_key.value;
  if (counter_value < 0 || counter_value > std::int64_t{UINT32_MAX}) return check;
  if (!is_lower_hex(derived_hex, 2 * kKeyLength, 2 * kKeyLength)) return check;
  const auto counter = static_cast<std::uint32_t>(counter_value);
  const std::string key = derive(unhex(p.salt), unhex(p.nonce), counter);
  if (key.size() != kSha256Bytes) return check;
  const std::string key_hex = hex(key);
  const bool same_key = equal_constant_time(key_hex, derived_hex);
  const bool has_prefix =
      equal_constant_time(std::string_view(key_hex).substr(0, p.key_prefix.size()), p.key_prefix);
  const bool key_signed =
      equal_constant_time(hex(hmac_sha256(s.key_signature, key)), p.key_signature);
  if (!(same_key && has_prefix && key_signed)) return check;

  // 5. Difficulty.
  check.counter = counter;
  if (counter < min_counter) {
    check.result = AltchaResult::too_easy;
    return check;
  }
  check.result = AltchaResult::ok;
  check.claim_key.reserve(kClaimPrefix.size() + kHmacHex);
  check.claim_key.append(kClaimPrefix);
  check.claim_key.append(j->signature.value);
  check.expires_ms = expires_ms;
  return check;
}

std::string_view altcha_result_name(AltchaResult r) {
  switch (r) {
    case AltchaResult::ok:
      return "ok";
    case AltchaResult::malformed:
      return "malformed";
    case AltchaResult::forged:
      return "forged";
    case AltchaResult::expired:
      return "expired";
    case AltchaResult::wrong:
      return "wrong";
    case AltchaResult::too_easy:
      return "too_easy";
  }
  return "unknown";
}

}  // namespace pvgate
