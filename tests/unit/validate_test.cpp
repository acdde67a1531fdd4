#include <catch2/catch.hpp>

#include "validate.h"

using namespace pvgate;

TEST_CASE("user_id rule: 1-32 of [A-Za-z0-9._@-]") {
  for (const char* good :
       {"a", "505315", "user.name_1@shop-a", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"}) {
    INFO(good);
    CHECK(valid_user_id(good));
  }
  for (const char* bad : {"", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "a b", "a:b", "a/b", "a+b",
                          "\xd9\xa1", "a\nb", "a%20"}) {
    INFO(bad);
    CHECK_FALSE(valid_user_id(bad));
  }
}

TEST_CASE("dialing code rule: 1-5 ASCII digits") {
  for (const char* good : {"1", "60", "65", "12345"}) CHECK(valid_dialing_code(good));
  for (const char* bad :
       {"", "+60", "123456", "6a", " 60", "\xd9\xa6\xd9\xa0" /* Arabic-Indic 60 */,
        "\xef\xbc\x96\xef\xbc\x90" /* fullwidth 60 */}) {
    INFO(bad);
    CHECK_FALSE(valid_dialing_code(bad));
  }
}

TEST_CASE("contact_no rule: 1-32 ASCII digits") {
  CHECK(valid_contact_no("1"));
  CHECK(valid_contact_no("123456789"));
  CHECK(valid_contact_no(std::string(32, '9')));
  CHECK_FALSE(valid_contact_no(std::string(33, '9')));
  for (const char* bad : {"", "12-34", "12 34", "+123", "0x12", "1e5", "１２３"}) {
    INFO(bad);
    CHECK_FALSE(valid_contact_no(bad));
  }
}

TEST_CASE("reference rule: positive integer, at most 18 digits") {
  CHECK(valid_reference("1"));
  CHECK(valid_reference("164"));
  CHECK(valid_reference(std::string(18, '9')));
  CHECK_FALSE(valid_reference(std::string(19, '9')));
  for (const char* bad : {"", "0", "007", "-1", "1.5", "abc", " 1"}) {
    INFO(bad);
    CHECK_FALSE(valid_reference(bad));
  }
}

TEST_CASE("answer rule: 1-6 letters or digits") {
  for (const char* good : {"1", "123456", "AbC123"}) CHECK(valid_answer(good));
  for (const char* bad : {"", "1234567", "12 34", "12-34", "ab:c"}) {
    INFO(bad);
    CHECK_FALSE(valid_answer(bad));
  }
}

TEST_CASE("validate_fields accepts a complete send-token and verify-token-answer") {
  ClientFields out;
  FieldList send{
      {"user_id", "u1"}, {"contact_no_country_dialing_code", "60"}, {"contact_no", "123"}};
  CHECK_FALSE(validate_fields(Action::send_token, send, out));
  CHECK(out.user_id == "u1");
  CHECK(out.dialing_code == "60");
  REQUIRE(out.contact_no);
  CHECK(*out.contact_no == "123");
  CHECK_FALSE(out.reference);

  FieldList verify = send;
  verify.emplace_back("reference", "164");
  verify.emplace_back("answer", "123456");
  CHECK_FALSE(validate_fields(Action::verify_token_answer, verify, out));
  REQUIRE(out.reference);
  CHECK(*out.reference == "164");
  CHECK(*out.answer == "123456");
}

TEST_CASE("contact_no is optional; empty means absent") {
  ClientFields out;
  FieldList no_phone{{"user_id", "u1"}, {"contact_no_country_dialing_code", "60"}};
  CHECK_FALSE(validate_fields(Action::send_token, no_phone, out));
  CHECK_FALSE(out.contact_no);
  no_phone.emplace_back("contact_no", "");
  CHECK_FALSE(validate_fields(Action::send_token, no_phone, out));
  CHECK_FALSE(out.contact_no);
}

TEST_CASE("validate_fields rejects with a message naming the field") {
  struct Case {
    Action action;
    FieldList fields;
    std::string field;
  };
  const FieldList ok{{"user_id", "u1"}, {"contact_no_country_dialing_code", "60"}};
  auto with = [&](std::pair<std::string, std::string> extra) {
    FieldList f = ok;
    f.push_back(std::move(extra));
    return f;
  };
  const std::vector<Case> cases = {
      {Action::send_token, {{"contact_no_country_dialing_code", "60"}}, "user_id"},
      {Action::send_token, {{"user_id", "u1"}}, "contact_no_country_dialing_code"},
      {Action::send_token, with({"user_id", "u2"}), "user_id"},
      {Action::send_token, with({"nickname", "x"}), "nickname"},
      {Action::send_token, with({"api_key", "k"}), "api_key"},
      {Action::send_token, with({"api_secret", "s"}), "api_secret"},
      {Action::send_token, with({"signature", "s"}), "signature"},
      {Action::send_token, with({"timestamp", "1"}), "timestamp"},
      {Action::send_token, with({"action", "send-token"}), "action"},
      {Action::send_token, with({"reference", "1"}), "reference"},  // verify-only field
      {Action::send_token, with({"contact_no", "12a"}), "contact_no"},
      {Action::verify_token_answer, with({"answer", "123456"}), "reference"},
      {Action::verify_token_answer, with({"reference", "1"}), "answer"},
      {Action::send_token,
       {{"user_id", "bad id"}, {"contact_no_country_dialing_code", "60"}},
       "user_id"},
      {Action::send_token,
       {{"user_id", "u"}, {"contact_no_country_dialing_code", "+60"}},
       "contact_no_country_dialing_code"},
  };
  for (const auto& c : cases) {
    ClientFields out;
    const auto error = validate_fields(c.action, c.fields, out);
    INFO("expected field " << c.field);
    REQUIRE(error);
    CHECK(error->field == c.field);
    CHECK(error->message.find(c.field) != std::string::npos);
  }
}

TEST_CASE("routes map to actions") {
  CHECK(action_from_route("send-token") == Action::send_token);
  CHECK(action_from_route("verify-token-answer") == Action::verify_token_answer);
  CHECK_FALSE(action_from_route("send-token/"));
  CHECK_FALSE(action_from_route("Send-Token"));
  CHECK_FALSE(action_from_route(""));
}
