#include <catch2/catch.hpp>

#include "fakes.h"
#include "lmdb_fixture.h"
#include "signer.h"
#include "throttle.h"

using namespace pvgate;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;

ThrottleConfig config_with(std::vector<ThrottleRule> rules) {
  ThrottleConfig c;
  c.enabled = true;
  c.rules = std::move(rules);
  return c;
}

ThrottleRule rule(const std::string& name, std::vector<KeyPart> key, std::uint32_t limit,
                  std::int64_t period_ms, bool dry = false) {
  ThrottleRule r;
  r.name = name;
  r.key = std::move(key);
  r.limit = limit;
  r.period_ms = period_ms;
  r.dry_run = dry;
  return r;
}

ThrottleSubject subject(const std::string& phone = "123456789", const std::string& user = "u1",
                        const std::string& ip = "192.0.2.1") {
  ThrottleSubject s;
  s.merchant = "shop-a";
  s.user_id = user;
  s.dialing_code = "60";
  s.contact_no = phone;
  s.remote_addr = ip;
  return s;
}

using FailingStore = pvgate_test::DownStore;

}  // namespace

TEST_CASE("ip_key: IPv4 as is, IPv6 by its /64, mapped IPv4 unwrapped") {
  CHECK(ip_key("192.0.2.7") == "192.0.2.7");
  CHECK(ip_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64");
  CHECK(ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff::9"));
  CHECK(ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1"));
  CHECK(ip_key("::ffff:192.0.2.7") == "192.0.2.7");
  CHECK(ip_key("unix:") == "unix:");
}

TEST_CASE("country filter: allow list, deny list, or everything") {
  ThrottleConfig c;
  CHECK(country_allowed(c, "60"));
  c.countries_allow = {"60", "65"};
  CHECK(country_allowed(c, "65"));
  CHECK_FALSE(country_allowed(c, "1"));
  CHECK_FALSE(country_allowed(c, "6"));  // no prefix matching
  c.countries_allow.clear();
  c.countries_deny = {"7"};
  CHECK_FALSE(country_allowed(c, "7"));
  CHECK(country_allowed(c, "60"));
}

TEST_CASE("country filter by region: the number's region, or every region of a numberless code") {
  ThrottleConfig c;
  c.countries_deny = {"JM", "MY"};
  CHECK_FALSE(country_allowed(c, "1", "JM"));  // +1 876
  CHECK(country_allowed(c, "1", "US"));
  CHECK_FALSE(country_allowed(c, "60", "MY"));
  // No number (Pipwave texts the one it holds): a denied region denies its code.
  CHECK_FALSE(country_allowed(c, "60"));
  CHECK_FALSE(country_allowed(c, "1"));  // it may be Jamaica's
  CHECK(country_allowed(c, "65"));
  c.countries_deny.clear();
  c.countries_allow = {"MY", "JM", "65"};
  CHECK(country_allowed(c, "1", "JM"));
  CHECK_FALSE(country_allowed(c, "1", "US"));
  CHECK(country_allowed(c, "65", "SG"));
  // No number: a code passes only when every region sharing it is allowed.
  CHECK(country_allowed(c, "60"));       // Malaysia alone has +60
  CHECK_FALSE(country_allowed(c, "1"));  // +1 is also the US, Canada, ...
  CHECK(country_allowed(c, "65"));       // listed as a code
  CHECK_FALSE(country_allowed(c, "44"));
  CHECK_FALSE(country_allowed(c, "999"));  // no region has it
}

TEST_CASE("rule keys: stable, distinct per part value, no phone number in clear") {
  const auto a = rule_key("r", {KeyPart::merchant, KeyPart::phone}, subject());
  CHECK(a == rule_key("r", {KeyPart::merchant, KeyPart::phone}, subject()));
  CHECK(a != rule_key("r", {KeyPart::merchant, KeyPart::phone}, subject("123456780")));
  CHECK(a != rule_key("other", {KeyPart::merchant, KeyPart::phone}, subject()));
  CHECK(rule_key("r", {KeyPart::phone}, subject("1", "x")) ==
        rule_key("r", {KeyPart::phone}, subject("1", "y")));
  CHECK(a.find("123456789") == std::string::npos);
  CHECK(a.rfind("r:", 0) == 0);
  // IPv6 neighbours in one /64 share a key.
  CHECK(rule_key("r", {KeyPart::ip}, subject("1", "u", "2001:db8::1")) ==
        rule_key("r", {KeyPart::ip}, subject("1", "u", "2001:db8::2")));
}

TEST_CASE("rule keys keep their exact text across versions (stores outlive a release)") {
  // Counts in an LMDB file or a shared Redis survive upgrades and rolling
  // restarts: the digested text of every key part is fixed.
  auto s = subject();
  CHECK(key_digest({KeyPart::merchant, KeyPart::phone}, s) ==
        sha1_hex("merchant=shop-a\nphone=60:123456789\n"));
  CHECK(key_digest({KeyPart::merchant, KeyPart::user, KeyPart::ip, KeyPart::country}, s) ==
        sha1_hex("merchant=shop-a\nuser=u1\nip=192.0.2.1\ncountry=60\n"));
  CHECK(key_digest({KeyPart::ip}, subject("1", "u", "2001:db8::1")) ==
        sha1_hex("ip=2001:db8::/64\n"));
  s.contact_no.reset();
  CHECK(key_digest({KeyPart::phone}, s) == sha1_hex("phone=user:u1\n"));
  CHECK(sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");  // FIPS 180 example
}

TEST_CASE("phone cooldown: one send per minute per phone") {
  pvgate_test::TempLmdbStore store;
  const auto c =
      config_with({rule("phone-cooldown", {KeyPart::merchant, KeyPart::phone}, 1, 60000)});
  CHECK(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::pass);
  const auto again = throttle_check(c, &store, subject(), kT0 + 10'000);
  CHECK(again.result == ThrottleResult::reject);
  CHECK(again.retry_after_s == 50);
  CHECK(throttle_check(c, &store, subject("555"), kT0 + 10'000).result == ThrottleResult::pass);
  CHECK(throttle_check(c, &store, subject(), kT0 + 60'000).result == ThrottleResult::pass);
}

TEST_CASE("the longest wait among broken rules is reported") {
  pvgate_test::TempLmdbStore store;
  const auto c = config_with(
      {rule("short", {KeyPart::phone}, 1, 60'000), rule("long", {KeyPart::user}, 1, 3'600'000)});
  REQUIRE(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::pass);
  const auto v = throttle_check(c, &store, subject(), kT0 + 1000);
  CHECK(v.result == ThrottleResult::reject);
  CHECK(v.retry_after_s == 3599);
  CHECK(v.rules.at(0).over);
  CHECK(v.rules.at(1).over);
}

TEST_CASE("rules apply only to their actions") {
  pvgate_test::TempLmdbStore store;
  auto send_only = rule("send-only", {KeyPart::phone}, 1, 60'000);
  send_only.verify = false;
  const auto c = config_with({send_only});
  auto s = subject();
  s.action = Action::verify_token_answer;
  s.reference = "7";
  ThrottleConfig no_lock = c;
  no_lock.max_answer_attempts = 0;
  for (int i = 0; i < 3; ++i) {
    CHECK(throttle_check(no_lock, &store, s, kT0 + i).result == ThrottleResult::pass);
  }
  s.action = Action::send_token;
  CHECK(throttle_check(no_lock, &store, s, kT0).result == ThrottleResult::pass);
  CHECK(throttle_check(no_lock, &store, s, kT0 + 1).result == ThrottleResult::reject);
}

TEST_CASE("dry-run rules count and report but never reject") {
  pvgate_test::TempLmdbStore store;
  const auto c = config_with({rule("trial", {KeyPart::phone}, 1, 60'000, /*dry=*/true)});
  CHECK(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::pass);
  const auto v = throttle_check(c, &store, subject(), kT0 + 1);
  CHECK(v.result == ThrottleResult::pass);
  REQUIRE(v.rules.size() == 1);
  CHECK(v.rules[0].over);
  CHECK(v.rules[0].dry_run);
  CHECK(describe_verdict(v).find("trial:over(dry)") != std::string::npos);
  CHECK(describe_verdict(v).find("123456789") == std::string::npos);
  CHECK(describe_verdict(v).find("60*******89") != std::string::npos);
}

TEST_CASE("wrong-answer lock: N attempts per reference, then 429 until it expires") {
  pvgate_test::TempLmdbStore store;
  auto c = config_with({});
  c.max_answer_attempts = 3;
  c.answer_lock_ms = 600'000;
  auto s = subject();
  s.action = Action::verify_token_answer;
  s.reference = "1001";
  for (int i = 0; i < 3; ++i)
    CHECK(throttle_check(c, &store, s, kT0 + i).result == ThrottleResult::pass);
  const auto locked = throttle_check(c, &store, s, kT0 + 10);
  CHECK(locked.result == ThrottleResult::reject);
  CHECK(locked.retry_after_s == 600);
  auto other = s;
  other.reference = "1002";
  CHECK(throttle_check(c, &store, other, kT0 + 10).result == ThrottleResult::pass);
  CHECK(throttle_check(c, &store, s, kT0 + 600'000).result == ThrottleResult::pass);
}

TEST_CASE("country outside the allow list is denied before any counting") {
  pvgate_test::TempLmdbStore store;
  auto c = config_with({rule("phone", {KeyPart::phone}, 1, 60'000)});
  c.countries_allow = {"65"};
  CHECK(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::country_denied);
  c.countries_allow = {"60"};
  CHECK(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::pass);
}

TEST_CASE("store failure follows on_store_error") {
  FailingStore failing;
  auto c = config_with({rule("phone", {KeyPart::phone}, 1, 60'000)});
  CHECK(throttle_check(c, &failing, subject(), kT0).result == ThrottleResult::store_denied);
  c.on_store_error = OnStoreError::allow;
  CHECK(throttle_check(c, &failing, subject(), kT0).result == ThrottleResult::store_bypassed);
}

TEST_CASE("a hit that breaks the store's invariant is refused, even with on_store_error allow") {
  // The config never lets a limit of 0 through: here a bug hands one to the
  // store, which must refuse the request, not let `allow` switch throttling off.
  pvgate_test::TempLmdbStore store;
  auto c = config_with(
      {rule("phone", {KeyPart::phone}, 1, 60'000), rule("broken", {KeyPart::ip}, 0, 60'000)});
  c.on_store_error = OnStoreError::allow;
  const ThrottleVerdict v = throttle_check(c, &store, subject(), kT0);
  CHECK(v.result == ThrottleResult::store_internal);
  CHECK(v.store_status == StoreStatus::internal);
  CHECK(v.broken == "limit outside 1..10000 in rule broken");
  CHECK(v.hits.empty());  // nothing committed, nothing to refund
  CHECK(describe_verdict(v) == "store internal error: no rule decided");
  // Nothing was counted for the good rule either.
  c.rules.pop_back();
  CHECK(throttle_check(c, &store, subject(), kT0).result == ThrottleResult::pass);
}

TEST_CASE("refund gives a send back") {
  pvgate_test::TempLmdbStore store;
  const auto c = config_with({rule("phone", {KeyPart::phone}, 1, 60'000)});
  const auto first = throttle_check(c, &store, subject(), kT0);
  REQUIRE(first.result == ThrottleResult::pass);
  CHECK(throttle_refund(store, first) == StoreStatus::ok);
  CHECK(throttle_check(c, &store, subject(), kT0 + 5).result == ThrottleResult::pass);
}

TEST_CASE("merchant-wide keys: one per merchant, the same as rule_key, however many merchants") {
  // Digests of keys without a person in them are remembered per thread; more
  // merchants than that memory holds must still each get their own key.
  pvgate_test::TempLmdbStore store;
  const auto c =
      config_with({rule("merchant-hour", {KeyPart::merchant}, 1, 3'600'000),
                   rule("country-hour", {KeyPart::merchant, KeyPart::country}, 100, 3'600'000)});
  for (int round = 0; round < 2; ++round) {
    for (int m = 0; m < 150; ++m) {
      auto s = subject();
      s.merchant = "shop-" + std::to_string(m);
      const auto v = throttle_check(c, &store, s, kT0 + round);
      REQUIRE(v.hits.size() == (round == 0 ? 2u : 0u));
      CHECK(v.result == (round == 0 ? ThrottleResult::pass : ThrottleResult::reject));
      if (round == 0) {
        CHECK(v.hits[0].key == rule_key("merchant-hour", {KeyPart::merchant}, s));
        CHECK(v.hits[1].key == rule_key("country-hour", {KeyPart::merchant, KeyPart::country}, s));
      }
    }
  }
  // Keys naming a person are never served from that memory: a new phone is a new key.
  const auto p = config_with({rule("phone", {KeyPart::merchant, KeyPart::phone}, 1, 60'000)});
  const auto first = throttle_check(p, &store, subject("111"), kT0);
  const auto second = throttle_check(p, &store, subject("222"), kT0);
  CHECK(second.result == ThrottleResult::pass);
  CHECK(first.hits.at(0).key != second.hits.at(0).key);
}
