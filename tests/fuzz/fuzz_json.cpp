// decode_json_fields (JSON request bodies), then validate_fields for both
// actions. Two differential checks: against nlohmann's DOM parser (the
// decoder accepts a body exactly when it is one flat object of strings and
// non-negative integers within the limits, and keeps what the DOM holds), and
// against tests/json_sax_reference.h, nlohmann's strict SAX parser, which must
// give the very same fields and the very same error (kind and field).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "../json_sax_reference.h"
#include "fuzz_check.h"
#include "json_codec.h"

using namespace pvgate;
using nlohmann::json;
using pvgate_fuzz::as_text;

namespace {

// The decoder's rendering of a JSON scalar, or false when it must be rejected.
bool render(const json& v, std::string& out) {
  if (v.is_string()) {
    out = v.get<std::string>();
    return true;
  }
  if (v.is_number_unsigned()) {
    out = std::to_string(v.get<std::uint64_t>());
    return true;
  }
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) {
    out = std::to_string(v.get<std::int64_t>());
    return true;
  }
  return false;
}

std::string dump(const json& v) {
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = as_text(data, size);

  FieldList fields;
  const auto error = decode_json_fields(body, fields);
  FieldList reference_fields;
  const auto reference = pvgate_test::reference_decode_json_fields(body, reference_fields);
  FUZZ_CHECK(error.has_value() == reference.has_value(), "accepted by one decoder only");
  if (error) {
    FUZZ_CHECK(error->kind == reference->kind && error->field == reference->field,
               describe(*error) + " vs reference " + describe(*reference));
  } else {
    FUZZ_CHECK(fields == reference_fields, "fields differ from the reference's");
  }
  std::size_t top_keys = 0;  // keys of the top-level object, duplicates included
  const json dom = json::parse(
      body.begin(), body.end(),
      [&top_keys](int depth, json::parse_event_t event, json&) {
        if (event == json::parse_event_t::key && depth == 1) ++top_keys;
        return true;
      },
      /*allow_exceptions=*/false);
  const bool duplicates = dom.is_object() && top_keys > dom.size();

  // What the DOM says the answer must be (duplicates aside: the DOM merges them).
  // nlohmann's parser stops at a NUL byte (so the DOM may accept "{}\0junk");
  // pvgate refuses any body holding one.
  bool acceptable = body.find('\0') == std::string_view::npos && !dom.is_discarded() &&
                    dom.is_object() && dom.size() <= kMaxFields;
  if (acceptable) {
    for (const auto& [key, value] : dom.items()) {
      std::string text;
      if (key.size() > kMaxFieldNameBytes || !render(value, text) ||
          text.size() > kMaxFieldValueBytes) {
        acceptable = false;
        break;
      }
    }
  }

  if (error) {
    FUZZ_CHECK(!describe(*error).empty(), body);
    // A DOM-acceptable body may only fail through a duplicate key: the DOM
    // keeps the last value, the decoder sees (and counts) every one.
    FUZZ_CHECK(!acceptable || duplicates, describe(*error));
    return 0;
  }
  FUZZ_CHECK(acceptable, dom.is_discarded() ? std::string(body) : dump(dom));
  pvgate_fuzz::check_field_limits(fields);

  std::set<std::string> names;
  for (const auto& [name, value] : fields) names.insert(name);
  FUZZ_CHECK(names.size() == dom.size(), dump(dom));
  FUZZ_CHECK(fields.size() == top_keys, dump(dom));
  if (!duplicates) {  // the values must agree too
    for (const auto& [name, value] : fields) {
      std::string expected;
      FUZZ_CHECK(render(dom.at(name), expected) && expected == value, name + "=" + value);
    }
  }

  pvgate_fuzz::validate_both(fields);
  return 0;
}
