#include "phone.h"

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <algorithm>
#include <array>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include "text.h"

namespace pvgate {
namespace {

namespace pn = i18n::phonenumbers;
using Util = pn::PhoneNumberUtil;

struct TypeName {
  PhoneType type;
  std::string_view name;
};
constexpr std::array<TypeName, 12> kTypeNames{{
    {PhoneType::fixed_line, "fixed_line"},
    {PhoneType::mobile, "mobile"},
    {PhoneType::fixed_line_or_mobile, "fixed_line_or_mobile"},
    {PhoneType::toll_free, "toll_free"},
    {PhoneType::premium_rate, "premium_rate"},
    {PhoneType::shared_cost, "shared_cost"},
    {PhoneType::voip, "voip"},
    {PhoneType::personal_number, "personal_number"},
    {PhoneType::pager, "pager"},
    {PhoneType::uan, "uan"},
    {PhoneType::voicemail, "voicemail"},
    {PhoneType::unknown, "unknown"},
}};

PhoneType from_lib(Util::PhoneNumberType t) {
  switch (t) {
    case Util::FIXED_LINE:
      return PhoneType::fixed_line;
    case Util::MOBILE:
      return PhoneType::mobile;
    case Util::FIXED_LINE_OR_MOBILE:
      return PhoneType::fixed_line_or_mobile;
    case Util::TOLL_FREE:
      return PhoneType::toll_free;
    case Util::PREMIUM_RATE:
      return PhoneType::premium_rate;
    case Util::SHARED_COST:
      return PhoneType::shared_cost;
    case Util::VOIP:
      return PhoneType::voip;
    case Util::PERSONAL_NUMBER:
      return PhoneType::personal_number;
    case Util::PAGER:
      return PhoneType::pager;
    case Util::UAN:
      return PhoneType::uan;
    case Util::VOICEMAIL:
      return PhoneType::voicemail;
    case Util::UNKNOWN:
      return PhoneType::unknown;
  }
  return PhoneType::unknown;
}

bool all_ascii_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Digits of `n` in E.164, country code included.
std::size_t e164_digits(const Util& util, const pn::PhoneNumber& n) {
  std::string e164;
  util.Format(n, Util::E164, &e164);
  return e164.size() - 1;  // the '+'
}

// Parses `text` in the context of `region` ("ZZ" when text starts with '+') into `out` and
// returns its type; nullopt when it did not parse (`error` is then not NO_PARSING_ERROR) or is
// not valid. libphonenumber's IsValidNumber() is GetNumberType() != UNKNOWN: both find the
// number's region and match its national number against that region's type patterns. One
// GetNumberType() call decides both, where IsValidNumber() and then GetNumberType() would match
// every pattern twice. A number over E.164's 15 digits is not valid here, whatever the metadata
// says (see kMaxE164Digits).
std::optional<PhoneType> parse_valid(const Util& util, const std::string& text,
                                     const std::string& region, pn::PhoneNumber& out,
                                     Util::ErrorType& error) {
  out.Clear();
  error = util.Parse(text, region, &out);
  if (error != Util::NO_PARSING_ERROR) return std::nullopt;
  const Util::PhoneNumberType type = util.GetNumberType(out);
  if (type == Util::UNKNOWN || e164_digits(util, out) > kMaxE164Digits) return std::nullopt;
  return from_lib(type);
}

PhoneError reason_from_parse(Util::ErrorType e) {
  switch (e) {
    case Util::NO_PARSING_ERROR:
      return PhoneError::invalid_number;
    case Util::INVALID_COUNTRY_CODE_ERROR:
      return PhoneError::invalid_country_code;
    case Util::NOT_A_NUMBER:
      return PhoneError::not_a_number;
    case Util::TOO_SHORT_AFTER_IDD:
    case Util::TOO_SHORT_NSN:
      return PhoneError::too_short;
    case Util::TOO_LONG_NSN:
      return PhoneError::too_long;
  }
  return PhoneError::not_a_number;
}

PhoneError reason_from_length(Util::ValidationResult r) {
  switch (r) {
    case Util::IS_POSSIBLE:
      return PhoneError::invalid_number;
    case Util::IS_POSSIBLE_LOCAL_ONLY:  // dialable locally only: an area code is missing
    case Util::TOO_SHORT:
      return PhoneError::too_short;
    case Util::INVALID_COUNTRY_CODE:
      return PhoneError::invalid_country_code;
    case Util::INVALID_LENGTH:
      return PhoneError::wrong_length;
    case Util::TOO_LONG:
      return PhoneError::too_long;
  }
  return PhoneError::invalid_number;
}

PhoneNumber to_phone(const Util& util, const pn::PhoneNumber& n, PhoneType type) {
  PhoneNumber p;
  util.Format(n, Util::E164, &p.e164);
  p.country_code = n.country_code();
  util.GetNationalSignificantNumber(n, &p.national_number);
  util.GetRegionCodeForNumber(n, &p.region);
  p.type = type;
  return p;
}

bool is_alpha2_upper(std::string_view s) {
  return s.size() == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z';
}

}  // namespace

std::string_view phone_type_name(PhoneType type) {
  for (const auto& t : kTypeNames)
    if (t.type == type) return t.name;
  return "unknown";
}

std::optional<PhoneType> phone_type_from_name(std::string_view name) {
  for (const auto& t : kTypeNames)
    if (t.name == name) return t.type;
  return std::nullopt;
}

std::string_view phone_error_message(PhoneError why) {
  switch (why) {
    case PhoneError::none:
      return "is a valid number";
    case PhoneError::invalid_country_code:
      return "has no valid country code";
    case PhoneError::not_a_number:
      return "must be digits only";
    case PhoneError::too_short:
      return "is too short for its country";
    case PhoneError::too_long:
      return "is too long for its country";
    case PhoneError::wrong_length:
      return "has the wrong number of digits for its country";
    case PhoneError::invalid_number:
      return "is not a valid number for its country";
  }
  return "is not a valid number";
}

std::optional<PhoneNumber> parse_phone(std::string_view dialing_code, std::string_view contact_no,
                                       PhoneError& why) {
  why = PhoneError::none;
  // Rule 1: ASCII digits within the field limits, before libphonenumber sees anything.
  if (dialing_code.empty() || dialing_code.size() > kMaxDialingCodeDigits ||
      !all_ascii_digits(dialing_code)) {
    why = PhoneError::invalid_country_code;
    return std::nullopt;
  }
  if (contact_no.empty() || !all_ascii_digits(contact_no)) {
    why = PhoneError::not_a_number;
    return std::nullopt;
  }
  if (contact_no.size() > kMaxContactNoDigits) {
    why = PhoneError::too_long;
    return std::nullopt;
  }
  // Rule 2: leading zeros of the dialing code are an international prefix.
  const std::size_t first = dialing_code.find_first_not_of('0');
  if (first == std::string_view::npos) {
    why = PhoneError::invalid_country_code;
    return std::nullopt;
  }
  const std::string code(dialing_code.substr(first));
  const std::string number(contact_no);

  const Util& util = *Util::GetInstance();
  pn::PhoneNumber n;
  Util::ErrorType error = Util::NO_PARSING_ERROR;

  // Rule 3a: one international number.
  static const std::string kUnknownRegion = "ZZ";
  if (const auto type = parse_valid(util, "+" + code + number, kUnknownRegion, n, error))
    return to_phone(util, n, *type);
  // Rule 4: if no reading is valid, the reason is reading (a)'s (given to `why` only then).
  PhoneError reason = PhoneError::too_long;
  if (error != Util::NO_PARSING_ERROR)
    reason = reason_from_parse(error);
  else if (e164_digits(util, n) <= kMaxE164Digits)
    reason = reason_from_length(util.IsPossibleNumberWithReason(n));

  // Rule 3b: national number in the code's main region. A code of 4-5 digits is no country's
  // (the longest are 3): only reading (a) applies to it.
  int cc = 0;
  if (code.size() <= 3)
    for (char c : code) cc = cc * 10 + (c - '0');
  std::string region;
  if (cc != 0) util.GetRegionCodeForCountryCode(cc, &region);
  if (cc != 0 && region != kUnknownRegion) {
    pn::PhoneNumber national;
    const auto type = parse_valid(util, number, region, national, error);
    if (type && national.country_code() == cc) return to_phone(util, national, *type);
  }
  // Rule 3c: the country code repeated at the start of the number.
  if (cc != 0 && number.size() > code.size() && number.compare(0, code.size(), code) == 0) {
    pn::PhoneNumber repeated;
    const auto type = parse_valid(util, "+" + number, kUnknownRegion, repeated, error);
    if (type && repeated.country_code() == cc) return to_phone(util, repeated, *type);
  }
  why = reason;
  return std::nullopt;
}

bool known_country_code(std::string_view code) {
  if (code.empty() || code.size() > 3 || code.front() == '0') return false;
  for (const char c : code) {
    if (c < '0' || c > '9') return false;
  }
  std::string region;
  Util::GetInstance()->GetRegionCodeForCountryCode(std::stoi(std::string(code)), &region);
  return region != "ZZ";  // libphonenumber's unknown region
}

const PhoneParse& parse_phone_cached(std::string_view dialing_code, std::string_view contact_no) {
  // Direct-mapped, per thread: no lock, bounded (kSlots answers of at most
  // 5 + 32 digits each), and a hit costs one hash and one compare.
  constexpr std::size_t kSlots = 256;
  struct Slot {
    std::string key;  // "code:number"
    PhoneParse parse;
  };
  thread_local std::vector<Slot> cache(kSlots);
  thread_local std::string key;
  key.assign(dialing_code).push_back(':');
  key.append(contact_no);
  Slot& slot = cache[std::hash<std::string>{}(key) % kSlots];
  if (slot.key != key) {
    slot.parse.why = PhoneError::none;
    slot.parse.number = parse_phone(dialing_code, contact_no, slot.parse.why);
    slot.key = key;
  }
  return slot.parse;
}

bool known_region(std::string_view alpha2) {
  return country_code_for_region(alpha2).has_value();
}

std::optional<int> country_code_for_region(std::string_view alpha2) {
  if (!is_alpha2_upper(alpha2)) return std::nullopt;  // also keeps "001" and lower case out
  // 0 for a region without metadata ("XX", "ZZ").
  const int cc = Util::GetInstance()->GetCountryCodeForRegion(std::string(alpha2));
  if (cc == 0) return std::nullopt;
  return cc;
}

std::vector<std::string> regions_of_calling_code(std::string_view code) {
  std::int64_t cc = 0;
  if (code.empty() || code[0] == '0' || !parse_decimal(code, 1, 999, cc)) return {};
  std::list<std::string> regions;
  Util::GetInstance()->GetRegionCodesForCountryCallingCode(static_cast<int>(cc), &regions);
  return {regions.begin(), regions.end()};
}

// libphonenumber's C++ library has no version API, and its metadata (compiled into the library
// from PhoneNumberMetadata.xml) carries no version string. The runtime library's file name only
// gives major.minor (Debian's libphonenumber.so.8.12). So CMake asks dpkg at configure time for
// the version of the libphonenumber-dev package it builds against (PVGATE_LIBPHONENUMBER_VERSION,
// "unknown" off Debian). Caveat: the shared library can be updated (a Debian stable update of
// libphonenumber8) without pvgate being rebuilt; the string then names the build's version.
std::string metadata_version() {
#ifdef PVGATE_LIBPHONENUMBER_VERSION
  return "libphonenumber " PVGATE_LIBPHONENUMBER_VERSION;
#else
  return "libphonenumber unknown";
#endif
}

}  // namespace pvgate
