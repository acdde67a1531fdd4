// Pipwave's request signature (shared/pipwave-api.md, "Signature"): SHA-1 over
// the byte-sorted key:value pairs of the signed fields plus api_secret, joined
// with no separator, as 40 lowercase hex digits. Only the format is here:
// SHA-1 and wipe() are crypto's (the one OpenSSL module), and crypto.h is
// included for them because this contract is stated in their terms.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crypto.h"

namespace pvgate {

// `fields` are the signed fields without api_secret; std::map keeps them in
// byte order. The secret is mixed in at its sorted place and the scratch
// buffer holding it is wiped before returning.
std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret);

// The same, with the signed text (secret included) built in the caller's
// `scratch`: it is reserved once at the exact size (no reallocation leaves a
// copy behind), and on return its bytes are overwritten with wipe() and it is
// empty. A caller (the unit test) can look at the buffer afterwards and see
// that no secret byte is left in it.
std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret, std::string& scratch);

// The same over views of the fields, which must be in byte order of their
// keys, each key once (the request path: no copies into a map).
using FieldViews = std::vector<std::pair<std::string_view, std::string_view>>;
std::string pipwave_signature(const FieldViews& sorted_fields, std::string_view api_secret);

}  // namespace pvgate
