#include "signer.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

namespace pvgate {

namespace {

// OpenSSL 3's one-shot SHA1() looks the algorithm up (under a lock) on every
// call; fetch it once and keep one digest context per thread instead.
const EVP_MD* sha1_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md;
}

struct DigestCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~DigestCtx() { EVP_MD_CTX_free(ctx); }
};

}  // namespace

std::string sha1_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  thread_local DigestCtx holder;
  const bool ok = holder.ctx != nullptr && sha1_md() != nullptr &&
                  EVP_DigestInit_ex(holder.ctx, sha1_md(), nullptr) == 1 &&
                  EVP_DigestUpdate(holder.ctx, data.data(), data.size()) == 1 &&
                  EVP_DigestFinal_ex(holder.ctx, digest, &size) == 1;
  if (!ok || size != SHA_DIGEST_LENGTH) {
    // Only on a broken OpenSSL installation; fall back to the one-shot call.
    SHA1(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
    size = SHA_DIGEST_LENGTH;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * SHA_DIGEST_LENGTH, '0');
  for (unsigned int i = 0; i < SHA_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0x0F];
  }
  OPENSSL_cleanse(digest, sizeof digest);
  return out;
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret) {
  static constexpr std::string_view kSecretKey = "api_secret";
  std::string text;
  // Reserve the exact size so the secret is never left behind in a freed
  // buffer by a reallocation.
  std::size_t size = kSecretKey.size() + 1 + api_secret.size();
  for (const auto& [key, value] : fields) size += key.size() + 1 + value.size();
  text.reserve(size);
  bool secret_done = false;
  const auto add_secret = [&] {
    text.append(kSecretKey).push_back(':');
    text.append(api_secret);
    secret_done = true;
  };
  for (const auto& [key, value] : fields) {
    if (!secret_done && std::string_view(key) > kSecretKey) add_secret();
    text.append(key).push_back(':');
    text.append(value);
  }
  if (!secret_done) add_secret();
  std::string sig = sha1_hex(text);
  wipe(text);
  return sig;
}

}  // namespace pvgate
