// parse_phone (the client's dialing code and number, through libphonenumber). Input: the dialing
// code, a newline, the number (no newline: all of it is the number, with an empty code).
// Invariants: only ASCII digits within the field limits are ever accepted; an accepted number is
// canonical (+<country code><national number>, at most 15 digits, a type and a region) and
// parses to itself from code + national number; a refusal always says why.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "phone.h"

using namespace pvgate;
using pvgate_fuzz::as_text;

namespace {

bool digits_within(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (const char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = as_text(data, size);
  const std::size_t newline = input.find('\n');
  const std::string_view code = newline == std::string_view::npos ? "" : input.substr(0, newline);
  const std::string_view number =
      newline == std::string_view::npos ? input : input.substr(newline + 1);

  PhoneError why = PhoneError::none;
  const auto p = parse_phone(code, number, why);
  if (!p) {
    FUZZ_CHECK(why != PhoneError::none, std::string(input));
    FUZZ_CHECK(!phone_error_message(why).empty(), std::string(input));
    return 0;
  }
  FUZZ_CHECK(why == PhoneError::none, std::string(input));
  FUZZ_CHECK(digits_within(code, kMaxDialingCodeDigits), std::string(input));
  FUZZ_CHECK(digits_within(number, kMaxContactNoDigits), std::string(input));
  FUZZ_CHECK(p->e164 == "+" + std::to_string(p->country_code) + p->national_number, p->e164);
  FUZZ_CHECK(p->e164.size() <= 16, p->e164);
  FUZZ_CHECK(p->type != PhoneType::unknown, p->e164);
  FUZZ_CHECK(!p->region.empty(), p->e164);

  PhoneError why_again = PhoneError::none;
  const auto again = parse_phone(std::to_string(p->country_code), p->national_number, why_again);
  FUZZ_CHECK(
      again && again->e164 == p->e164 && again->region == p->region && again->type == p->type,
      p->e164);
  return 0;
}
