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
  json o = json::object();
  o["status"] = status;
  o["message"] = std::string(message);
  if (reference) o["reference"] = *reference;
  if (seconds_till_resend) o["seconds_till_resend"] = *seconds_till_resend;
  return o.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_log_object(const std::vector<LogField>& fields) {
  // ordered_json keeps the members in the caller's order (ts, level first).
  nlohmann::ordered_json o = nlohmann::ordered_json::object();
  for (const auto& f : fields) {
    if (f.is_number) {
      o[f.key] = f.number;
    } else {
      o[f.key] = f.text;
    }
  }
  return o.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace pvgate
