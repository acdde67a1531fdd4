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

TEST_CASE("options: short forms, and errors that name the option") {
  Options o;
  std::string err;
  REQUIRE(parse_options({"-c", "c.yaml"}, o, err));
  CHECK(o.config_path == "c.yaml");
  REQUIRE(parse_options({"-hcc.yaml"}, o, err));  // a group of short options
  CHECK(o.help);
  CHECK(o.config_path == "c.yaml");

  CHECK_FALSE(parse_options({"--config", "c", "--threads"}, o, err));
  CHECK(err == "--threads needs a value");
  CHECK_FALSE(parse_options({"-c"}, o, err));
  CHECK(err == "--config needs a value");
  CHECK_FALSE(parse_options({"--config", "c", "--bogus=1"}, o, err));
  CHECK(err == "unknown or ambiguous option '--bogus'");
  CHECK_FALSE(parse_options({"--config", "c", "-x"}, o, err));
  CHECK(err == "unknown or ambiguous option '-x'");
  CHECK_FALSE(parse_options({"--config", "c", "--help=yes"}, o, err));
  CHECK(err == "--help takes no value");
  CHECK_FALSE(parse_options({"--config", "c", "stray"}, o, err));
  CHECK(err == "unknown option 'stray'");
  CHECK_FALSE(parse_options({"--config", "c", "--socket="}, o, err));
  CHECK(err.find("--socket") != std::string::npos);
  CHECK_FALSE(parse_options({"--config", "c", "--socket-mode", "0660x"}, o, err));
  CHECK(err.find("--socket-mode") != std::string::npos);
}

TEST_CASE("options: getopt's global state is reset on every call") {
  Options o;
  std::string err;
  // Fails in the middle of a group of short options ("-h" read, "-x" not):
  // the next call must not resume inside that group or after its index.
  CHECK_FALSE(parse_options({"-hx", "--config", "a"}, o, err));
  REQUIRE(parse_options({"--config", "b", "--threads", "3"}, o, err));
  CHECK(o.config_path == "b");
  CHECK(o.threads == 3);
  CHECK_FALSE(o.help);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(parse_options({"--threads=2", "-c", "c" + std::to_string(i)}, o, err));
    CHECK(o.config_path == "c" + std::to_string(i));
    CHECK(o.threads == 2);
  }
}
