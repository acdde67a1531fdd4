// The whole pipeline with fakes: no socket, no network, no wall clock.
#include <catch2/catch.hpp>

#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fakes.h"
#include "handler.h"
#include "lmdb_fixture.h"

using namespace pvgate;
using nlohmann::json;

namespace {

using pvgate_test::CapturingLogger;
using pvgate_test::DownStore;
using pvgate_test::FakeClock;
using pvgate_test::FakeUpstream;

const char* kConfig = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
)";

struct Fixture {
  Fixture() : holder(load_config_text(kConfig, "t").config), handler(holder, upstream, clock, log) {
    upstream.answer(R"({"status":200,"message":"Token sent.","reference":164,"internal":"x"})");
  }
  HttpRequest request(const std::string& route, const std::string& body,
                      const std::string& type = "application/x-www-form-urlencoded") {
    HttpRequest r;
    r.method = "POST";
    r.path = "/pvgate/" + route;
    r.content_type = type;
    r.body = body;
    r.content_length = body.size();
    r.merchant = "shop-a";
    r.merchant_given = true;
    r.remote_addr = "127.0.0.1";
    return r;
  }
  HttpReply send(const std::string& body = kSend) {
    return handler.handle(request("send-token", body));
  }

  static constexpr const char* kSend =
      "user_id=505315&contact_no_country_dialing_code=60&contact_no=123456789";

  ConfigHolder holder;
  FakeUpstream upstream;
  FakeClock clock;
  CapturingLogger log;
  Handler handler;
};

json body_of(const HttpReply& r) {
  return json::parse(r.body);
}

std::string header(const HttpReply& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

TEST_CASE_METHOD(Fixture, "send-token is signed exactly as the documented example") {
  const HttpReply reply = send();
  REQUIRE(upstream.calls.size() == 1);
  CHECK(upstream.calls[0].api_key == "sdvdas23t3btg34bhb");
  const json sent = json::parse(upstream.calls[0].body);
  CHECK(sent["signature"] == "912383aba7d0d271e2e970c6405e309f1c023c74");
  CHECK(sent["action"] == "send-token");
  CHECK(sent["timestamp"] == "1539677150");
  CHECK(sent["api_key"] == "sdvdas23t3btg34bhb");
  CHECK(sent["contact_no"] == "123456789");
  CHECK_FALSE(sent.contains("api_secret"));
  CHECK(upstream.calls[0].body.find("my_api_secret") == std::string::npos);
  CHECK(sent.size() == 7);

  CHECK(reply.status == 200);
  const json out = body_of(reply);
  CHECK(out["status"] == 200);
  CHECK(out["reference"] == 164);
  CHECK(out["message"] == "Token sent.");
  CHECK(out.size() == 3);  // "internal" is dropped
  CHECK(header(reply, "Cache-Control") == "no-store");
}

TEST_CASE_METHOD(Fixture, "verify-token-answer is signed exactly as the documented example") {
  upstream.answer(R"({"status":200,"message":"Verified."})");
  const HttpReply reply = handler.handle(request(
      "verify-token-answer",
      R"({"user_id":"505315","contact_no_country_dialing_code":"60","contact_no":"123456789",)"
      R"("reference":164,"answer":"123456"})",
      "application/json; charset=utf-8"));
  REQUIRE(upstream.calls.size() == 1);
  CHECK(json::parse(upstream.calls[0].body)["signature"] ==
        "5e60beeec7fd00fc4b50502fe0d953f1d6ed2c42");
  CHECK(reply.status == 200);
}

TEST_CASE_METHOD(Fixture, "local rejections answer without forwarding") {
  struct Case {
    const char* name;
    HttpRequest req;
    int http;
    int status;
  };
  HttpRequest get = request("send-token", kSend);
  get.method = "GET";
  HttpRequest big = request("send-token", std::string(4097, 'a'));
  HttpRequest declared_big = request("send-token", kSend);
  declared_big.content_length = 100000;
  HttpRequest unknown_merchant = request("send-token", kSend);
  unknown_merchant.merchant = "nosuch";
  const std::vector<Case> cases = {
      {"unknown route", request("delete-everything", kSend), 404, 404},
      {"GET", get, 405, 400},
      {"body over limit", big, 413, 9001},
      {"declared length over limit", declared_big, 413, 9001},
      {"text/plain", request("send-token", kSend, "text/plain"), 415, 9001},
      {"no content type", request("send-token", kSend, ""), 415, 9001},
      {"bad field", request("send-token", "user_id=a&contact_no_country_dialing_code=+60"), 400,
       9001},
      {"bad json", request("send-token", "{", "application/json"), 400, 9001},
      {"unknown merchant", unknown_merchant, 500, 500},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const HttpReply reply = handler.handle(c.req);
    CHECK(reply.status == c.http);
    CHECK(body_of(reply)["status"] == c.status);
  }
  CHECK(upstream.calls.empty());
}

TEST_CASE_METHOD(Fixture, "a body of exactly the limit is accepted") {
  std::string body =
      R"({"user_id":"505315","contact_no_country_dialing_code":"60","contact_no":"123456789"})";
  body.append(4096 - body.size(), ' ');
  const HttpReply reply = handler.handle(request("send-token", body, "application/json"));
  CHECK(reply.status == 200);
  CHECK(upstream.calls.size() == 1);
}

TEST_CASE_METHOD(Fixture, "invalid input names the field") {
  const HttpReply reply = send("user_id=505315&contact_no_country_dialing_code=60&contact_no=12ab");
  CHECK(reply.status == 400);
  CHECK(body_of(reply)["message"].get<std::string>().find("contact_no") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "upstream statuses map onto the HTTP table") {
  struct Row {
    std::string answer;
    long http_in;
    int http;
    int status;
  };
  const std::vector<Row> rows = {
      {R"({"status":5001,"message":"Invalid phone number."})", 200, 400, 5001},
      {R"({"status":"5052","message":"Incorrect answer."})", 200, 400, 5052},
      {R"({"status":5051})", 200, 400, 5051},
      {R"({"status":5003})", 200, 400, 5003},
      {R"({"status":400,"message":"failed"})", 200, 400, 400},
      {R"({"status":9001})", 200, 400, 9001},
      {R"({"status":5002,"seconds_till_resend":42})", 200, 429, 5002},
      {R"({"status":401,"message":"Invalid signature"})", 200, 502, 500},
      {R"({"status":403})", 200, 502, 500},
      {R"({"status":404})", 200, 502, 500},
      {R"({"status":500})", 200, 502, 500},
      {R"({"status":5004,"message":"Insufficient credit"})", 200, 502, 500},
      {R"({"status":5005})", 200, 502, 500},
      {R"({"status":5006})", 200, 502, 500},
      {"not json{", 200, 502, 500},
      {"[1,2,3]", 200, 502, 500},
      {"<html>oops</html>", 502, 502, 500},
      {R"({"status":200})", 500, 502, 500},
  };
  for (const auto& row : rows) {
    INFO(row.answer);
    upstream.answer(row.answer, row.http_in);
    const HttpReply reply = send();
    CHECK(reply.status == row.http);
    const json out = body_of(reply);
    CHECK(out["status"] == row.status);
    if (row.http == 502) {
      CHECK(out["message"].get<std::string>().find("credit") == std::string::npos);
      CHECK(out["message"].get<std::string>().find("ignature") == std::string::npos);
    }
  }
}

TEST_CASE_METHOD(Fixture, "5002 becomes 429 with Retry-After") {
  upstream.answer(R"({"status":5002,"message":"Too frequent","seconds_till_resend":"42"})");
  const HttpReply reply = send();
  CHECK(reply.status == 429);
  CHECK(header(reply, "Retry-After") == "42");
  CHECK(body_of(reply)["seconds_till_resend"] == 42);
}

TEST_CASE_METHOD(Fixture, "transport failures map to 502/504 with a generic message") {
  const std::pair<UpstreamError, int> rows[] = {
      {UpstreamError::timeout, 504},   {UpstreamError::not_delivered, 502},
      {UpstreamError::tls, 502},       {UpstreamError::too_large, 502},
      {UpstreamError::transport, 502},
  };
  for (const auto& [error, http] : rows) {
    upstream.next = UpstreamResult{};
    upstream.next.error = error;
    upstream.next.detail = "Connection refused to 10.0.0.1";
    const HttpReply reply = send();
    CHECK(reply.status == http);
    CHECK(body_of(reply)["status"] == 500);
    CHECK(reply.body.find("refused") == std::string::npos);
  }
  CHECK(log.all().find("Connection refused") != std::string::npos);  // the cause is logged
}

TEST_CASE_METHOD(Fixture, "an upstream message echoing a credential is withheld") {
  upstream.answer(
      R"({"status":400,"message":"bad key sdvdas23t3btg34bhb sig 912383aba7d0d271e2e970c6405e309f1c023c74","api_key":"sdvdas23t3btg34bhb"})");
  const HttpReply reply = send();
  CHECK(reply.status == 400);
  CHECK(reply.body.find("sdvdas23t3btg34bhb") == std::string::npos);
  CHECK(reply.body.find("912383aba7d0d271e2e970c6405e309f1c023c74") == std::string::npos);
}

TEST_CASE_METHOD(Fixture, "upstream messages lose control characters and are capped") {
  upstream.answer(R"({"status":400,"message":"line1\r\nline2\u0000\u001b)" + std::string(400, 'x') +
                  "\"}");
  const HttpReply reply = send();
  const std::string message = body_of(reply)["message"];
  CHECK(message.size() == 255);
  CHECK(message.rfind("line1line2", 0) == 0);
}

TEST_CASE_METHOD(Fixture, "an exception inside the pipeline becomes a 500") {
  upstream.throw_instead = true;
  const HttpReply reply = send();
  CHECK(reply.status == 500);
  CHECK(body_of(reply)["status"] == 500);
  CHECK(reply.body.find("boom") == std::string::npos);
}

TEST_CASE_METHOD(Fixture, "logs carry a masked phone number and no credential") {
  send();
  upstream.answer(R"({"status":401,"message":"wrong signature for sdvdas23t3btg34bhb"})");
  send();
  const std::string logs = log.all();
  CHECK(logs.find(R"("phone":"+60*******89")") != std::string::npos);  // E.164, masked
  CHECK(logs.find("123456789") == std::string::npos);
  CHECK(logs.find("my_api_secret") == std::string::npos);
  CHECK(logs.find("sdvdas23t3btg34bhb") == std::string::npos);
  CHECK(logs.find("912383aba7d0d271e2e970c6405e309f1c023c74") == std::string::npos);
  CHECK(logs.find(R"("upstream_status":401)") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "a config swapped in takes effect for the next request") {
  const auto next = load_config_text(
      "upstream:\n  url: https://h/x\nmerchants:\n  shop-b:\n    api_key: kb\n    api_secret: sb\n",
      "t2");
  REQUIRE(next.config);
  holder.set(next.config);
  CHECK(send().status == 500);  // shop-a is gone
  HttpRequest r = request("send-token", kSend);
  r.merchant = "shop-b";
  CHECK(handler.handle(r).status == 200);
  CHECK(upstream.calls.back().api_key == "kb");
}

namespace {

const char* kThrottled = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
throttle:
  rules:
    - name: phone-cooldown
      actions: [send-token]
      key: [merchant, phone]
      limit: 1
      period: 60s
  countries:
    allow: [60]
  max_answer_attempts: 2
)";

struct ThrottledFixture : Fixture {
  ThrottledFixture() : throttled(holder, upstream, clock, log, &store) {
    holder.set(load_config_text(kThrottled, "t").config);
  }
  HttpReply send_throttled(const std::string& body = kSend) {
    return throttled.handle(request("send-token", body));
  }
  pvgate_test::TempLmdbStore store;
  Handler throttled;
};

}  // namespace

TEST_CASE_METHOD(ThrottledFixture, "pvgate's own throttle answers 429 and forwards nothing") {
  REQUIRE(send_throttled().status == 200);
  clock.now_ms += 15'000;
  const HttpReply reply = send_throttled();
  CHECK(reply.status == 429);
  CHECK(header(reply, "Retry-After") == "45");
  const json out = body_of(reply);
  CHECK(out["status"] == 5002);
  CHECK(out["seconds_till_resend"] == 45);
  CHECK(upstream.calls.size() == 1);
  CHECK(log.all().find("phone-cooldown:over") != std::string::npos);
  // Another number is not affected.
  CHECK(
      send_throttled("user_id=u&contact_no_country_dialing_code=60&contact_no=198765432").status ==
      200);
}

TEST_CASE_METHOD(ThrottledFixture, "a send that never reached Pipwave gives its quota back") {
  upstream.next = UpstreamResult{};
  upstream.next.error = UpstreamError::not_delivered;
  CHECK(send_throttled().status == 502);
  upstream.answer(R"({"status":200,"reference":5})");
  CHECK(send_throttled().status == 200);
}

TEST_CASE_METHOD(ThrottledFixture, "a send that may have reached Pipwave stays counted") {
  upstream.next = UpstreamResult{};
  upstream.next.error = UpstreamError::timeout;
  CHECK(send_throttled().status == 504);
  CHECK(send_throttled().status == 429);
}

TEST_CASE_METHOD(ThrottledFixture, "a country outside the allow list gets 403 / 5001") {
  const HttpReply reply =
      send_throttled("user_id=u&contact_no_country_dialing_code=65&contact_no=81234567");
  CHECK(reply.status == 403);
  CHECK(body_of(reply)["status"] == 5001);
  CHECK(upstream.calls.empty());
}

TEST_CASE_METHOD(ThrottledFixture, "wrong answers lock the reference") {
  upstream.answer(R"({"status":5052,"message":"Incorrect answer."})");
  const std::string verify =
      "user_id=u&contact_no_country_dialing_code=60&contact_no=198765432&reference=77&answer=1";
  CHECK(throttled.handle(request("verify-token-answer", verify)).status == 400);
  CHECK(throttled.handle(request("verify-token-answer", verify)).status == 400);
  CHECK(throttled.handle(request("verify-token-answer", verify)).status == 429);
  CHECK(upstream.calls.size() == 2);
}

namespace {

const char* kOrigins = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
    allowed_origins: [https://shop.example, "http://localhost:8080"]
  shop-b:
    api_key: kb
    api_secret: sb
    allowed_origins: [https://b.example]
    allow_missing_origin: true
    user_id_param: PVGATE_USER_ID
)";

struct OriginFixture : Fixture {
  OriginFixture() { holder.set(load_config_text(kOrigins, "t").config); }
  HttpRequest from(const std::string& origin, const std::string& referer = {},
                   const std::string& merchant = "shop-a") {
    HttpRequest r = request("send-token", kSend);
    r.origin = origin;
    r.referer = referer;
    r.merchant = merchant;
    return r;
  }
};

}  // namespace

TEST_CASE_METHOD(OriginFixture, "an allowed Origin is served and echoed, never as *") {
  const HttpReply reply = handler.handle(from("https://shop.example"));
  CHECK(reply.status == 200);
  CHECK(header(reply, "Access-Control-Allow-Origin") == "https://shop.example");
  CHECK(header(reply, "Vary") == "Origin");
  CHECK(handler.handle(from("HTTPS://SHOP.EXAMPLE:443")).status == 200);
  CHECK(handler.handle(from("http://localhost:8080")).status == 200);
}

TEST_CASE_METHOD(OriginFixture, "other origins are refused with 403 before anything else") {
  for (const char* bad :
       {"https://evil.example", "http://shop.example", "https://shop.example.evil", "null",
        "https://shop.example:8443", "file://"}) {
    INFO(bad);
    HttpRequest r = from(bad);
    r.method = "GET";           // would be 405 ...
    r.content_type = "text/x";  // ... or 415, but the origin is checked first
    const HttpReply reply = handler.handle(r);
    CHECK(reply.status == 403);
    CHECK(body_of(reply)["status"] == 403);
    CHECK(header(reply, "Access-Control-Allow-Origin").empty());
  }
  CHECK(upstream.calls.empty());
}

TEST_CASE_METHOD(OriginFixture,
                 "without Origin the Referer decides; with neither, allow_missing_origin") {
  CHECK(handler.handle(from("", "https://shop.example/checkout?step=2")).status == 200);
  CHECK(handler.handle(from("", "https://evil.example/shop.example")).status == 403);
  CHECK(handler.handle(from("", "")).status == 403);  // shop-a: allow_missing_origin false
  HttpRequest b = from("", "", "shop-b");
  b.body = "contact_no_country_dialing_code=60&contact_no=123456789";
  b.content_length = b.body.size();
  b.params = {{"PVGATE_USER_ID", "server-user-7"}};
  CHECK(handler.handle(b).status == 200);
  CHECK(json::parse(upstream.calls.back().body)["user_id"] == "server-user-7");
}

TEST_CASE_METHOD(OriginFixture, "CORS preflight: 204 with the allowed origin, 403 otherwise") {
  HttpRequest pre = from("https://shop.example");
  pre.method = "OPTIONS";
  pre.body.clear();
  pre.content_type.clear();
  HttpReply reply = handler.handle(pre);
  CHECK(reply.status == 204);
  CHECK(reply.body.empty());
  CHECK(header(reply, "Access-Control-Allow-Origin") == "https://shop.example");
  CHECK(header(reply, "Access-Control-Allow-Methods") == "POST");
  CHECK(header(reply, "Access-Control-Allow-Headers") == "Content-Type");
  pre.origin = "https://evil.example";
  reply = handler.handle(pre);
  CHECK(reply.status == 403);
  CHECK(upstream.calls.empty());
}

TEST_CASE_METHOD(OriginFixture, "user_id_param: the server's user id, a client's own is refused") {
  HttpRequest r = from("https://b.example", "", "shop-b");
  r.params = {{"HTTP_HOST", "b.example"}, {"PVGATE_USER_ID", "alice"}};
  HttpReply reply = handler.handle(r);  // kSend carries user_id
  CHECK(reply.status == 400);
  CHECK(body_of(reply)["message"].get<std::string>().find("user_id") != std::string::npos);
  r.body = "contact_no_country_dialing_code=60&contact_no=123456789";
  r.content_length = r.body.size();
  CHECK(handler.handle(r).status == 200);
  CHECK(json::parse(upstream.calls.back().body)["user_id"] == "alice");
  r.params.clear();
  CHECK(handler.handle(r).status == 500);  // nginx did not authenticate: misconfiguration
  CHECK(upstream.calls.size() == 1);
}

namespace {

struct MetricsFixture : ThrottledFixture {
  MetricsFixture() : observed(holder, upstream, clock, log, &store, &metrics) {}
  // As nginx's metrics location sends it: PVGATE_METRICS on.
  HttpReply get(const std::string& route, const std::string& ip = "127.0.0.1",
                const char* metrics_param = "on", const std::string& path_prefix = "/pvgate/") {
    HttpRequest r = request(route, "");
    r.method = "GET";
    r.path = path_prefix + route;
    r.content_type.clear();
    r.remote_addr = ip;
    if (metrics_param != nullptr) r.params.emplace_back("PVGATE_METRICS", metrics_param);
    return observed.handle(r);
  }
  Metrics metrics;
  Handler observed;
};

}  // namespace

TEST_CASE_METHOD(MetricsFixture, "metrics count requests, throttle decisions and upstream calls") {
  REQUIRE(observed.handle(request("send-token", kSend)).status == 200);
  REQUIRE(observed.handle(request("send-token", kSend)).status == 429);
  REQUIRE(observed.handle(request("send-token", "user_id=bad id")).status == 400);
  const HttpReply reply = get("metrics");
  CHECK(reply.status == 200);
  CHECK(reply.content_type.rfind("text/plain; version=0.0.4", 0) == 0);
  const std::string& text = reply.body;
  CHECK(
      text.find(
          "pvgate_requests_total{merchant=\"shop-a\",action=\"send-token\",outcome=\"ok\"} 1\n") !=
      std::string::npos);
  CHECK(text.find("pvgate_requests_total{merchant=\"shop-a\",action=\"send-token\",outcome=\"too_"
                  "frequent\"} 1\n") != std::string::npos);
  CHECK(text.find("pvgate_requests_total{merchant=\"shop-a\",action=\"send-token\",outcome="
                  "\"invalid_input\"} 1\n") != std::string::npos);
  CHECK(text.find("pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"ok\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("pvgate_throttle_decisions_total{rule=\"phone-cooldown\",result=\"over\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("pvgate_upstream_latency_seconds_count 1\n") != std::string::npos);
  CHECK(text.find("pvgate_upstream_latency_seconds_bucket{le=\"+Inf\"} 1\n") != std::string::npos);
  CHECK(text.find("pvgate_requests_in_flight 0\n") != std::string::npos);
  CHECK(text.find("pvgate_upstream_in_flight 0\n") != std::string::npos);
  // Operations requests have their own counter, not the API requests'.
  REQUIRE(get("healthz").status == 200);
  const std::string again = get("metrics").body;
  CHECK(again.find("pvgate_operations_requests_total{route=\"metrics\"} 1\n") != std::string::npos);
  CHECK(again.find("pvgate_operations_requests_total{route=\"healthz\"} 1\n") != std::string::npos);
  CHECK(again.find("pvgate_requests_total{merchant=\"(none)\",action=\"none\",outcome=\"ok\"} "
                   "0\n") != std::string::npos);
  // No phone number, user id or IP in any label.
  CHECK(text.find("123456789") == std::string::npos);
  CHECK(text.find("505315") == std::string::npos);
  CHECK(text.find("127.0.0.1") == std::string::npos);
}

TEST_CASE_METHOD(MetricsFixture, "metrics are for loopback only; health reports the store") {
  CHECK(get("metrics", "203.0.113.9").status == 404);
  CHECK(get("metrics", "::1").status == 200);
  CHECK(get("metrics", "::ffff:127.0.0.1").status == 200);
  // Loopback by address, not by text: these used to pass a string-prefix test.
  CHECK(get("metrics", "127.evil.example").status == 404);
  CHECK(get("metrics", "::ffff:127.0.0.1.example").status == 404);
  const HttpReply health = get("healthz", "203.0.113.9");
  CHECK(health.status == 200);
  CHECK(body_of(health)["status"] == 200);
  HttpRequest post = request("healthz", "");
  CHECK(observed.handle(post).status == 405);

  DownStore down_store;
  Handler broken(holder, upstream, clock, log, &down_store, &metrics);
  HttpRequest r = request("healthz", "");
  r.method = "GET";
  const HttpReply down = broken.handle(r);
  CHECK(down.status == 503);
  CHECK(body_of(down)["status"] == 503);
}

TEST_CASE_METHOD(MetricsFixture,
                 "a broken store invariant is refused, logged at error and counted, even under "
                 "on_store_error: allow") {
  // The config never lets a limit of 0 through; a bug that does must not
  // switch throttling off.
  auto config = std::make_shared<Config>(*holder.get());
  config->throttle.on_store_error = OnStoreError::allow;
  config->throttle.rules[0].limit = 0;
  holder.set(config);
  const HttpReply reply = observed.handle(request("send-token", kSend));
  CHECK(reply.status == 503);
  CHECK(body_of(reply)["status"] == 500);
  CHECK(upstream.calls.empty());
  const std::string logged = log.all();
  CHECK(logged.find(R"("level":"error")") != std::string::npos);
  CHECK(logged.find("broken invariant: limit outside 1..10000 in rule phone-cooldown") !=
        std::string::npos);
  CHECK(logged.find("123456789") == std::string::npos);
  CHECK(get("metrics").body.find("pvgate_store_errors_total{kind=\"internal\"} 1\n") !=
        std::string::npos);
}

TEST_CASE_METHOD(MetricsFixture, "metrics only where nginx sets PVGATE_METRICS on") {
  CHECK(get("metrics").status == 200);
  // Any path ending in /metrics reaches pvgate: without the param it is unknown.
  const HttpReply unset = get("metrics", "127.0.0.1", nullptr, "/pvgate/x/");
  CHECK(unset.status == 404);
  CHECK(body_of(unset)["status"] == 404);
  CHECK(unset.body.find("pvgate_") == std::string::npos);
  CHECK(get("metrics", "127.0.0.1", "off").status == 404);
  CHECK(get("metrics", "127.0.0.1", "").status == 404);
  CHECK(get("metrics", "127.0.0.1", "ON").status == 404);
  // healthz does not need it.
  CHECK(get("healthz", "127.0.0.1", nullptr).status == 200);
}

TEST_CASE_METHOD(MetricsFixture, "metrics answer the addresses of metrics.allow") {
  auto config = std::make_shared<Config>(*holder.get());
  std::string error;
  config->metrics_allow = {*parse_cidr("10.0.0.0/8", error), *parse_cidr("2001:db8::/32", error)};
  holder.set(config);
  CHECK(get("metrics", "10.1.2.3").status == 200);
  CHECK(get("metrics", "::ffff:10.1.2.3").status == 200);
  CHECK(get("metrics", "2001:db8::5").status == 200);
  CHECK(get("metrics", "127.0.0.1").status == 404);
  CHECK(get("metrics", "11.0.0.1").status == 404);
  config = std::make_shared<Config>(*holder.get());
  config->metrics_allow.clear();
  holder.set(config);
  CHECK(get("metrics", "10.1.2.3").status == 404);
}

TEST_CASE_METHOD(MetricsFixture, "upstream faults are counted by kind") {
  upstream.next = UpstreamResult{};
  upstream.next.error = UpstreamError::timeout;
  observed.handle(request("send-token", kSend));
  upstream.answer(R"({"status":5004})");
  observed.handle(
      request("send-token", "user_id=u&contact_no_country_dialing_code=60&contact_no=198765432"));
  const std::string text = get("metrics").body;
  CHECK(text.find("pvgate_upstream_errors_total{kind=\"timeout\"} 1\n") != std::string::npos);
  CHECK(text.find("pvgate_upstream_errors_total{kind=\"bad_status\"} 1\n") != std::string::npos);
}

TEST_CASE_METHOD(Fixture,
                 "a credential split by control characters is still caught (fuzz finding)") {
  upstream.answer("{\"status\":5001,\"message\":\"key sdvdas23t\\u0007\\u00003btg34bhb\"}");
  HttpReply reply = send();
  CHECK(reply.status == 400);
  CHECK(reply.body.find("sdvdas23t3btg34bhb") == std::string::npos);
  // A credential at the 120-byte cut of the log detail: no prefix of it is logged.
  upstream.answer("{\"status\":401,\"message\":\"" + std::string(110, 'x') + "my_api_secret\"}");
  reply = send();
  CHECK(reply.status == 502);
  CHECK(log.all().find("my_api_sec") == std::string::npos);
}
