// The one module that includes OpenSSL (libcrypto): the digests, the MAC,
// the random bytes, the wiping of secrets and the private keys the rest of
// pvgate uses, behind a header that is free of it. The signer (Pipwave's
// SHA-1 signature), throttle and session key digests, and the verification
// token's JWS (jws.h) are its users; libcurl's TLS links the same libcrypto
// but never through this header.
//
// OpenSSL's error queue is per thread and shared with libcurl's TLS on the
// same thread: every function here that can leave an error in it clears it
// on every path out, so nothing is misread as a later TLS error.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

struct evp_pkey_st;  // OpenSSL's EVP_PKEY

namespace pvgate {

// Lowercase hex SHA-1 of `data` (40 digits). On the request path (three key
// digests per throttled request and the Pipwave signature): see crypto.cpp
// for why it uses the low-level API.
std::string sha1_hex(std::string_view data);
// The same digits appended to `out` (throttle keys: no string of its own).
void append_sha1_hex(std::string& out, std::string_view data);

// Overwrites every byte of a buffer that held secret material with zeros
// (OPENSSL_cleanse: not optimised away), then empties it; the capacity stays.
void wipe(std::string& s);

inline constexpr std::size_t kSha256Bytes = 32;

// SHA-256 of `data` as 32 raw bytes. Empty if OpenSSL fails (it should not).
std::string sha256(std::string_view data);

// HMAC-SHA256 (RFC 2104, FIPS 198) of `data` under `key` as 32 raw bytes;
// any key length, the empty key included. Empty if OpenSSL fails.
std::string hmac_sha256(std::string_view key, std::string_view data);

// Whether a and b hold the same bytes, in time that depends on their length
// but not on where they differ (CRYPTO_memcmp): for MACs and other values
// derived from secrets, whose lengths are public. Different lengths: false.
bool equal_constant_time(std::string_view a, std::string_view b);

// Fills out[0..n) from OpenSSL's CSPRNG (RAND_bytes). False if it fails;
// the bytes must then not be used.
bool random_bytes(unsigned char* out, std::size_t n);

// A private signing key: EC P-256 (for ES256) or Ed25519 (for EdDSA), nothing
// else. Move-only, immutable once loaded, so one key may sign from any
// number of threads at once (each call has its own context).
class PrivateKey {
 public:
  enum class Kind {
    p256,     // ECDSA on NIST P-256 (prime256v1) with SHA-256
    ed25519,  // PureEdDSA on Ed25519 (RFC 8032)
  };

  // The key in the first PEM block of `pem` that is not "EC PARAMETERS"
  // (`openssl ecparam -genkey` writes the parameters before the key): an
  // unencrypted EC P-256 private key (PKCS#8 "PRIVATE KEY" or SEC1 "EC
  // PRIVATE KEY") or an Ed25519 private key (PKCS#8), whose public part
  // matches its private part. Anything else is refused: nullopt, and `what`
  // says what was found ("an RSA private key", "a certificate, not a private
  // key"...) as a phrase the caller puts after its own name for the key. It
  // never holds any of the PEM's content.
  static std::optional<PrivateKey> from_pem(std::string_view pem, std::string& what);

  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;
  ~PrivateKey();

  Kind kind() const { return kind_; }
  // The public key as raw big-endian bytes: for P-256 the affine
  // coordinates x and y, 32 bytes each; for Ed25519 the 32-byte public key
  // in x (RFC 8037's "x") and an empty y.
  const std::string& public_x() const { return x_; }
  const std::string& public_y() const { return y_; }

  // Signs `input` and returns the raw signature as JWS wants it: for P-256
  // SHA-256 then ECDSA as the 64-byte r||s of RFC 7518 3.4 (not OpenSSL's
  // DER); for Ed25519 the 64-byte signature of RFC 8032. Empty on an OpenSSL
  // failure, which a loaded key should never see.
  std::string sign(std::string_view input) const;

 private:
  struct PkeyFree {
    void operator()(evp_pkey_st* key) const;
  };
  PrivateKey(std::unique_ptr<evp_pkey_st, PkeyFree> key, Kind kind, std::string x, std::string y);

  std::unique_ptr<evp_pkey_st, PkeyFree> key_;
  Kind kind_;
  std::string x_, y_;
};

}  // namespace pvgate
