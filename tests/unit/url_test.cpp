// parse_url (libcurl's URL API plus pvgate's stricter checks) and the
// helpers built on it. The callers' own cases stay with them: origins and
// the upstream URL in config_test, the Redis URL in redis_store_test.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "url.h"

using namespace pvgate;

TEST_CASE("url: the parts of good URLs") {
  Url u;
  std::string error;
  REQUIRE(parse_url("HTTPS://User:p%40ss@Shop.Example:8443/a/../b?x=1#f", u, error));
  CHECK(error.empty());
  CHECK(u.scheme == "https");
  CHECK(u.has_userinfo);
  CHECK(u.user == "User");
  CHECK(u.password == "p%40ss");  // as written
  CHECK(u.host == "Shop.Example");
  CHECK_FALSE(u.ipv6);
  CHECK(u.port == 8443);
  CHECK(u.path == "/a/../b");  // dot segments kept
  CHECK(u.has_query);
  CHECK(u.query == "x=1");
  CHECK(u.has_fragment);

  REQUIRE(parse_url("redis://[FE80::1:2]:7000/1", u, error));
  CHECK(u.ipv6);
  CHECK(u.host == "FE80::1:2");  // case kept, brackets off
  CHECK(u.port == 7000);
  CHECK_FALSE(u.has_userinfo);
  CHECK_FALSE(u.has_query);

  REQUIRE(parse_url("http://127.1/", u, error));
  CHECK(u.host == "127.0.0.1");  // the address libcurl would connect to
  CHECK(u.port == 0);

  REQUIRE(parse_url("file:///tmp/r.sock?db=2", u, error));
  CHECK(u.host.empty());
  CHECK(u.path == "/tmp/r.sock");
  CHECK(u.query == "db=2");
}

TEST_CASE("url: what curl would repair or accept is refused, without quoting the URL") {
  const std::vector<std::string> bad{
      "",
      "s3cret",
      "//h",
      "h:80",
      "://h",
      "ht tp://h",
      "https:/s3cret.example",    // one slash (curl accepts it)
      "https:///s3cret.example",  // three slashes (curl accepts it)
      "https://",
      "https://s3cret.example:",   // empty port (curl accepts it)
      "https://s3cret.example:0",  // port 0 (curl accepts it)
      "https://s3cret.example:65536",
      "https://s3cret.example:-1",
      "https://s3cret.example:8x",
      "https://s3cr%65t.example",  // %-encoded host (curl decodes it)
      "https://[fe80::1%25eth0]",  // zone id
      "https://[::1",
      "https://[s3cret::1]",
      "https://[127.0.0.1]",
      "https://s3cret example",
      "https://s3cret.example/a b",
      "https://s3cret.example/\n",
      std::string("https://s3cret.example\0", 23),
  };
  for (const auto& text : bad) {
    INFO(text);
    Url u;
    std::string error;
    CHECK_FALSE(parse_url(text, u, error));
    CHECK_FALSE(error.empty());
    CHECK(error.find("s3cr") == std::string::npos);
  }
}

TEST_CASE("url: loopback hosts") {
  for (const char* host : {"localhost", "LocalHost", "::1", "127.0.0.1", "127.255.0.9"}) {
    INFO(host);
    CHECK(is_loopback_host(host));
  }
  for (const char* host : {"", "127.evil.example", "127.0.0.1.evil.example", "128.0.0.1", "127.0.0",
                           "127.0.0.256", "::2", "localhost.example", "0127.0.0.1"}) {
    INFO(host);
    CHECK_FALSE(is_loopback_host(host));
  }
}

TEST_CASE("url: origins from Origin and Referer headers") {
  CHECK(normalize_origin("https://shop.example/a b?c d#e") == "https://shop.example");
  CHECK(normalize_origin("https://shop.example:0443") == "https://shop.example");
  CHECK(normalize_origin("HTTP://SHOP.example:8080/") == "http://shop.example:8080");
  CHECK(normalize_origin("https://[0:0::1]") == "https://[::1]");
  CHECK(normalize_origin("https://:@shop.example").empty());
  CHECK(normalize_origin("https://shop_example").empty());
  CHECK(normalize_origin("https://sh%6fp.example").empty());
  CHECK(normalize_origin("https://shop.example:").empty());
  CHECK(normalize_origin("https://shop.example:443x").empty());
  CHECK(normalize_origin("https:/shop.example").empty());
  CHECK(normalize_origin("redis://shop.example").empty());
  CHECK(normalize_origin("https://caf\xc3\xa9.example").empty());
  CHECK(default_port("https") == 443);
  CHECK(default_port("http") == 80);
  CHECK(default_port("redis") == 0);
}
