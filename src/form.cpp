#include "form.h"

#include "text.h"

namespace pvgate {
bool percent_decode(std::string_view in, std::string& out) {
  return percent_decode(in, out, /*plus_is_space=*/true);
}

std::optional<DecodeError> decode_form(std::string_view body, FieldList& out) {
  std::size_t count = 0;
  while (!body.empty()) {
    const std::size_t amp = body.find('&');
    const std::string_view segment = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    if (segment.empty()) continue;

    const std::size_t eq = segment.find('=');
    const std::string_view raw_name = segment.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : segment.substr(eq + 1);

    if (++count > kMaxFields) return DecodeError{DecodeErrorKind::too_many_fields, {}};
    std::string name;
    std::string value;
    if (!percent_decode(raw_name, name)) return DecodeError{DecodeErrorKind::malformed, {}};
    if (name.size() > kMaxFieldNameBytes) return DecodeError{DecodeErrorKind::name_too_long, {}};
    if (!percent_decode(raw_value, value)) return DecodeError{DecodeErrorKind::malformed, name};
    if (value.size() > kMaxFieldValueBytes) {
      return DecodeError{DecodeErrorKind::value_too_long, name};
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return std::nullopt;
}

}  // namespace pvgate
