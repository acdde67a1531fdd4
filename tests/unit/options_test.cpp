#include <catch2/catch.hpp>

#include "options.h"

using namespace pvgate;

TEST_CASE("options: config, socket, threads") {
  Options o;
  std::string err;
  REQUIRE(
      parse_options({"--config", "c.yaml", "--socket", "/run/p.sock", "--threads", "32"}, o, err));
  CHECK(o.config_path == "c.yaml");
  CHECK(o.socket == "/run/p.sock");
  CHECK(o.threads == 32);
  REQUIRE(parse_options({"--config=c.yaml", "--socket=127.0.0.1:9000"}, o, err));
  CHECK(o.socket == "127.0.0.1:9000");
  CHECK(o.threads == default_threads());
  CHECK(default_threads() >= 8);
}

TEST_CASE("options: errors") {
  Options o;
  std::string err;
  CHECK_FALSE(parse_options({}, o, err));
  CHECK(err.find("--config") != std::string::npos);
  CHECK_FALSE(parse_options({"--config"}, o, err));
  CHECK_FALSE(parse_options({"--config", "c", "--threads", "0"}, o, err));
  CHECK_FALSE(parse_options({"--config", "c", "--threads", "1025"}, o, err));
  CHECK(parse_options({"--config", "c", "--threads", "1024"}, o, err));
  CHECK_FALSE(parse_options({"--config", "c", "--threads", "x"}, o, err));
  CHECK_FALSE(parse_options({"--config", "c", "--bogus"}, o, err));
  CHECK(err.find("--bogus") != std::string::npos);
  CHECK_FALSE(parse_options({"--config", "c", "--socket-mode", "999"}, o, err));
}

TEST_CASE("options: help, version and check-config need no socket") {
  Options o;
  std::string err;
  REQUIRE(parse_options({"--help"}, o, err));
  CHECK(o.help);
  REQUIRE(parse_options({"--version"}, o, err));
  CHECK(o.version);
  REQUIRE(parse_options({"--check-config", "--config", "c"}, o, err));
  CHECK(o.check_config);
}
