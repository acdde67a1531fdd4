// Client fields as decoded from a request body, before validation.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace pvgate {

// Name/value pairs in the order the client sent them. Duplicates are kept so
// that validation can reject them; decoders never merge or drop fields.
using FieldList = std::vector<std::pair<std::string, std::string>>;

// Decoder limits. Each has a test at the limit and one past it.
inline constexpr std::size_t kMaxFields = 16;          // more fields: reject
inline constexpr std::size_t kMaxFieldNameBytes = 64;  // longer name: reject
// Challenge solutions and CAPTCHA tokens run to a few KB; every other field
// has a far tighter rule of its own (validate.h), checked after decoding.
inline constexpr std::size_t kMaxFieldValueBytes = 4096;

// Why a body could not be decoded. `field` names the offending field where
// there is one, so the client's error message can name it.
enum class DecodeErrorKind {
  malformed,        // not valid JSON / bad percent-encoding
  not_object,       // JSON whose top level is not an object
  bad_value_type,   // a JSON value that is not a string or a non-negative integer
  too_many_fields,  // more than kMaxFields pairs
  name_too_long,    // a field name over kMaxFieldNameBytes
  value_too_long,   // a field value over kMaxFieldValueBytes
};

struct DecodeError {
  DecodeErrorKind kind;
  std::string field;  // may be empty (e.g. malformed JSON)
};

// A client-facing message for a decode error, naming the field if known.
std::string describe(const DecodeError& error);

}  // namespace pvgate
