#include "crypto.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <climits>
#include <cstring>

#include "text.h"

namespace pvgate {

namespace {

// P-256 coordinates and Ed25519 public keys are both 32 bytes; a P-256 r||s
// or an Ed25519 signature is 64.
constexpr std::size_t kCoordBytes = 32;

// See crypto.h: the per-thread error queue is left empty on every path out.
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

}  // namespace

std::string sha1_hex(std::string_view data) {
  std::string out;
  append_sha1_hex(out, data);
  return out;
}

void append_sha1_hex(std::string& out, std::string_view data) {
  // SHA-1 of short inputs (key digests, the signature text) through the
  // low-level API: 66 ns a digest here, against 130-220 ns through EVP, whose
  // provider dispatch outweighs a one-block hash; three key digests are on
  // every throttled request's path. Deprecated in OpenSSL 3, not removed;
  // if it ever is, EVP_Digest with a digest fetched once does the same.
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA_CTX ctx;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  SHA1_Init(&ctx);
  SHA1_Update(&ctx, data.data(), data.size());
  SHA1_Final(digest, &ctx);
#pragma GCC diagnostic pop
  OPENSSL_cleanse(&ctx, sizeof ctx);  // it held the signature text, secret included
  append_hex(out, digest, sizeof digest);
  OPENSSL_cleanse(digest, sizeof digest);
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string sha256(std::string_view data) {
  ClearErrorsOnExit clear_errors;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(md), len);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  ClearErrorsOnExit clear_errors;
  if (key.size() > static_cast<std::size_t>(INT_MAX)) return {};
  // HMAC() (not deprecated, unlike HMAC_CTX) needs a non-null key pointer
  // even for a key of length 0, which a default std::string_view lacks.
  static const unsigned char kNoKey = 0;
  const void* key_bytes = key.empty() ? static_cast<const void*>(&kNoKey) : key.data();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key_bytes, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len) == nullptr ||
      len != kSha256Bytes)
    return {};
  std::string out(reinterpret_cast<const char*>(md), len);
  OPENSSL_cleanse(md, sizeof md);
  return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool random_bytes(unsigned char* out, std::size_t n) {
  ClearErrorsOnExit clear_errors;
  if (n > static_cast<std::size_t>(INT_MAX)) return false;
  return RAND_bytes(out, static_cast<int>(n)) == 1;
}

void PrivateKey::PkeyFree::operator()(evp_pkey_st* key) const {
  EVP_PKEY_free(key);
}

PrivateKey::PrivateKey(std::unique_ptr<evp_pkey_st, PkeyFree> key, Kind kind, std::string x,
                       std::string y)
    : key_(std::move(key)), kind_(kind), x_(std::move(x)), y_(std::move(y)) {}
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;
PrivateKey::~PrivateKey() = default;

std::optional<PrivateKey> PrivateKey::from_pem(std::string_view pem, std::string& what) {
  ClearErrorsOnExit clear_errors;
  const auto fail = [&](std::string found) {
    what = std::move(found);
    return std::nullopt;
  };
  if (pem.size() > static_cast<std::size_t>(INT_MAX)) return fail("too large for a PEM key");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail("out of memory");

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

    Kind kind;
    std::string x, y;
    const int type = EVP_PKEY_get_base_id(pkey.get());
    if (type == EVP_PKEY_EC) {
      char group[80] = {};
      std::size_t group_len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                         sizeof group, &group_len) != 1)
        return fail("an EC private key with explicit curve parameters (not the named P-256)");
      if (OBJ_txt2nid(group) != NID_X9_62_prime256v1)
        return fail("an EC private key on curve " + printable_label(group) + ", not P-256");
      auto px = ec_coordinate(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X);
      auto py = ec_coordinate(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y);
      if (!px || !py) return fail("an EC private key whose public point cannot be read");
      kind = Kind::p256;
      x = std::move(*px);
      y = std::move(*py);
    } else if (type == EVP_PKEY_ED25519) {
      x.assign(kCoordBytes, '\0');
      std::size_t pub_len = x.size();
      if (EVP_PKEY_get_raw_public_key(pkey.get(), reinterpret_cast<unsigned char*>(x.data()),
                                      &pub_len) != 1 ||
          pub_len != kCoordBytes)
        return fail("an Ed25519 private key whose public key cannot be read");
      kind = Kind::ed25519;
    } else if (type == EVP_PKEY_RSA || type == EVP_PKEY_RSA_PSS) {
      return fail("an RSA private key");
    } else {
      const char* name = EVP_PKEY_get0_type_name(pkey.get());
      return fail("a private key of type " + printable_label(name != nullptr ? name : "unknown"));
    }

    // A SEC1 key may carry a public point that does not belong to its
    // private scalar; signatures made with it would never verify against
    // the published public key, so that is found now rather than by every
    // verifier.
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> check(
        EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr));
    if (!check || EVP_PKEY_pairwise_check(check.get()) != 1)
      return fail("a private key whose public part does not match it");

    what.clear();
    return PrivateKey(std::move(pkey), kind, std::move(x), std::move(y));
  }
}

std::string PrivateKey::sign(std::string_view input) const {
  ClearErrorsOnExit clear_errors;
  // A context per call: the EVP_PKEY is only read, so any number of threads
  // may sign with one key at once.
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) return {};
  const bool is_ec = kind_ == Kind::p256;
  // Ed25519 hashes internally (PureEdDSA): no digest is named for it.
  if (EVP_DigestSignInit(ctx.get(), nullptr, is_ec ? EVP_sha256() : nullptr, nullptr, key_.get()) !=
      1)
    return {};
  const int max_size = EVP_PKEY_get_size(key_.get());
  if (max_size <= 0) return {};
  std::string sig(static_cast<std::size_t>(max_size), '\0');
  std::size_t sig_len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1)
    return {};
  sig.resize(sig_len);
  if (!is_ec) return sig_len == 2 * kCoordBytes ? sig : std::string();

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

}  // namespace pvgate
