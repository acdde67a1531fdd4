// The proof-of-work challenge a browser solves before pvgate sends any SMS
// (issue 14): ALTCHA's protocol version 2, as the widget `altcha` 3.x and the
// server library `altcha-lib` 2.x speak it, in its deterministic mode with
// algorithm "SHA-256", cost 1 and keyLength 32. This module issues challenges
// and checks solutions; it keeps no state (replay is the store's concern:
// claim_key below is what it claims once).
//
// The protocol, as altcha-lib 2.8.0's dist/esm/v2/pow.js implements it:
//   derive(counter) = SHA-256(salt || nonce || counter as 4 bytes big-endian)
//     (bytes of the hex salt and nonce; cost 1 is one iteration; keyLength 32
//     keeps all of it).
//   The server picks a secret counter uniformly in [ceil(d/2), d] for the
//   difficulty d, and publishes keyPrefix = hex of derive(counter)'s first 16
//   bytes and keySignature = hex HMAC-SHA256(key-signature secret, the 32
//   derived bytes). The browser tries counters from 0 until a derived key
//   starts with keyPrefix: at most d + 1 SHA-256s, d/2 at the least.
//   signature = hex HMAC-SHA256(signature secret, JSON.stringify of the
//   parameters with sorted keys), so the parameters cannot be changed.
//   Checking a solution costs one SHA-256 and two HMACs, whatever d is.
//
// The challenge JSON (what the widget fetches), keys sorted, no spaces:
//   {"parameters":{"algorithm":"SHA-256","cost":1,"expiresAt":<Unix s>,
//    "keyLength":32,"keyPrefix":"<32 hex>","keySignature":"<64 hex>",
//    "nonce":"<32 hex>","salt":"<32 hex>"},"signature":"<64 hex>"}
// The payload (the form field `altcha` the widget submits):
//   btoa(JSON.stringify({challenge:{parameters,signature},
//                        solution:{counter,derivedKey,time}}))
//
// Deterministic mode is what makes it cheap to check and bounded to solve: the
// server knows the answer, so it needs no search, and the solver's work has a
// ceiling (unlike a "hash below a target" puzzle, whose unlucky solvers can
// take many times the mean).
//
// The secrets come from one key file shared by every host, per merchant (see
// altcha_secrets), so any worker on any host checks what another issued, and
// a challenge solved for one merchant is refused at another.
//
// Hashes and MACs are crypto.h's (OpenSSL); the payload's JSON is read by
// json_codec.h (nlohmann); base64 is text.h's. This module includes none of
// those libraries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pvgate {

// A submitted payload longer than this is malformed before it is decoded. A
// widget's payload is under 700 bytes (base64 of about 510 bytes of JSON).
inline constexpr std::size_t kAltchaMaxPayloadBytes = 4096;

// The two HMAC secrets of one merchant, as strings (altcha-lib takes strings,
// and uses their UTF-8 bytes as the HMAC keys):
//   signature     = hex(HMAC-SHA256(key, "pvgate-altcha-signature:" + merchant))
//   key_signature = hex(HMAC-SHA256(key, "pvgate-altcha-key-signature:" + merchant))
// `key` is the content of challenge.key_file (the same file on every host),
// so every worker and host of a merchant checks what any of them issued, and
// one merchant's challenges are worthless at another's even with one key file.
struct AltchaSecrets {
  std::string signature;
  std::string key_signature;
};
AltchaSecrets altcha_secrets(std::string_view key, std::string_view merchant);

// A new challenge as the JSON the widget fetches (see above), whose secret
// counter is uniform in [ceil(difficulty/2), difficulty] and whose expiresAt
// is (now_ms + ttl_ms) / 1000 rounded down (Unix seconds, as altcha-lib
// rounds a Date). Empty when the CSPRNG (or OpenSSL) fails, or when that
// expiresAt is not in 1..2^53-1 (no clock and sane ttl gives such a time):
// then no challenge must be served.
std::string altcha_issue(const AltchaSecrets& s, std::uint32_t difficulty, std::int64_t now_ms,
                         std::int64_t ttl_ms);

enum class AltchaResult {
  ok,         // a solution to a challenge these secrets issued, in time, hard enough
  malformed,  // over kAltchaMaxPayloadBytes, not base64, not JSON of the payload's shape, or a
              // parameter ALTCHA defines that pvgate never issues (another algorithm, data...)
  forged,     // the parameters' signature is not these secrets' (tampered, another merchant's)
  expired,    // now is past expiresAt
  wrong,      // the solution does not solve the challenge
  too_easy,   // solved, but its counter is below the minimum (issued at a lower difficulty)
};

struct AltchaCheck {
  AltchaResult result = AltchaResult::malformed;
  std::string claim_key;  // ok: "altcha:" + the challenge's signature hex (the store's one-time
                          // claim: each challenge is one SMS at most)
  std::int64_t expires_ms = 0;  // ok: expiresAt * 1000 (how long the claim must live)
  std::uint32_t counter = 0;    // ok and too_easy: the solution's counter
};

// Checks a submitted `altcha` field value at now_ms, cheapest checks first,
// and stops at the first that fails:
//  1. malformed: longer than kAltchaMaxPayloadBytes; not strict padded base64
//     (text.h's base64_decode); not JSON of the payload's shape
//     (json_codec.h's read_altcha_payload: no unknown or duplicate keys);
//     a member missing or of the wrong type; or parameters other than
//     exactly algorithm "SHA-256", cost 1, keyLength 32, expiresAt an integer
//     in 1..2^53-1, keyPrefix 2-64 hex digits, keySignature 64, nonce and salt
//     32 each, and a signature of 64 (all hex lowercase, in whole bytes);
//     solution.counter an integer, derivedKey a string, time (optional,
//     its value ignored) a number.
//  2. forged: the signature is not HMAC-SHA256 under s.signature over the
//     parameters as JSON.stringify renders them with sorted keys.
//  3. expired: now_ms > expiresAt * 1000 (altcha-lib's verifySolution too
//     still accepts the second expiresAt itself).
//  4. wrong: counter outside 0..2^32-1, derivedKey not 64 lowercase hex
//     digits, derivedKey not derive(counter), not starting with keyPrefix, or
//     its HMAC under s.key_signature not keySignature.
//  5. too_easy: counter < min_counter.
// Values derived from the secrets are compared in constant time.
AltchaCheck altcha_verify(const AltchaSecrets& s, std::string_view payload, std::int64_t now_ms,
                          std::uint32_t min_counter);

// "ok", "malformed", "forged", "expired", "wrong", "too_easy": for logs,
// metrics labels and the test tool.
std::string_view altcha_result_name(AltchaResult r);

}  // namespace pvgate
