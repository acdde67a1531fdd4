// Phone numbers in one canonical form: E.164 through Google's libphonenumber, the only user of
// that library.
//
// Why: the throttle keys a phone by the text the client sent, and one handset can be written many
// ways (Malaysia's +60 19-876 5432 arrives as "60"+"198765432", "60"+"0198765432" with the trunk
// prefix, "601"+"98765432", "060"/"0060"+"198765432" with an IDD habit, "60"+"60198765432" with
// the country code repeated), each of which would get a fresh budget. parse_phone() turns every
// spelling of one handset into the same E.164 string, refuses what is not a valid number, and
// says what kind of number it is (mobile, premium_rate, ...), so a policy can refuse the
// premium-rate numbers SMS pumping profits from.
//
// Thread safety: every function may be called from any thread. The first call that needs
// libphonenumber builds its metadata (a one-time cost, see tests/bench/phone_bench.cpp); call
// one early at start-up to keep it off the first request.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pvgate {

// libphonenumber's number types, in its order. A number whose type cannot be told from its
// digits (the whole North American plan: +1 lines may be either) is fixed_line_or_mobile.
enum class PhoneType {
  fixed_line,
  mobile,
  fixed_line_or_mobile,
  toll_free,
  premium_rate,  // what SMS pumping profits from
  shared_cost,
  voip,
  personal_number,  // e.g. GB 070: a forwarding number, often premium-priced to call
  pager,
  uan,  // universal access number (company number)
  voicemail,
  unknown,  // never an accepted number's type (valid means a type); a name for config
};

// "fixed_line", "mobile", ... exactly as the enumerator is spelt.
std::string_view phone_type_name(PhoneType type);
// The inverse (exact, lower case); nullopt for anything else. For config files.
std::optional<PhoneType> phone_type_from_name(std::string_view name);

// Why parse_phone() refused a number.
enum class PhoneError {
  none,                  // not refused
  invalid_country_code,  // the dialing code is empty, all zeros, too long, or no country's
  not_a_number,          // empty, or a character other than the ASCII digits 0-9
  too_short,             // fewer digits than any number of that country
  too_long,              // more digits than that country's numbers, E.164's 15, or the field's 32
  wrong_length,          // a length between that country's shortest and longest, but none of them
  invalid_number,        // a plausible length, but no number of that country looks like it
};

// Client-facing words for `why` ("is too short for its country", ...), to follow the field name.
std::string_view phone_error_message(PhoneError why);

// Field limits parse_phone() checks before libphonenumber sees anything (the same as the field
// rules in validate.h: 1-5 and 1-32 ASCII digits).
inline constexpr std::size_t kMaxDialingCodeDigits = 5;
inline constexpr std::size_t kMaxContactNoDigits = 32;
// ITU-T E.164's maximum, country code included. libphonenumber's metadata accepts longer numbers
// for a few countries (German fixed lines with direct-dial extensions: +49 8206 0201400060 is
// "valid" with 16 digits); parse_phone refuses them as too_long: they are not E.164 numbers and
// no SMS reaches a PBX extension.
inline constexpr std::size_t kMaxE164Digits = 15;

struct PhoneNumber {
  std::string e164;             // "+60198765432": the canonical form, the same for every spelling
  int country_code = 0;         // 60
  std::string national_number;  // "198765432": national significant number, no trunk prefix
                                // (Italy's leading 0 is part of it: "0612345678")
  std::string region;           // "MY"; "JM" for +1 876; "001" for non-geographic (+800, +882)
  PhoneType type = PhoneType::unknown;
};

// The number the client means by dialing code `dialing_code` and number `contact_no`, or nullopt
// with `why` set. Never throws for any input (only std::bad_alloc could escape). The rules:
//
// 1. Both must be ASCII digits only (libphonenumber itself would also accept letters as on a
//    keypad, punctuation, extensions and non-ASCII digits; none of that is a phone field here):
//    the dialing code 1-5, the number 1-32 (kMax*Digits).
// 2. Leading zeros of the dialing code are dropped: no country code starts with 0, so they can
//    only be an international prefix typed out of habit ("0060", "060" -> "60"). Nothing is left
//    (code "0", "00"): invalid_country_code. Other prefixes ("011" of North America) are not
//    guessed at.
// 3. Three readings are tried in this order; the first that libphonenumber calls valid
//    (IsValidNumber: a pattern of a real number range, not merely a possible length) and has
//    at most kMaxE164Digits digits wins:
//    a. "+<code><number>" as one international number. libphonenumber finds the country code at
//       the start of the digits, so a split in the wrong place ("601"+"98765432") reads the same,
//       and it drops a trunk prefix after the country code ("60"+"0198765432",
//       "44"+"07400123456") when what remains is a possible length.
//    b. <number> as a national number in the main region of <code> (GetRegionCodeForCountryCode:
//       "MY" for 60, "US" for 1, "GB" for 44), which also drops the trunk prefix, an
//       international prefix and a repeated country code; accepted only if the result keeps
//       country code <code> (so "60"+"00447400123456" does not become a British number).
//    c. If <number> starts with <code> again ("60"+"60198765432"): "+<number>", accepted only
//       with country code <code>.
// 4. Nothing valid: `why` is reading (a)'s reason (too_short, too_long, wrong_length,
//    invalid_country_code, or invalid_number for a possible length that is still not valid).
//
// The number's type and region come from libphonenumber's metadata for the result; refusing
// a type (premium_rate, ...) is the caller's policy, not this function's.
std::optional<PhoneNumber> parse_phone(std::string_view dialing_code, std::string_view contact_no,
                                       PhoneError& why);

// True for a region code libphonenumber has metadata for, written as ISO 3166-1 alpha-2 in
// upper case ("MY", "GB", "JM"; also its few non-ISO ones: "XK" Kosovo, "AC" Ascension, "TA"
// Tristan da Cunha). Lower case ("my"), "001" (non-geographic) and "ZZ" (unknown) are false:
// config values are compared as written, so one spelling only.
bool known_region(std::string_view alpha2);

// Whether `code` (1-3 digits, no '+') is a country calling code
// libphonenumber has numbers for: "60", "1", "800" yes; "999", "0" no. For config files.
bool known_country_code(std::string_view code);

// parse_phone() through a small per-thread cache of recent answers (refusals
// included), so a flood of one number costs one libphonenumber parse, not
// one per request (about 17 us each). Same results as parse_phone().
struct PhoneParse {
  std::optional<PhoneNumber> number;
  PhoneError why = PhoneError::none;
};
const PhoneParse& parse_phone_cached(std::string_view dialing_code, std::string_view contact_no);
// The country calling code of a known_region (60 for "MY", 1 for "JM"); nullopt otherwise.
std::optional<int> country_code_for_region(std::string_view alpha2);

// The regions that share a country calling code ("1" -> "US", "AG", ..., "JM", ...; "60" ->
// "MY"; "800" -> "001"); empty for a code libphonenumber does not know or text that is not one.
std::vector<std::string> regions_of_calling_code(std::string_view code);

// Which libphonenumber (and so which numbering metadata, compiled into the library) pvgate was
// built against: "libphonenumber 8.12.57+ds-3", the Debian package's version. See phone.cpp for
// how it is found and its caveat.
std::string metadata_version();

}  // namespace pvgate
