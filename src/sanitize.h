// Cleaning text that crosses a trust boundary: upstream messages on their way
// to the browser, and values on their way to the log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace pvgate {

inline constexpr std::size_t kMaxMessageBytes = 255;  // Pipwave documents message <= 255

// Removes ASCII control characters (0x00-0x1F, 0x7F) and truncates to at most
// `max_bytes` without splitting a UTF-8 sequence. Invalid UTF-8 is left for
// the JSON encoder to replace.
std::string clean_message(std::string_view text, std::size_t max_bytes = kMaxMessageBytes);

// True when `text` contains any of the non-empty `secrets` (api_key,
// api_secret, signature). Such a text must never be passed on.
bool contains_any(std::string_view text, const std::vector<std::string_view>& secrets);

// Masks a phone number for logs: all but the last two digits become '*'.
// "60123456789" -> "*********89". Short or empty input is fully masked.
std::string mask_phone(std::string_view digits);

}  // namespace pvgate
