#include <catch2/catch.hpp>

#include <random>

#include "../json_sax_reference.h"
#include "../upstream_reply_reference.h"
#include "form.h"
#include "json_codec.h"
#include "log.h"

#include <nlohmann/json.hpp>

using namespace pvgate;

TEST_CASE("form decoding: pairs, plus, escapes, empty segments") {
  FieldList f;
  REQUIRE_FALSE(decode_form("user_id=a%40b&contact_no=12+3&&flag&x=", f));
  REQUIRE(f.size() == 4);
  CHECK(f[0] == std::make_pair(std::string("user_id"), std::string("a@b")));
  CHECK(f[1].second == "12 3");
  CHECK(f[2] == std::make_pair(std::string("flag"), std::string()));
  CHECK(f[3] == std::make_pair(std::string("x"), std::string()));
}

TEST_CASE("form decoding keeps duplicates for validation to reject") {
  FieldList f;
  REQUIRE_FALSE(decode_form("a=1&a=2", f));
  CHECK(f.size() == 2);
}

TEST_CASE("form decoding rejects bad percent-encoding, naming the field") {
  for (const char* bad : {"a=%", "a=%4", "a=%zz", "a=%4g", "a=1&b=%%"}) {
    FieldList f;
    INFO(bad);
    const auto e = decode_form(bad, f);
    REQUIRE(e);
    CHECK(e->kind == DecodeErrorKind::malformed);
    CHECK_FALSE(e->field.empty());
  }
  FieldList f;
  const auto e = decode_form("%zz=1", f);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::malformed);
}

TEST_CASE("form decoding: field count limit at and past kMaxFields") {
  std::string at, past;
  for (std::size_t i = 0; i < kMaxFields; ++i) at += "f" + std::to_string(i) + "=1&";
  past = at + "extra=1";
  FieldList f;
  CHECK_FALSE(decode_form(at, f));
  CHECK(f.size() == kMaxFields);
  FieldList g;
  const auto e = decode_form(past, g);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::too_many_fields);
}

TEST_CASE("form decoding: name and value length limits") {
  FieldList f;
  CHECK_FALSE(decode_form(std::string(kMaxFieldNameBytes, 'n') + "=1", f));
  auto e = decode_form(std::string(kMaxFieldNameBytes + 1, 'n') + "=1", f);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::name_too_long);
  CHECK_FALSE(decode_form("v=" + std::string(kMaxFieldValueBytes, 'v'), f));
  e = decode_form("v=" + std::string(kMaxFieldValueBytes + 1, 'v'), f);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::value_too_long);
  CHECK(e->field == "v");
}

TEST_CASE("json decoding: flat object of strings and non-negative integers") {
  FieldList f;
  REQUIRE_FALSE(
      decode_json_fields(R"( {"user_id":"u1","reference":164,"big":18446744073709551615} )", f));
  REQUIRE(f.size() == 3);
  CHECK(f[0].second == "u1");
  CHECK(f[1].second == "164");
  CHECK(f[2].second == "18446744073709551615");
}

TEST_CASE("json decoding keeps duplicate keys") {
  FieldList f;
  REQUIRE_FALSE(decode_json_fields(R"({"a":"1","a":"2"})", f));
  CHECK(f.size() == 2);
}

TEST_CASE("json decoding rejects what is not a flat object") {
  struct Case {
    const char* body;
    DecodeErrorKind kind;
    const char* field;
  };
  const Case cases[] = {
      {"", DecodeErrorKind::malformed, ""},
      {"{", DecodeErrorKind::malformed, ""},
      {"{\"a\":\"1\"} x", DecodeErrorKind::malformed, ""},
      {"{\"a\":\"1\"}{}", DecodeErrorKind::malformed, ""},
      {"[1,2]", DecodeErrorKind::not_object, ""},
      {"\"str\"", DecodeErrorKind::not_object, ""},
      {"42", DecodeErrorKind::not_object, ""},
      {"null", DecodeErrorKind::not_object, ""},
      {"{\"a\":{\"b\":1}}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":[1]}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":true}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":null}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":1.5}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":-1}", DecodeErrorKind::bad_value_type, "a"},
      {"{\"a\":\"\xff\"}", DecodeErrorKind::malformed, ""},  // invalid UTF-8
      {"{\"a\":\"x\\u0000y\"", DecodeErrorKind::malformed, ""},
  };
  for (const auto& c : cases) {
    FieldList f;
    INFO(c.body);
    const auto e = decode_json_fields(c.body, f);
    REQUIRE(e);
    CHECK(e->kind == c.kind);
    CHECK(e->field == c.field);
  }
}

TEST_CASE("json decoding decides exactly as nlohmann's strict SAX parser") {
  // Corners of RFC 8259 and of the flat-object contract; the fuzz target
  // checks the same agreement on arbitrary input.
  const std::string limit_value(kMaxFieldValueBytes, 'v');
  const std::string cases[] = {
      "",
      " ",
      "{}",
      " {} ",
      "{ }",
      "{}x",
      "{} {}",
      "\xEF\xBB\xBF{}",
      "\xEF\xBB{}",
      "\xEF{}",
      "{\"a\":1}",
      "{\"a\":0}",
      "{\"a\":-0}",
      "{\"a\":-00}",
      "{\"a\":01}",
      "{\"a\":-}",
      "{\"a\":1.}",
      "{\"a\":.5}",
      "{\"a\":1e5}",
      "{\"a\":1E+5}",
      "{\"a\":1e}",
      "{\"a\":-1.5}",
      "{\"a\":18446744073709551615}",
      "{\"a\":18446744073709551616}",
      "{\"a\":-9223372036854775808}",
      "{\"a\":1e400}",
      "{\"a\":-1e400}",
      "1e400",
      "-1e400",
      "1e-400",
      "{\"a\":" + std::string(400, '9') + "}",
      "{\"a\":-" + std::string(400, '9') + "}",
      "4467441.04407371e309551615\xc0\xc0",
      "{\"a\":-9223372036854775809}",
      "{\"a\":1x}",
      "{\"a\":truex}",
      "{\"a\":tru}",
      "{\"a\":nul}",
      "{\"a\":false}",
      "{\"a\":[}",
      "{\"a\":{",
      "{\"a\" 1}",
      "{\"a\":}",
      "{\"a\":1,}",
      "{,}",
      "{\"a\":1 \"b\":2}",
      "{a:1}",
      "{'a':'b'}",
      "{\"a\":\"\\u00e9\\u20AC\\ud83d\\ude00\"}",
      "{\"a\":\"\\ud83d\"}",
      "{\"a\":\"\\ude00\"}",
      "{\"a\":\"\\ud83d\\u0041\"}",
      "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\u0000\"}",
      "{\"a\":\"\\x\"}",
      "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
      "{\"a\":\"tab\there\"}",
      "{\"a\":\"\x7f\"}",
      "{\"a\":\"\xc3\xa9\"}",
      "{\"a\":\"\xc0\x80\"}",
      "{\"a\":\"\xe0\x80\x80\"}",
      "{\"a\":\"\xed\xa0\x80\"}",
      "{\"a\":\"\xf4\x90\x80\x80\"}",
      "{\"a\":\"\xf0\x9f\x98\x80\"}",
      "{\"a\":\"\xe2\x82\"}",
      "{\"a\":\"unterminated}",
      "{\"\":\"empty key\"}",
      "\"top\"",
      "\"top",
      "7",
      "-7",
      "1.5",
      "true",
      "nul",
      "[",
      "]",
      "}",
      "{\"a\":1}}",
      "{\"v\":\"" + limit_value + "\"}",
      "{\"v\":\"" + limit_value + "v\"}",
      "{\"" + std::string(kMaxFieldNameBytes + 1, 'n') + "\":[",
      "{\"a\":\"1\",\"a\":\"2\"}",
      "{\r\n\t\"user_id\" :\t\"u\" ,\n\"contact_no\":123456789\r\n}",
  };
  for (const std::string& body : cases) {
    INFO(body);
    FieldList got;
    FieldList want;
    const auto e = decode_json_fields(body, got);
    const auto r = pvgate_test::reference_decode_json_fields(body, want);
    REQUIRE(e.has_value() == r.has_value());
    if (e) {
      CHECK(e->kind == r->kind);
      CHECK(e->field == r->field);
    } else {
      CHECK(got == want);
    }
  }
}

TEST_CASE("json decoding: limits at and past") {
  std::string at = "{";
  for (std::size_t i = 0; i < kMaxFields; ++i) at += "\"f" + std::to_string(i) + "\":\"1\",";
  std::string past = at + "\"extra\":\"1\"}";
  at.back() = '}';
  FieldList f;
  CHECK_FALSE(decode_json_fields(at, f));
  FieldList g;
  auto e = decode_json_fields(past, g);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::too_many_fields);

  FieldList h;
  e = decode_json_fields("{\"v\":\"" + std::string(kMaxFieldValueBytes + 1, 'v') + "\"}", h);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::value_too_long);
  FieldList k;
  e = decode_json_fields("{\"" + std::string(kMaxFieldNameBytes + 1, 'n') + "\":\"1\"}", k);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::name_too_long);
}

TEST_CASE("deeply nested JSON is rejected without recursion trouble") {
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  FieldList f;
  const auto e = decode_json_fields(deep, f);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::bad_value_type);
}

TEST_CASE("upstream reply parsing keeps only the four members") {
  std::string why;
  auto r = parse_upstream_reply(
      R"({"status":200,"message":"Token sent.","reference":1001,"internal_cost":"0.05"})", why);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(*r->message == "Token sent.");
  CHECK(*r->reference == 1001);
  CHECK_FALSE(r->seconds_till_resend);

  r = parse_upstream_reply(R"({"status":"5002","seconds_till_resend":"42"})", why);
  REQUIRE(r);
  CHECK(r->status == 5002);
  CHECK(*r->seconds_till_resend == 42);
  CHECK_FALSE(r->message);
}

TEST_CASE("upstream reply parsing rejects what is not an answer") {
  for (const char* bad :
       {"", "not json{", "[1,2,3]", "{}", R"({"status":"abc"})", R"({"status":123456})",
        R"({"status":null})", R"({"status":1.5})", "<html>502</html>"}) {
    std::string why;
    INFO(bad);
    CHECK_FALSE(parse_upstream_reply(bad, why));
    CHECK_FALSE(why.empty());
  }
}

namespace {

// parse_upstream_reply and the former DOM reader give the same answer or the
// same error for `body`.
void check_same_reply(const std::string& body) {
  INFO(body);
  std::string why;
  std::string reference_why;
  const auto got = parse_upstream_reply(body, why);
  const auto want = pvgate_test::reference_upstream_reply(body, reference_why);
  REQUIRE(got.has_value() == want.has_value());
  if (!got) {
    CHECK(why == reference_why);
    return;
  }
  CHECK(got->status == want->status);
  CHECK(got->message == want->message);
  CHECK(got->reference == want->reference);
  CHECK(got->seconds_till_resend == want->seconds_till_resend);
}

}  // namespace

TEST_CASE("upstream reply parsing agrees with the former DOM reader, member for member") {
  for (const char* body : {
           R"({"status":200,"message":"Token sent.","reference":1001})",
           R"({"status":"200","reference":"77","seconds_till_resend":"5"})",
           R"({"status":1,"status":2})",      // the last one counts
           R"({"status":200,"status":[1]})",  // even when it is not a number
           R"({"status":[200]})",
           R"({"status":{"status":200}})",
           R"({"x":{"status":1},"status":3})",  // a nested member is not the top one
           R"({"status":200,"message":7,"reference":true,"seconds_till_resend":null})",
           R"({"status":200,"message":"a\u00e9\n\"b","reference":-5})",
           R"({"status":200,"reference":18446744073709551615})",  // unsigned past int64
           R"({"status":200,"reference":1e3,"seconds_till_resend":2.0})",
           R"({"status":"0123","reference":"123456789012345678"})",
           R"({"status":"","reference":"1234567890123456789"})",
           R"({"status":200} )",
           R"({"status":200} x)",
           R"([{"status":200}])",
           R"("status")",
           "200",
           "null",
           "{",
           "{\"status\":200",
           "{\"message\":\"\xff\"}",
           "{\"status\":200,\"message\":\"\xc3\xa9\"}",
           R"({"a":[[[{"status":1}]]],"status":9})",
       }) {
    check_same_reply(body);
  }
  // Random answers from pieces of the four members, nesting and junk.
  const std::vector<std::string> keys = {"\"status\"", "\"message\"", "\"reference\"",
                                         "\"seconds_till_resend\"", "\"other\""};
  const std::vector<std::string> values = {"200",
                                           "\"200\"",
                                           "-1",
                                           "99999",
                                           "100000",
                                           "1.5",
                                           "\"12a\"",
                                           "\"\"",
                                           "null",
                                           "true",
                                           "\"Token sent.\"",
                                           "[]",
                                           "[1,\"x\"]",
                                           "{}",
                                           "{\"status\":5}",
                                           "18446744073709551615",
                                           "\"\\u0041\""};
  std::mt19937 rng(161);
  for (int round = 0; round < 3000; ++round) {
    std::string body = "{";
    const int n = static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      if (i > 0) body += ',';
      body += keys[rng() % keys.size()] + ":" + values[rng() % values.size()];
    }
    body += '}';
    if (rng() % 10 == 0) body.insert(rng() % body.size(), 1, "[]{},:\"x "[rng() % 9]);
    check_same_reply(body);
  }
}

TEST_CASE("client reply encoding") {
  CHECK(encode_client_reply(200, "ok", 7, std::nullopt) ==
        R"({"message":"ok","reference":7,"status":200})");
  CHECK(encode_client_reply(5002, "wait", std::nullopt, 30) ==
        R"({"message":"wait","seconds_till_resend":30,"status":5002})");
  // Invalid UTF-8 is replaced, never thrown on.
  const std::string out = encode_client_reply(400, "bad \xff byte", std::nullopt, std::nullopt);
  CHECK(out.find("\xef\xbf\xbd") != std::string::npos);
}

TEST_CASE("a NUL byte anywhere makes a JSON body malformed, whatever follows it") {
  FieldList f;
  const std::string body =
      std::string(R"({"user_id":"u","contact_no_country_dialing_code":"60"})") + '\0' +
      R"( trailing {"api_key":)";
  const auto e = decode_json_fields(body, f);
  REQUIRE(e);
  CHECK(e->kind == DecodeErrorKind::malformed);
  std::string why;
  CHECK_FALSE(parse_upstream_reply(std::string(R"({"status":200})") + '\0' + "x", why));
}

TEST_CASE("log records are valid JSON whatever their text holds") {
  Logger log(-1);
  log.set_json(true);
  LogLine record(log, LogLevel::info);
  record.message(std::string("quote \" backslash \\ newline \n tab \t nul ") + '\0' + " esc \x1b")
      .text("utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")
      .text("bad",
            "a\xff"
            "b\xc3"
            "c\xed\xa0\x80"
            "d\xc0\xaf")
      .number("n", -42);
  const std::string line = record.line();
  CHECK(line.find('\n') == std::string::npos);
  const auto doc = nlohmann::json::parse(line);  // throws if not valid JSON / UTF-8
  CHECK(doc["msg"].get<std::string>().find("quote \" backslash \\ newline \n") == 0);
  CHECK(doc["utf8"] == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  CHECK(doc["bad"] ==
        "a\xef\xbf\xbd"
        "b\xef\xbf\xbd"
        "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
        "d\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(doc["n"] == -42);
  CHECK(line.find("\"level\":\"info\",\"msg\":") != std::string::npos);  // in the caller's order
}
