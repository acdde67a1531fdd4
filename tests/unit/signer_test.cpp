// Known-answer vectors from shared/pipwave-api.md ("Worked examples").
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <string_view>

#include "signer.h"

using pvgate::pipwave_signature;
using pvgate::sha1_hex;

namespace {
std::map<std::string, std::string> send_token_fields() {
  return {{"action", "send-token"},
          {"timestamp", "1539677150"},
          {"api_key", "sdvdas23t3btg34bhb"},
          {"user_id", "505315"},
          {"contact_no_country_dialing_code", "60"},
          {"contact_no", "123456789"}};
}
}  // namespace

TEST_CASE("sha1_hex matches the FIPS 180 test vectors") {
  CHECK(sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
}

TEST_CASE("send-token signature matches the documented example") {
  CHECK(sha1_hex("action:send-tokenapi_key:sdvdas23t3btg34bhbapi_secret:my_api_secretcontact_no:"
                 "123456789contact_no_country_dialing_code:60timestamp:1539677150user_id:505315") ==
        "912383aba7d0d271e2e970c6405e309f1c023c74");
  CHECK(pipwave_signature(send_token_fields(), "my_api_secret") ==
        "912383aba7d0d271e2e970c6405e309f1c023c74");
}

TEST_CASE("verify-token-answer signature matches the documented example") {
  auto fields = send_token_fields();
  fields["action"] = "verify-token-answer";
  fields["reference"] = "164";
  fields["answer"] = "123456";
  CHECK(pipwave_signature(fields, "my_api_secret") == "5e60beeec7fd00fc4b50502fe0d953f1d6ed2c42");
}

TEST_CASE("the overload over sorted views (the sign stage's) gives the documented signatures") {
  const auto views = [](const std::map<std::string, std::string>& fields) {
    return pvgate::FieldViews(fields.begin(), fields.end());  // a map iterates in byte order
  };
  CHECK(pipwave_signature(views(send_token_fields()), "my_api_secret") ==
        "912383aba7d0d271e2e970c6405e309f1c023c74");
  auto fields = send_token_fields();
  fields["action"] = "verify-token-answer";
  fields["reference"] = "164";
  fields["answer"] = "123456";
  CHECK(pipwave_signature(views(fields), "my_api_secret") ==
        "5e60beeec7fd00fc4b50502fe0d953f1d6ed2c42");
  CHECK(pipwave_signature(pvgate::FieldViews{{"user_id", "u"}}, "s") ==
        sha1_hex("api_secret:suser_id:u"));
}

TEST_CASE("signature depends on the secret and on every field") {
  const auto base = pipwave_signature(send_token_fields(), "my_api_secret");
  CHECK(pipwave_signature(send_token_fields(), "other_secret") != base);
  auto changed = send_token_fields();
  changed["contact_no"] = "123456780";
  CHECK(pipwave_signature(changed, "my_api_secret") != base);
  auto without = send_token_fields();
  without.erase("contact_no");
  CHECK(pipwave_signature(without, "my_api_secret") != base);
}

TEST_CASE("the secret sorts into place even when it is the last key") {
  // Only keys before "api_secret": it must be appended at the end.
  const std::map<std::string, std::string> fields{{"action", "x"}, {"api_key", "k"}};
  CHECK(pipwave_signature(fields, "s") == sha1_hex("action:xapi_key:kapi_secret:s"));
  // Only keys after it: it comes first.
  const std::map<std::string, std::string> later{{"user_id", "u"}};
  CHECK(pipwave_signature(later, "s") == sha1_hex("api_secret:suser_id:u"));
}

namespace {
// Whether `needle` occurs anywhere in the bytes a string owns (up to its
// capacity, so also past its current size: what clear() leaves behind).
bool owned_bytes_hold(const std::string& s, std::string_view needle) {
  const char* begin = s.data();
  const char* end = begin + s.capacity();
  return std::search(begin, end, needle.begin(), needle.end()) != end;
}
}  // namespace

TEST_CASE("the inspection below sees what clear() leaves behind") {
  // Without this, the two wipe tests could pass for the wrong reason.
  std::string s = "S3cr3t-value-well-past-SSO";
  const char* before = s.data();
  s.clear();
  REQUIRE(s.data() == before);
  CHECK(owned_bytes_hold(s, "3cr3t-value"));  // clear() only wrote a NUL over the first byte
}

TEST_CASE("wipe overwrites every byte, not only the size") {
  std::string s(64, 'S');
  const char* before = s.data();
  pvgate::wipe(s);
  CHECK(s.empty());
  REQUIRE(s.data() == before);  // the same buffer, now inspected
  CHECK(std::all_of(s.data(), s.data() + 64, [](char c) { return c == '\0'; }));
}

TEST_CASE("the signature's scratch buffer holds no secret byte afterwards") {
  const std::string secret = "S3cr3t-0123456789-abcdef";
  std::string scratch;
  const std::string sig = pipwave_signature(send_token_fields(), secret, scratch);
  CHECK(sig == pipwave_signature(send_token_fields(), secret));  // the same answer
  CHECK(scratch.empty());
  CHECK(scratch.capacity() >= secret.size());  // the buffer that held the text
  CHECK_FALSE(owned_bytes_hold(scratch, secret));
  CHECK_FALSE(owned_bytes_hold(scratch, secret.substr(1)));
  CHECK_FALSE(owned_bytes_hold(scratch, "api_secret:"));
  // A caller's buffer with room to spare is used as it is and wiped whole.
  std::string roomy;
  roomy.reserve(4096);
  const char* before = roomy.data();
  pipwave_signature(send_token_fields(), secret, roomy);
  REQUIRE(roomy.data() == before);
  CHECK_FALSE(owned_bytes_hold(roomy, secret));
}
