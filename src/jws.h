// The verification token (issue 12): a compact JWS (RFC 7515) carrying a JWT
// (RFC 7519) that says "this phone number was confirmed", which the shop's
// server checks against the public keys pvgate publishes as a JWKS (RFC 7517).
// This module owns everything about it: the signing keys, their JWKs and key
// ids, the claims' JSON and the signature (base64url is text.h's, shared with
// the ALTCHA payload's base64).
//
// Algorithms: ES256 (ECDSA P-256 with SHA-256, RFC 7518 3.4) by default, and
// EdDSA with Ed25519 (RFC 8037). Nothing else is loaded: no RSA, no other
// curve, and never a MAC, so the verifier's key is always public.
//
// Why OpenSSL (through crypto.h) and not a JWT library: OpenSSL 3 is already
// linked and reviewed for the Pipwave signer, and a JWS is one signature
// (PrivateKey::sign) plus base64url. Bookworm's libjwt-dev is 1.10.2:
// HS/RS/ES only (no EdDSA), no JWK/JWKS or thumbprint support, and it pulls
// in jansson and libb64. Its libcpp-jwt-dev (1.4) has no EdDSA or JWK either
// and includes nlohmann-json, which pvgate confines to json_codec.cpp.
// Either way the JWKS, the RFC 7638 key id and the key-type policy would
// still be ours to write.
//
// OpenSSL itself is crypto.cpp's: this module holds only the JWS/JWK logic
// (which keys it takes, key ids, JSON) and includes no OpenSSL
// header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto.h"
#include "text.h"

namespace pvgate {

// base64url_encode and base64url_decode (RFC 7515 section 2) are text.h's.

// A key file larger than this is refused before it is parsed: a P-256 or
// Ed25519 private key in PEM is under 300 bytes.
inline constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;

// One private signing key. Move-only; immutable once loaded, so one key may
// sign from any number of threads at once (each call has its own context).
class SigningKey {
 public:
  // Reads and loads a PEM file (see load_pem). On failure returns nullopt and
  // sets `error` to one line naming `path` and what was found; the message
  // never holds any of the file's content.
  static std::optional<SigningKey> load_pem_file(const std::string& path, std::string& error);

  // Accepts an unencrypted EC P-256 private key (PKCS#8 "PRIVATE KEY" or SEC1
  // "EC PRIVATE KEY", an "EC PARAMETERS" block before it is skipped) as
  // ES256, or an Ed25519 private key (PKCS#8) as EdDSA. Refuses RSA, other
  // curves and key types, public keys, certificates, encrypted keys and
  // anything else. `source` names the key in errors (a path, "inline").
  static std::optional<SigningKey> load_pem(std::string_view pem, std::string_view source,
                                            std::string& error);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;
  ~SigningKey();

  // "ES256" or "EdDSA", the JWS "alg".
  const std::string& alg() const { return alg_; }
  // The RFC 7638 JWK thumbprint (base64url SHA-256), so a kid names exactly
  // one public key whoever computes it, and a rotated key gets a new one.
  const std::string& kid() const { return kid_; }
  // The public JWK as a JSON object: kty, crv, x, y (EC only), kid, alg,
  // use "sig". Never the private part "d".
  const std::string& jwk() const { return jwk_; }

 private:
  friend std::string sign_jwt(const SigningKey& key, std::string_view claims_json);

  explicit SigningKey(PrivateKey key);

  PrivateKey key_;  // signs: the raw JWS signature (crypto.h)
  std::string alg_, kid_, jwk_;
  std::string header_b64_;  // base64url of {"alg":..,"kid":..,"typ":"JWT"}, made once at load
};

// {"keys":[jwk,...]} in the given order (the signing key first, by convention).
std::string jwks(const std::vector<SigningKey>& keys);

// The compact JWS base64url(header).base64url(claims_json).base64url(sig),
// header exactly {"alg":"<alg>","kid":"<kid>","typ":"JWT"}. `claims_json` is
// signed as given (build it with claims_json below). Returns an empty string
// if OpenSSL fails to sign, which a loaded key should never do; the caller
// then answers without a token rather than with a broken one.
std::string sign_jwt(const SigningKey& key, std::string_view claims_json);

// The token's claims (Firebase phone tokens carry the same ones).
struct TokenClaims {
  std::string iss;           // pvgate's issuer URL, from config
  std::string aud;           // the merchant the token is for
  std::string sub;           // the shop's user id
  std::string phone_number;  // E.164, "+60123456789"
  std::int64_t iat = 0;      // seconds since the epoch
  std::int64_t exp = 0;
  std::string jti;  // unique per token: new_jti()
};

// {"iss":..,"aud":..,"sub":..,"phone_number":..,"phone_number_verified":true,
//  "iat":..,"exp":..,"jti":..}: strings escaped as JSON, invalid UTF-8 replaced.
std::string claims_json(const TokenClaims& claims);

// 128 random bits (random_bytes, OpenSSL's CSPRNG) in base64url: 22
// characters. Empty if the random generator fails (a token must then not be
// issued).
std::string new_jti();

}  // namespace pvgate
