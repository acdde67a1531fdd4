#include "json_codec.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iterator>

#include <nlohmann/json.hpp>

#include "text.h"

namespace pvgate {
namespace {

using nlohmann::json;

// A strict RFC 8259 reader for the one shape a request body may have: a flat
// object whose values are strings or non-negative integers. Written by hand
// because it is on every request's path (nlohmann's SAX parser cost 2 us a
// body); it must decide exactly as that parser did, which the fuzz target and
// decode_test check against a reference built on nlohmann
// (tests/json_sax_reference.h). It stops at the first violation, so hostile
// input costs no more than its size, and never recurses.
class FlatObjectReader {
 public:
  FlatObjectReader(std::string_view text, FieldList& out) : s_(text), out_(out) {}

  std::optional<DecodeError> read() {
    // nlohmann skips one UTF-8 byte order mark, and refuses a partial one.
    if (!s_.empty() && static_cast<unsigned char>(s_[0]) == 0xEF) {
      if (s_.substr(0, 3) != "\xEF\xBB\xBF") return malformed();
      pos_ = 3;
    }
    skip_space();
    if (at_end()) return malformed();
    const char c = s_[pos_];
    if (c == '[') return DecodeError{DecodeErrorKind::not_object, {}};
    if (c != '{') {
      // A scalar at the top: not an object, once it is a well-formed token.
      std::string ignored;
      if (c == '"' ? !read_string(ignored) : (scalar_kind() == Scalar::invalid)) return malformed();
      return DecodeError{DecodeErrorKind::not_object, {}};
    }
    ++pos_;
    skip_space();
    if (!at_end() && s_[pos_] == '}') {
      ++pos_;
      return end();
    }
    while (true) {
      // key
      if (at_end() || s_[pos_] != '"') return malformed();
      std::string key;
      if (!read_string(key)) return malformed();
      if (out_.size() >= kMaxFields) return DecodeError{DecodeErrorKind::too_many_fields, {}};
      if (key.size() > kMaxFieldNameBytes) return DecodeError{DecodeErrorKind::name_too_long, {}};
      skip_space();
      if (at_end() || s_[pos_] != ':') return malformed();
      ++pos_;
      skip_space();
      if (at_end()) return malformed();
      // value
      std::string value;
      const char v = s_[pos_];
      if (v == '"') {
        if (!read_string(value)) return malformed();
      } else if (v == '{' || v == '[') {
        return DecodeError{DecodeErrorKind::bad_value_type, std::move(key)};
      } else {
        switch (scalar_kind()) {
          case Scalar::invalid:
            return malformed();
          case Scalar::other:
            return DecodeError{DecodeErrorKind::bad_value_type, std::move(key)};
          case Scalar::unsigned_integer:
            value = std::to_string(number_);
        }
      }
      if (value.size() > kMaxFieldValueBytes) {
        return DecodeError{DecodeErrorKind::value_too_long, std::move(key)};
      }
      out_.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (at_end()) return malformed();
      if (s_[pos_] == '}') {
        ++pos_;
        return end();
      }
      if (s_[pos_] != ',') return malformed();
      ++pos_;
      skip_space();
    }
  }

 private:
  enum class Scalar { invalid, unsigned_integer, other };

  static DecodeError malformed() { return DecodeError{DecodeErrorKind::malformed, {}}; }
  bool at_end() const { return pos_ >= s_.size(); }
  unsigned char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < s_.size() ? static_cast<unsigned char>(s_[pos_ + ahead]) : 0;
  }
  void skip_space() {
    while (!at_end()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
      ++pos_;
    }
  }
  std::optional<DecodeError> end() {
    skip_space();  // strict: nothing but white space after the object
    if (!at_end()) return malformed();
    return std::nullopt;
  }

  // A literal (true, false, null) or a number, consumed whole. A non-negative
  // integer that fits 64 bits (or -0, as nlohmann reads it) is left in number_.
  Scalar scalar_kind() {
    for (const std::string_view word : {"true", "false", "null"}) {
      if (s_.compare(pos_, word.size(), word) == 0) {
        pos_ += word.size();
        return Scalar::other;
      }
    }
    const std::size_t start = pos_;
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      return Scalar::invalid;
    }
    const std::size_t int_end = pos_;
    bool fraction = false;
    if (peek() == '.') {
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) return Scalar::invalid;
      while (peek() >= '0' && peek() <= '9') ++pos_;
      fraction = true;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) return Scalar::invalid;
      while (peek() >= '0' && peek() <= '9') ++pos_;
      fraction = true;
    }
    if (fraction) return finite(start);
    const std::string_view digits =
        s_.substr(start + (negative ? 1 : 0), int_end - start - (negative ? 1 : 0));
    if (negative) {
      if (digits == "0") return number_ = 0, Scalar::unsigned_integer;  // nlohmann's -0
      return finite(start);
    }
    // Past 2^64 - 1 nlohmann reads a float: rejected like one.
    std::uint64_t n = 0;
    for (const char d : digits) {
      const auto digit = static_cast<std::uint64_t>(d - '0');
      if (n > (UINT64_MAX - digit) / 10) return finite(start);
      n = n * 10 + digit;
    }
    number_ = n;
    return Scalar::unsigned_integer;
  }

  // A number nlohmann reads as a float (a fraction, an exponent, or an
  // integer past 64 bits) is a wrong type when finite, and malformed when it
  // overflows a double ("number overflow").
  Scalar finite(std::size_t start) const {
    const std::string token(s_.substr(start, pos_ - start));
    return std::isfinite(std::strtod(token.c_str(), nullptr)) ? Scalar::other : Scalar::invalid;
  }

  // Four hex digits after "\u"; -1 when they are not.
  long read_hex4() {
    long cp = 0;
    for (int k = 0; k < 4; ++k) {
      const int d = hex_value(static_cast<char>(peek()));
      if (d < 0) return -1;
      cp = cp * 16 + d;
      ++pos_;
    }
    return cp;
  }
  // The string starting at pos_ (its opening quote), decoded into `out`;
  // false when it is not a well-formed JSON string.
  bool read_string(std::string& out) {
    ++pos_;  // the opening quote
    while (true) {
      // Plain bytes in one append.
      const std::size_t run = pos_;
      while (!at_end()) {
        const unsigned char c = peek();
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++pos_;
      }
      out.append(s_.data() + run, pos_ - run);
      if (at_end()) return false;
      const unsigned char c = peek();
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return false;  // a raw control character
      if (c >= 0x80) {
        const std::size_t len = utf8_sequence_length(s_, pos_);
        if (len == 0) return false;
        out.append(s_.data() + pos_, len);
        pos_ += len;
        continue;
      }
      // An escape.
      ++pos_;
      const unsigned char e = peek();
      ++pos_;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(static_cast<char>(e));
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          long cp = read_hex4();
          if (cp < 0) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // a lone low surrogate
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (peek() != '\\' || peek(1) != 'u') return false;
            pos_ += 2;
            const long low = read_hex4();
            if (low < 0xDC00 || low > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, static_cast<std::uint32_t>(cp));
          break;
        }
        default:
          return false;
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::uint64_t number_ = 0;
  FieldList& out_;
};

}  // namespace

// Appends `text` as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as nlohmann's
// error_handler_t::replace does). Written by hand because the log line and
// the reply are on every request's path, and building a DOM for them cost
// a fifth of pvgate's CPU in the benchmark.
void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  std::size_t i = 0;
  while (i < text.size()) {
    // A run of bytes that need no escaping, in one append.
    std::size_t run = i;
    while (run < text.size()) {
      const auto b = static_cast<unsigned char>(text[run]);
      if (b < 0x20 || b >= 0x80 || b == '"' || b == '\\') break;
      ++run;
    }
    if (run > i) {
      out.append(text.data() + i, run - i);
      i = run;
      continue;
    }
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
            out.push_back(hex_digit(c >> 4));
            out.push_back(hex_digit(c & 0xF));
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A multi-byte sequence: copy it only when it is well-formed UTF-8.
    const std::size_t len = utf8_sequence_length(text, i);
    const bool ok = len > 0;
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

std::optional<DecodeError> decode_json_fields(std::string_view body, FieldList& out) {
  // A raw NUL is never valid JSON (nlohmann's parser stopped reading at one,
  // and whatever followed would have been silently ignored).
  if (body.find('\0') != std::string_view::npos) return DecodeError{DecodeErrorKind::malformed, {}};
  out.reserve(8);
  return FlatObjectReader(body, out).read();
}

// ---- The ALTCHA payload (altcha.h) ----------------------------------------

namespace {

// The payload's objects, and for each its keys: the object a key opens, or
// the member its scalar fills (a string, an integer, or the solution's time).
enum class AltchaObject { none, top, challenge, parameters, solution };
struct AltchaMember {
  std::string_view key;
  AltchaObject object = AltchaObject::none;
  JsonStringMember AltchaPayloadJson::*string = nullptr;
  JsonIntegerMember AltchaPayloadJson::*integer = nullptr;
  bool time = false;
};
constexpr AltchaMember kAltchaTop[] = {{"challenge", AltchaObject::challenge},
                                       {"solution", AltchaObject::solution}};
constexpr AltchaMember kAltchaChallenge[] = {
    {"parameters", AltchaObject::parameters},
    {"signature", AltchaObject::none, &AltchaPayloadJson::signature}};
constexpr AltchaMember kAltchaParameters[] = {
    {"algorithm", AltchaObject::none, &AltchaPayloadJson::algorithm},
    {"cost", AltchaObject::none, nullptr, &AltchaPayloadJson::cost},
    {"expiresAt", AltchaObject::none, nullptr, &AltchaPayloadJson::expires_at},
    {"keyLength", AltchaObject::none, nullptr, &AltchaPayloadJson::key_length},
    {"keyPrefix", AltchaObject::none, &AltchaPayloadJson::key_prefix},
    {"keySignature", AltchaObject::none, &AltchaPayloadJson::key_signature},
    {"nonce", AltchaObject::none, &AltchaPayloadJson::nonce},
    {"salt", AltchaObject::none, &AltchaPayloadJson::salt}};
constexpr AltchaMember kAltchaSolution[] = {
    {"counter", AltchaObject::none, nullptr, &AltchaPayloadJson::counter},
    {"derivedKey", AltchaObject::none, &AltchaPayloadJson::derived_key},
    {"time", AltchaObject::none, nullptr, nullptr, true}};

// nlohmann's strict SAX parser with a consumer that knows the payload's one
// shape: it stops at the first key, value or nesting that does not fit, and
// never builds a DOM. An array, or an object deeper than the shape's three
// levels, is refused where it opens.
class AltchaPayloadSax final : public nlohmann::json_sax<json> {
 public:
  explicit AltchaPayloadSax(AltchaPayloadJson& out) : out_(out) {}

  bool complete() const { return done_; }

  bool null() override { return other_scalar(); }
  bool boolean(bool) override { return other_scalar(); }
  bool number_integer(number_integer_t v) override { return integer(v); }
  bool number_unsigned(number_unsigned_t v) override {
    if (v > static_cast<number_unsigned_t>(INT64_MAX)) return number();
    return integer(static_cast<std::int64_t>(v));
  }
  bool number_float(number_float_t, const string_t&) override { return number(); }
  bool string(string_t& v) override {
    if (!scalar_expected()) return false;
    if (pending_.string != nullptr) {
      pending_.string->value = std::move(v);
    } else if (pending_.integer != nullptr) {
      pending_.integer->wrong_type = true;
    } else {
      out_.time_wrong_type = true;
    }
    pending_ = {};
    return true;
  }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override {
    if (stack_.empty()) {
      if (done_) return false;
      stack_.push_back({AltchaObject::top, 0});
      return true;
    }
    if (pending_.object == AltchaObject::none) return false;  // an object where a scalar belongs
    stack_.push_back({pending_.object, 0});
    pending_ = {};
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    done_ = stack_.empty();
    return true;
  }
  bool start_array(std::size_t) override { return false; }
  bool end_array() override { return false; }
  bool key(string_t& k) override {
    Frame& frame = stack_.back();
    const AltchaMember* members = nullptr;
    std::size_t count = 0;
    switch (frame.object) {
      case AltchaObject::top:
        members = kAltchaTop, count = std::size(kAltchaTop);
        break;
      case AltchaObject::challenge:
        members = kAltchaChallenge, count = std::size(kAltchaChallenge);
        break;
      case AltchaObject::parameters:
        members = kAltchaParameters, count = std::size(kAltchaParameters);
        break;
      case AltchaObject::solution:
        members = kAltchaSolution, count = std::size(kAltchaSolution);
        break;
      case AltchaObject::none:
        return false;
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (k != members[i].key) continue;
      if ((frame.seen & (1u << i)) != 0) return false;  // a duplicate key
      frame.seen |= 1u << i;
      pending_ = {};
      pending_.object = members[i].object;
      if (members[i].string != nullptr) pending_.string = &(out_.*members[i].string);
      if (members[i].integer != nullptr) pending_.integer = &(out_.*members[i].integer);
      if (pending_.string != nullptr) pending_.string->present = true;
      if (pending_.integer != nullptr) pending_.integer->present = true;
      if (members[i].time) out_.time_present = true;
      return true;
    }
    return false;  // a key the shape does not have
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  struct Frame {
    AltchaObject object;
    std::uint32_t seen;  // bit i: the object's member i was read
  };
  // What the last key expects: an object, or a scalar for one member.
  struct Pending {
    AltchaObject object = AltchaObject::none;
    JsonStringMember* string = nullptr;
    JsonIntegerMember* integer = nullptr;
  };

  // A scalar is welcome only as the value of a key that takes one.
  bool scalar_expected() const { return !stack_.empty() && pending_.object == AltchaObject::none; }
  bool other_scalar() {
    if (!scalar_expected()) return false;
    if (pending_.string != nullptr) pending_.string->wrong_type = true;
    if (pending_.integer != nullptr) pending_.integer->wrong_type = true;
    if (pending_.string == nullptr && pending_.integer == nullptr) out_.time_wrong_type = true;
    pending_ = {};
    return true;
  }
  // A number that is not an int64 integer: only `time` takes one.
  bool number() {
    if (!scalar_expected()) return false;
    if (pending_.string != nullptr) pending_.string->wrong_type = true;
    if (pending_.integer != nullptr) pending_.integer->wrong_type = true;
    pending_ = {};
    return true;
  }
  bool integer(std::int64_t v) {
    if (!scalar_expected()) return false;
    if (pending_.string != nullptr) pending_.string->wrong_type = true;
    if (pending_.integer != nullptr) pending_.integer->value = v;
    pending_ = {};
    return true;
  }

  AltchaPayloadJson& out_;
  std::vector<Frame> stack_;
  Pending pending_;
  bool done_ = false;
};

}  // namespace

std::optional<AltchaPayloadJson> read_altcha_payload(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  AltchaPayloadJson out;
  AltchaPayloadSax sax(out);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                         /*strict=*/true);
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok || !sax.complete()) return std::nullopt;
  return out;
}

// ---- end of the ALTCHA payload ------------------------------------------

namespace {

// One member's key or value exactly as nlohmann's dump writes it. Not
// append_json_string: that replaces invalid UTF-8 byte by byte, nlohmann by
// maximal subparts, and this body must stay what it was. Printable ASCII but
// the quote and backslash (every signed field in practice) is copied as is.
void append_member_string(std::string& out, std::string_view s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b >= 0x20 && b < 0x7F && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

}  // namespace

std::string encode_string_object(
    const std::vector<std::pair<std::string_view, std::string_view>>& members) {
  // The members signed for Pipwave are a handful of short strings: a sorted
  // array of pointers and one string, not a std::map of json values (that was
  // 6% of a forwarded request's CPU).
  using Member = std::pair<std::string_view, std::string_view>;
  std::vector<const Member*> order;
  order.reserve(members.size());
  for (const Member& m : members) order.push_back(&m);
  std::stable_sort(order.begin(), order.end(),
                   [](const Member* a, const Member* b) { return a->first < b->first; });
  std::string out;
  std::size_t size = 2;
  for (const Member* m : order) size += m->first.size() + m->second.size() + 6;
  out.reserve(size);
  out += '{';
  bool first = true;
  for (std::size_t i = 0; i < order.size(); ++i) {
    // Equal keys stay in their given order: the last one's value is kept.
    if (i + 1 < order.size() && order[i + 1]->first == order[i]->first) continue;
    if (!first) out += ',';
    first = false;
    append_member_string(out, order[i]->first);
    out += ':';
    append_member_string(out, order[i]->second);
  }
  out += '}';
  return out;
}

namespace {

// Pipwave's answer read as it streams by: only the four members of the top
// object are kept, nothing is built for the rest (a DOM of the whole answer
// was 9% of a forwarded request's instructions). The lexer is nlohmann's, so
// what is JSON (UTF-8 checked, nothing after the value) is unchanged; a
// member given twice keeps its last value, as in the DOM.
class UpstreamReplySax final : public json::json_sax_t {
 public:
  enum Member { kStatus, kMessage, kReference, kResend, kMembers, kOther = kMembers };
  struct Value {
    enum Kind { absent, integer, string, other } kind = absent;
    std::int64_t number = 0;
    std::string text;
  };
  Value values[kMembers];
  bool top_object = false;

  bool null() override { return scalar(Value::other); }
  bool boolean(bool) override { return scalar(Value::other); }
  bool number_integer(number_integer_t v) override { return integer(v); }
  bool number_unsigned(number_unsigned_t v) override {
    return integer(static_cast<std::int64_t>(v));  // as json::get<std::int64_t> converts it
  }
  bool number_float(number_float_t, const string_t&) override { return scalar(Value::other); }
  bool string(string_t& v) override {
    if (Value* slot = member()) {
      slot->kind = Value::string;
      slot->text = std::move(v);
    }
    return true;
  }
  bool binary(binary_t&) override { return scalar(Value::other); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) top_object = true;
    return open();
  }
  bool key(string_t& k) override {
    if (depth_ == 1) {
      current_ = k == "status"                ? kStatus
                 : k == "message"             ? kMessage
                 : k == "reference"           ? kReference
                 : k == "seconds_till_resend" ? kResend
                                              : kOther;
    }
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  // The member whose value comes next, if it is one of the four.
  Value* member() { return depth_ == 1 && current_ != kOther ? &values[current_] : nullptr; }
  bool scalar(Value::Kind kind) {
    if (Value* slot = member()) *slot = Value{kind, 0, {}};
    return true;
  }
  bool integer(std::int64_t v) {
    if (Value* slot = member()) *slot = Value{Value::integer, v, {}};
    return true;
  }
  bool open() {
    scalar(Value::other);  // an object or array as a member's value
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  Member current_ = kOther;
};

// Integer from a JSON number or a string of 1-18 ASCII digits.
std::optional<std::int64_t> as_integer(const UpstreamReplySax::Value& v) {
  if (v.kind == UpstreamReplySax::Value::integer) return v.number;
  if (v.kind != UpstreamReplySax::Value::string) return std::nullopt;
  const std::string& s = v.text;
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace

std::optional<UpstreamReply> parse_upstream_reply(std::string_view body, std::string& why) {
  if (body.find('\0') != std::string_view::npos) {
    why = "upstream answer holds a NUL byte";
    return std::nullopt;
  }
  UpstreamReplySax sax;
  if (!json::sax_parse(body.begin(), body.end(), &sax)) {
    why = "upstream answer is not JSON";
    return std::nullopt;
  }
  if (!sax.top_object) {
    why = "upstream answer is not a JSON object";
    return std::nullopt;
  }
  using Sax = UpstreamReplySax;
  const Sax::Value& status = sax.values[Sax::kStatus];
  if (status.kind == Sax::Value::absent) {
    why = "upstream answer has no status";
    return std::nullopt;
  }
  const auto code = as_integer(status);
  if (!code || *code < 0 || *code > 99999) {
    why = "upstream status is not a non-negative integer of at most 5 digits";
    return std::nullopt;
  }
  UpstreamReply reply;
  reply.status = *code;
  if (Sax::Value& m = sax.values[Sax::kMessage]; m.kind == Sax::Value::string) {
    reply.message = std::move(m.text);
  }
  if (const Sax::Value& r = sax.values[Sax::kReference]; r.kind != Sax::Value::absent) {
    reply.reference = as_integer(r);
  }
  if (const Sax::Value& t = sax.values[Sax::kResend]; t.kind != Sax::Value::absent) {
    reply.seconds_till_resend = as_integer(t);
  }
  return reply;
}

std::optional<SiteverifyReply> parse_siteverify_reply(std::string_view body, std::string& why) {
  if (body.find('\0') != std::string_view::npos) {
    why = "siteverify answer holds a NUL byte";
    return std::nullopt;
  }
  const json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    why = "siteverify answer is not JSON";
    return std::nullopt;
  }
  if (!doc.is_object()) {
    why = "siteverify answer is not a JSON object";
    return std::nullopt;
  }
  const auto success = doc.find("success");
  if (success == doc.end()) {
    why = "siteverify answer has no success";
    return std::nullopt;
  }
  if (!success->is_boolean()) {
    why = "siteverify success is not a boolean";
    return std::nullopt;
  }
  SiteverifyReply reply;
  reply.success = success->get<bool>();
  if (const auto codes = doc.find("error-codes"); codes != doc.end() && codes->is_array()) {
    for (const json& code : *codes) {
      if (reply.error_codes.size() >= SiteverifyReply::kMaxErrorCodes) break;
      if (code.is_string()) reply.error_codes.push_back(code.get<std::string>());
    }
  }
  if (const auto score = doc.find("score"); score != doc.end()) {
    if (score->is_number()) {
      reply.score = score->get<double>();
    } else {
      reply.score_not_number = true;
    }
  }
  return reply;
}

std::string encode_client_reply(std::int64_t status, std::string_view message,
                                std::optional<std::int64_t> reference,
                                std::optional<std::int64_t> seconds_till_resend,
                                std::string_view verification_token, std::string_view challenge) {
  // Members in byte order, as before: challenge, message, reference,
  // seconds_till_resend, status, verification_token.
  std::string out;
  out.reserve(64 + message.size() + verification_token.size());
  out += '{';
  if (!challenge.empty()) {
    out += "\"challenge\":";
    append_json_string(out, challenge);
    out += ',';
  }
  out += "\"message\":";
  append_json_string(out, message);
  if (reference) out += ",\"reference\":" + std::to_string(*reference);
  if (seconds_till_resend)
    out += ",\"seconds_till_resend\":" + std::to_string(*seconds_till_resend);
  out += ",\"status\":" + std::to_string(status);
  if (!verification_token.empty()) {
    out += ",\"verification_token\":";
    append_json_string(out, verification_token);
  }
  out += "}";
  return out;
}

}  // namespace pvgate
