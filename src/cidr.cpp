#include "cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace pvgate {
namespace {

constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// Text to 16 bytes; `v4` says whether it was IPv4 (stored mapped).
bool parse_address(std::string_view text, std::array<unsigned char, 16>& out, bool& v4) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  v4 = text.find(':') == std::string_view::npos;
  if (v4) {
    std::memcpy(out.data(), kMapped, sizeof kMapped);
    return inet_pton(AF_INET, buf, out.data() + 12) == 1;
  }
  return inet_pton(AF_INET6, buf, out.data()) == 1;
}

bool in_range(const std::array<unsigned char, 16>& addr, const CidrRange& range) {
  const int full = range.prefix / 8;
  if (std::memcmp(addr.data(), range.net.data(), static_cast<std::size_t>(full)) != 0) {
    return false;
  }
  const int rest = range.prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (addr[full] & mask) == range.net[full];
}

}  // namespace

std::optional<CidrRange> parse_cidr(std::string_view text, std::string& error) {
  const std::size_t slash = text.find('/');
  const std::string_view address = text.substr(0, slash);
  CidrRange range;
  bool v4 = false;
  if (!parse_address(address, range.net, v4)) {
    error = "'" + std::string(text) + "' is not an IPv4 or IPv6 address range like 127.0.0.0/8";
    return std::nullopt;
  }
  const int max = v4 ? 32 : 128;
  int prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const bool plain = !digits.empty() && digits.size() <= 3 &&
                       (digits.size() == 1 || digits[0] != '0') &&
                       digits.find_first_not_of("0123456789") == std::string_view::npos;
    prefix = 0;
    for (const char c : plain ? digits : std::string_view{}) prefix = prefix * 10 + (c - '0');
    if (!plain || prefix > max) {
      error = "'" + std::string(text) + "': the prefix length must be a number from 0 to " +
              std::to_string(max);
      return std::nullopt;
    }
  }
  range.prefix = v4 ? 96 + prefix : prefix;
  CidrRange masked = range;
  for (int bit = range.prefix; bit < 128; ++bit) {
    masked.net[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
  }
  if (masked != range) {
    error = "'" + std::string(text) + "' has bits set past its prefix length";
    return std::nullopt;
  }
  return range;
}

bool address_in(const std::vector<CidrRange>& ranges, std::string_view addr) {
  std::array<unsigned char, 16> bytes{};
  bool v4 = false;
  if (!parse_address(addr, bytes, v4)) return false;
  for (const auto& range : ranges) {
    if (in_range(bytes, range)) return true;
  }
  return false;
}

std::vector<CidrRange> loopback_ranges() {
  std::string error;
  return {*parse_cidr("127.0.0.0/8", error), *parse_cidr("::1/128", error)};
}

}  // namespace pvgate
