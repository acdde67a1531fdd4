#include "jws.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "crypto.h"
#include "json_codec.h"

namespace pvgate {

namespace {

const char* const kAccepted =
    "signing keys must be unencrypted EC P-256 (ES256) or Ed25519 (EdDSA) private keys";

}  // namespace

SigningKey::SigningKey(PrivateKey key) : key_(std::move(key)) {}
SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

std::optional<SigningKey> SigningKey::load_pem_file(const std::string& path, std::string& error) {
  const std::string where = "signing key " + path + ": ";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = where + "cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  // Read at most one byte past the limit, enough to know it is over.
  std::string text(kMaxKeyFileBytes + 1, '\0');
  const std::size_t n = std::fread(text.data(), 1, text.size(), f);
  const bool read_error = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  text.resize(n);
  std::optional<SigningKey> key;
  if (read_error) {
    error = where + "cannot read: " + std::strerror(read_errno);
  } else if (n == 0) {
    error = where + "empty file; " + kAccepted;
  } else if (n > kMaxKeyFileBytes) {
    error = where + "larger than " + std::to_string(kMaxKeyFileBytes) +
            " bytes, not a PEM key file; " + kAccepted;
  } else {
    key = load_pem(text, path, error);
  }
  wipe(text);
  return key;
}

std::optional<SigningKey> SigningKey::load_pem(std::string_view pem, std::string_view source,
                                               std::string& error) {
  const std::string where = "signing key " + std::string(source) + ": ";
  const auto fail = [&](const std::string& what) {
    error = where + what + "; " + kAccepted;
    return std::nullopt;
  };
  if (pem.size() > kMaxKeyFileBytes)
    return fail("larger than " + std::to_string(kMaxKeyFileBytes) + " bytes, not a PEM key");
  std::string what;
  std::optional<PrivateKey> private_key = PrivateKey::from_pem(pem, what);
  if (!private_key) return fail(what);

  SigningKey key(std::move(*private_key));
  std::string thumbprint_input;
  const std::string xs = base64url_encode(key.key_.public_x());
  if (key.key_.kind() == PrivateKey::Kind::p256) {
    const std::string ys = base64url_encode(key.key_.public_y());
    key.alg_ = "ES256";
    // RFC 7638 section 3.2: the required members only, in lexicographic
    // order, no whitespace.
    thumbprint_input = R"({"crv":"P-256","kty":"EC","x":")" + xs + R"(","y":")" + ys + "\"}";
    key.jwk_ = R"({"kty":"EC","crv":"P-256","x":")" + xs + R"(","y":")" + ys + "\"";
  } else {
    key.alg_ = "EdDSA";
    // RFC 8037 section 2 and appendix A.3: OKP's required members.
    thumbprint_input = R"({"crv":"Ed25519","kty":"OKP","x":")" + xs + "\"}";
    key.jwk_ = R"({"kty":"OKP","crv":"Ed25519","x":")" + xs + "\"";
  }

  const std::string digest = sha256(thumbprint_input);
  if (digest.empty()) return fail("SHA-256 unavailable");
  key.kid_ = base64url_encode(digest);
  key.jwk_ += R"(,"kid":")" + key.kid_ + R"(","alg":")" + key.alg_ + R"(","use":"sig"})";
  key.header_b64_ =
      base64url_encode(R"({"alg":")" + key.alg_ + R"(","kid":")" + key.kid_ + R"(","typ":"JWT"})");
  error.clear();
  return key;
}

std::string jwks(const std::vector<SigningKey>& keys) {
  std::string out = R"({"keys":[)";
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += keys[i].jwk();
  }
  out += "]}";
  return out;
}

std::string sign_jwt(const SigningKey& key, std::string_view claims_json) {
  std::string token = key.header_b64_;
  token.push_back('.');
  token += base64url_encode(claims_json);
  const std::string sig = key.key_.sign(token);
  if (sig.empty()) return {};
  token.push_back('.');
  token += base64url_encode(sig);
  return token;
}

std::string claims_json(const TokenClaims& claims) {
  std::string out = R"({"iss":)";
  append_json_string(out, claims.iss);
  out += R"(,"aud":)";
  append_json_string(out, claims.aud);
  out += R"(,"sub":)";
  append_json_string(out, claims.sub);
  out += R"(,"phone_number":)";
  append_json_string(out, claims.phone_number);
  out += R"(,"phone_number_verified":true,"iat":)";
  out += std::to_string(claims.iat);
  out += R"(,"exp":)";
  out += std::to_string(claims.exp);
  out += R"(,"jti":)";
  append_json_string(out, claims.jti);
  out.push_back('}');
  return out;
}

std::string new_jti() {
  unsigned char bytes[16];
  if (!random_bytes(bytes, sizeof bytes)) return {};
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

}  // namespace pvgate
