// decode_form (application/x-www-form-urlencoded request bodies), then
// validate_fields for both actions. Invariants: the decoder's limits hold,
// encoding what it decoded and decoding again gives the same list, and what
// validation accepts obeys the README's field table.
#include <cstddef>
#include <cstdint>
#include <string>

#include "form.h"
#include "fuzz_check.h"

using namespace pvgate;
using pvgate_fuzz::as_text;

namespace {

// Percent-encodes every byte but the unreserved ones, so decoding restores it exactly.
std::string encode_component(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = as_text(data, size);

  std::string decoded;
  if (percent_decode(body, decoded)) FUZZ_CHECK(decoded.size() <= body.size(), decoded);

  FieldList fields;
  const auto error = decode_form(body, fields);
  if (error) {
    FUZZ_CHECK(!describe(*error).empty(), body);
    return 0;
  }
  pvgate_fuzz::check_field_limits(fields);

  std::string encoded;
  for (const auto& [name, value] : fields) {
    if (!encoded.empty()) encoded.push_back('&');
    encoded += encode_component(name) + "=" + encode_component(value);
  }
  FieldList again;
  const auto error_again = decode_form(encoded, again);
  FUZZ_CHECK(!error_again && again == fields, encoded);

  pvgate_fuzz::validate_both(fields);
  return 0;
}
