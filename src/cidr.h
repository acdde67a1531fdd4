// Address ranges for access lists (metrics.allow): CIDR text parsed with
// inet_pton, and a client address (REMOTE_ADDR) matched against a list. Pure
// functions, no I/O. IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d), so
// an IPv4 client seen through an IPv6 socket (REMOTE_ADDR ::ffff:127.0.0.1)
// matches an IPv4 range.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pvgate {

struct CidrRange {
  std::array<unsigned char, 16> net{};  // host bits zero
  int prefix = 128;                     // of the 128 bits (an IPv4 /n is 96 + n)

  bool operator==(const CidrRange& o) const { return net == o.net && prefix == o.prefix; }
  bool operator!=(const CidrRange& o) const { return !(*this == o); }
};

// "127.0.0.0/8", "::1/128", "10.1.2.3" (one host: /32), "2001:db8::/32".
// The prefix is 0-32 for IPv4 and 0-128 for IPv6, in decimal without a sign
// or leading zeros; the address has no bits set past it ("127.0.0.1/8" is
// refused: it reads like a typo). On failure returns nullopt and sets
// `error` (which quotes nothing but the text given).
std::optional<CidrRange> parse_cidr(std::string_view text, std::string& error);

// True when `addr` (IPv4 or IPv6 text, as REMOTE_ADDR holds it) is inside one
// of `ranges`. Anything that is not an address ("unix:", "") is in none.
bool address_in(const std::vector<CidrRange>& ranges, std::string_view addr);

// metrics.allow's default: 127.0.0.0/8 and ::1/128.
std::vector<CidrRange> loopback_ranges();

}  // namespace pvgate
