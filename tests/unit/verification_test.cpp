// Verification sessions and the signed result (issue 12), through the whole
// pipeline with the LMDB store, a fake upstream and a fake clock.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "fakes.h"
#include "handler.h"
#include "jws.h"
#include "lmdb_fixture.h"
#include "temp_dir.h"

using namespace pvgate;
using nlohmann::json;

namespace {

// A P-256 key (PKCS#8) for tests only; the same one jws_test documents.
constexpr const char* kKeyPem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/SFBW8u9kgEmOd4H
BBhyxLvJOtoa3nSnbOZATvmEJLuhRANCAAScJa7QlpFGm8oHWe3CWMzjCl0YbtNT
O40gBbEZCxml4z7x4TaAZu1d9l+/lGx4dwK/i6khFpKKeYn9lLzxcCVO
-----END PRIVATE KEY-----
)";
constexpr const char* kKid = "aE1Q22S7AE7OivlbU6z-6FWN2HhuY_17QrY6mYvf7Zg";
// RFC 8037 A.1's Ed25519 key, as jws_test has it, and its RFC 7638 key id.
constexpr const char* kEdPem = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
)";
constexpr const char* kEdKid = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

std::string write_key(const pvgate_test::TempDir& dir, const char* name, const char* pem) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path) << pem;
  ::chmod(path.c_str(), 0600);
  return path;
}

std::string config_text(const std::string& key_file, int attempts = 3) {
  return R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
throttle:
  store: local
  max_answer_attempts: )" +
         std::to_string(attempts) + R"(
verification:
  issuer: https://shop.example/pvgate
  signing_keys: [)" +
         key_file + R"(]
  session_ttl: 10m
  token_ttl: 5m
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
    audience: https://shop.example
)";
}

json decode_part(const std::string& token, int part) {
  std::size_t start = 0;
  for (int i = 0; i < part; ++i) start = token.find('.', start) + 1;
  const std::size_t end = token.find('.', start);
  return json::parse(*base64url_decode(token.substr(start, end - start)));
}

struct VerifyFixture {
  // signing_keys: the P-256 key alone, or both keys in either order.
  enum class Keys { p256, p256_then_ed25519, ed25519_then_p256 };
  VerifyFixture() : VerifyFixture(Keys::p256) {}
  explicit VerifyFixture(Keys keys)
      : key(write_key(dir, "key.pem", kKeyPem)),
        ed_key(write_key(dir, "ed.pem", kEdPem)),
        holder(load(config_text(keys == Keys::p256                ? key
                                : keys == Keys::p256_then_ed25519 ? key + ", " + ed_key
                                                                  : ed_key + ", " + key))),
        handler(holder, upstream, clock, log, &store, &metrics) {}

  static std::shared_ptr<const Config> load(const std::string& text) {
    ConfigResult r = load_config_text(text, "t");
    INFO((r.errors.empty() ? std::string() : r.errors.front()));
    REQUIRE(r.config);
    return r.config;
  }

  HttpRequest request(const std::string& route, const std::string& body) {
    HttpRequest r;
    r.method = route == "jwks.json" ? "GET" : "POST";
    r.path = "/pvgate/" + route;
    r.content_type = "application/x-www-form-urlencoded";
    r.body = body;
    r.content_length = body.size();
    r.merchant = "shop-a";
    r.merchant_given = true;
    r.remote_addr = "127.0.0.1";
    return r;
  }
  // send-token for `user` and `phone` (national number, code 60); Pipwave issues `reference`.
  HttpReply send(const std::string& user, const std::string& phone, int reference) {
    upstream.answer(R"({"status":200,"message":"Token sent.","reference":)" +
                    std::to_string(reference) + "}");
    return handler.handle(
        request("send-token",
                "user_id=" + user + "&contact_no_country_dialing_code=60&contact_no=" + phone));
  }
  HttpReply verify(const std::string& user, const std::string& phone, int reference,
                   const std::string& upstream_answer) {
    upstream.answer(upstream_answer);
    return handler.handle(request(
        "verify-token-answer", "user_id=" + user +
                                   "&contact_no_country_dialing_code=60&contact_no=" + phone +
                                   "&reference=" + std::to_string(reference) + "&answer=123456"));
  }
  std::string counted(const std::string& event) {
    const std::string rendered = metrics.render();
    const std::string prefix = "pvgate_verifications_total{event=\"" + event + "\"} ";
    const std::size_t at = rendered.find(prefix);
    return at == std::string::npos
               ? "absent"
               : rendered.substr(at + prefix.size(), rendered.find('\n', at) - at - prefix.size());
  }

  static constexpr const char* kWrong = R"({"status":5052,"message":"Incorrect answer."})";
  static constexpr const char* kRight = R"({"status":200,"message":"Verified."})";

  pvgate_test::TempDir dir;
  std::string key;
  std::string ed_key;
  ConfigHolder holder;
  pvgate_test::FakeUpstream upstream;
  pvgate_test::FakeClock clock;
  pvgate_test::CapturingLogger log;
  pvgate_test::TempLmdbStore store;
  Metrics metrics;
  Handler handler;
};

}  // namespace

TEST_CASE_METHOD(VerifyFixture, "a verified answer carries a token signed for the merchant") {
  REQUIRE(send("alice", "123456789", 164).status == 200);
  CHECK(counted("issued") == "1");
  const HttpReply reply = verify("alice", "123456789", 164, kRight);
  REQUIRE(reply.status == 200);
  const json out = json::parse(reply.body);
  // The sanitized answer gains exactly one member.
  CHECK(out.size() == 3);
  CHECK(out["status"] == 200);
  CHECK(out["message"] == "Verified.");
  const std::string token = out["verification_token"];
  const json header = decode_part(token, 0);
  CHECK(header == json::parse(std::string(R"({"alg":"ES256","typ":"JWT","kid":")") + kKid + "\"}"));
  const json claims = decode_part(token, 1);
  CHECK(claims["iss"] == "https://shop.example/pvgate");
  CHECK(claims["aud"] == "https://shop.example");
  CHECK(claims["sub"] == "alice");
  CHECK(claims["phone_number"] == "+60123456789");
  CHECK(claims["phone_number_verified"] == true);
  CHECK(claims["iat"] == clock.now_ms / 1000);
  CHECK(claims["exp"] == clock.now_ms / 1000 + 300);
  CHECK(claims["jti"].get<std::string>().size() == 22);
  CHECK(counted("verified") == "1");
  // The secret and the key never reach the browser or the log.
  CHECK(reply.body.find("my_api_secret") == std::string::npos);
  CHECK(log.all().find(token) == std::string::npos);
  CHECK(log.all().find("BEGIN PRIVATE") == std::string::npos);
}

TEST_CASE_METHOD(VerifyFixture,
                 "the session and the token hold the E.164 number, however written") {
  upstream.answer(R"({"status":200,"message":"Token sent.","reference":170})");
  REQUIRE(handler
              .handle(request("send-token",
                              "user_id=alice&contact_no_country_dialing_code=0060&contact_no="
                              "0123456789"))
              .status == 200);
  // The same handset written another way (60 + 123456789) at the verify: the same session.
  const HttpReply reply = verify("alice", "123456789", 170, kRight);
  REQUIRE(reply.status == 200);
  const json claims = decode_part(json::parse(reply.body)["verification_token"], 1);
  CHECK(claims["phone_number"] == "+60123456789");
}

TEST_CASE_METHOD(VerifyFixture, "unknown, expired and another's references get one same 5051") {
  REQUIRE(send("alice", "123456789", 164).status == 200);
  const std::size_t forwarded = upstream.calls.size();
  const HttpReply never = verify("alice", "123456789", 999, kRight);
  const HttpReply other_user = verify("mallory", "123456789", 164, kRight);
  const HttpReply other_phone = verify("alice", "123456780", 164, kRight);
  clock.now_ms += 10 * 60 * 1000;  // session_ttl
  const HttpReply expired = verify("alice", "123456789", 164, kRight);
  for (const HttpReply* r : {&never, &other_user, &other_phone, &expired}) {
    CHECK(r->status == 400);
    CHECK(r->body == never.body);
  }
  CHECK(json::parse(never.body)["status"] == 5051);
  CHECK(upstream.calls.size() == forwarded);  // none was forwarded
  CHECK(counted("unknown_reference") == "4");
}

TEST_CASE_METHOD(VerifyFixture, "a stranger's guesses leave the owner's attempts untouched") {
  REQUIRE(send("alice", "123456789", 164).status == 200);
  const std::size_t forwarded = upstream.calls.size();
  for (int i = 0; i < 10; ++i) {
    for (const HttpReply& r :
         {verify("mallory", "123456789", 164, kWrong), verify("alice", "199999999", 164, kWrong)}) {
      CHECK(r.status == 400);
      CHECK(json::parse(r.body)["status"] == 5051);  // refused here, not Pipwave's 5052
    }
  }
  CHECK(upstream.calls.size() == forwarded);  // no guess reached Pipwave
  // The owner still has all 3 attempts: two wrong, then the right one.
  CHECK(verify("alice", "123456789", 164, kWrong).status == 400);
  CHECK(verify("alice", "123456789", 164, kWrong).status == 400);
  CHECK(verify("alice", "123456789", 164, kRight).status == 200);
  CHECK(counted("wrong_answer") == "2");
}

TEST_CASE_METHOD(VerifyFixture, "the owner's own wrong answers lock the session") {
  REQUIRE(send("alice", "123456789", 164).status == 200);
  for (int i = 0; i < 3; ++i) {
    const HttpReply r = verify("alice", "123456789", 164, kWrong);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["status"] == 5052);
  }
  const std::size_t forwarded = upstream.calls.size();
  const HttpReply locked = verify("alice", "123456789", 164, kRight);
  CHECK(locked.status == 429);
  CHECK(json::parse(locked.body)["seconds_till_resend"] == 600);
  CHECK(upstream.calls.size() == forwarded);
  CHECK(counted("locked") == "1");
  // A new code (a new reference) is a new session with its own attempts.
  REQUIRE(send("alice", "123456789", 165).status == 200);
  CHECK(verify("alice", "123456789", 165, kRight).status == 200);
}

TEST_CASE_METHOD(VerifyFixture, "a verified session is consumed: a second verify gets 5051") {
  REQUIRE(send("alice", "123456789", 164).status == 200);
  REQUIRE(verify("alice", "123456789", 164, kRight).status == 200);
  const std::size_t forwarded = upstream.calls.size();
  const HttpReply again = verify("alice", "123456789", 164, kRight);
  CHECK(again.status == 400);
  CHECK(json::parse(again.body)["status"] == 5051);
  CHECK(upstream.calls.size() == forwarded);
}

TEST_CASE_METHOD(VerifyFixture, "a refused send opens no session") {
  upstream.answer(R"({"status":5001,"message":"Invalid phone number."})");
  REQUIRE(handler
              .handle(request("send-token",
                              "user_id=alice&contact_no_country_dialing_code=60&contact_no=1234"))
              .status == 400);
  CHECK(counted("issued") == "0");
  CHECK(verify("alice", "1234", 0 + 164, kRight).status == 400);
}

TEST_CASE_METHOD(VerifyFixture, "the key set is served with the signing key, cacheable") {
  const HttpReply r = handler.handle(request("jwks.json", ""));
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/jwk-set+json");
  bool cache = false;
  for (const auto& [k, v] : r.headers) cache |= k == "Cache-Control" && v == "public, max-age=300";
  CHECK(cache);
  const json set = json::parse(r.body);
  REQUIRE(set["keys"].size() == 1);
  CHECK(set["keys"][0]["kid"] == kKid);
  CHECK(set["keys"][0]["kty"] == "EC");
  CHECK(set["keys"][0]["crv"] == "P-256");
  CHECK(set["keys"][0]["use"] == "sig");
  CHECK(set["keys"][0]["alg"] == "ES256");
  CHECK_FALSE(set["keys"][0].contains("d"));
  // Operations requests are not API requests: counted by route, no request series above 0.
  const std::string text = metrics.render();
  CHECK(text.find("pvgate_operations_requests_total{route=\"jwks.json\"} 1\n") !=
        std::string::npos);
  std::size_t series = 0;
  for (std::size_t at = text.find("\npvgate_requests_total{"); at != std::string::npos;
       at = text.find("\npvgate_requests_total{", at + 1)) {
    ++series;
    const std::size_t end = text.find('\n', at + 1);
    CHECK(text.substr(end - 2, 2) == " 0");
  }
  CHECK(series > 0);
}

TEST_CASE("with two signing keys the first signs and both are published, in order") {
  using Keys = VerifyFixture::Keys;
  for (const Keys keys : {Keys::p256_then_ed25519, Keys::ed25519_then_p256}) {
    const bool ec_first = keys == Keys::p256_then_ed25519;
    INFO((ec_first ? "P-256 first" : "Ed25519 first"));
    VerifyFixture f(keys);
    REQUIRE(f.send("alice", "123456789", 164).status == 200);
    const HttpReply reply = f.verify("alice", "123456789", 164, VerifyFixture::kRight);
    REQUIRE(reply.status == 200);
    const json header = decode_part(json::parse(reply.body)["verification_token"], 0);
    CHECK(header["kid"] == (ec_first ? kKid : kEdKid));
    CHECK(header["alg"] == (ec_first ? "ES256" : "EdDSA"));
    const json set = json::parse(f.handler.handle(f.request("jwks.json", "")).body);
    REQUIRE(set["keys"].size() == 2);
    CHECK(set["keys"][0]["kid"] == (ec_first ? kKid : kEdKid));
    CHECK(set["keys"][1]["kid"] == (ec_first ? kEdKid : kKid));
    CHECK(set["keys"][ec_first ? 1 : 0]["kty"] == "OKP");
  }
}

TEST_CASE("verification config: errors name the key, warnings say what is missing") {
  pvgate_test::TempDir dir;
  const std::string key = write_key(dir, "key.pem", kKeyPem);
  const auto errors_of = [](const std::string& text) {
    return load_config_text(text, "t.yaml").errors;
  };
  // No throttle store: sessions have nowhere to live.
  std::string text = config_text(key);
  text.replace(text.find("throttle:"), text.find("verification:") - text.find("throttle:"), "");
  auto errors = errors_of(text);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("verification") != std::string::npos);
  CHECK(errors[0].find("throttle") != std::string::npos);
  // A key that is not there, or not a signing key.
  errors = errors_of(config_text(dir.path() + "/missing.pem"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("verification.signing_keys") != std::string::npos);
  const std::string not_key = write_key(dir, "cert.pem", "-----BEGIN CERTIFICATE-----\nAA==\n");
  errors = errors_of(config_text(not_key));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("BEGIN") == std::string::npos);  // never quotes the file
  // Durations out of range.
  text = config_text(key);
  text.replace(text.find("token_ttl: 5m"), 13, "token_ttl: 2d");
  errors = errors_of(text);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("verification.token_ttl") != std::string::npos);
  // A key readable by everyone is accepted with a warning.
  ::chmod(key.c_str(), 0644);
  ConfigResult loose = load_config_text(config_text(key), "t.yaml");
  REQUIRE(loose.config);
  bool warned = false;
  for (const auto& w : loose.warnings) warned |= w.find("chmod 600") != std::string::npos;
  CHECK(warned);
  // Without the section: no token, and a warning that says so.
  ConfigResult off = load_config_text(R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: k
    api_secret: s
)",
                                      "t.yaml");
  REQUIRE(off.config);
  CHECK_FALSE(off.config->verification.enabled);
  bool trust = false;
  for (const auto& w : off.warnings) trust |= w.find("cannot trust") != std::string::npos;
  CHECK(trust);
  CHECK(off.config->merchants.at("shop-a").audience == "shop-a");
}
