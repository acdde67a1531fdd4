// The phone stage through the whole pipeline (issue 13): one handset, one
// budget; numbers that get no SMS refused before any count or call.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "fakes.h"
#include "handler.h"
#include "lmdb_fixture.h"

using namespace pvgate;
using nlohmann::json;

namespace {

std::string config_text(const std::string& throttle_extra = "",
                        const std::string& merchant_extra = "") {
  return R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
throttle:
  store: local
  rules:
    - name: phone-cooldown
      actions: [send-token]
      key: [merchant, phone]
      limit: 1
      period: 60s
)" + throttle_extra +
         R"(merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
)" + merchant_extra;
}

struct PhoneFixture {
  explicit PhoneFixture(const std::string& text = config_text())
      : holder(load_config_text(text, "t").config),
        handler(holder, upstream, clock, log, &store, &metrics) {
    REQUIRE(holder.get());
    upstream.answer(R"({"status":200,"message":"Token sent.","reference":7})");
  }
  HttpReply send(const std::string& code, const std::string& number,
                 const std::string& user = "u1") {
    HttpRequest r;
    r.method = "POST";
    r.path = "/pvgate/send-token";
    r.content_type = "application/x-www-form-urlencoded";
    r.body = "user_id=" + user + "&contact_no_country_dialing_code=" + code;
    if (!number.empty()) r.body += "&contact_no=" + number;
    r.content_length = r.body.size();
    r.merchant = "shop-a";
    r.merchant_given = true;
    r.remote_addr = "127.0.0.1";
    return handler.handle(r);
  }
  std::string refusals(const std::string& type) {
    const std::string text = metrics.render();
    const std::string prefix = "pvgate_phone_refusals_total{type=\"" + type + "\"} ";
    const auto at = text.find(prefix);
    return at == std::string::npos ? "absent" : text.substr(at + prefix.size(), 1);
  }

  ConfigHolder holder;
  pvgate_test::FakeUpstream upstream;
  pvgate_test::FakeClock clock;
  pvgate_test::CapturingLogger log;
  pvgate_test::TempLmdbStore store;
  Metrics metrics;
  Handler handler;
};

}  // namespace

TEST_CASE_METHOD(PhoneFixture, "every spelling of one handset shares one cooldown") {
  REQUIRE(send("60", "198765432").status == 200);
  REQUIRE(upstream.calls.size() == 1);
  const json sent = json::parse(upstream.calls[0].body);
  CHECK(sent["contact_no_country_dialing_code"] == "60");
  CHECK(sent["contact_no"] == "198765432");
  const std::pair<const char*, const char*> spellings[] = {
      {"60", "0198765432"},  {"601", "98765432"},   {"060", "198765432"},
      {"0060", "198765432"}, {"60", "60198765432"}, {"6019", "8765432"},
  };
  for (const auto& [code, number] : spellings) {
    INFO(code << " + " << number);
    const HttpReply r = send(code, number);
    CHECK(r.status == 429);
  }
  CHECK(upstream.calls.size() == 1);
  // The log masks the canonical number, never the raw spelling.
  CHECK(log.all().find("\"phone\":\"+60*******32\"") != std::string::npos);
  // After the cooldown, any spelling sends again, canonically.
  clock.now_ms += 60'000;
  REQUIRE(send("0060", "0198765432").status == 200);
  const json again = json::parse(upstream.calls.back().body);
  CHECK(again["contact_no_country_dialing_code"] == "60");
  CHECK(again["contact_no"] == "198765432");
}

TEST_CASE_METHOD(PhoneFixture, "invalid numbers and refused types: 400 / 5001, nothing counted") {
  struct Case {
    const char* code;
    const char* number;
    const char* says;
    const char* type;
  };
  const Case cases[] = {
      {"44", "9098790000", "premium_rate", "premium_rate"},
      {"1", "8002345678", "toll_free", "toll_free"},
      {"44", "7012345678", "personal_number", "personal_number"},
      {"60", "12", "contact_no", "invalid"},
      {"60", "1987654321234567", "contact_no", "invalid"},
      {"999", "198765432", "contact_no", "invalid"},
  };
  const std::size_t entries = store.store().entries();
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    const HttpReply r = send(c.code, c.number);
    CHECK(r.status == 400);
    const json out = json::parse(r.body);
    CHECK(out["status"] == 5001);
    CHECK(out["message"].get<std::string>().find(c.says) != std::string::npos);
  }
  CHECK(upstream.calls.empty());
  CHECK(store.store().entries() == entries);  // no throttle key was touched
  CHECK(refusals("premium_rate") == "1");
  CHECK(refusals("toll_free") == "1");
  CHECK(refusals("personal_number") == "1");
  CHECK(refusals("invalid") == "3");
}

TEST_CASE("a send without contact_no needs allow_stored_number") {
  PhoneFixture strict;
  const HttpReply refused = strict.send("60", "");
  CHECK(refused.status == 400);
  CHECK(json::parse(refused.body)["status"] == 9001);
  CHECK(strict.upstream.calls.empty());

  PhoneFixture opted(config_text("", "    allow_stored_number: true\n"));
  CHECK(opted.send("60", "", "u1").status == 200);
  CHECK(opted.send("60", "", "u1").status == 429);  // the user's numberless sends share a key
  CHECK(opted.send("60", "", "u2").status == 200);
  CHECK(opted.upstream.calls.size() == 2);
  // The dialing code alone is canonical too: IDD zeros dropped, no unknown code.
  CHECK(opted.send("0060", "", "u3").status == 200);
  CHECK(json::parse(opted.upstream.calls.back().body)["contact_no_country_dialing_code"] == "60");
  const HttpReply unknown = opted.send("999", "", "u4");
  CHECK(unknown.status == 400);
  CHECK(json::parse(unknown.body)["status"] == 5001);
  CHECK(opted.upstream.calls.size() == 3);
  PhoneFixture denied(
      config_text("  countries:\n    deny: [60]\n", "    allow_stored_number: true\n"));
  CHECK(denied.send("0060", "", "u5").status == 403);
  CHECK(denied.upstream.calls.empty());
}

TEST_CASE("countries by region: the region comes from the number") {
  PhoneFixture deny_jm(config_text("  countries:\n    deny: [JM, 880]\n"));
  CHECK(deny_jm.send("1", "8762101234").status == 403);  // +1 876: Jamaica
  CHECK(deny_jm.send("1", "2015550123").status == 200);  // +1 201: United States
  for (const auto& [code, number] :
       std::vector<std::pair<std::string, std::string>>{{"880", "1712345678"},
                                                        {"0880", "1712345678"},
                                                        {"00880", "1712345678"},
                                                        {"88", "01712345678"}}) {
    INFO(code << " + " << number);
    CHECK(deny_jm.send(code, number).status == 403);
  }
  PhoneFixture allow_my(config_text("  countries:\n    allow: [MY]\n"));
  CHECK(allow_my.send("60", "198765432").status == 200);
  CHECK(allow_my.send("65", "81234567").status == 403);
}

TEST_CASE("a phone_prefix rule counts a run of consecutive numbers") {
  PhoneFixture ranged(config_text(R"(    - name: range
      actions: [send-token]
      key: [merchant, phone_prefix]
      range_digits: 2
      limit: 3
      period: 1h
)"));
  CHECK(ranged.send("60", "198765400").status == 200);
  CHECK(ranged.send("60", "198765401").status == 200);
  CHECK(ranged.send("60", "198765499").status == 200);
  CHECK(ranged.send("60", "198765450").status == 429);  // the fourth in +60 1987654xx
  CHECK(ranged.send("60", "198765500").status == 200);  // the next block
}
