// application/x-www-form-urlencoded decoding (WHATWG URL standard rules:
// '&' separates pairs, '+' is a space, %XX escapes; a bad escape is an error).
#pragma once

#include <optional>
#include <string_view>

#include "fields.h"

namespace pvgate {

// Appends the decoded pairs to `out`. Empty segments ("a=1&&b=2") are skipped.
std::optional<DecodeError> decode_form(std::string_view body, FieldList& out);

// Percent-decodes one component; returns false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out);

}  // namespace pvgate
