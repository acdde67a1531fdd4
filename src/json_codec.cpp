#include "json_codec.h"

#include <nlohmann/json.hpp>

namespace pvgate {
namespace {

using nlohmann::json;

// SAX consumer that accepts exactly one flat object of scalar members. It
// stops at the first violation, so hostile input costs no more than its size.
class FlatObjectSax final : public nlohmann::json_sax<json> {
 public:
  explicit FlatObjectSax(FieldList& out) : out_(out) {}

  std::optional<DecodeError> error;

  bool null() override { return bad_value(); }
  bool boolean(bool) override { return bad_value(); }
  bool number_integer(number_integer_t v) override {
    return v < 0 ? bad_value() : value(std::to_string(v));
  }
  bool number_unsigned(number_unsigned_t v) override { return value(std::to_string(v)); }
  bool number_float(number_float_t, const string_t&) override { return bad_value(); }
  bool string(string_t& v) override { return value(std::move(v)); }
  bool binary(binary_t&) override { return bad_value(); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    return bad_value();
  }
  bool end_object() override {
    depth_ = 0;
    done_ = true;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return fail(DecodeErrorKind::not_object, {});
    return bad_value();
  }
  bool end_array() override { return true; }
  bool key(string_t& k) override {
    if (out_.size() >= kMaxFields) return fail(DecodeErrorKind::too_many_fields, {});
    if (k.size() > kMaxFieldNameBytes) return fail(DecodeErrorKind::name_too_long, {});
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    if (!error) error = DecodeError{DecodeErrorKind::malformed, {}};
    return false;
  }

  bool complete() const { return done_ && !error; }

 private:
  bool value(std::string v) {
    if (depth_ == 0) return fail(DecodeErrorKind::not_object, {});
    if (v.size() > kMaxFieldValueBytes) return fail(DecodeErrorKind::value_too_long, key_);
    out_.emplace_back(std::move(key_), std::move(v));
    key_.clear();
    return true;
  }
  bool bad_value() {
    if (depth_ == 0) return fail(DecodeErrorKind::not_object, {});
    return fail(DecodeErrorKind::bad_value_type, key_);
  }
  bool fail(DecodeErrorKind kind, std::string field) {
    error = DecodeError{kind, std::move(field)};
    return false;
  }

  FieldList& out_;
  std::string key_;
  int depth_ = 0;
  bool done_ = false;
};

// Integer from a JSON number or a string of 1-18 ASCII digits.
std::optional<std::int64_t> as_integer(const json& v) {
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::int64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + (c - '0');
    }
    return n;
  }
  return std::nullopt;
}

// Appends `text` as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as nlohmann's
// error_handler_t::replace does). Written by hand because the log line and
// the reply are on every request's path, and building a DOM for them cost
// a fifth of pvgate's CPU in the benchmark.
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0xF]);
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: copy it only when it is well-formed UTF-8.
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= text.size();
    for (std::size_t k = 1; ok && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      ok = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // No overlong forms, no surrogates, nothing past U+10FFFF.
    ok = ok && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
         !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    }
  }
  out.push_back('"');
}

}  // namespace

std::optional<DecodeError> decode_json_fields(std::string_view body, FieldList& out) {
  // A raw NUL is never valid JSON, and nlohmann's parser would stop reading
  // at it: whatever follows would be silently ignored.
  if (body.find('\0') != std::string_view::npos) return DecodeError{DecodeErrorKind::malformed, {}};
  FlatObjectSax sax(out);
  bool ok = false;
  try {
    ok = json::sax_parse(body.begin(), body.end(), &sax, nlohmann::detail::input_format_t::json,
                         /*strict=*/true);
  } catch (const std::exception&) {
    ok = false;
  }
  if (sax.error) return sax.error;
  if (!ok || !sax.complete()) return DecodeError{DecodeErrorKind::malformed, {}};
  return std::nullopt;
}

std::string encode_string_object(const std::vector<std::pair<std::string, std::string>>& members) {
  json o = json::object();
  for (const auto& [k, v] : members) o[k] = v;
  return o.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<UpstreamReply> parse_upstream_reply(std::string_view body, std::string& why) {
  if (body.find('\0') != std::string_view::npos) {
    why = "upstream answer holds a NUL byte";
    return std::nullopt;
  }
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    why = "upstream answer is not JSON";
    return std::nullopt;
  }
  if (!doc.is_object()) {
    why = "upstream answer is not a JSON object";
    return std::nullopt;
  }
  UpstreamReply reply;
  const auto status = doc.find("status");
  if (status == doc.end()) {
    why = "upstream answer has no status";
    return std::nullopt;
  }
  const auto code = as_integer(*status);
  if (!code || *code < 0 || *code > 99999) {
    why = "upstream status is not a non-negative integer of at most 5 digits";
    return std::nullopt;
  }
  reply.status = *code;
  if (const auto m = doc.find("message"); m != doc.end() && m->is_string()) {
    reply.message = m->get<std::string>();
  }
  if (const auto r = doc.find("reference"); r != doc.end()) reply.reference = as_integer(*r);
  if (const auto s = doc.find("seconds_till_resend"); s != doc.end()) {
    reply.seconds_till_resend = as_integer(*s);
  }
  return reply;
}

std::string encode_client_reply(std::int64_t status, std::string_view message,
                                std::optional<std::int64_t> reference,
                                std::optional<std::int64_t> seconds_till_resend) {
  // Members in byte order, as before: message, reference, seconds_till_resend, status.
  std::string out;
  out.reserve(64 + message.size());
  out += "{\"message\":";
  append_json_string(out, message);
  if (reference) out += ",\"reference\":" + std::to_string(*reference);
  if (seconds_till_resend)
    out += ",\"seconds_till_resend\":" + std::to_string(*seconds_till_resend);
  out += ",\"status\":" + std::to_string(status) + "}";
  return out;
}

void append_log_members(std::string& out, const std::vector<LogField>& fields) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) out.push_back(',');
    append_json_string(out, fields[i].key);
    out.push_back(':');
    if (fields[i].is_number) {
      out += std::to_string(fields[i].number);
    } else {
      append_json_string(out, fields[i].text);
    }
  }
}

std::string encode_log_object(const std::vector<LogField>& fields) {
  std::string out;
  out.reserve(256);
  out.push_back('{');
  append_log_members(out, fields);
  out.push_back('}');
  return out;
}

}  // namespace pvgate
