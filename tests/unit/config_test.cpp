#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "config.h"
#include "url.h"

using namespace pvgate;

namespace {

const char* kGood = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
  connect_timeout_ms: 2000
  timeout_ms: 8000
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
)";

bool has_error(const ConfigResult& r, const std::string& needle) {
  for (const auto& e : r.errors) {
    if (e.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string all_errors(const ConfigResult& r) {
  std::string s;
  for (const auto& e : r.errors) s += e + "\n";
  return s;
}

}  // namespace

TEST_CASE("a good config loads into plain values") {
  const auto r = load_config_text(kGood, "t.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->upstream.url == "https://staging-api.pipwave.com/phone-verify");
  CHECK(r.config->upstream.connect_timeout_ms == 2000);
  CHECK(r.config->upstream.timeout_ms == 8000);
  CHECK(r.config->upstream.max_response_bytes == 64 * 1024);  // default
  CHECK(r.config->upstream.max_connections == 256);           // default
  CHECK(r.config->upstream.http2 == Http2::automatic);        // default
  CHECK(r.config->max_body_bytes == 4096);                    // default
  CHECK(r.config->read_timeout_ms == 10000);                  // default
  CHECK(r.config->write_timeout_ms == 10000);                 // default
  CHECK_FALSE(r.config->upstream.loopback);
  REQUIRE(r.config->merchants.count("shop-a") == 1);
  CHECK(r.config->merchants.at("shop-a").api_secret == "my_api_secret");
}

TEST_CASE("merchant lookup: by name, or the only one when no name is given") {
  const auto r = load_config_text(kGood, "t.yaml");
  REQUIRE(r.config);
  CHECK(r.config->find_merchant("shop-a", true) != nullptr);
  CHECK(r.config->find_merchant("nosuch", true) == nullptr);
  CHECK(r.config->find_merchant("", false) != nullptr);
  const auto two = load_config_text(
      std::string(kGood) + "  shop-b:\n    api_key: k2\n    api_secret: s2\n", "t");
  REQUIRE(two.config);
  CHECK(two.config->find_merchant("", false) == nullptr);
  CHECK(two.config->find_merchant("shop-b", true) != nullptr);
}

TEST_CASE("config errors name the file, the line and the key path") {
  const auto r = load_config_text(R"(upstream:
  url: https://example.com/x
  timeout_ms: 5
  colour: blue
merchants:
  shop-a:
    api_key: k
)",
                                  "bad.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, "bad.yaml:3: upstream.timeout_ms: must be an integer from 100 to 120000"));
  CHECK(has_error(r, "bad.yaml:4: upstream.colour: unknown key"));
  CHECK(has_error(r, "bad.yaml:6: merchants.shop-a.api_secret: is required"));
  CHECK(r.errors.size() == 3);
}

TEST_CASE("upstream must be https unless the host is loopback") {
  bool loopback = false;
  CHECK(check_upstream_url("https://api.pipwave.com/phone-verify", loopback).empty());
  CHECK_FALSE(loopback);
  CHECK_FALSE(check_upstream_url("http://api.pipwave.com/phone-verify", loopback).empty());
  CHECK(check_upstream_url("http://127.0.0.1:8443/x", loopback).empty());
  CHECK(loopback);
  CHECK(check_upstream_url("http://localhost/x", loopback).empty());
  CHECK(check_upstream_url("http://[::1]:99/x", loopback).empty());
  CHECK(loopback);
  CHECK_FALSE(check_upstream_url("http://127.evil.example/x", loopback).empty());
  CHECK_FALSE(check_upstream_url("http://127.0.0.1.evil.example/x", loopback).empty());
  CHECK_FALSE(check_upstream_url("ftp://127.0.0.1/x", loopback).empty());
  CHECK_FALSE(check_upstream_url("https://user:pw@host/x", loopback).empty());
  CHECK_FALSE(check_upstream_url("https:///x", loopback).empty());
}

TEST_CASE("numeric limits: at the bounds and one past") {
  auto with = [](const std::string& key, const std::string& value) {
    return load_config_text("upstream:\n  url: https://h/x\n  " + key + ": " + value +
                                "\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n",
                            "t");
  };
  CHECK(with("timeout_ms", "100").config);
  CHECK(with("timeout_ms", "120000").config);
  CHECK_FALSE(with("timeout_ms", "99").config);
  CHECK_FALSE(with("timeout_ms", "120001").config);
  CHECK_FALSE(with("timeout_ms", "-1").config);
  CHECK_FALSE(with("timeout_ms", "ten").config);
  CHECK(with("max_response_bytes", "1024").config);
  CHECK_FALSE(with("max_response_bytes", "1023").config);
  CHECK(with("max_connections", "1").config);
  CHECK(with("max_connections", "4096").config);
  CHECK_FALSE(with("max_connections", "0").config);
  CHECK_FALSE(with("max_connections", "4097").config);
  REQUIRE(with("max_connections", "12").config);
  CHECK(with("max_connections", "12").config->upstream.max_connections == 12);
}

TEST_CASE("upstream.http2: auto (the default) or off; anything else names the key") {
  auto with = [](const std::string& value) {
    return load_config_text("upstream:\n  url: https://h/x\n  http2: " + value +
                                "\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n",
                            "t.yaml");
  };
  REQUIRE(with("auto").config);
  CHECK(with("auto").config->upstream.http2 == Http2::automatic);
  REQUIRE(with("off").config);
  CHECK(with("off").config->upstream.http2 == Http2::off);
  for (const char* bad : {"on", "true", "false", "h2", "AUTO", "\"\"", "[auto]"}) {
    INFO(bad);
    const auto r = with(bad);
    CHECK_FALSE(r.config);
    CHECK(has_error(r, "t.yaml:3: upstream.http2: must be "));
  }
}

TEST_CASE("limits: FastCGI read and write timeouts at the bounds and one past") {
  auto with = [](const std::string& key, const std::string& value) {
    return load_config_text("upstream:\n  url: https://h/x\nlimits:\n  " + key + ": " + value +
                                "\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n",
                            "t");
  };
  for (const std::string key : {"read_timeout_ms", "write_timeout_ms"}) {
    INFO(key);
    REQUIRE(with(key, "100").config);
    REQUIRE(with(key, "600000").config);
    const auto low = with(key, "100").config;
    CHECK((key == "read_timeout_ms" ? low->read_timeout_ms : low->write_timeout_ms) == 100);
    const auto high = with(key, "600000").config;
    CHECK((key == "read_timeout_ms" ? high->read_timeout_ms : high->write_timeout_ms) == 600000);
    const auto under = with(key, "99");
    CHECK_FALSE(under.config);
    CHECK(has_error(under, "t:4: limits." + key));
    CHECK_FALSE(with(key, "600001").config);
    CHECK_FALSE(with(key, "-1").config);
    CHECK_FALSE(with(key, "10s").config);
  }
}

TEST_CASE("api_secret_file: read, trailing newline dropped, exclusive with api_secret") {
  const std::string path = "pvgate_test_secret.txt";
  { std::ofstream(path) << "file_secret\n"; }
  auto r = load_config_text(
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n"
      "    api_secret_file: " +
          path + "\n",
      "t");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->merchants.at("m").api_secret == "file_secret");

  r = load_config_text(
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n"
      "    api_secret: s\n    api_secret_file: " +
          path + "\n",
      "t");
  CHECK(has_error(r, "not both"));
  r = load_config_text(
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n"
      "    api_secret_file: /nonexistent/secret\n",
      "t");
  CHECK(has_error(r, "t:6: merchants.m.api_secret_file: cannot read"));
  CHECK(r.errors.size() == 1);
  std::remove(path.c_str());
}

TEST_CASE("errors never quote a secret") {
  const auto r = load_config_text(
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n"
      "    api_key: key with spaces\n    api_secret: \"sec ret\"\n",
      "t");
  CHECK_FALSE(r.config);
  for (const auto& e : r.errors) {
    CHECK(e.find("sec ret") == std::string::npos);
  }
}

TEST_CASE("YAML syntax errors carry a line number") {
  const auto r = load_config_text("upstream:\n  url: [unterminated\nmerchants: {}\n", "s.yaml");
  REQUIRE_FALSE(r.config);
  CHECK(r.errors.at(0).rfind("s.yaml:", 0) == 0);
  CHECK(r.errors.at(0).find("YAML syntax error") != std::string::npos);
}

TEST_CASE("missing sections and empty merchants are errors") {
  CHECK(has_error(load_config_text("merchants:\n  m:\n    api_key: k\n    api_secret: s\n", "t"),
                  "upstream: is required"));
  CHECK(has_error(load_config_text("upstream:\n  url: https://h/x\n", "t"),
                  "merchants: is required"));
  CHECK(has_error(load_config_text("upstream:\n  url: https://h/x\nmerchants: {}\n", "t"),
                  "at least one merchant"));
  CHECK(has_error(load_config_text("- a\n- b\n", "t"), "must be a mapping"));
}

TEST_CASE("the shipped conf/pvgate.yaml is valid and documents the default rules") {
  std::ifstream in(PVGATE_SOURCE_DIR "/conf/pvgate.yaml");
  REQUIRE(in);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = "pvgate_test_shipped.secret";
  { std::ofstream(path) << "s\n"; }
  const std::string needle = "/etc/pvgate/shop-a.secret";
  REQUIRE(text.find(needle) != std::string::npos);
  text.replace(text.find(needle), needle.size(), path);
  // The signing key the package makes on install: a test key (P-256, PKCS#8) in its place.
  const std::string key_path = "pvgate_test_shipped_token_key.pem";
  {
    std::ofstream(key_path) << "-----BEGIN PRIVATE KEY-----\n"
                               "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/SFBW8u9kgEmOd4H\n"
                               "BBhyxLvJOtoa3nSnbOZATvmEJLuhRANCAAScJa7QlpFGm8oHWe3CWMzjCl0YbtNT\n"
                               "O40gBbEZCxml4z7x4TaAZu1d9l+/lGx4dwK/i6khFpKKeYn9lLzxcCVO\n"
                               "-----END PRIVATE KEY-----\n";
  }
  ::chmod(key_path.c_str(), 0600);
  const std::string key_needle = "[/etc/pvgate/token-key.pem]";
  REQUIRE(text.find(key_needle) != std::string::npos);
  text.replace(text.find(key_needle), key_needle.size(), "[" + key_path + "]");
  // The ALTCHA key the package makes on install: a test key in its place.
  const std::string altcha_path = "pvgate_test_shipped_altcha.key";
  { std::ofstream(altcha_path) << std::string(64, 'a') << "\n"; }
  ::chmod(altcha_path.c_str(), 0600);
  const std::string altcha_needle = "key_file: /etc/pvgate/altcha.key";
  REQUIRE(text.find(altcha_needle) != std::string::npos);
  text.replace(text.find(altcha_needle), altcha_needle.size(), "key_file: " + altcha_path);
  const auto r = load_config_text(text, "pvgate.yaml");
  std::remove(path.c_str());
  std::remove(key_path.c_str());
  std::remove(altcha_path.c_str());
  INFO(all_errors(r));
  REQUIRE(r.config);
  for (const auto& w : r.warnings) CHECK(w.find("verification") == std::string::npos);
  const auto& v = r.config->verification;
  CHECK(v.enabled);
  CHECK(v.issuer == "https://shop.example/pvgate");
  CHECK(v.signing_keys.size() == 1);
  CHECK(v.session_ttl_ms == 600'000);
  CHECK(v.token_ttl_ms == 600'000);
  CHECK(r.config->merchants.at("shop-a").audience == "shop-a");
  // The challenge as documented: ALTCHA always, the default difficulty and pressure rules.
  const ChallengeConfig& c = r.config->merchants.at("shop-a").challenge;
  CHECK(c.kind == ChallengeKind::altcha);
  CHECK(c.always);
  CHECK(c.difficulty == 50000);
  CHECK(c.hard_difficulty == 500000);
  CHECK(c.expires_ms == 600'000);
  CHECK(c.address.sends == 3);
  CHECK(c.address.period_ms == 3'600'000);
  CHECK(c.phone.sends == 2);
  CHECK(c.merchant.sends == 60);
  CHECK(c.merchant.period_ms == 60'000);
  const auto& t = r.config->throttle;
  CHECK(t.enabled);
  CHECK(t.on_store_error == OnStoreError::deny);
  CHECK(t.max_answer_attempts == 5);
  std::vector<std::string> names;
  for (const auto& rule : t.rules) names.push_back(rule.name);
  CHECK(names == std::vector<std::string>{"phone-cooldown", "phone-hour", "phone-day",
                                          "phone-range-hour", "user-hour", "ip-hour",
                                          "ip-verify-hour", "merchant-hour"});
  CHECK(t.rules[0].limit == 1);
  CHECK(t.rules[0].period_ms == 60'000);
  CHECK_FALSE(t.rules[0].verify);
  // The range rule: a block of 100 consecutive numbers, 10 sends an hour.
  const auto& range = t.rules[3];
  CHECK(range.key == std::vector<KeyPart>{KeyPart::merchant, KeyPart::phone_prefix});
  CHECK(range.range_digits == 2);
  CHECK(range.limit == 10);
  CHECK(range.period_ms == 3'600'000);
  CHECK_FALSE(range.verify);
  // phone: and allow_stored_number as documented, at their defaults.
  CHECK(r.config->phone.number_types ==
        std::vector<PhoneType>{PhoneType::mobile, PhoneType::fixed_line_or_mobile});
  CHECK_FALSE(r.config->merchants.at("shop-a").allow_stored_number);
}

TEST_CASE("throttle config: rules, periods, countries, and their errors") {
  const std::string head =
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n";
  auto r = load_config_text(head + R"(throttle:
  store: local
  path: /tmp/x
  on_store_error: allow
  rules:
    - name: a
      key: [merchant, ip]
      limit: 3
      period: 10m
      dry_run: true
  countries:
    deny: ["+7", 998]
)",
                            "t");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& t = r.config->throttle;
  CHECK(t.on_store_error == OnStoreError::allow);
  REQUIRE(t.rules.size() == 1);
  CHECK(t.rules[0].period_ms == 600'000);
  CHECK(t.rules[0].send_token);
  CHECK(t.rules[0].verify);
  CHECK(t.rules[0].dry_run);
  CHECK(t.countries_deny == std::vector<std::string>{"7", "998"});

  r = load_config_text(head + R"(throttle:
  store: memcached
  rules:
    - name: Bad Name
      actions: [send-token, fly]
      key: [phone, phone, shoe]
      limit: 0
      period: 5x
    - name: b
      limit: 1
      period: 1s
  countries:
    allow: [60]
    deny: [abc]
)",
                       "t");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, "t:8: throttle.store: must be local or redis"));
  CHECK(has_error(r, "t:10: throttle.rules[0].name: must be 1-64 of a-z 0-9 - _"));
  CHECK(has_error(r, "t:11: throttle.rules[0].actions: 'fly' is not"));
  CHECK(has_error(r, "t:12: throttle.rules[0].key: 'phone' is listed twice"));
  CHECK(has_error(r, "t:12: throttle.rules[0].key: 'shoe' is not one of"));
  CHECK(has_error(r, "t:13: throttle.rules[0].limit: must be an integer from 1 to 10000"));
  CHECK(has_error(r, "t:14: throttle.rules[0].period: must be a duration"));
  CHECK(has_error(r, "throttle.rules[1].key: is required"));
  CHECK(has_error(r, "throttle.countries: set allow or deny, not both"));
  CHECK(has_error(r, "throttle.countries.deny: 'abc' is neither a country calling code nor"));
}

TEST_CASE("countries by calling code or region, each one libphonenumber knows") {
  const auto load = [](const std::string& list) {
    return load_config_text(R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
throttle:
  countries:
    deny: )" + list + R"(
merchants:
  shop-a:
    api_key: k
    api_secret: s
)",
                            "t");
  };
  ConfigResult ok = load("[MY, JM, '+880', 1, 44]");
  REQUIRE(ok.config);
  CHECK(ok.config->throttle.countries_deny ==
        std::vector<std::string>{"MY", "JM", "880", "1", "44"});
  for (const char* bad : {"[XX]", "[my]", "[999]", "[0880]", "[ZZ]", "['']", "[12345]"}) {
    INFO(bad);
    ConfigResult r = load(bad);
    CHECK_FALSE(r.config);
    CHECK(has_error(r, "throttle.countries.deny: '"));
  }
}

TEST_CASE("phone: number_types and phone_prefix rules") {
  const auto load = [](const std::string& extra) {
    return load_config_text(R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
)" + extra + R"(
merchants:
  shop-a:
    api_key: k
    api_secret: s
)",
                            "t");
  };
  ConfigResult defaults = load("");
  REQUIRE(defaults.config);
  CHECK(defaults.config->phone.number_types ==
        std::vector<PhoneType>{PhoneType::mobile, PhoneType::fixed_line_or_mobile});
  CHECK_FALSE(defaults.config->merchants.at("shop-a").allow_stored_number);
  ConfigResult types = load("phone:\n  number_types: [mobile, fixed_line]\n");
  REQUIRE(types.config);
  CHECK(types.config->phone.number_types ==
        std::vector<PhoneType>{PhoneType::mobile, PhoneType::fixed_line});
  CHECK(has_error(load("phone:\n  number_types: [cellular]\n"), "phone.number_types: 'cellular'"));
  CHECK(has_error(load("phone:\n  number_types: []\n"), "phone.number_types: needs at least one"));
  const std::string rule =
      "throttle:\n  rules:\n    - name: r\n      key: [merchant, phone_prefix]\n      limit: 10\n"
      "      period: 1h\n";
  ConfigResult ranged = load(rule + "      range_digits: 2\n");
  REQUIRE(ranged.config);
  CHECK(ranged.config->throttle.rules[0].range_digits == 2);
  CHECK(has_error(load(rule), "throttle.rules[0].range_digits: is required with phone_prefix"));
  CHECK(has_error(load(rule + "      range_digits: 7\n"), "throttle.rules[0].range_digits"));
  CHECK(has_error(load("throttle:\n  rules:\n    - name: r\n      key: [phone]\n      limit: 1\n"
                       "      period: 1h\n      range_digits: 2\n"),
                  "range_digits: needs phone_prefix in key"));
}

TEST_CASE("periods: units, bounds") {
  CHECK(parse_period("60s") == 60'000);
  CHECK(parse_period("60") == 60'000);
  CHECK(parse_period("10m") == 600'000);
  CHECK(parse_period("1h") == 3'600'000);
  CHECK(parse_period("1d") == 86'400'000);
  CHECK(parse_period("") == -1);
  CHECK(parse_period("h") == -1);
  CHECK(parse_period("-1s") == -1);
  CHECK(parse_period("1.5h") == -1);
  CHECK(format_period(3'600'000) == "1h");
  CHECK(format_period(90'000) == "90s");
}

TEST_CASE("throttle.redis is validated at load time and never echoed") {
  const std::string head =
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n";
  auto r = load_config_text(
      head + "throttle:\n  store: redis\n  redis: redis://:pw@127.0.0.1:6379/2\n", "t");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->throttle.store == StoreKind::redis);
  r = load_config_text(head + "throttle:\n  store: redis\n  redis: http://:hunter2@h/\n", "t");
  REQUIRE_FALSE(r.config);
  CHECK(has_error(r, "t:9: throttle.redis:"));
  for (const auto& e : r.errors) CHECK(e.find("hunter2") == std::string::npos);
}

TEST_CASE("origins are normalised; wildcards and non-URLs are errors; none is a warning") {
  CHECK(normalize_origin("https://Shop.Example") == "https://shop.example");
  CHECK(normalize_origin("https://shop.example:443/path?q") == "https://shop.example");
  CHECK(normalize_origin("http://shop.example:80") == "http://shop.example");
  CHECK(normalize_origin("http://shop.example:8080") == "http://shop.example:8080");
  CHECK(normalize_origin("https://[::1]:8443") == "https://[::1]:8443");
  CHECK(normalize_origin("null").empty());
  CHECK(normalize_origin("ftp://x").empty());
  CHECK(normalize_origin("https://user@x").empty());
  CHECK(normalize_origin("https://").empty());
  const std::string head =
      "upstream:\n  url: https://h/x\nmerchants:\n  m:\n    api_key: k\n    api_secret: s\n";
  auto r = load_config_text(head, "t");
  REQUIRE(r.config);
  bool warned = false;
  for (const auto& w : r.warnings) warned |= w.find("no allowed_origins") != std::string::npos;
  CHECK(warned);
  r = load_config_text(head + "    allowed_origins: [\"https://*.shop.example\", nonsense]\n", "t");
  CHECK_FALSE(r.config);
  CHECK(r.errors.size() == 2);
  r = load_config_text(head + "    user_id_param: lower-case\n", "t");
  CHECK(has_error(r, "merchants.m.user_id_param"));
}

TEST_CASE("metrics.file: an absolute path; default beside the local store, else none") {
  auto r = load_config_text(kGood, "t.yaml");
  REQUIRE(r.config);
  CHECK(r.config->metrics_file.empty());
  CHECK(metrics_file_path(*r.config).empty());  // no throttle store: each process alone
  r = load_config_text(std::string(kGood) + "metrics:\n  file: /run/pvgate/metrics\n", "t.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(metrics_file_path(*r.config) == "/run/pvgate/metrics");
  r = load_config_text(std::string(kGood) + "metrics:\n  file: run/metrics\n", "t.yaml");
  CHECK(has_error(r, "t.yaml:"));
  CHECK(has_error(r, "metrics.file: must be an absolute path"));
  r = load_config_text(std::string(kGood) + "metrics:\n  file: \"\"\n", "t.yaml");
  CHECK(has_error(r, "metrics.file: must be an absolute path"));
  r = load_config_text(std::string(kGood) + "metrics:\n  file: [a]\n", "t.yaml");
  CHECK(has_error(r, "metrics.file: must be a string"));
}

TEST_CASE("metrics.allow: loopback by default, CIDR ranges, errors with file:line:key") {
  auto r = load_config_text(kGood, "t.yaml");
  REQUIRE(r.config);
  CHECK(r.config->metrics_allow == loopback_ranges());
  CHECK(address_in(r.config->metrics_allow, "127.0.0.1"));
  CHECK(address_in(r.config->metrics_allow, "::1"));
  CHECK_FALSE(address_in(r.config->metrics_allow, "10.0.0.1"));

  r = load_config_text(std::string(kGood) + "metrics:\n  allow: [10.0.0.0/8, \"2001:db8::/32\"]\n",
                       "t.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  CHECK(r.config->metrics_allow.size() == 2);
  CHECK(address_in(r.config->metrics_allow, "10.9.8.7"));
  CHECK_FALSE(address_in(r.config->metrics_allow, "127.0.0.1"));  // the list replaces the default

  r = load_config_text(std::string(kGood) + "metrics:\n  allow: []\n", "t.yaml");
  REQUIRE(r.config);
  CHECK(r.config->metrics_allow.empty());

  r = load_config_text(std::string(kGood) +
                           "metrics:\n  allow:\n    - 127.0.0.0/8\n    - 10.0.0.0/33\n"
                           "    - ::1/129\n    - nonsense\n  deny: [1.2.3.4]\n",
                       "t.yaml");
  CHECK_FALSE(r.config);
  CHECK(has_error(r,
                  "t.yaml:12: metrics.allow: '10.0.0.0/33': the prefix length must be a "
                  "number from 0 to 32"));
  CHECK(has_error(r, "t.yaml:13: metrics.allow: '::1/129'"));
  CHECK(has_error(r, "t.yaml:14: metrics.allow: 'nonsense' is not an IPv4 or IPv6"));
  CHECK(has_error(r, "t.yaml:15: metrics.deny: unknown key"));
  CHECK(has_error(load_config_text(std::string(kGood) + "metrics: on\n", "t.yaml"),
                  "metrics: must be a mapping"));
}

TEST_CASE("restart_only_changes: one message per restart-only key, none for the rest") {
  const auto base = load_config_text(std::string(kGood) + R"(throttle:
  store: local
  path: /tmp/a
  rules: []
)",
                                     "t.yaml");
  REQUIRE(base.config);
  const Config& old = *base.config;
  CHECK(restart_only_changes(old, old).empty());

  // Applied at once: the body limit (each request reads with its own
  // snapshot's limit), timeouts, rules, log level, metrics.allow.
  Config next = old;
  next.max_body_bytes = 1024;
  next.upstream.timeout_ms = 2000;
  next.throttle.on_store_error = OnStoreError::allow;
  next.throttle.rules.push_back(ThrottleRule{});
  next.log_level = LogLevel::debug;
  next.metrics_allow.clear();
  CHECK(restart_only_changes(old, next).empty());

  next = old;
  next.throttle.path = "/tmp/b";
  next.throttle.max_size_mb = 128;
  next.upstream.max_connections = 16;
  next.upstream.http2 = Http2::off;
  const auto changes = restart_only_changes(old, next);
  // The metrics file lives in the store's directory unless metrics.file says otherwise.
  REQUIRE(changes.size() == 5);
  CHECK(changes[0].rfind("throttle.path takes effect only on restart", 0) == 0);
  CHECK(changes[1].rfind("throttle.max_size_mb takes effect only on restart", 0) == 0);
  CHECK(changes[2].rfind("upstream.max_connections takes effect only on restart", 0) == 0);
  CHECK(changes[3].rfind("upstream.http2 takes effect only on restart", 0) == 0);
  CHECK(changes[4].rfind("metrics.file takes effect only on restart", 0) == 0);
  CHECK(metrics_file_path(old) == "/tmp/a/metrics");
  CHECK(metrics_file_path(next) == "/tmp/b/metrics");
  next.metrics_file = "/run/pvgate/metrics";
  CHECK(metrics_file_path(next) == "/run/pvgate/metrics");
  next.throttle.store = StoreKind::redis;
  next.metrics_file.clear();
  CHECK(metrics_file_path(next).empty());
  CHECK(changes[0].find("/tmp/") == std::string::npos);  // the key, never its value

  next = old;
  next.throttle.store = StoreKind::redis;
  next.throttle.redis_url = "redis://:hunter2@10.0.0.1:6379/0";
  next.throttle.redis_timeout_ms = 250;
  // The local store's directory held the metrics file too.
  REQUIRE(restart_only_changes(old, next).size() == 2);
  CHECK(restart_only_changes(old, next)[0].rfind("throttle.store takes effect", 0) == 0);
  CHECK(restart_only_changes(old, next)[1].rfind("metrics.file takes effect", 0) == 0);

  Config redis = next;
  next.throttle.redis_url = "redis://:s3cret@10.0.0.2:6379/0";
  next.throttle.redis_timeout_ms = 300;
  next.throttle.path = "/tmp/ignored";  // not the store in use
  const auto redis_changes = restart_only_changes(redis, next);
  REQUIRE(redis_changes.size() == 2);
  CHECK(redis_changes[0].rfind("throttle.redis takes effect only on restart", 0) == 0);
  CHECK(redis_changes[1].rfind("throttle.redis_timeout_ms takes effect", 0) == 0);
  for (const auto& c : redis_changes) CHECK(c.find("s3cret") == std::string::npos);

  next = old;
  next.throttle.enabled = false;
  next.throttle.path = "/tmp/c";
  REQUIRE(restart_only_changes(old, next).size() == 2);  // and metrics.file, as above
  CHECK(restart_only_changes(old, next)[0].rfind("throttle: section removed takes effect", 0) == 0);
  CHECK(restart_only_changes(next, old)[0].rfind("throttle: section added takes effect", 0) == 0);
}
