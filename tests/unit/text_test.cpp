// The leaf text helpers (hex, base64, %-coding, UTF-8). Their users' behaviour is
// checked where it matters: the JSON reader against nlohmann (decode_test,
// fuzz_json), form decoding (decode_test), the signature (signer_test).
#include <catch2/catch.hpp>

#include <optional>
#include <string>

#include "text.h"

using namespace pvgate;

TEST_CASE("text: hex digits both ways") {
  for (int v = 0; v < 16; ++v) {
    CHECK(hex_value(hex_digit(static_cast<unsigned>(v))) == v);
  }
  CHECK(hex_value('A') == 10);
  CHECK(hex_value('F') == 15);
  for (const char c : {'g', 'G', '/', ':', '@', '`', ' ', '\0'}) CHECK(hex_value(c) == -1);
  CHECK(hex_digit(0xAB) == 'b');  // only the low nibble
  std::string out = "x";
  const unsigned char bytes[] = {0x00, 0x0f, 0xf0, 0xff, 0x5a};
  append_hex(out, bytes, sizeof bytes);
  CHECK(out == "x000ff0ff5a");
}

TEST_CASE("text: %-decoding, with and without the form rule for '+'") {
  std::string out;
  CHECK(percent_decode("a%2Bb+c%2f%00", out, true));
  CHECK(out == std::string("a+b c/\0", 7));
  CHECK(percent_decode("a+b%41", out, false));
  CHECK(out == "a+bA");
  for (const char* bad : {"%", "%4", "a%zz", "%g0", "%%41"}) {
    INFO(bad);
    CHECK_FALSE(percent_decode(bad, out, false));
  }
}

TEST_CASE("text: %-encoding keeps only RFC 3986's unreserved bytes and round-trips") {
  std::string out = "x=";
  append_percent_encoded(out, "AZaz09-._~");
  CHECK(out == "x=AZaz09-._~");
  out.clear();
  append_percent_encoded(out, "a+b&c=d%e f/?#\"\x7f");
  CHECK(out == "a%2Bb%26c%3Dd%25e%20f%2F%3F%23%22%7F");
  out.clear();
  append_percent_encoded(out, "\xC3\xA9\xFF");  // UTF-8 e-acute, then a byte that is no UTF-8
  CHECK(out == "%C3%A9%FF");
  // Every byte value, both decoding rules.
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  out.clear();
  append_percent_encoded(out, all);
  CHECK(out.find_first_not_of(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%") ==
        std::string::npos);
  std::string back;
  CHECK(percent_decode(out, back, true));
  CHECK(back == all);
  CHECK(percent_decode(out, back, false));
  CHECK(back == all);
}

TEST_CASE("text: UTF-8 sequences by RFC 3629's table") {
  struct Case {
    std::string bytes;
    std::size_t length;
  };
  const Case cases[] = {
      {"a", 0},
      {"\xc2\x80", 2},
      {"\xc1\xbf", 0},  // overlong
      {"\xdf\xbf", 2},
      {"\xe0\xa0\x80", 3},
      {"\xe0\x9f\xbf", 0},  // overlong
      {"\xed\x9f\xbf", 3},
      {"\xed\xa0\x80", 0},  // surrogate
      {"\xef\xbf\xbd", 3},
      {"\xf0\x90\x80\x80", 4},
      {"\xf0\x8f\xbf\xbf", 0},  // overlong
      {"\xf4\x8f\xbf\xbf", 4},
      {"\xf4\x90\x80\x80", 0},  // past U+10FFFF
      {"\xf5\x80\x80\x80", 0},
      {"\x80", 0},
      {"\xe2\x82", 0},  // truncated
      {"\xe2\x82\x41", 0},
  };
  for (const auto& c : cases) {
    INFO(c.bytes);
    CHECK(utf8_sequence_length(c.bytes, 0) == c.length);
  }
  CHECK(utf8_sequence_length("x\xc3\xa9", 1) == 2);
  CHECK(utf8_sequence_length("x", 5) == 0);  // past the end

  for (const std::uint32_t cp : {0x41u, 0x7FFu, 0x800u, 0xFFFDu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    append_utf8(s, cp);
    INFO(cp);
    CHECK(s.size() == (cp < 0x80 ? 1u : cp < 0x800 ? 2u : cp < 0x10000 ? 3u : 4u));
    if (cp >= 0x80) CHECK(utf8_sequence_length(s, 0) == s.size());
  }
  std::string euro;
  append_utf8(euro, 0x20AC);
  CHECK(euro == "\xe2\x82\xac");
}

TEST_CASE("text: cutting never splits a UTF-8 sequence") {
  const std::string s = "ab\xe2\x82\xac";  // "ab€"
  CHECK(utf8_cut(s, 10) == s.size());
  CHECK(utf8_cut(s, 5) == 5);
  CHECK(utf8_cut(s, 4) == 2);
  CHECK(utf8_cut(s, 3) == 2);
  CHECK(utf8_cut(s, 2) == 2);
  CHECK(utf8_cut("\x80\x80", 1) == 0);
  CHECK(ascii_lower("AbC-\xc3\x89") == "abc-\xc3\x89");
}

TEST_CASE("text: base64 encodes RFC 4648's test vectors with padding") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  // The two characters that differ from base64url.
  CHECK(base64_encode("\xfb\xff\xbf") == "+/+/");
  // What btoa('{"a":1}') gives.
  CHECK(base64_encode(R"({"a":1})") == "eyJhIjoxfQ==");
}

TEST_CASE("text: base64 decoding inverts encoding for every byte and length up to 300") {
  std::string bytes;
  for (int n = 0; n <= 300; ++n) {
    const std::string enc = base64_encode(bytes);
    CHECK(enc.size() % 4 == 0);
    CHECK(base64_decode(enc) == std::optional<std::string>(bytes));
    bytes.push_back(static_cast<char>((n * 37 + 11) & 0xFF));
  }
  CHECK(base64_decode("Zm9vYmE=") == std::optional<std::string>("fooba"));
  CHECK(base64_decode("+/+/") == std::optional<std::string>("\xfb\xff\xbf"));
}

TEST_CASE("text: base64 decoding is strict") {
  for (const char* bad : {
           "Zg",        // padding left out
           "Zg=",       // short of it
           "Zg===",     // one too many
           "Zm9v====",  // a group of padding alone
           "====",
           "Zm8==",  // 5 characters
           "Z===",   // one character carries no byte
           "Zm=v",   // '=' inside
           "=Zm9",
           "Zh==",    // unused bits not zero ('h' leaves 0001)
           "Zm9=",    // unused bits not zero ('9' leaves 01)
           "-_-_",    // base64url's alphabet
           "Zm9v\n",  // whitespace
           " Zm9v",
           "Zm 9v",
           "Zm9v!A==",
       }) {
    INFO(bad);
    CHECK_FALSE(base64_decode(bad));
  }
  CHECK_FALSE(base64_decode(std::string("Zm\0v", 4)));
  CHECK(base64_decode("") == std::optional<std::string>(""));
}
