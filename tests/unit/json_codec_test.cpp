// encode_string_object against nlohmann::json's own dump of the same object:
// the call body pvgate signs and sends must not change with the encoder.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "json_codec.h"

using pvgate::encode_string_object;
using Members = std::vector<std::pair<std::string, std::string>>;

namespace {

// encode_string_object over views of `members`, as the sign stage calls it.
std::string encode(const Members& members) {
  const std::vector<std::pair<std::string_view, std::string_view>> views(members.begin(),
                                                                         members.end());
  return encode_string_object(views);
}

std::string reference(const Members& members) {
  nlohmann::json o = nlohmann::json::object();
  for (const auto& [k, v] : members) o[k] = v;
  return o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

TEST_CASE("encode_string_object: a Pipwave call body, keys sorted, the signature among them") {
  const Members members{{"user_id", "u-1"},
                        {"action", "send-token"},
                        {"timestamp", "1700000000"},
                        {"contact_no", "198765432"},
                        {"signature", "da39a3ee5e6b4b0d3255bfef95601890afd80709"}};
  CHECK(encode(members) ==
        "{\"action\":\"send-token\",\"contact_no\":\"198765432\",\"signature\":"
        "\"da39a3ee5e6b4b0d3255bfef95601890afd80709\",\"timestamp\":\"1700000000\","
        "\"user_id\":\"u-1\"}");
  CHECK(encode(Members{}) == "{}");
  // A key given twice keeps its last value, as assignment into an object does.
  CHECK(encode(Members{{"b", "1"}, {"a", "x"}, {"b", "2"}}) == "{\"a\":\"x\",\"b\":\"2\"}");
}

TEST_CASE(
    "encode_string_object: escapes, controls, UTF-8 and invalid bytes as nlohmann writes them") {
  const Members special{{"q", "say \"hi\""},
                        {"bs", "a\\b"},
                        {"ctl", "\b\f\n\r\t\x01\x1f"},
                        {"del", "\x7f"},
                        {"utf8", "caf\xc3\xa9 \xe2\x82\xac"},
                        {"bad", "\xff\xc3(\xe2"},
                        {"\xc3\xa9key", "v"},
                        {"", ""}};
  CHECK(encode(special) == reference(special));

  // Random members over bytes that take every path: plain, escaped, UTF-8
  // lead and continuation bytes, invalid ones; keys from a small set so that
  // some repeat.
  const std::string alphabet = "aZ09 -_\"\\/\x01\x1f\x7f\x80\xbf\xc3\xa9\xe2\x82\xac\xf0\xff";
  std::mt19937 rng(20261201);
  for (int round = 0; round < 2000; ++round) {
    Members members;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      std::string key(1, "abcde"[rng() % 5]);
      if (rng() % 4 == 0) key += alphabet[rng() % alphabet.size()];
      std::string value;
      const int len = static_cast<int>(rng() % 12);
      for (int k = 0; k < len; ++k) value += alphabet[rng() % alphabet.size()];
      members.emplace_back(std::move(key), std::move(value));
    }
    INFO("round " << round);
    REQUIRE(encode(members) == reference(members));
  }
}
