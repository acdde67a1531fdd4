#include "signer.h"

namespace pvgate {

std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret) {
  std::string scratch;
  return pipwave_signature(fields, api_secret, scratch);
}

namespace {

// `fields`: (key, value) pairs in byte order of their keys.
template <typename Fields>
std::string sign_sorted(const Fields& fields, std::string_view api_secret, std::string& text) {
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

}  // namespace

std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret, std::string& scratch) {
  return sign_sorted(fields, api_secret, scratch);
}

std::string pipwave_signature(const FieldViews& sorted_fields, std::string_view api_secret) {
  std::string scratch;
  return sign_sorted(sorted_fields, api_secret, scratch);
}

}  // namespace pvgate
