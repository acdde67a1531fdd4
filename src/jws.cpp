#include "jws.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "json_codec.h"

namespace pvgate {

namespace {

constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// P-256 coordinates and Ed25519 public keys are both 32 bytes; an ES256 or
// Ed25519 signature is 64.
constexpr std::size_t kCoordBytes = 32;

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// OpenSSL's error queue is per thread and shared with libcurl's TLS on the
// same thread: whatever a load or a signature leaves there is cleared on
// every path out, so it cannot be misread as a later TLS error.
struct ClearErrorsOnExit {
  ~ClearErrorsOnExit() { ERR_clear_error(); }
};

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};

// One block as PEM_read_bio returns it; the DER may be a private key, so it
// is wiped when freed.
struct PemBlock {
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  PemBlock() = default;
  PemBlock(const PemBlock&) = delete;
  PemBlock& operator=(const PemBlock&) = delete;
  ~PemBlock() {
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (data != nullptr) OPENSSL_clear_free(data, static_cast<std::size_t>(len));
  }
};

// A PEM label for an error message: it is the text of a BEGIN line, not key
// material, but it is still cut short and kept to printable ASCII.
std::string printable_label(std::string_view label) {
  std::string out;
  for (char c : label.substr(0, 40)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(md), len);
}

// The affine coordinate `name` (OSSL_PKEY_PARAM_EC_PUB_X/Y) as 32 bytes.
std::optional<std::string> ec_coordinate(const EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return std::nullopt;
  std::unique_ptr<BIGNUM, BnFree> bn(raw);
  std::string out(kCoordBytes, '\0');
  if (BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()),
                   static_cast<int>(kCoordBytes)) != static_cast<int>(kCoordBytes))
    return std::nullopt;
  return out;
}

const char* const kAccepted =
    "signing keys must be unencrypted EC P-256 (ES256) or Ed25519 (EdDSA) private keys";

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(bytes[k]); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out.push_back(kB64Url[(v >> 18) & 63]);
    out.push_back(kB64Url[(v >> 12) & 63]);
    out.push_back(kB64Url[(v >> 6) & 63]);
    out.push_back(kB64Url[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = byte(i) << 16;
    out.push_back(kB64Url[(v >> 18) & 63]);
    out.push_back(kB64Url[(v >> 12) & 63]);
  } else if (rest == 2) {
    const std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
    out.push_back(kB64Url[(v >> 18) & 63]);
    out.push_back(kB64Url[(v >> 12) & 63]);
    out.push_back(kB64Url[(v >> 6) & 63]);
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  // 4 characters carry 3 bytes; a trailing 2 carry 1 byte and 3 carry 2.
  // A trailing single character carries 6 bits, less than a byte.
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = b64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
      acc &= (1u << bits) - 1;
    }
  }
  // The 2 or 4 bits left over must be zero (RFC 4648 section 3.5), or two
  // texts would decode to the same bytes.
  if (acc != 0) return std::nullopt;
  return out;
}

void SigningKey::PkeyFree::operator()(evp_pkey_st* key) const {
  EVP_PKEY_free(key);
}

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
  OPENSSL_cleanse(text.data(), text.size());
  return key;
}

std::optional<SigningKey> SigningKey::load_pem(std::string_view pem, std::string_view source,
                                               std::string& error) {
  ClearErrorsOnExit clear_errors;
  const std::string where = "signing key " + std::string(source) + ": ";
  const auto fail = [&](const std::string& what) {
    error = where + what + "; " + kAccepted;
    return std::nullopt;
  };
  if (pem.size() > kMaxKeyFileBytes)
    return fail("larger than " + std::to_string(kMaxKeyFileBytes) + " bytes, not a PEM key");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail("out of memory");

  // The first block that is not "EC PARAMETERS" decides (`openssl ecparam
  // -genkey` writes the parameters before the key).
  bool saw_parameters = false;
  for (;;) {
    PemBlock block;
    ERR_clear_error();
    if (PEM_read_bio(bio.get(), &block.name, &block.header, &block.data, &block.len) != 1) {
      const unsigned long err = ERR_peek_last_error();
      if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        return fail(saw_parameters ? "EC parameters but no private key"
                                   : "no PEM block (no BEGIN line)");
      }
      return fail("a damaged PEM block (bad base64 or no END line)");
    }
    const std::string_view label = block.name;
    if (label == "EC PARAMETERS") {
      saw_parameters = true;
      continue;
    }
    const bool encrypted_header =
        block.header != nullptr && std::strstr(block.header, "ENCRYPTED") != nullptr;
    if (label == "ENCRYPTED PRIVATE KEY" || encrypted_header)
      return fail("an encrypted private key (pvgate takes no passphrase; protect it by file mode)");
    if (label == "RSA PRIVATE KEY") return fail("an RSA private key");
    if (label == "DSA PRIVATE KEY") return fail("a DSA private key");
    if (label == "CERTIFICATE") return fail("a certificate, not a private key");
    if (label.size() >= 10 && label.substr(label.size() - 10) == "PUBLIC KEY")
      return fail("a public key (\"" + printable_label(label) + "\"), not a private key");
    if (label != "PRIVATE KEY" && label != "EC PRIVATE KEY")
      return fail("a PEM block \"" + printable_label(label) + "\", not a private key");

    const unsigned char* p = block.data;
    EVP_PKEY* raw = label == "EC PRIVATE KEY" ? d2i_PrivateKey(EVP_PKEY_EC, nullptr, &p, block.len)
                                              : d2i_AutoPrivateKey(nullptr, &p, block.len);
    std::unique_ptr<evp_pkey_st, PkeyFree> pkey(raw);
    if (!pkey) return fail("a \"" + std::string(label) + "\" block OpenSSL cannot decode");
    if (p != block.data + block.len)
      return fail("a \"" + std::string(label) + "\" block with trailing data");

    SigningKey key;
    std::string thumbprint_input;
    const int type = EVP_PKEY_get_base_id(pkey.get());
    if (type == EVP_PKEY_EC) {
      char group[80] = {};
      std::size_t group_len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                         sizeof group, &group_len) != 1)
        return fail("an EC private key with explicit curve parameters (not the named P-256)");
      if (OBJ_txt2nid(group) != NID_X9_62_prime256v1)
        return fail("an EC private key on curve " + printable_label(group) + ", not P-256");
      const auto x = ec_coordinate(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X);
      const auto y = ec_coordinate(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y);
      if (!x || !y) return fail("an EC private key whose public point cannot be read");
      const std::string xs = base64url_encode(*x), ys = base64url_encode(*y);
      key.is_ec_ = true;
      key.alg_ = "ES256";
      // RFC 7638 section 3.2: the required members only, in lexicographic
      // order, no whitespace.
      thumbprint_input = R"({"crv":"P-256","kty":"EC","x":")" + xs + R"(","y":")" + ys + "\"}";
      key.jwk_ = R"({"kty":"EC","crv":"P-256","x":")" + xs + R"(","y":")" + ys + "\"";
    } else if (type == EVP_PKEY_ED25519) {
      std::string pub(kCoordBytes, '\0');
      std::size_t pub_len = pub.size();
      if (EVP_PKEY_get_raw_public_key(pkey.get(), reinterpret_cast<unsigned char*>(pub.data()),
                                      &pub_len) != 1 ||
          pub_len != kCoordBytes)
        return fail("an Ed25519 private key whose public key cannot be read");
      const std::string xs = base64url_encode(pub);
      key.alg_ = "EdDSA";
      // RFC 8037 section 2 and appendix A.3: OKP's required members.
      thumbprint_input = R"({"crv":"Ed25519","kty":"OKP","x":")" + xs + "\"}";
      key.jwk_ = R"({"kty":"OKP","crv":"Ed25519","x":")" + xs + "\"";
    } else if (type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS) {
      return fail("an RSA private key");
    } else {
      const char* name = EVP_PKEY_get0_type_name(pkey.get());
      return fail("a private key of type " + printable_label(name != nullptr ? name : "unknown"));
    }

    // A SEC1 key may carry a public point that does not belong to its
    // private scalar; tokens signed with it would never verify against the
    // JWKS, so that is found now rather than by every shop.
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
        EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
    if (!check || EVP_PKEY_pairwise_check(check.get()) != 1)
      return fail("a private key whose public part does not match it");

    const std::string digest = sha256(thumbprint_input);
    if (digest.empty()) return fail("SHA-256 unavailable");
    key.kid_ = base64url_encode(digest);
    key.jwk_ += R"(,"kid":")" + key.kid_ + R"(","alg":")" + key.alg_ + R"(","use":"sig"})";
    key.header_b64_ = base64url_encode(R"({"alg":")" + key.alg_ + R"(","kid":")" + key.kid_ +
                                       R"(","typ":"JWT"})");
    key.key_ = std::move(pkey);
    error.clear();
    return key;
  }
}

std::string SigningKey::sign(std::string_view signing_input) const {
  ClearErrorsOnExit clear_errors;
  // A context per call: the EVP_PKEY is only read, so any number of threads
  // may sign with one key at once.
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return {};
  // Ed25519 hashes internally (PureEdDSA): no digest is named for it.
  if (EVP_DigestSignInit(ctx.get(), nullptr, is_ec_ ? EVP_sha256() : nullptr, nullptr,
                         key_.get()) != 1)
    return {};
  const int max_size = EVP_PKEY_get_size(key_.get());
  if (max_size <= 0) return {};
  std::string sig(static_cast<std::size_t>(max_size), '\0');
  std::size_t sig_len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1)
    return {};
  sig.resize(sig_len);
  if (!is_ec_) return sig_len == 2 * kCoordBytes ? sig : std::string();

  // OpenSSL writes ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs); JWS wants
  // r and s as fixed 32-byte big-endian numbers, concatenated (RFC 7518 3.4).
  const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> ecdsa(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!ecdsa) return {};
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(ecdsa.get(), &r, &s);
  std::string raw(2 * kCoordBytes, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  const int n = static_cast<int>(kCoordBytes);
  if (BN_bn2binpad(r, out, n) != n || BN_bn2binpad(s, out + kCoordBytes, n) != n) return {};
  return raw;
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
  const std::string sig = key.sign(token);
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
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    ERR_clear_error();
    return {};
  }
  return base64url_encode(std::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
}

}  // namespace pvgate
