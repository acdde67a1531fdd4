// Pipwave's request signature (shared/pipwave-api.md, "Signature"): SHA-1 over
// the byte-sorted key:value pairs of the signed fields plus api_secret, joined
// with no separator, as 40 lowercase hex digits. The only user of OpenSSL.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace pvgate {

// Lowercase hex SHA-1 of `data`.
std::string sha1_hex(std::string_view data);

// `fields` are the signed fields without api_secret; std::map keeps them in
// byte order. The secret is mixed in at its sorted place and the scratch
// buffer holding it is wiped before returning.
std::string pipwave_signature(const std::map<std::string, std::string>& fields,
                              std::string_view api_secret);

// Overwrites a buffer that held secret material (not optimised away).
void wipe(std::string& s);

}  // namespace pvgate
