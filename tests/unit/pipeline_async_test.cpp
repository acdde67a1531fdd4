// The request path across the upstream call: the completion arrives on
// another thread after Handler::run returned, and only hands the exchange
// back; the owner's thread completes it and gets the reply.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "fakes.h"
#include "handler.h"
#include "temp_dir.h"

using namespace pvgate;
using nlohmann::json;

namespace {

const char* kConfig = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
)";

struct AsyncFixture {
  AsyncFixture()
      : holder(load_config_text(kConfig, "t").config),
        handler(holder, upstream, clock, log, nullptr, &metrics) {}

  // Begins and runs a send-token on `ex`, with a resume that records where it ran.
  bool start(Exchange& ex) {
    ex.reset();
    ex.request.method = "POST";
    ex.request.path = "/pvgate/send-token";
    ex.request.content_type = "application/x-www-form-urlencoded";
    ex.request.body = "user_id=505315&contact_no_country_dialing_code=60&contact_no=123456789";
    ex.request.content_length = ex.request.body.size();
    ex.request.merchant = "shop-a";
    ex.request.merchant_given = true;
    ex.request.remote_addr = "127.0.0.1";
    ex.resume = [this](Exchange& done) {
      resumed_on = std::this_thread::get_id();
      resumes.fetch_add(1);
      // The upstream's thread only hands the exchange back: nothing is written yet.
      reply_status_at_resume = done.reply.status;
      reply_body_at_resume = done.reply.body;
    };
    handler.begin(ex);
    return handler.run(ex);
  }

  static UpstreamResult ok(const std::string& body) {
    UpstreamResult r;
    r.http_status = 200;
    r.body = body;
    return r;
  }

  ConfigHolder holder;
  pvgate_test::DeferredUpstream upstream;
  pvgate_test::FakeClock clock;
  pvgate_test::CapturingLogger log;
  Metrics metrics;
  Handler handler;
  std::thread::id resumed_on;
  std::atomic<int> resumes{0};
  int reply_status_at_resume = -1;
  std::string reply_body_at_resume = "unset";
};

}  // namespace

TEST_CASE_METHOD(AsyncFixture, "a completion on another thread after run returned") {
  Exchange ex;
  REQUIRE_FALSE(start(ex));  // handed to the upstream
  REQUIRE(upstream.size() == 1);
  CHECK(resumes.load() == 0);
  CHECK(log.lines.empty());  // no log line until the request is finished

  const auto answered_on = upstream.answer_from_thread(
      0, ok(R"({"status":200,"message":"Token sent.","reference":164})"));
  CHECK(resumes.load() == 1);
  CHECK(resumed_on == answered_on);
  CHECK(resumed_on != std::this_thread::get_id());
  // The upstream thread wrote no reply and logged nothing.
  CHECK(reply_body_at_resume.empty());
  CHECK(log.lines.empty());

  handler.complete(ex);  // on this, the owner's, thread
  CHECK(ex.reply.status == 200);
  const json out = json::parse(ex.reply.body);
  CHECK(out["reference"] == 164);
  CHECK(out.size() == 3);
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].find("\"outcome\":\"ok\"") != std::string::npos);
  CHECK(metrics.render().find(
            R"(pvgate_requests_total{merchant="shop-a",action="send-token",outcome="ok"} 1)") !=
        std::string::npos);
}

TEST_CASE_METHOD(AsyncFixture, "exchanges complete in any order, each with its own answer") {
  Exchange a, b;
  REQUIRE_FALSE(start(a));
  REQUIRE_FALSE(start(b));
  REQUIRE(upstream.size() == 2);
  upstream.answer_from_thread(1, ok(R"({"status":200,"message":"B","reference":2})"));
  handler.complete(b);
  upstream.answer_from_thread(0, ok(R"({"status":5052,"message":"A"})"));
  handler.complete(a);
  CHECK(json::parse(b.reply.body)["reference"] == 2);
  CHECK(a.reply.status == 400);
  CHECK(json::parse(a.reply.body)["status"] == 5052);
  CHECK(resumes.load() == 2);
}

TEST_CASE_METHOD(AsyncFixture,
                 "a transport failure on the upstream thread is a 502 on the owner's") {
  Exchange ex;
  REQUIRE_FALSE(start(ex));
  UpstreamResult failed;
  failed.error = UpstreamError::transport;
  failed.detail = "connection reset";
  upstream.answer_from_thread(0, failed);
  handler.complete(ex);
  CHECK(ex.reply.status == 502);
  CHECK(json::parse(ex.reply.body)["status"] == 500);
  CHECK(ex.reply.body.find("reset") == std::string::npos);  // the cause stays in the log
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].find("connection reset") != std::string::npos);
}

TEST_CASE_METHOD(AsyncFixture, "the exchange keeps the snapshot it began with across a reload") {
  Exchange ex;
  REQUIRE_FALSE(start(ex));
  // A reload that drops the merchant while the call is in flight.
  holder.set(load_config_text(R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-b:
    api_key: other
    api_secret: other_secret
)",
                              "t2")
                 .config);
  upstream.answer_from_thread(0, ok(R"({"status":200,"message":"Token sent.","reference":9})"));
  handler.complete(ex);
  CHECK(ex.reply.status == 200);
  CHECK(json::parse(ex.reply.body)["reference"] == 9);
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].find("\"merchant\":\"shop-a\"") != std::string::npos);
}

TEST_CASE_METHOD(AsyncFixture, "reset keeps the exchange reusable for the next request") {
  Exchange ex;
  REQUIRE_FALSE(start(ex));
  upstream.answer_from_thread(0, ok(R"({"status":200,"message":"one","reference":1})"));
  handler.complete(ex);
  REQUIRE(ex.reply.status == 200);
  REQUIRE_FALSE(start(ex));  // reset inside: no state of the first request left
  CHECK(ex.answer.body.empty());
  CHECK(ex.reply.body.empty());
  upstream.answer_from_thread(1, ok(R"({"status":5051,"message":"two"})"));
  handler.complete(ex);
  CHECK(ex.reply.status == 400);
  CHECK(json::parse(ex.reply.body)["status"] == 5051);
}

TEST_CASE("a CAPTCHA check, then the forward: two calls, each completed on the owner's thread") {
  // A turnstile merchant: the siteverify call goes out first; its answer comes back on another
  // thread, complete() goes on with the stages after the challenge and makes the forward
  // (false: still waiting), whose answer completes the request.
  pvgate_test::TempDir dir;
  const std::string secret = dir.path() + "/captcha.secret";
  std::ofstream(secret) << "async-secret\n";
  ::chmod(secret.c_str(), 0600);
  const ConfigResult loaded = load_config_text(R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
    challenge:
      kind: turnstile
      secret_file: )" + secret + R"(
)",
                                               "t");
  REQUIRE(loaded.config);
  ConfigHolder holder(loaded.config);
  pvgate_test::DeferredUpstream upstream;
  pvgate_test::FakeClock clock;
  pvgate_test::CapturingLogger log;
  Handler handler(holder, upstream, clock, log);
  std::atomic<int> resumes{0};
  Exchange ex;
  ex.request.method = "POST";
  ex.request.path = "/pvgate/send-token";
  ex.request.content_type = "application/x-www-form-urlencoded";
  ex.request.body =
      "user_id=1&contact_no_country_dialing_code=60&contact_no=123456789&"
      "cf-turnstile-response=pass-1";
  ex.request.content_length = ex.request.body.size();
  ex.request.remote_addr = "127.0.0.1";
  ex.resume = [&resumes](Exchange&) { resumes.fetch_add(1); };
  handler.begin(ex);
  REQUIRE_FALSE(handler.run(ex));
  REQUIRE(upstream.size() == 1);  // the siteverify call only
  UpstreamResult passed;
  passed.http_status = 200;
  passed.body = R"({"success":true})";
  upstream.answer_from_thread(0, passed);
  CHECK(resumes.load() == 1);
  CHECK(log.lines.empty());
  REQUIRE_FALSE(handler.complete(ex));  // went on, and forwarded
  REQUIRE(upstream.size() == 2);
  UpstreamResult sent;
  sent.http_status = 200;
  sent.body = R"({"status":200,"message":"Token sent.","reference":77})";
  upstream.answer_from_thread(1, sent);
  CHECK(resumes.load() == 2);
  REQUIRE(handler.complete(ex));
  CHECK(ex.reply.status == 200);
  CHECK(json::parse(ex.reply.body)["reference"] == 77);
  REQUIRE(log.lines.size() == 1);
  CHECK(log.lines[0].find("\"challenge\":\"turnstile passed\"") != std::string::npos);
}
