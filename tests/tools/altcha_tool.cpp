// pvgate_altcha_tool: src/altcha.h from the command line, for tests/interop
// (the reference library altcha-lib solves and checks what it prints, and
// it checks what altcha-lib makes). Never installed.
//
//   pvgate_altcha_tool secrets KEYFILE MERCHANT
//       the merchant's two secrets, one a line: signature, then key_signature
//   pvgate_altcha_tool issue KEYFILE MERCHANT DIFFICULTY TTL_SECONDS
//       a challenge's JSON, expiring TTL_SECONDS (may be negative) from now
//   pvgate_altcha_tool verify KEYFILE MERCHANT MIN_COUNTER PAYLOAD
//       the result's name (ok, malformed, forged, ...) checked now; exit 0 only for ok
//
// KEYFILE's content is the key without its line ends, as pvgate's config reads
// challenge.key_file. Exit 1 for a refused payload or
// a failure (the reason on stderr), 2 for usage.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>

#include "altcha.h"

namespace {

int usage(const std::string& why) {
  std::cerr << "pvgate_altcha_tool: " << why << "\n"
            << "usage: pvgate_altcha_tool secrets KEYFILE MERCHANT\n"
            << "       pvgate_altcha_tool issue KEYFILE MERCHANT DIFFICULTY TTL_SECONDS\n"
            << "       pvgate_altcha_tool verify KEYFILE MERCHANT MIN_COUNTER PAYLOAD\n";
  return 2;
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return text;
}

// A whole decimal integer in [lo, hi].
std::optional<std::int64_t> integer(const std::string& s, std::int64_t lo, std::int64_t hi) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || n < lo || n > hi) return std::nullopt;
  return n;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage("too few arguments");
  const std::string command = argv[1];
  auto key = read_file(argv[2]);
  if (!key) {
    std::cerr << "pvgate_altcha_tool: cannot read " << argv[2] << "\n";
    return 1;
  }
  while (!key->empty() && (key->back() == '\n' || key->back() == '\r')) key->pop_back();
  const pvgate::AltchaSecrets secrets = pvgate::altcha_secrets(*key, argv[3]);

  if (command == "secrets") {
    if (argc != 4) return usage("secrets takes KEYFILE MERCHANT");
    std::cout << secrets.signature << "\n" << secrets.key_signature << "\n";
    return 0;
  }
  if (command == "issue") {
    if (argc != 6) return usage("issue takes KEYFILE MERCHANT DIFFICULTY TTL_SECONDS");
    const auto difficulty = integer(argv[4], 0, std::numeric_limits<std::uint32_t>::max());
    const auto ttl = integer(argv[5], -86'400'000, 86'400'000);
    if (!difficulty) return usage("DIFFICULTY is an integer in 0..4294967295");
    if (!ttl) return usage("TTL_SECONDS is an integer in -86400000..86400000");
    const std::string challenge = pvgate::altcha_issue(
        secrets, static_cast<std::uint32_t>(*difficulty), now_ms(), *ttl * 1000);
    if (challenge.empty()) {
      std::cerr << "pvgate_altcha_tool: no challenge (random generator or time out of range)\n";
      return 1;
    }
    std::cout << challenge << "\n";
    return 0;
  }
  if (command == "verify") {
    if (argc != 6) return usage("verify takes KEYFILE MERCHANT MIN_COUNTER PAYLOAD");
    const auto min_counter = integer(argv[4], 0, std::numeric_limits<std::uint32_t>::max());
    if (!min_counter) return usage("MIN_COUNTER is an integer in 0..4294967295");
    const pvgate::AltchaCheck check =
        pvgate::altcha_verify(secrets, argv[5], now_ms(), static_cast<std::uint32_t>(*min_counter));
    std::cout << pvgate::altcha_result_name(check.result) << "\n";
    return check.result == pvgate::AltchaResult::ok ? 0 : 1;
  }
  return usage("unknown command " + command);
}
