#include "form.h"

namespace pvgate {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;  // needs two hex digits
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return true;
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
