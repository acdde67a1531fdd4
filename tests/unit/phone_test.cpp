// parse_phone() against libphonenumber's metadata (Debian bookworm: 8.12.57). The valid numbers
// started as GetExampleNumberForType's examples per region and type, then were hard-coded here,
// so a metadata update that reclassifies one of them fails a test instead of passing silently.
#include <catch2/catch.hpp>

#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "phone.h"

using namespace pvgate;

namespace {

struct Valid {
  const char* code;
  const char* number;
  const char* e164;
  int country_code;
  const char* national;
  const char* region;
  PhoneType type;
};

struct Refused {
  std::string code;
  std::string number;
  PhoneError why;
};

}  // namespace

TEST_CASE("parse_phone: valid numbers of several regions, exact fields") {
  const Valid cases[] = {
      // Malaysia: mobile (019, 9-digit NSN; 011, 10-digit NSN), Kuala Lumpur fixed line.
      {"60", "198765432", "+60198765432", 60, "198765432", "MY", PhoneType::mobile},
      {"60", "1123456789", "+601123456789", 60, "1123456789", "MY", PhoneType::mobile},
      {"60", "323856789", "+60323856789", 60, "323856789", "MY", PhoneType::fixed_line},
      // Singapore has no trunk prefix.
      {"65", "81234567", "+6581234567", 65, "81234567", "SG", PhoneType::mobile},
      {"65", "61234567", "+6561234567", 65, "61234567", "SG", PhoneType::fixed_line},
      // United Kingdom.
      {"44", "7400123456", "+447400123456", 44, "7400123456", "GB", PhoneType::mobile},
      {"44", "1212345678", "+441212345678", 44, "1212345678", "GB", PhoneType::fixed_line},
      // United States: the North American plan cannot tell mobiles from fixed lines.
      {"1", "2015550123", "+12015550123", 1, "2015550123", "US", PhoneType::fixed_line_or_mobile},
      // Jamaica shares +1; 876 makes it JM, and JM's metadata does tell mobiles apart.
      {"1", "8762101234", "+18762101234", 1, "8762101234", "JM", PhoneType::mobile},
      {"1", "8765230123", "+18765230123", 1, "8765230123", "JM", PhoneType::fixed_line_or_mobile},
      // India.
      {"91", "8123456789", "+918123456789", 91, "8123456789", "IN", PhoneType::mobile},
      // Australia and Germany.
      {"61", "412345678", "+61412345678", 61, "412345678", "AU", PhoneType::mobile},
      {"49", "15123456789", "+4915123456789", 49, "15123456789", "DE", PhoneType::mobile},
      // 15 digits in all: E.164's maximum.
      {"49", "8001234567890", "+498001234567890", 49, "8001234567890", "DE", PhoneType::toll_free},
      // Italy's fixed lines keep their leading 0 in the national significant number.
      {"39", "0612345678", "+390612345678", 39, "0612345678", "IT", PhoneType::fixed_line},
      // Non-geographic: UIFN freephone +800 belongs to region "001".
      {"800", "12345678", "+80012345678", 800, "12345678", "001", PhoneType::toll_free},
  };
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    PhoneError why = PhoneError::too_long;
    const auto p = parse_phone(c.code, c.number, why);
    REQUIRE(p);
    CHECK(why == PhoneError::none);
    CHECK(p->e164 == c.e164);
    CHECK(p->country_code == c.country_code);
    CHECK(p->national_number == c.national);
    CHECK(p->region == c.region);
    CHECK(phone_type_name(p->type) == phone_type_name(c.type));
  }
}

TEST_CASE("parse_phone: a trunk prefix is dropped") {
  const Valid cases[] = {
      {"60", "0198765432", "+60198765432", 60, "198765432", "MY", PhoneType::mobile},
      {"44", "07400123456", "+447400123456", 44, "7400123456", "GB", PhoneType::mobile},
      {"91", "08123456789", "+918123456789", 91, "8123456789", "IN", PhoneType::mobile},
      {"61", "0412345678", "+61412345678", 61, "412345678", "AU", PhoneType::mobile},
      {"49", "015123456789", "+4915123456789", 49, "15123456789", "DE", PhoneType::mobile},
      // North America's trunk prefix is 1.
      {"1", "18762101234", "+18762101234", 1, "8762101234", "JM", PhoneType::mobile},
      {"1", "12015550123", "+12015550123", 1, "2015550123", "US", PhoneType::fixed_line_or_mobile},
  };
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(c.code, c.number, why);
    REQUIRE(p);
    CHECK(p->e164 == c.e164);
    CHECK(p->country_code == c.country_code);
    CHECK(p->national_number == c.national);
    CHECK(p->region == c.region);
    CHECK(phone_type_name(p->type) == phone_type_name(c.type));
  }
}

TEST_CASE("parse_phone: every spelling of one Malaysian handset gives one E.164") {
  const std::pair<const char*, const char*> spellings[] = {
      {"60", "198765432"},      // as it should be
      {"60", "0198765432"},     // trunk prefix
      {"601", "98765432"},      // split in the wrong place
      {"060", "198765432"},     // IDD habit in the code
      {"0060", "198765432"},    // full IDD in the code
      {"60", "60198765432"},    // country code repeated
      {"0060", "0198765432"},   // IDD and trunk prefix together
      {"60", "0060198765432"},  // IDD and country code in the number
      {"6", "0198765432"},      // split before the code's last digit
  };
  for (const auto& [code, number] : spellings) {
    INFO(code << " + " << number);
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(code, number, why);
    REQUIRE(p);
    CHECK(why == PhoneError::none);
    CHECK(p->e164 == "+60198765432");
    CHECK(p->national_number == "198765432");
    CHECK(p->region == "MY");
  }
}

TEST_CASE("parse_phone: the other spellings work for other countries too") {
  const std::pair<const char*, const char*> gb[] = {
      {"44", "7400123456"}, {"44", "07400123456"},  {"0044", "7400123456"},
      {"447", "400123456"}, {"44", "447400123456"}, {"044", "07400123456"},
  };
  for (const auto& [code, number] : gb) {
    INFO(code << " + " << number);
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(code, number, why);
    REQUIRE(p);
    CHECK(why == PhoneError::none);
    CHECK(p->e164 == "+447400123456");
  }
  // "1876" is how Jamaicans often write their code.
  PhoneError why = PhoneError::none;
  const auto jm = parse_phone("1876", "2101234", why);
  REQUIRE(jm);
  CHECK(jm->e164 == "+18762101234");
  CHECK(jm->region == "JM");
}

TEST_CASE("parse_phone: the number's type comes from the metadata") {
  struct TypeCase {
    const char* code;
    const char* number;
    const char* e164;
    PhoneType type;
    const char* region;
  };
  const TypeCase cases[] = {
      // GB 09: premium rate (+44 909 879 0000), what SMS pumping wants.
      {"44", "9098790000", "+449098790000", PhoneType::premium_rate, "GB"},
      {"44", "09098790000", "+449098790000", PhoneType::premium_rate, "GB"},
      // GB 070: personal numbers (forwarding, expensive to call).
      {"44", "7012345678", "+447012345678", PhoneType::personal_number, "GB"},
      // GB 076 (not 07624 Isle of Man): pagers.
      {"44", "7640123456", "+447640123456", PhoneType::pager, "GB"},
      // GB 056: VoIP; 055: UAN.
      {"44", "5612345678", "+445612345678", PhoneType::voip, "GB"},
      {"44", "5512345678", "+445512345678", PhoneType::uan, "GB"},
      // US 800: toll free; 900: premium rate. Both belong to "US" whatever the caller's region.
      {"1", "8002345678", "+18002345678", PhoneType::toll_free, "US"},
      {"1", "9002345678", "+19002345678", PhoneType::premium_rate, "US"},
      // Malaysia 1600: premium rate; 1300 is listed as toll_free by this metadata.
      {"60", "1600123456", "+601600123456", PhoneType::premium_rate, "MY"},
      {"60", "1300123456", "+601300123456", PhoneType::toll_free, "MY"},
      // Australia 1300: shared cost; 1900: premium rate.
      {"61", "1300123456", "+611300123456", PhoneType::shared_cost, "AU"},
      {"61", "1900123456", "+611900123456", PhoneType::premium_rate, "AU"},
      // Germany's mobile voicemail access numbers.
      {"49", "177991234567", "+49177991234567", PhoneType::voicemail, "DE"},
      // Singapore 1900: premium rate.
      {"65", "19001234567", "+6519001234567", PhoneType::premium_rate, "SG"},
  };
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(c.code, c.number, why);
    REQUIRE(p);
    CHECK(p->e164 == c.e164);
    CHECK(phone_type_name(p->type) == phone_type_name(c.type));
    CHECK(p->region == c.region);
  }
}

TEST_CASE("parse_phone: wrong lengths and invalid numbers are refused with a reason") {
  const Refused cases[] = {
      {"60", "1234", PhoneError::too_short},
      {"65", "12", PhoneError::too_short},
      {"60", "1987654321234", PhoneError::too_long},
      {"44", "12123456789", PhoneError::too_long},
      {"60", std::string(17, '9'), PhoneError::too_long},
      {"60", std::string(32, '9'), PhoneError::too_long},  // the field's limit
      {"60", std::string(33, '9'), PhoneError::too_long},  // past it
      {"60", std::string(40, '1'), PhoneError::too_long},
      {"1", "201555012", PhoneError::too_short},
      // Jamaica and India: a valid mobile one digit short, and one digit long.
      {"1", "876210123", PhoneError::too_short},
      {"1", "87621012345", PhoneError::too_long},
      // India's plan has numbers of 8 to 13 digits, so both lengths are possible there: the
      // digits match no range.
      {"91", "812345678", PhoneError::invalid_number},
      {"91", "81234567890", PhoneError::invalid_number},
      // Singapore's numbers have 8, 10 or 11 digits: 9 is between them but none.
      {"65", "812345678", PhoneError::wrong_length},
      // A possible length, but no Malaysian range matches: libphonenumber's "possible" is not
      // enough.
      {"60", "19876543", PhoneError::invalid_number},
      {"44", "1212345", PhoneError::invalid_number},
      {"65", "19876543", PhoneError::invalid_number},
      // libphonenumber calls this a valid German fixed line (a PBX extension), but 16 digits are
      // more than E.164 allows.
      {"49", "82060201400060", PhoneError::too_long},
      {"498", "2060201400060", PhoneError::too_long},
      // Repeated country code, but still not a valid number.
      {"60", "6019876543", PhoneError::invalid_number},
  };
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    PhoneError why = PhoneError::none;
    CHECK_FALSE(parse_phone(c.code, c.number, why));
    CHECK(phone_error_message(why) == phone_error_message(c.why));
  }
}

TEST_CASE("parse_phone: garbage is refused without throwing") {
  const Refused cases[] = {
      {"", "198765432", PhoneError::invalid_country_code},
      {"0", "198765432", PhoneError::invalid_country_code},
      {"00", "198765432", PhoneError::invalid_country_code},
      {"00000", "198765432", PhoneError::invalid_country_code},
      {"999", "198765432", PhoneError::invalid_country_code},
      {"123456", "198765432", PhoneError::invalid_country_code},  // over 5 digits
      {"+60", "198765432", PhoneError::invalid_country_code},
      {"6O", "198765432", PhoneError::invalid_country_code},
      {"\xef\xbc\x96\xef\xbc\x90", "198765432", PhoneError::invalid_country_code},  // fullwidth
      {"60", "", PhoneError::not_a_number},
      {"60", "19-876 5432", PhoneError::not_a_number},
      {"60", "+60198765432", PhoneError::not_a_number},
      {"1", "800FLOWERS", PhoneError::not_a_number},  // libphonenumber would read the letters
      {"60", "198765432 ext 1", PhoneError::not_a_number},
      {"60", "\xd9\xa1\xd9\xa9\xd9\xa8", PhoneError::not_a_number},  // Arabic-Indic digits
      {"60",
       std::string("1987\0"
                   "65432",
                   10),
       PhoneError::not_a_number},
      {"", "", PhoneError::invalid_country_code},
  };
  for (const auto& c : cases) {
    INFO(c.code << " + " << c.number);
    PhoneError why = PhoneError::none;
    std::optional<PhoneNumber> p;
    REQUIRE_NOTHROW(p = parse_phone(c.code, c.number, why));
    CHECK_FALSE(p);
    CHECK(phone_error_message(why) == phone_error_message(c.why));
  }
  // "60" + "00447400123456" is a British number dialled from Malaysia, not a Malaysian one:
  // reading (b) must not turn it into +44.
  PhoneError why = PhoneError::none;
  CHECK_FALSE(parse_phone("60", "00447400123456", why));
}

TEST_CASE("parse_phone: an accepted number's canonical form parses to itself") {
  // Fixed seed: the same inputs every run. Random digits after real country codes, some with a
  // trunk 0 or the code repeated; whatever is accepted must be canonical: +<cc><national>, at
  // most 15 digits, and the same number again when sent as code + national number.
  std::mt19937 rng(13);
  const char* codes[] = {"1",  "7",  "33", "39", "44",  "49",  "55",  "60",
                         "61", "65", "86", "91", "262", "800", "882", "979"};
  int accepted = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string code = codes[rng() % std::size(codes)];
    std::string number;
    if (rng() % 4 == 0) number += '0';
    if (rng() % 8 == 0) number += code;
    const int digits = 5 + static_cast<int>(rng() % 9);
    for (int d = 0; d < digits; ++d) number += static_cast<char>('0' + rng() % 10);
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(code, number, why);
    if (!p) {
      CHECK(why != PhoneError::none);
      continue;
    }
    ++accepted;
    INFO(code << " + " << number << " -> " << p->e164);
    CHECK(p->e164 == "+" + std::to_string(p->country_code) + p->national_number);
    CHECK(p->e164.size() <= 16);
    CHECK(p->type != PhoneType::unknown);
    CHECK_FALSE(p->region.empty());
    const auto again = parse_phone(std::to_string(p->country_code), p->national_number, why);
    REQUIRE(again);
    CHECK(again->e164 == p->e164);
    CHECK(again->region == p->region);
    CHECK(phone_type_name(again->type) == phone_type_name(p->type));
  }
  CHECK(accepted > 200);  // the generator does reach valid numbers (282 with this seed)
}

TEST_CASE("parse_phone: threads parsing at once get the answers one thread gets") {
  // Workers will call parse_phone concurrently: libphonenumber's singleton set-up and its
  // regular-expression cache are shared (ThreadSanitizer watches this in scripts/test).
  const std::pair<const char*, const char*> inputs[] = {
      {"60", "0198765432"}, {"44", "9098790000"}, {"1", "8762101234"},  {"65", "812345678"},
      {"91", "8123456789"}, {"999", "1"},         {"61", "0412345678"}, {"60", "60198765432"},
  };
  std::vector<std::string> expected;
  for (const auto& [code, number] : inputs) {
    PhoneError why = PhoneError::none;
    const auto p = parse_phone(code, number, why);
    expected.push_back(p ? p->e164 : std::string(phone_error_message(why)));
  }
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (std::size_t i = 0; i < std::size(inputs); ++i) {
          PhoneError why = PhoneError::none;
          const auto p = parse_phone(inputs[i].first, inputs[i].second, why);
          const std::string got = p ? p->e164 : std::string(phone_error_message(why));
          if (got != expected[i]) ++mismatches[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int m : mismatches) CHECK(m == 0);
}

TEST_CASE("phone types: names and their inverse") {
  const char* names[] = {"fixed_line", "mobile",          "fixed_line_or_mobile",
                         "toll_free",  "premium_rate",    "shared_cost",
                         "voip",       "personal_number", "pager",
                         "uan",        "voicemail",       "unknown"};
  int i = 0;
  for (const char* name : names) {
    INFO(name);
    const auto type = static_cast<PhoneType>(i++);
    CHECK(phone_type_name(type) == name);
    const auto back = phone_type_from_name(name);
    REQUIRE(back);
    CHECK(*back == type);
  }
  for (const char* bad :
       {"", "Mobile", "MOBILE", "premium", "premium-rate", "mobile ", "toll free"}) {
    INFO(bad);
    CHECK_FALSE(phone_type_from_name(bad));
  }
}

TEST_CASE("phone errors: every reason has client words") {
  for (PhoneError e :
       {PhoneError::invalid_country_code, PhoneError::not_a_number, PhoneError::too_short,
        PhoneError::too_long, PhoneError::wrong_length, PhoneError::invalid_number}) {
    CHECK_FALSE(phone_error_message(e).empty());
    CHECK(phone_error_message(e) != phone_error_message(PhoneError::none));
  }
}

TEST_CASE("regions: upper-case ISO 3166-1 alpha-2 that libphonenumber knows") {
  for (const char* r : {"MY", "GB", "JM", "US", "SG", "IN", "AU", "DE", "XK"}) {
    INFO(r);
    CHECK(known_region(r));
  }
  for (const char* r : {"XX", "ZZ", "my", "Gb", "", "M", "MYS", "001", "UK", "M1"}) {
    INFO(r);
    CHECK_FALSE(known_region(r));
    CHECK_FALSE(country_code_for_region(r));
  }
  CHECK(country_code_for_region("MY") == 60);
  CHECK(country_code_for_region("GB") == 44);
  CHECK(country_code_for_region("JM") == 1);
  CHECK(country_code_for_region("US") == 1);
  CHECK(country_code_for_region("IN") == 91);
}

TEST_CASE("metadata_version names libphonenumber and a version") {
  const std::string v = metadata_version();
  CHECK(v.rfind("libphonenumber ", 0) == 0);
  CHECK(v.size() > std::string("libphonenumber ").size());
}
