// Cost of src/altcha.h on the server: nanoseconds per altcha_issue and per altcha_verify (a
// valid payload, and refusals at each stage; the share of decoding), against baselines measured in
// the same run: one bare sha256 of 36 bytes (one step of the solver's search, and of the check) and
// one hmac_sha256 of 32 bytes. Never run by ctest.
//
// Reports this thread's CPU time per call (what a worker spends; stable on a shared, busy host)
// and the wall time (which also counts time the thread waited for a core).
//
//   pvgate_bench_altcha [--calls N]     (default 100000)
#include <time.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "altcha.h"
#include "crypto.h"
#include "json_codec.h"
#include "text.h"

using namespace pvgate;

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::int64_t kNowMs = 1'790'000'000'000;
constexpr std::uint32_t kDifficulty = 50'000;

double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// Where each measured loop leaves its results, so the compiler keeps the calls.
volatile std::size_t g_sink = 0;

struct Cost {
  double cpu_ns = 0;
  double wall_ns = 0;
};

// Runs `call` `calls` times (after a tenth as many to warm caches).
Cost measure(long calls, const std::function<std::size_t()>& call) {
  std::size_t sink = 0;
  for (long i = 0; i < calls / 10 + 1; ++i) sink += call();  // warm-up
  const double cpu_start = thread_cpu_ns();
  const auto start = Clock::now();
  for (long i = 0; i < calls; ++i) sink += call();
  const double wall = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  const double cpu = thread_cpu_ns() - cpu_start;
  g_sink = sink;
  return {cpu / static_cast<double>(calls), wall / static_cast<double>(calls)};
}

void print(const char* name, Cost c, double sha_ns, double hmac_ns) {
  std::printf("%-40s %8.0f ns CPU %8.0f wall  %7.1fx sha256 %6.1fx hmac\n", name, c.cpu_ns,
              c.wall_ns, c.cpu_ns / sha_ns, c.cpu_ns / hmac_ns);
}

// The solver's loop: counters from 0 until the derived key starts with keyPrefix (hex).
std::uint32_t solve(const std::string& salt, const std::string& nonce, const std::string& prefix,
                    std::string& key_hex) {
  for (std::uint32_t c = 0;; ++c) {
    std::string input = salt + nonce;
    for (int shift = 24; shift >= 0; shift -= 8) input.push_back(static_cast<char>(c >> shift));
    const std::string key = sha256(input);
    key_hex.clear();
    append_hex(key_hex, reinterpret_cast<const unsigned char*>(key.data()), key.size());
    if (key_hex.compare(0, prefix.size(), prefix) == 0) return c;
  }
}

// The value of "name":"..." in the issued JSON (hex, no escapes).
std::string field(const std::string& json, const std::string& name) {
  const std::string tag = "\"" + name + "\":\"";
  const std::size_t at = json.find(tag) + tag.size();
  return json.substr(at, json.find('"', at) - at);
}

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<char>(hex_value(h[i]) * 16 + hex_value(h[i + 1])));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  long calls = 100'000;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--calls") == 0 && i + 1 < argc) {
      calls = std::atol(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--calls N]\n", argv[0]);
      return 2;
    }
  }
  if (calls <= 0) calls = 1;

  const AltchaSecrets secrets = altcha_secrets("bench key file\n", "shop-a");
  // A valid payload, built as the widget builds it.
  const std::string challenge = altcha_issue(secrets, kDifficulty, kNowMs, 300'000);
  if (challenge.empty()) {
    std::fprintf(stderr, "altcha_issue failed\n");
    return 1;
  }
  std::string key_hex;
  const std::uint32_t counter =
      solve(unhex(field(challenge, "salt")), unhex(field(challenge, "nonce")),
            field(challenge, "keyPrefix"), key_hex);
  const std::string json = R"({"challenge":)" + challenge + R"(,"solution":{"counter":)" +
                           std::to_string(counter) + R"(,"derivedKey":")" + key_hex +
                           R"(","time":1234.5}})";
  const std::string valid = base64_encode(json);
  std::string tampered_json = json;
  const std::size_t digit = tampered_json.find("\"salt\":\"") + 8;
  tampered_json[digit] = tampered_json[digit] == '0' ? '1' : '0';
  const std::string forged = base64_encode(tampered_json);
  std::string wrong_json = json;
  wrong_json.replace(wrong_json.find("\"counter\":") + 10, std::to_string(counter).size(),
                     std::to_string(counter + 1));
  const std::string wrong = base64_encode(wrong_json);
  const std::string garbage(700, '!');
  if (altcha_verify(secrets, valid, kNowMs, 0).result != AltchaResult::ok ||
      altcha_verify(secrets, forged, kNowMs, 0).result != AltchaResult::forged ||
      altcha_verify(secrets, wrong, kNowMs, 0).result != AltchaResult::wrong) {
    std::fprintf(stderr, "the bench's payloads do not check as expected\n");
    return 1;
  }
  std::printf("payload: %zu bytes (base64 of %zu), counter %u of difficulty %u\n\n", valid.size(),
              json.size(), counter, kDifficulty);

  const std::string input36(36, 'x');
  const std::string key32(32, 'k');
  const Cost sha = measure(calls, [&] { return sha256(input36).size(); });
  const Cost mac = measure(calls, [&] { return hmac_sha256(secrets.signature, key32).size(); });
  print("baseline: sha256 of 36 bytes", sha, sha.cpu_ns, mac.cpu_ns);
  print("baseline: hmac_sha256 of 32 bytes", mac, sha.cpu_ns, mac.cpu_ns);
  print("altcha_issue",
        measure(calls, [&] { return altcha_issue(secrets, kDifficulty, kNowMs, 300'000).size(); }),
        sha.cpu_ns, mac.cpu_ns);
  print("altcha_verify: valid (ok)",
        measure(calls, [&] { return altcha_verify(secrets, valid, kNowMs, 0).claim_key.size(); }),
        sha.cpu_ns, mac.cpu_ns);
  print("  of which base64_decode + JSON (SAX)",
        measure(calls,
                [&] {
                  const auto decoded = base64_decode(valid);
                  return decoded && read_altcha_payload(*decoded) ? std::size_t{1} : std::size_t{0};
                }),
        sha.cpu_ns, mac.cpu_ns);
  print("altcha_verify: wrong counter",
        measure(calls,
                [&] {
                  return static_cast<std::size_t>(altcha_verify(secrets, wrong, kNowMs, 0).result);
                }),
        sha.cpu_ns, mac.cpu_ns);
  print("altcha_verify: forged (tampered salt)",
        measure(calls,
                [&] {
                  return static_cast<std::size_t>(altcha_verify(secrets, forged, kNowMs, 0).result);
                }),
        sha.cpu_ns, mac.cpu_ns);
  print(
      "altcha_verify: malformed (not base64)",
      measure(calls,
              [&] {
                return static_cast<std::size_t>(altcha_verify(secrets, garbage, kNowMs, 0).result);
              }),
      sha.cpu_ns, mac.cpu_ns);
  std::printf(
      "\nthe solver's work at difficulty %u: %u to %u sha256 (%.1f to %.1f ms at this "
      "host's native rate)\n",
      kDifficulty, kDifficulty / 2 + 1, kDifficulty + 1, (kDifficulty / 2 + 1) * sha.cpu_ns / 1e6,
      (kDifficulty + 1) * sha.cpu_ns / 1e6);
  return 0;
}
