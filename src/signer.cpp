#include "signer.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "text.h"

namespace pvgate {

std::string sha1_hex(std::string_view data) {
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
  std::string out;
  append_hex(out, digest, sizeof digest);
  OPENSSL_cleanse(digest, sizeof digest);
  return out;
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret) {
  std::string scratch;
  return pipwave_signature(fields, api_secret, scratch);
}

std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret, std::string& text) {
  static constexpr std::string_view kSecretKey = "api_secret";
  wipe(text);
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
