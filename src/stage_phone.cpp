// Stage: phone (issue 13). Every number goes through libphonenumber to one
// canonical E.164 form, whatever way it was written (a trunk prefix, the
// dialing code split another way, an IDD prefix, the code repeated), and only
// that form is used from here on: throttle keys, sessions, the log, the
// token, the country check, and what is signed and sent to Pipwave (the
// country calling code as the dialing code, the national significant number
// as contact_no). An invalid number, or one of a type that may not receive
// an SMS (premium_rate, toll_free, ...), is refused here, before any count
// or upstream call.
#include <algorithm>
#include <string>

#include "sanitize.h"
#include "stages.h"

namespace pvgate {

StageResult phone(Exchange& ex, const Services& s) {
  ClientFields& client = ex.client;
  if (!client.contact_no) {
    // Pipwave would text the number it holds for this user, which pvgate
    // cannot see, count or check: only a merchant that opts in allows it.
    if (!ex.merchant->allow_stored_number) {
      return local_result(Outcome::invalid_input,
                          "contact_no is required: send the number to verify.");
    }
    // The dialing code alone still decides the country check and is signed:
    // one canonical form for it too (no IDD zeros), and only a real one.
    const std::size_t digits = client.dialing_code.find_first_not_of('0');
    const std::string code =
        digits == std::string::npos ? std::string() : client.dialing_code.substr(digits);
    if (!known_country_code(code)) {
      if (s.metrics != nullptr) s.metrics->phone_refused(std::nullopt);
      ex.trace.detail = "dialing code of no country";
      return local_result(Outcome::invalid_phone,
                          "contact_no_country_dialing_code is no country's calling code.");
    }
    client.dialing_code = code;
    return std::nullopt;
  }
  const PhoneParse& parsed = parse_phone_cached(client.dialing_code, *client.contact_no);
  if (!parsed.number) {
    if (s.metrics != nullptr) s.metrics->phone_refused(std::nullopt);
    ex.trace.detail = "invalid number: " + std::string(phone_error_message(parsed.why));
    return local_result(Outcome::invalid_phone,
                        "contact_no " + std::string(phone_error_message(parsed.why)) + ".");
  }
  const PhoneNumber& number = *parsed.number;
  ex.trace.phone = "+" + std::to_string(number.country_code) + mask_phone(number.national_number);
  const auto& allowed = ex.config->phone.number_types;
  if (std::find(allowed.begin(), allowed.end(), number.type) == allowed.end()) {
    if (s.metrics != nullptr) s.metrics->phone_refused(number.type);
    const std::string type(phone_type_name(number.type));
    ex.trace.detail = "number type " + type + " refused";
    return local_result(Outcome::invalid_phone,
                        "contact_no is a " + type + " number, which cannot receive the code.");
  }
  ex.phone = number;
  client.dialing_code = std::to_string(number.country_code);
  client.contact_no = number.national_number;
  return std::nullopt;
}

}  // namespace pvgate
