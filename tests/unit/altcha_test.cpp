// src/altcha.h: challenges issued and solved here, every refusal in the order
// altcha_verify takes them, and a known answer computed with the reference
// library altcha-lib 2.8.0 (tests/interop/altcha checks the live library).
//
// Payloads are built as the widget builds them (btoa(JSON.stringify(...)))
// with nlohmann, which renders a compact object with sorted keys exactly as
// JSON.stringify(sortKeys(...)) does for these values: the tests can sign
// challenges of their own with a merchant's secret, to reach the checks that
// come after the signature.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "altcha.h"
#include "crypto.h"
#include "text.h"

using nlohmann::json;
using pvgate::altcha_issue;
using pvgate::altcha_secrets;
using pvgate::altcha_verify;
using pvgate::AltchaCheck;
using pvgate::AltchaResult;
using pvgate::AltchaSecrets;

namespace {

constexpr std::int64_t kNowMs = 1'790'000'000'123;  // 2026-09-21
constexpr std::int64_t kTtlMs = 300'000;

std::string hex(std::string_view bytes) {
  std::string out;
  pvgate::append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// derive(counter) of altcha.h, written again here from the protocol.
std::string derive_hex(const json& parameters, std::uint32_t counter) {
  std::string input =
      unhex(parameters["salt"].get<std::string>()) + unhex(parameters["nonce"].get<std::string>());
  for (int shift = 24; shift >= 0; shift -= 8) {
    input.push_back(static_cast<char>((counter >> shift) & 0xFF));
  }
  return hex(pvgate::sha256(input));
}

struct Solved {
  json challenge;
  std::uint32_t counter = 0;
  std::string derived_key;
};

// What the widget's solver does: counters from 0 until the derived key
// starts with keyPrefix (fails the test past `limit`).
Solved solve(const std::string& challenge_json, std::uint32_t limit = 100'000) {
  Solved s;
  s.challenge = json::parse(challenge_json);
  const json& p = s.challenge["parameters"];
  const std::string prefix = p["keyPrefix"].get<std::string>();
  for (std::uint32_t c = 0; c <= limit; ++c) {
    const std::string key = derive_hex(p, c);
    if (key.compare(0, prefix.size(), prefix) == 0) {
      s.counter = c;
      s.derived_key = key;
      return s;
    }
  }
  FAIL("no counter up to " << limit << " solves " << challenge_json);
  return s;
}

json payload_json(const Solved& s) {
  return json{{"challenge", s.challenge},
              {"solution", {{"counter", s.counter}, {"derivedKey", s.derived_key}, {"time", 3.7}}}};
}

std::string encode(const json& payload) {
  return pvgate::base64_encode(payload.dump());
}

// Signs `challenge["parameters"]` with the merchant's own signature secret,
// as the issuer would: to test what comes after the signature check.
void resign(json& challenge, const AltchaSecrets& s) {
  challenge["signature"] = hex(pvgate::hmac_sha256(s.signature, challenge["parameters"].dump()));
}

AltchaResult check(const AltchaSecrets& s, const json& payload, std::int64_t now_ms = kNowMs,
                   std::uint32_t min_counter = 0) {
  return altcha_verify(s, encode(payload), now_ms, min_counter).result;
}

const AltchaSecrets& secrets() {
  static const AltchaSecrets s = altcha_secrets("test key file content\n", "shop-a");
  return s;
}

}  // namespace

TEST_CASE("altcha: an issued challenge, solved, verifies", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const std::string issued = altcha_issue(s, 5000, kNowMs, kTtlMs);
  REQUIRE_FALSE(issued.empty());
  const Solved solved = solve(issued);
  CHECK(solved.counter >= 2500);
  CHECK(solved.counter <= 5000);

  const std::string payload = encode(payload_json(solved));
  const AltchaCheck c = altcha_verify(s, payload, kNowMs, 2500);
  CHECK(c.result == AltchaResult::ok);
  CHECK(c.counter == solved.counter);
  CHECK(c.claim_key == "altcha:" + solved.challenge["signature"].get<std::string>());
  CHECK(c.expires_ms == (kNowMs + kTtlMs) / 1000 * 1000);
  // Stateless: the same payload checks again (the store refuses the replay).
  CHECK(altcha_verify(s, payload, kNowMs, 0).result == AltchaResult::ok);
  // `time` is optional and any number.
  json p = payload_json(solved);
  p["solution"].erase("time");
  CHECK(check(s, p) == AltchaResult::ok);
  p["solution"]["time"] = 12;
  CHECK(check(s, p) == AltchaResult::ok);
}

TEST_CASE("altcha: the issued JSON is the widget's v2 challenge, keys sorted, signed", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const std::string issued = altcha_issue(s, 10, kNowMs, kTtlMs);
  static const std::regex shape(
      R"re(\{"parameters":(\{"algorithm":"SHA-256","cost":1,"expiresAt":(\d+),"keyLength":32,)re"
      R"re("keyPrefix":"[0-9a-f]{32}","keySignature":"[0-9a-f]{64}","nonce":"[0-9a-f]{32}",)re"
      R"re("salt":"[0-9a-f]{32}"\}),"signature":"([0-9a-f]{64})"\})re");
  std::smatch m;
  REQUIRE(std::regex_match(issued, m, shape));
  CHECK(m[2].str() == std::to_string((kNowMs + kTtlMs) / 1000));
  CHECK(m[3].str() == hex(pvgate::hmac_sha256(s.signature, m[1].str())));
  // keySignature is the HMAC of the solution's derived key.
  const Solved solved = solve(issued);
  CHECK(solved.challenge["parameters"]["keySignature"] ==
        hex(pvgate::hmac_sha256(s.key_signature, unhex(solved.derived_key))));
  // Two challenges share nothing random.
  const json other = json::parse(altcha_issue(s, 10, kNowMs, kTtlMs));
  CHECK(other["parameters"]["salt"] != solved.challenge["parameters"]["salt"]);
  CHECK(other["parameters"]["nonce"] != solved.challenge["parameters"]["nonce"]);
}

TEST_CASE("altcha: expiresAt is now + ttl rounded down to seconds; out of range, no challenge",
          "[altcha]") {
  const AltchaSecrets& s = secrets();
  const auto expires_at = [&](std::int64_t now_ms, std::int64_t ttl_ms) {
    return json::parse(altcha_issue(s, 1, now_ms, ttl_ms))["parameters"]["expiresAt"]
        .get<std::int64_t>();
  };
  CHECK(expires_at(1'000'999, 0) == 1000);
  CHECK(expires_at(1'000'000, 999) == 1000);
  CHECK(expires_at(1'000'000, 1000) == 1001);
  CHECK(expires_at(1'000'000, -1) == 999);
  CHECK(expires_at(1000, 0) == 1);
  CHECK(altcha_issue(s, 1, 999, 0).empty());  // expiresAt would be 0
  CHECK(altcha_issue(s, 1, 0, -1).empty());
  CHECK(altcha_issue(s, 1, INT64_MAX, 1).empty());                       // overflows
  CHECK(altcha_issue(s, 1, (std::int64_t{1} << 53) * 1000, 0).empty());  // past 2^53 - 1 s
  CHECK_FALSE(altcha_issue(s, 1, ((std::int64_t{1} << 53) - 1) * 1000, 0).empty());
}

TEST_CASE("altcha: the secret counter is uniform in [ceil(d/2), d]", "[altcha]") {
  const AltchaSecrets& s = secrets();
  SECTION("d = 7: only 4..7, each of them seen") {
    std::set<std::uint32_t> seen;
    for (int i = 0; i < 400; ++i) {
      const std::uint32_t c = solve(altcha_issue(s, 7, kNowMs, kTtlMs), 7).counter;
      REQUIRE(c >= 4);
      REQUIRE(c <= 7);
      seen.insert(c);
    }
    CHECK(seen.size() == 4);  // each value missed by 400 draws: (3/4)^400 < 1e-49
  }
  SECTION("d = 1000: in 500..1000, both ends of the range reached") {
    std::uint32_t lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 200; ++i) {
      const std::uint32_t c = solve(altcha_issue(s, 1000, kNowMs, kTtlMs), 1000).counter;
      REQUIRE(c >= 500);
      REQUIRE(c <= 1000);
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
    CHECK(lo < 600);  // none below 600 in 200 draws: (401/501)^200 < 1e-19
    CHECK(hi > 900);
  }
  SECTION("d = 0 and d = 1: one counter") {
    for (int i = 0; i < 20; ++i) {
      CHECK(solve(altcha_issue(s, 0, kNowMs, kTtlMs), 0).counter == 0);
      CHECK(solve(altcha_issue(s, 1, kNowMs, kTtlMs), 1).counter == 1);
      const std::uint32_t c = solve(altcha_issue(s, 2, kNowMs, kTtlMs), 2).counter;
      CHECK((c == 1 || c == 2));
    }
  }
}

TEST_CASE("altcha: a changed parameter or another merchant's secret is forged", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const Solved solved = solve(altcha_issue(s, 100, kNowMs, kTtlMs));
  const json good = payload_json(solved);
  REQUIRE(check(s, good) == AltchaResult::ok);

  // One digit changed in each hex parameter (still well-formed), and expiresAt + 1.
  for (const char* name : {"keyPrefix", "keySignature", "nonce", "salt"}) {
    INFO(name);
    json p = good;
    std::string v = p["challenge"]["parameters"][name].get<std::string>();
    v[0] = v[0] == '0' ? '1' : '0';
    p["challenge"]["parameters"][name] = v;
    CHECK(check(s, p) == AltchaResult::forged);
  }
  json later = good;
  later["challenge"]["parameters"]["expiresAt"] =
      later["challenge"]["parameters"]["expiresAt"].get<std::int64_t>() + 3600;
  CHECK(check(s, later) == AltchaResult::forged);
  json shorter = good;  // a shorter prefix is easier to solve
  shorter["challenge"]["parameters"]["keyPrefix"] =
      shorter["challenge"]["parameters"]["keyPrefix"].get<std::string>().substr(0, 2);
  CHECK(check(s, shorter) == AltchaResult::forged);
  json resigned = good;
  std::string sig = resigned["challenge"]["signature"].get<std::string>();
  sig[63] = sig[63] == 'a' ? 'b' : 'a';
  resigned["challenge"]["signature"] = sig;
  CHECK(check(s, resigned) == AltchaResult::forged);

  CHECK(check(altcha_secrets("test key file content\n", "shop-b"), good) == AltchaResult::forged);
  CHECK(check(altcha_secrets("another key file\n", "shop-a"), good) == AltchaResult::forged);
  // The key-signature secret alone right is not enough.
  CHECK(check(AltchaSecrets{altcha_secrets("x", "shop-a").signature, s.key_signature}, good) ==
        AltchaResult::forged);
  // Forged comes before expired.
  CHECK(check(s, later, kNowMs + 10 * kTtlMs) == AltchaResult::forged);
}

TEST_CASE("altcha: past expiresAt is expired, the second itself is not", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const Solved solved = solve(altcha_issue(s, 100, kNowMs, kTtlMs));
  const std::int64_t expires_ms =
      solved.challenge["parameters"]["expiresAt"].get<std::int64_t>() * 1000;
  json p = payload_json(solved);
  CHECK(check(s, p, expires_ms) == AltchaResult::ok);
  CHECK(check(s, p, expires_ms + 1) == AltchaResult::expired);
  CHECK(check(s, p, expires_ms + 86'400'000) == AltchaResult::expired);
  // Expired comes before the solution.
  p["solution"]["counter"] = solved.counter + 1;
  CHECK(check(s, p, expires_ms + 1) == AltchaResult::expired);
}

TEST_CASE("altcha: a solution that does not solve the challenge is wrong", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const Solved solved = solve(altcha_issue(s, 100, kNowMs, kTtlMs));
  const json good = payload_json(solved);

  SECTION("another counter with the right key") {
    json p = good;
    p["solution"]["counter"] = solved.counter + 1;
    CHECK(check(s, p) == AltchaResult::wrong);
    p["solution"]["counter"] = 0;
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("another counter with its own key (no prefix)") {
    json p = good;
    p["solution"]["counter"] = solved.counter + 1;
    p["solution"]["derivedKey"] = derive_hex(solved.challenge["parameters"], solved.counter + 1);
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("a changed derived key") {
    json p = good;
    std::string k = solved.derived_key;
    k[63] = k[63] == '0' ? '1' : '0';
    p["solution"]["derivedKey"] = k;
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("a derived key not 64 lowercase hex digits") {
    std::string upper = solved.derived_key;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    REQUIRE(upper != solved.derived_key);
    for (const std::string& k :
         {upper, solved.derived_key.substr(0, 62), solved.derived_key + "00",
          solved.derived_key.substr(0, 32), std::string(), std::string(64, 'g')}) {
      INFO(k);
      json p = good;
      p["solution"]["derivedKey"] = k;
      CHECK(check(s, p) == AltchaResult::wrong);
    }
  }
  SECTION("a counter outside 0..2^32-1") {
    json p = good;
    p["solution"]["counter"] = -1;
    CHECK(check(s, p) == AltchaResult::wrong);
    // 2^32 + counter wraps to counter in a 32-bit setUint32: refused, not wrapped.
    p["solution"]["counter"] = (std::int64_t{1} << 32) + solved.counter;
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("a keySignature that is not the key's (signed with the signature secret)") {
    json p = good;
    p["challenge"]["parameters"]["keySignature"] = hex(pvgate::hmac_sha256(
        altcha_secrets("x", "shop-a").key_signature, unhex(solved.derived_key)));
    resign(p["challenge"], s);
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("a keyPrefix the key does not start with (signed with the signature secret)") {
    // derivedKey and keySignature still agree: only the prefix check refuses it.
    json p = good;
    std::string prefix = p["challenge"]["parameters"]["keyPrefix"].get<std::string>();
    prefix[31] = prefix[31] == '0' ? '1' : '0';
    p["challenge"]["parameters"]["keyPrefix"] = prefix;
    resign(p["challenge"], s);
    CHECK(check(s, p) == AltchaResult::wrong);
  }
  SECTION("the right answer checks: the sections above changed one thing each") {
    CHECK(check(s, good) == AltchaResult::ok);
    json p = good;
    resign(p["challenge"], s);  // resigning alone changes nothing
    CHECK(check(s, p) == AltchaResult::ok);
  }
}

TEST_CASE("altcha: a counter below min_counter is too easy", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const Solved solved = solve(altcha_issue(s, 100, kNowMs, kTtlMs));
  const std::string payload = encode(payload_json(solved));
  CHECK(altcha_verify(s, payload, kNowMs, solved.counter).result == AltchaResult::ok);
  const AltchaCheck c = altcha_verify(s, payload, kNowMs, solved.counter + 1);
  CHECK(c.result == AltchaResult::too_easy);
  CHECK(c.counter == solved.counter);
  CHECK(c.claim_key.empty());
  CHECK(altcha_verify(s, payload, kNowMs, UINT32_MAX).result == AltchaResult::too_easy);
  // A wrong solution is wrong, however low its counter.
  json p = payload_json(solved);
  p["solution"]["counter"] = 0;
  CHECK(check(s, p, kNowMs, 50) == AltchaResult::wrong);
}

TEST_CASE("altcha: what is not the payload's one shape is malformed", "[altcha]") {
  const AltchaSecrets& s = secrets();
  const Solved solved = solve(altcha_issue(s, 100, kNowMs, kTtlMs));
  const json good = payload_json(solved);
  const std::string good_b64 = encode(good);
  REQUIRE(altcha_verify(s, good_b64, kNowMs, 0).result == AltchaResult::ok);
  const auto b64_result = [&](const std::string& b64) {
    const AltchaCheck c = altcha_verify(s, b64, kNowMs, 0);
    if (c.result != AltchaResult::ok) {  // a refusal carries no claim
      CHECK(c.claim_key.empty());
      CHECK(c.expires_ms == 0);
    }
    return c.result;
  };
  const auto raw_result = [&](const std::string& text) {
    return b64_result(pvgate::base64_encode(text));
  };

  SECTION("not base64") {
    for (const std::string& b64 :
         {good_b64.substr(0, good_b64.size() - 1), good_b64.substr(0, good_b64.size() - 4),
          good_b64 + "=", good_b64 + "\n", " " + good_b64, std::string("!!!!"), std::string(),
          std::string("eyJ9"), std::string("e30")}) {
      INFO(b64);
      CHECK(b64_result(b64) == AltchaResult::malformed);
    }
    std::string url = encode(good);  // base64url's alphabet
    for (char& c : url) c = c == '+' ? '-' : c == '/' ? '_' : c;
    if (url != good_b64) CHECK(b64_result(url) == AltchaResult::malformed);
  }
  SECTION("not JSON, not an object, trailing bytes") {
    for (const std::string& text :
         {std::string("[]"), std::string("1"), std::string("\"x\""), std::string("null"),
          std::string("{"), std::string("{}x"), good.dump() + "{}", good.dump() + ",",
          std::string("{\"challenge\":") + good["challenge"].dump(), std::string("\xEF\xBB"),
          good.dump().insert(1, std::string(1, '\0'))}) {
      INFO(text);
      CHECK(raw_result(text) == AltchaResult::malformed);
    }
    // White space is JSON's: a pretty-printed payload is still the payload.
    CHECK(raw_result(good.dump(2)) == AltchaResult::ok);
  }
  SECTION("the widget's test-mode and v1 payloads") {
    CHECK(raw_result(R"({"challenge":null,"solution":null,"test":true})") ==
          AltchaResult::malformed);
    CHECK(raw_result(R"({"algorithm":"SHA-256","challenge":"ab","number":5,"salt":"x",)"
                     R"("signature":"cd"})") == AltchaResult::malformed);
  }
  SECTION("a member missing") {
    for (const char* name : {"algorithm", "cost", "expiresAt", "keyLength", "keyPrefix",
                             "keySignature", "nonce", "salt"}) {
      INFO(name);
      json p = good;
      p["challenge"]["parameters"].erase(name);
      CHECK(check(s, p) == AltchaResult::malformed);
    }
    for (const char* path : {"/challenge/signature", "/challenge/parameters", "/solution/counter",
                             "/solution/derivedKey", "/challenge", "/solution"}) {
      INFO(path);
      json p = good;
      const json::json_pointer ptr(path);
      p[ptr.parent_pointer()].erase(ptr.back());
      CHECK(check(s, p) == AltchaResult::malformed);
    }
  }
  SECTION("a key the shape does not have") {
    for (const char* path : {"/challenge/parameters/data", "/challenge/parameters/memoryCost",
                             "/challenge/parameters/parallelism", "/challenge/codeChallenge",
                             "/solution/extra", "/test", "/challenge/parameters/Salt"}) {
      INFO(path);
      json p = good;
      p[json::json_pointer(path)] = 1;
      CHECK(check(s, p) == AltchaResult::malformed);
    }
  }
  SECTION("a key twice") {
    // Both copies equal, so nothing but the repetition is wrong.
    const std::string text = good.dump();
    const std::string salt =
        "\"salt\":\"" + solved.challenge["parameters"]["salt"].get<std::string>() + "\"";
    const std::size_t at = text.find(salt);
    REQUIRE(at != std::string::npos);
    CHECK(raw_result(std::string(text).insert(at, salt + ",")) == AltchaResult::malformed);
    const std::string counter = "\"counter\":" + std::to_string(solved.counter);
    CHECK(raw_result(std::string(text).insert(text.find(counter), counter + ",")) ==
          AltchaResult::malformed);
    const std::string solution = "\"solution\":" + good["solution"].dump();
    CHECK(raw_result(std::string(text).insert(text.size() - 1, "," + solution)) ==
          AltchaResult::malformed);
  }
  SECTION("a member of the wrong type, or nested deeper") {
    const std::vector<std::pair<const char*, json>> cases = {
        {"/challenge/parameters/algorithm", 256},
        {"/challenge/parameters/cost", "1"},
        {"/challenge/parameters/cost", 1.0},
        {"/challenge/parameters/cost", true},
        {"/challenge/parameters/expiresAt", 1.79e9},
        {"/challenge/parameters/expiresAt", nullptr},
        {"/challenge/parameters/keyLength", "32"},
        {"/challenge/parameters/keyPrefix", json::array()},
        {"/challenge/parameters/nonce", json::object()},
        {"/challenge/parameters/salt", 0},
        {"/challenge/signature", json::object({{"a", 1}})},
        {"/challenge/signature", 1},
        {"/challenge/parameters", "x"},
        {"/challenge", json::array()},
        {"/solution", nullptr},
        {"/solution/counter", "5"},
        {"/solution/counter", 5.5},
        {"/solution/counter", json::array({5})},
        {"/solution/counter", 18446744073709551615.0},
        {"/solution/derivedKey", 5},
        {"/solution/derivedKey", nullptr},
        {"/solution/time", "3.7"},
        {"/solution/time", nullptr},
        {"/solution/time", json::object()},
    };
    for (const auto& [path, value] : cases) {
      INFO(path << " = " << value.dump());
      json p = good;
      p[json::json_pointer(path)] = value;
      CHECK(check(s, p) == AltchaResult::malformed);
    }
    // Past int64: not an integer pvgate reads.
    std::string text = good.dump();
    const std::string counter = "\"counter\":" + std::to_string(solved.counter);
    text.replace(text.find(counter), counter.size(), "\"counter\":18446744073709551616");
    CHECK(raw_result(text) == AltchaResult::malformed);
  }
  SECTION("parameters pvgate never issues") {
    const std::vector<std::pair<const char*, json>> cases = {
        {"algorithm", "SHA-512"},
        {"algorithm", "sha-256"},
        {"algorithm", "PBKDF2/SHA-256"},
        {"cost", 2},
        {"cost", 0},
        {"keyLength", 16},
        {"keyLength", 64},
        {"expiresAt", 0},
        {"expiresAt", -1},
        {"expiresAt", std::int64_t{1} << 53},
        {"keyPrefix", ""},
        {"keyPrefix", "abc"},                 // odd
        {"keyPrefix", std::string(66, 'a')},  // longer than the key
        {"keyPrefix", "AB"},
        {"keySignature", std::string(62, 'a')},
        {"keySignature", std::string(64, 'A')},
        {"nonce", std::string(30, 'a')},
        {"nonce", std::string(34, 'a')},
        {"nonce", std::string(32, 'g')},
        {"salt", std::string(32, 'F')},
        {"salt", std::string(64, 'a')},
    };
    for (const auto& [name, value] : cases) {
      INFO(name << " = " << value.dump());
      json p = good;
      p["challenge"]["parameters"][name] = value;
      resign(p["challenge"], s);  // signed: the form alone is refused
      CHECK(check(s, p) == AltchaResult::malformed);
    }
    for (const std::string& sig : {std::string(64, 'A'), std::string(62, 'a'), std::string()}) {
      json p = good;
      p["challenge"]["signature"] = sig;
      CHECK(check(s, p) == AltchaResult::malformed);
    }
    // The largest expiresAt accepted, signed: checks.
    json p = good;
    p["challenge"]["parameters"]["expiresAt"] = (std::int64_t{1} << 53) - 1;
    resign(p["challenge"], s);
    CHECK(check(s, p) == AltchaResult::ok);
  }
  SECTION("the size limit: kAltchaMaxPayloadBytes checks, one group more does not") {
    // JSON white space pads a good payload to the limit (a multiple of 4).
    static_assert(pvgate::kAltchaMaxPayloadBytes % 4 == 0);
    const std::string text = good.dump();
    const std::size_t raw_at_limit = pvgate::kAltchaMaxPayloadBytes / 4 * 3;
    REQUIRE(text.size() < raw_at_limit);
    const std::string at_limit =
        pvgate::base64_encode(text + std::string(raw_at_limit - text.size(), ' '));
    REQUIRE(at_limit.size() == pvgate::kAltchaMaxPayloadBytes);
    CHECK(b64_result(at_limit) == AltchaResult::ok);
    const std::string past =
        pvgate::base64_encode(text + std::string(raw_at_limit + 3 - text.size(), ' '));
    REQUIRE(past.size() == pvgate::kAltchaMaxPayloadBytes + 4);
    CHECK(b64_result(past) == AltchaResult::malformed);
  }
}

TEST_CASE("altcha: secrets are per merchant and per key file", "[altcha]") {
  const AltchaSecrets a = altcha_secrets("key", "shop-a");
  const AltchaSecrets b = altcha_secrets("key", "shop-b");
  const AltchaSecrets other_key = altcha_secrets("key2", "shop-a");
  static const std::regex hex64("[0-9a-f]{64}");
  for (const AltchaSecrets* s : {&a, &b, &other_key}) {
    CHECK(std::regex_match(s->signature, hex64));
    CHECK(std::regex_match(s->key_signature, hex64));
    CHECK(s->signature != s->key_signature);
  }
  CHECK(a.signature != b.signature);
  CHECK(a.key_signature != b.key_signature);
  CHECK(a.signature != other_key.signature);
  CHECK(a.key_signature != other_key.key_signature);
  // The same inputs give the same secrets on every host.
  CHECK(altcha_secrets("key", "shop-a").signature == a.signature);
  CHECK(altcha_secrets("key", "shop-a").key_signature == a.key_signature);
  // The label keeps merchant names apart from the key's own text.
  CHECK(a.signature == hex(pvgate::hmac_sha256("key", "pvgate-altcha-signature:shop-a")));
  CHECK(a.key_signature == hex(pvgate::hmac_sha256("key", "pvgate-altcha-key-signature:shop-a")));
}

// Computed with altcha-lib 2.8.0 in node 20: its signChallenge over these
// parameters (deriveKey of 'altcha-lib/algorithms/sha', counter 777), the
// secrets with node:crypto's createHmac, the payload with btoa as the widget
// does; its verifySolution said verified.
TEST_CASE("altcha: known answer from altcha-lib", "[altcha]") {
  const std::string key = "pvgate altcha test key 0123456789\n";
  const AltchaSecrets s = altcha_secrets(key, "shop-a");
  CHECK(s.signature == "6b79eb0caf9a3881e3d4f99bdd518285b7438fb4561639eec3b2e3190d6dd282");
  CHECK(s.key_signature == "ca82e90907490a1e7f2b95839da683dc17c61666f0508209957c95f406ca6d62");

  const std::string salt = "000102030405060708090a0b0c0d0e0f";
  const std::string nonce = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
  const std::string derived = "69f375cffac5476671e31d749a94f27474209d042222cfd90d7a973bf311d86f";
  CHECK(hex(pvgate::sha256(unhex(salt) + unhex(nonce) + std::string("\0\0\x03\x09", 4))) ==
        derived);
  const std::string canonical =
      R"({"algorithm":"SHA-256","cost":1,"expiresAt":1800000000,"keyLength":32,)"
      R"("keyPrefix":"69f375cffac5476671e31d749a94f274",)"
      R"("keySignature":"ce4be619fd8c1cdf9a62c6117ff308c27d28325be704c9fa22c42d8880ad50b6",)"
      R"("nonce":"f0e1d2c3b4a5968778695a4b3c2d1e0f","salt":"000102030405060708090a0b0c0d0e0f"})";
  const std::string signature = "d36f41d3513c35813fbf42f8435c9f5d8aa6e6fa915bd5aba8c67f38a6eff853";
  CHECK(hex(pvgate::hmac_sha256(s.key_signature, unhex(derived))) ==
        "ce4be619fd8c1cdf9a62c6117ff308c27d28325be704c9fa22c42d8880ad50b6");
  CHECK(hex(pvgate::hmac_sha256(s.signature, canonical)) == signature);

  // The widget's payload for it (solution time 12.3 ms), as btoa wrote it.
  const std::string payload =
      "eyJjaGFsbGVuZ2UiOnsicGFyYW1ldGVycyI6eyJhbGdvcml0aG0iOiJTSEEtMjU2IiwiY29zdCI6MSwiZXhwaXJl"
      "c0F0IjoxODAwMDAwMDAwLCJrZXlMZW5ndGgiOjMyLCJrZXlQcmVmaXgiOiI2OWYzNzVjZmZhYzU0NzY2NzFlMzFk"
      "NzQ5YTk0ZjI3NCIsImtleVNpZ25hdHVyZSI6ImNlNGJlNjE5ZmQ4YzFjZGY5YTYyYzYxMTdmZjMwOGMyN2QyODMy"
      "NWJlNzA0YzlmYTIyYzQyZDg4ODBhZDUwYjYiLCJub25jZSI6ImYwZTFkMmMzYjRhNTk2ODc3ODY5NWE0YjNjMmQx"
      "ZTBmIiwic2FsdCI6IjAwMDEwMjAzMDQwNTA2MDcwODA5MGEwYjBjMGQwZTBmIn0sInNpZ25hdHVyZSI6ImQzNmY0"
      "MWQzNTEzYzM1ODEzZmJmNDJmODQzNWM5ZjVkOGFhNmU2ZmE5MTViZDVhYmE4YzY3ZjM4YTZlZmY4NTMifSwic29s"
      "dXRpb24iOnsiY291bnRlciI6Nzc3LCJkZXJpdmVkS2V5IjoiNjlmMzc1Y2ZmYWM1NDc2NjcxZTMxZDc0OWE5NGYy"
      "NzQ3NDIwOWQwNDIyMjJjZmQ5MGQ3YTk3M2JmMzExZDg2ZiIsInRpbWUiOjEyLjN9fQ==";
  REQUIRE(pvgate::base64_decode(payload) ==
          std::optional<std::string>(
              R"({"challenge":{"parameters":)" + canonical + R"(,"signature":")" + signature +
              R"("},"solution":{"counter":777,"derivedKey":")" + derived + R"(","time":12.3}})"));
  const AltchaCheck c = altcha_verify(s, payload, 1'800'000'000'000, 777);
  CHECK(c.result == AltchaResult::ok);
  CHECK(c.counter == 777);
  CHECK(c.claim_key == "altcha:" + signature);
  CHECK(c.expires_ms == 1'800'000'000'000);
  CHECK(altcha_verify(s, payload, 1'800'000'000'000, 778).result == AltchaResult::too_easy);
  CHECK(altcha_verify(s, payload, 1'800'000'000'001, 0).result == AltchaResult::expired);
  CHECK(altcha_verify(altcha_secrets(key, "shop-b"), payload, 0, 0).result == AltchaResult::forged);
}

TEST_CASE("altcha: result names", "[altcha]") {
  CHECK(pvgate::altcha_result_name(AltchaResult::ok) == "ok");
  CHECK(pvgate::altcha_result_name(AltchaResult::malformed) == "malformed");
  CHECK(pvgate::altcha_result_name(AltchaResult::forged) == "forged");
  CHECK(pvgate::altcha_result_name(AltchaResult::expired) == "expired");
  CHECK(pvgate::altcha_result_name(AltchaResult::wrong) == "wrong");
  CHECK(pvgate::altcha_result_name(AltchaResult::too_easy) == "too_easy");
}
