// Small byte-level text helpers that several modules need once: hex digits,
// base64, %-coding, UTF-8 sequences, ASCII case. A leaf module (as redis's util.c):
// it includes no other pvgate header and no third-party library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pvgate {

// The value of one hex digit (either case), or -1.
int hex_value(char c);

// The lower-case hex digit of 0..15.
inline char hex_digit(unsigned nibble) {
  return "0123456789abcdef"[nibble & 0xF];
}

// Appends `size` bytes as 2 x size lower-case hex digits, first byte first.
void append_hex(std::string& out, const unsigned char* data, std::size_t size);

// base64 (RFC 4648 section 4) with '=' padding: what JavaScript's btoa()
// writes (the ALTCHA widget's payload).
std::string base64_encode(std::string_view bytes);

// Strict inverse of base64_encode: the length a multiple of 4, '=' only as
// the last one or two characters and exactly as many as the length needs,
// nothing outside A-Z a-z 0-9 + / (whitespace included), and zero unused
// bits in the last character, so every byte string has exactly one
// accepted encoding.
std::optional<std::string> base64_decode(std::string_view text);

// base64url without padding (RFC 4648 section 5, RFC 7515 section 2).
std::string base64url_encode(std::string_view bytes);

// Strict inverse of base64url_encode: refuses '=' padding, any character
// outside A-Z a-z 0-9 - _ (whitespace included), a length of 1 mod 4 (no
// byte sequence encodes to it), and non-zero unused bits in the last
// character (so every byte string has exactly one accepted encoding).
std::optional<std::string> base64url_decode(std::string_view text);

// Decodes %XX escapes (either case) into `out`; with `plus_is_space` a '+'
// is a space (application/x-www-form-urlencoded). False, with `out`
// unspecified, on a '%' not followed by two hex digits.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

// Appends `in` %-encoded for a form or URL component: the RFC 3986
// unreserved bytes (A-Z a-z 0-9 - . _ ~) as they are, every other byte as %XX
// (upper-case hex; a space is %20, never '+'). Any byte string round-trips
// through percent_decode, with or without `plus_is_space`.
void append_percent_encoded(std::string& out, std::string_view in);

// The length (2-4) of the well-formed UTF-8 multi-byte sequence starting at
// s[pos], or 0 when there is none there (RFC 3629's table: no overlong
// forms, no surrogates, nothing past U+10FFFF, no truncated sequence).
// ASCII bytes are not multi-byte sequences: 0.
std::size_t utf8_sequence_length(std::string_view s, std::size_t pos);

// Appends the UTF-8 encoding of `cp` (at most U+10FFFF; a surrogate is
// encoded as it is, callers exclude them).
void append_utf8(std::string& out, std::uint32_t cp);

// The largest cut <= max_bytes at which `s` can be truncated without
// splitting a UTF-8 sequence (it steps back over continuation bytes).
// s.size() when s is no longer than max_bytes.
std::size_t utf8_cut(std::string_view s, std::size_t max_bytes);

// ASCII letters lower-cased, every other byte kept.
std::string ascii_lower(std::string s);

// `s` as a decimal number: digits only (no sign, space or other text, at
// most 18 of them), its value within [min, max]. Leaves `out` unchanged and
// returns false otherwise.
bool parse_decimal(std::string_view s, std::int64_t min, std::int64_t max, std::int64_t& out);

}  // namespace pvgate
