// The reference the hand-written request-body reader (decode_json_fields in
// src/json_codec.cpp) must agree with, byte for byte and error for error:
// pvgate's former decoder, nlohmann's strict SAX parser with a consumer that
// accepts exactly one flat object of strings and non-negative integers.
// Used by tests/unit/decode_test.cpp and the fuzz_json target only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "fields.h"

namespace pvgate_test {

using pvgate::DecodeError;
using pvgate::DecodeErrorKind;
using pvgate::FieldList;

class FlatObjectSax final : public nlohmann::json_sax<nlohmann::json> {
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
    if (out_.size() >= pvgate::kMaxFields) return fail(DecodeErrorKind::too_many_fields, {});
    if (k.size() > pvgate::kMaxFieldNameBytes) return fail(DecodeErrorKind::name_too_long, {});
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
    if (v.size() > pvgate::kMaxFieldValueBytes) {
      return fail(DecodeErrorKind::value_too_long, key_);
    }
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

// decode_json_fields' contract, as nlohmann decides it.
inline std::optional<DecodeError> reference_decode_json_fields(std::string_view body,
                                                               FieldList& out) {
  if (body.find('\0') != std::string_view::npos) return DecodeError{DecodeErrorKind::malformed, {}};
  FlatObjectSax sax(out);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(body.begin(), body.end(), &sax,
                                   nlohmann::detail::input_format_t::json, /*strict=*/true);
  } catch (const std::exception&) {
    ok = false;
  }
  if (sax.error) return sax.error;
  if (!ok || !sax.complete()) return DecodeError{DecodeErrorKind::malformed, {}};
  return std::nullopt;
}

}  // namespace pvgate_test
