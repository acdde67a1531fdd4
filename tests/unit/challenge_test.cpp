// The challenge stage (issue 14) through the whole pipeline: ALTCHA
// challenges issued by the challenge route and solved here as the widget
// solves them, with the LMDB store for one-time claims and pressure; CAPTCHA
// tokens checked through a scripted upstream standing in for siteverify.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "crypto.h"
#include "fakes.h"
#include "handler.h"
#include "lmdb_fixture.h"
#include "temp_dir.h"
#include "text.h"

using namespace pvgate;
using nlohmann::json;

namespace {

std::string write_file(const pvgate_test::TempDir& dir, const char* name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path) << text;
  ::chmod(path.c_str(), 0600);
  return path;
}

std::string base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += k[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += k[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// base64's + / = percent-encoded for a form body.
std::string form_escape(const std::string& in) {
  std::string out;
  for (const char c : in) {
    if (c == '+') {
      out += "%2B";
    } else if (c == '/') {
      out += "%2F";
    } else if (c == '=') {
      out += "%3D";
    } else {
      out += c;
    }
  }
  return out;
}

std::string unhex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(hex_value(hex[i]) * 16 + hex_value(hex[i + 1]));
  }
  return out;
}

std::string to_hex(const std::string& bytes) {
  std::string out;
  append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

// Solves a challenge as the widget does (counters from 0 until the derived
// key starts with keyPrefix) and returns the `altcha` field's value.
std::string solve(const std::string& challenge_json) {
  const json c = json::parse(challenge_json);
  const json& p = c["parameters"];
  const std::string salt = unhex(p["salt"].get<std::string>());
  const std::string nonce = unhex(p["nonce"].get<std::string>());
  const std::string prefix = unhex(p["keyPrefix"].get<std::string>());
  for (std::uint32_t n = 0;; ++n) {
    std::string input = salt + nonce;
    for (int s = 24; s >= 0; s -= 8) input += static_cast<char>((n >> s) & 0xff);
    const std::string key = sha256(input);
    if (key.compare(0, prefix.size(), prefix) == 0) {
      const json payload = {
          {"challenge", {{"parameters", p}, {"signature", c["signature"]}}},
          {"solution", {{"counter", n}, {"derivedKey", to_hex(key)}, {"time", 12.5}}}};
      return base64(payload.dump());
    }
  }
}

std::string config_text(const std::string& dir, const std::string& challenge) {
  return R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
throttle:
  store: local
  path: )" +
         dir +
         R"(/unused
  rules:
    - name: phone-cooldown
      key: [merchant, phone]
      limit: 1
      period: 60s
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
    allow_missing_origin: true
    challenge:
)" + challenge;
}

struct ChallengeFixture {
  explicit ChallengeFixture(const std::string& challenge)
      : key_file(
            write_file(dir, "altcha.key", "0123456789abcdef0123456789abcdef0123456789abcdef\n")),
        secret_file(write_file(dir, "captcha.secret", "provider-secret-1\n")),
        holder(load(config_text(dir.path(), substitute(challenge)))),
        handler(holder, upstream, clock, log, &store, &metrics) {}

  std::string substitute(std::string text) const {
    for (const auto& [name, value] :
         {std::pair{"KEY_FILE", key_file}, {"SECRET_FILE", secret_file}}) {
      const std::size_t at = text.find(name);
      if (at != std::string::npos) text.replace(at, std::string(name).size(), value);
    }
    return text;
  }

  static std::shared_ptr<const Config> load(const std::string& text) {
    ConfigResult r = load_config_text(text, "t");
    INFO((r.errors.empty() ? std::string() : r.errors.front()));
    REQUIRE(r.config);
    return r.config;
  }

  HttpRequest request(const std::string& route, const std::string& body,
                      const std::string& method = "POST") {
    HttpRequest r;
    r.method = method;
    r.path = "/pvgate/" + route;
    r.content_type = "application/x-www-form-urlencoded";
    r.body = body;
    r.content_length = body.size();
    r.merchant = "shop-a";
    r.merchant_given = true;
    r.remote_addr = address;
    return r;
  }
  std::string solve_fetched() { return solve(fetch_challenge()); }
  std::string fetch_challenge() {
    const HttpReply reply = handler.handle(request("challenge", "", "GET"));
    REQUIRE(reply.status == 200);
    return reply.body;
  }
  // send-token for +60 12-345 6nnn with `field`=`solution` when given.
  HttpReply send(int phone, const std::string& field = {}, const std::string& solution = {}) {
    upstream.next = {};
    upstream.next.http_status = 200;
    upstream.next.body = R"({"status":200,"message":"Token sent.","reference":1001})";
    std::string body = "user_id=u1&contact_no_country_dialing_code=60&contact_no=12345" +
                       std::to_string(6000 + phone);
    if (!field.empty()) body += "&" + field + "=" + form_escape(solution);
    return handler.handle(request("send-token", body));
  }
  std::string counted(const std::string& kind, const std::string& event) {
    const std::string rendered = metrics.render();
    const std::string prefix =
        "pvgate_challenges_total{kind=\"" + kind + "\",event=\"" + event + "\"} ";
    const std::size_t at = rendered.find(prefix);
    return at == std::string::npos
               ? "0"
               : rendered.substr(at + prefix.size(), rendered.find('\n', at) - at - prefix.size());
  }

  pvgate_test::TempDir dir;
  std::string key_file;
  std::string secret_file;
  std::string address = "203.0.113.7";
  ConfigHolder holder;
  pvgate_test::FakeUpstream upstream;
  pvgate_test::FakeClock clock;
  pvgate_test::CapturingLogger log;
  pvgate_test::TempLmdbStore store;
  Metrics metrics;
  Handler handler;
};

constexpr const char* kAltchaAlways = R"(      kind: altcha
      key_file: KEY_FILE
      difficulty: 1000
      hard_difficulty: 1000
      expires: 5m
)";

json body_of(const HttpReply& reply) {
  return json::parse(reply.body);
}

}  // namespace

TEST_CASE("altcha: a send-token without a solution is 403, never counted, never forwarded",
          "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  const HttpReply refused = f.send(1);
  CHECK(refused.status == 403);
  const json body = body_of(refused);
  CHECK(body["status"] == 403);
  CHECK(body["challenge"] == "altcha");
  CHECK(body["message"] == "Solve the challenge first.");
  CHECK(f.upstream.calls.empty());
  CHECK(f.counted("altcha", "missing") == "1");
  // Not counted: the phone's 1-a-minute rule still lets the solved send through.
  const HttpReply sent = f.send(1, "altcha", f.solve_fetched());
  CHECK(sent.status == 200);
  CHECK(f.upstream.calls.size() == 1);
}

TEST_CASE("altcha: the challenge route issues v2 challenges; a solution is accepted once",
          "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  const std::string issued = f.fetch_challenge();
  const json c = json::parse(issued);
  CHECK(c["parameters"]["algorithm"] == "SHA-256");
  CHECK(c["parameters"]["keyLength"] == 32);
  CHECK(c["parameters"]["expiresAt"] == f.clock.now_ms / 1000 + 300);
  CHECK(c["signature"].get<std::string>().size() == 64);
  CHECK(f.counted("altcha", "issued") == "1");
  CHECK(f.log.lines.empty());  // an operations route: no request line

  const std::string solution = solve(issued);
  CHECK(f.send(1, "altcha", solution).status == 200);
  CHECK(f.counted("altcha", "passed") == "1");
  // The same solution again, for another phone: refused through the store.
  const HttpReply replay = f.send(2, "altcha", solution);
  CHECK(replay.status == 403);
  CHECK(body_of(replay)["message"] == "This challenge was already used; solve a new one.");
  CHECK(f.upstream.calls.size() == 1);
  CHECK(f.counted("altcha", "replayed") == "1");
}

namespace {
std::string issued_text(ChallengeFixture& f) {
  return f.fetch_challenge();
}
}  // namespace

TEST_CASE("altcha: expired, tampered and foreign solutions are refused", "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  const std::string solution = f.solve_fetched();
  f.clock.now_ms += 301 * 1000;
  const HttpReply expired = f.send(1, "altcha", solution);
  CHECK(expired.status == 403);
  CHECK(body_of(expired)["message"] == "The challenge expired; solve a new one.");
  f.clock.now_ms -= 301 * 1000;

  json tampered = json::parse(issued_text(f));
  tampered["parameters"]["expiresAt"] = tampered["parameters"]["expiresAt"].get<long long>() + 3600;
  CHECK(f.send(1, "altcha", solve(tampered.dump())).status == 403);
  CHECK(f.send(1, "altcha", "bm90IGpzb24=").status == 403);  // "not json"
  CHECK(f.counted("altcha", "invalid") == "2");
  CHECK(f.upstream.calls.empty());
}

TEST_CASE("altcha: another merchant's challenge is worthless here, even with one key file",
          "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  // Same key text, other merchant name: other secrets.
  const std::string text =
      config_text(f.dir.path(), f.substitute(kAltchaAlways)) +
      "  shop-b:\n    api_key: k2\n    api_secret: s2\n    allow_missing_origin: true\n"
      "    challenge:\n" +
      f.substitute(kAltchaAlways);
  f.holder.set(ChallengeFixture::load(text));
  HttpRequest get = f.request("challenge", "", "GET");
  get.merchant = "shop-b";
  const HttpReply issued_b = f.handler.handle(get);
  REQUIRE(issued_b.status == 200);
  CHECK(f.send(1, "altcha", solve(issued_b.body)).status == 403);
  CHECK(f.counted("altcha", "invalid") == "1");
}

TEST_CASE("altcha: under address pressure the difficulty rises; easier solutions are too easy",
          "[challenge]") {
  ChallengeFixture f(R"(      kind: altcha
      key_file: KEY_FILE
      difficulty: 1000
      hard_difficulty: 40000
      pressure:
        address: {sends: 2, period: 1h}
)");
  const std::string early = f.fetch_challenge();  // issued before any pressure
  CHECK(f.send(1, "altcha", f.solve_fetched()).status == 200);
  CHECK(f.send(2, "altcha", f.solve_fetched()).status == 200);
  // Two codes sent from this address within the hour: pressure.
  const HttpReply easy = f.send(3, "altcha", solve(early));
  CHECK(easy.status == 403);
  CHECK(body_of(easy)["message"] == "A harder challenge is needed now; solve a new one.");
  CHECK(f.counted("altcha", "too_easy") == "1");
  // A challenge fetched now is the harder one, and passes.
  CHECK(f.send(3, "altcha", f.solve_fetched()).status == 200);
  // Another address feels no pressure: the easy difficulty again.
  f.address = "198.51.100.9";
  CHECK(f.send(4, "altcha", f.solve_fetched()).status == 200);
}

TEST_CASE("altcha: with when: pressure, a challenge is needed only after N sends to a phone",
          "[challenge]") {
  ChallengeFixture f(R"(      kind: altcha
      key_file: KEY_FILE
      difficulty: 1000
      when: pressure
      pressure:
        phone: {sends: 1, period: 1h}
)");
  CHECK(f.send(1).status == 200);  // first code to this phone: no challenge
  f.clock.now_ms += 61 * 1000;     // past the throttle's 1-a-minute rule
  const HttpReply second = f.send(1);
  CHECK(second.status == 403);
  CHECK(body_of(second)["challenge"] == "altcha");
  CHECK(f.send(2).status == 200);  // another phone: no pressure
  CHECK(f.send(1, "altcha", f.solve_fetched()).status == 200);
  CHECK(f.upstream.calls.size() == 3);
}

TEST_CASE("altcha: refusals of refused requests do not raise pressure", "[challenge]") {
  ChallengeFixture f(R"(      kind: altcha
      key_file: KEY_FILE
      difficulty: 1000
      when: pressure
      pressure:
        phone: {sends: 1, period: 1h}
)");
  // Pipwave refuses the number: no code was sent, so no pressure.
  f.upstream.script.push_back(
      {UpstreamError::none, 200, R"({"status":5001,"message":"Invalid."})", "", 0});
  std::string body = "user_id=u1&contact_no_country_dialing_code=60&contact_no=123456001";
  CHECK(f.handler.handle(f.request("send-token", body)).status == 400);
  f.clock.now_ms += 61 * 1000;
  CHECK(f.send(1).status == 200);
}

TEST_CASE("challenge route: GET only, altcha only", "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  const HttpReply post = f.handler.handle(f.request("challenge", ""));
  CHECK(post.status == 405);
  ChallengeFixture t(R"(      kind: turnstile
      secret_file: SECRET_FILE
)");
  CHECK(t.handler.handle(t.request("challenge", "", "GET")).status == 404);
}

TEST_CASE("challenge fields: only the merchant's kind, only on send-token", "[challenge]") {
  ChallengeFixture f(kAltchaAlways);
  const HttpReply other = f.send(1, "cf-turnstile-response", "pass-1");
  CHECK(other.status == 400);
  CHECK(body_of(other)["message"] == "unknown field 'cf-turnstile-response'");
  const HttpReply verify =
      f.handler.handle(f.request("verify-token-answer",
                                 "user_id=u1&contact_no_country_dialing_code=60&contact_no="
                                 "123456001&reference=5&answer=1&altcha=x"));
  CHECK(verify.status == 400);
  CHECK(body_of(verify)["message"] == "unknown field 'altcha'");
}

namespace {

constexpr const char* kTurnstile = R"(      kind: turnstile
      secret_file: SECRET_FILE
      siteverify_url: http://127.0.0.1:9/turnstile/v0/siteverify
      timeout: 2s
)";

UpstreamResult provider(long http, const std::string& body,
                        UpstreamError error = UpstreamError::none) {
  UpstreamResult r;
  r.error = error;
  r.http_status = http;
  r.body = body;
  return r;
}

}  // namespace

TEST_CASE("turnstile: the token goes to siteverify first, then the code to Pipwave",
          "[challenge]") {
  ChallengeFixture f(kTurnstile);
  f.upstream.script.push_back(provider(200, R"({"success":true,"error-codes":[]})"));
  const HttpReply sent = f.send(1, "cf-turnstile-response", "tok+en/1");
  CHECK(sent.status == 200);
  REQUIRE(f.upstream.calls.size() == 2);
  const UpstreamCall& check = f.upstream.calls[0];
  CHECK(f.upstream.urls[0] == "http://127.0.0.1:9/turnstile/v0/siteverify");
  CHECK(check.content_type == "application/x-www-form-urlencoded");
  CHECK(check.api_key.empty());
  CHECK(check.body.find("secret=provider-secret-1") != std::string::npos);
  CHECK(check.body.find("response=tok%2Ben%2F1") != std::string::npos);
  // The forward is Pipwave's call, signed, with its key.
  CHECK(f.upstream.urls[1] == "https://staging-api.pipwave.com/phone-verify");
  CHECK(f.upstream.calls[1].api_key == "sdvdas23t3btg34bhb");
  CHECK(f.upstream.calls[1].content_type == "application/json");
  CHECK(f.counted("turnstile", "passed") == "1");
  for (const auto& line : f.log.lines) CHECK(line.find("provider-secret-1") == std::string::npos);
}

TEST_CASE("turnstile: a refused token is 403 and nothing reaches Pipwave", "[challenge]") {
  ChallengeFixture f(kTurnstile);
  f.upstream.script.push_back(
      provider(200, R"({"success":false,"error-codes":["invalid-input-response"]})"));
  const HttpReply refused = f.send(1, "cf-turnstile-response", "fail-1");
  CHECK(refused.status == 403);
  CHECK(body_of(refused)["challenge"] == "turnstile");
  CHECK(f.upstream.calls.size() == 1);
  CHECK(f.counted("turnstile", "refused") == "1");
  // Never counted: the phone's cooldown still lets a good token through.
  f.upstream.script.push_back(provider(200, R"({"success":true})"));
  CHECK(f.send(1, "cf-turnstile-response", "pass-1").status == 200);
}

TEST_CASE("turnstile: a provider fault follows on_error", "[challenge]") {
  SECTION("deny (the default): 503, nothing sent") {
    ChallengeFixture f(kTurnstile);
    f.upstream.script.push_back(provider(0, "", UpstreamError::timeout));
    const HttpReply r = f.send(1, "cf-turnstile-response", "slow-1");
    CHECK(r.status == 503);
    CHECK(f.upstream.calls.size() == 1);
    CHECK(f.counted("turnstile", "provider_error") == "1");
  }
  SECTION("allow: the code is sent, the bypass counted") {
    ChallengeFixture f(std::string(kTurnstile) + "      on_error: allow\n");
    f.upstream.script.push_back(provider(200, "<html>garbage</html>"));
    CHECK(f.send(1, "cf-turnstile-response", "garbage-1").status == 200);
    CHECK(f.upstream.calls.size() == 2);
    CHECK(f.counted("turnstile", "bypassed") == "1");
  }
}

TEST_CASE("challenge config: errors name the key", "[challenge]") {
  pvgate_test::TempDir dir;
  const std::string key = write_file(dir, "short.key", "too-short");
  const auto errors = [&](const std::string& challenge) {
    const ConfigResult r = load_config_text(config_text(dir.path(), challenge), "t");
    std::string all;
    for (const auto& e : r.errors) all += e + "\n";
    return all;
  };
  CHECK_THAT(errors("      kind: puzzle\n"),
             Catch::Contains("challenge.kind: must be altcha, turnstile, hcaptcha or recaptcha"));
  CHECK_THAT(errors("      kind: altcha\n      key_file: " + key + "\n"),
             Catch::Contains("holds under 32 bytes"));
  CHECK_THAT(errors("      kind: altcha\n"), Catch::Contains("challenge.key_file: is required"));
  CHECK_THAT(errors("      kind: turnstile\n      secret_file: " + key + "\n      difficulty: 5\n"),
             Catch::Contains("challenge.difficulty: is for kind altcha"));
  CHECK_THAT(errors("      kind: hcaptcha\n      secret_file: " + key +
                    "\n      when: pressure\n      pressure: {}\n"),
             Catch::Contains("pressure needs at least one pressure rule"));
  CHECK_THAT(errors("      kind: recaptcha\n      secret_file: " + key +
                    "\n      siteverify_url: http://example.com/x\n"),
             Catch::Contains("challenge.siteverify_url"));
}
