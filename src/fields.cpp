#include "fields.h"

namespace pvgate {

std::string describe(const DecodeError& error) {
  const std::string field = error.field.empty() ? std::string{} : " '" + error.field + "'";
  switch (error.kind) {
    case DecodeErrorKind::malformed:
      return error.field.empty() ? "malformed request body" : "malformed encoding in field" + field;
    case DecodeErrorKind::not_object:
      return "request body must be a flat JSON object";
    case DecodeErrorKind::bad_value_type:
      return "field" + field + " must be a string or a non-negative integer";
    case DecodeErrorKind::too_many_fields:
      return "too many fields (at most " + std::to_string(kMaxFields) + ")";
    case DecodeErrorKind::name_too_long:
      return "field name too long (at most " + std::to_string(kMaxFieldNameBytes) + " bytes)";
    case DecodeErrorKind::value_too_long:
      return "field" + field + " is too long";
  }
  return "malformed request body";
}

}  // namespace pvgate
