// CIDR ranges for metrics.allow: good and bad lists at and past each limit,
// and client addresses matched against them.
#include "cidr.h"

#include <catch2/catch.hpp>

using namespace pvgate;

namespace {

CidrRange range(const std::string& text) {
  std::string error;
  const auto r = parse_cidr(text, error);
  INFO(text << ": " << error);
  REQUIRE(r);
  return *r;
}

std::string error_of(const std::string& text) {
  std::string error;
  CHECK_FALSE(parse_cidr(text, error));
  return error;
}

bool in(const std::vector<std::string>& ranges, const std::string& addr) {
  std::vector<CidrRange> list;
  for (const auto& r : ranges) list.push_back(range(r));
  return address_in(list, addr);
}

}  // namespace

TEST_CASE("cidr: prefix lengths at and past their limits") {
  CHECK(range("10.1.2.3/32").prefix == 128);
  CHECK(range("10.1.2.3").prefix == 128);  // one host
  CHECK(range("0.0.0.0/0").prefix == 96);  // every IPv4 address
  CHECK(range("::1/128").prefix == 128);
  CHECK(range("::/0").prefix == 0);
  CHECK(range("2001:db8::/32").prefix == 32);
  CHECK(range("127.0.0.0/8") == range("::ffff:127.0.0.0/104"));
  CHECK(error_of("10.1.2.3/33").find("from 0 to 32") != std::string::npos);
  CHECK(error_of("::1/129").find("from 0 to 128") != std::string::npos);
  for (const char* bad : {"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8/8",
                          "10.0.0.0/ 8", "10.0.0.0/1000", "::/0x10"}) {
    INFO(bad);
    CHECK(error_of(bad).find("prefix length") != std::string::npos);
  }
}

TEST_CASE("cidr: addresses that are not, and host bits past the prefix") {
  for (const char* bad : {"", "/8", "localhost", "127.0.0/8", "127.0.0.256/32", "127.0.0.1.1",
                          " 127.0.0.1", "127.0.0.1 ", "0x7f.0.0.1", "1::2::3/64", "fe80::1%lo/128",
                          "::ffff:999.0.0.1/128", "garbage/12"}) {
    INFO(bad);
    CHECK(error_of(bad).find("not an IPv4 or IPv6 address range") != std::string::npos);
  }
  CHECK(error_of("127.0.0.1/8").find("bits set past its prefix") != std::string::npos);
  CHECK(error_of("2001:db8::1/64").find("bits set past its prefix") != std::string::npos);
  CHECK(error_of("128.0.0.0/0").find("bits set past its prefix") != std::string::npos);
}

TEST_CASE("cidr: client addresses against ranges") {
  const std::vector<std::string> loopback{"127.0.0.0/8", "::1/128"};
  CHECK(in(loopback, "127.0.0.1"));
  CHECK(in(loopback, "127.255.255.255"));
  CHECK(in(loopback, "::1"));
  CHECK(in(loopback, "::ffff:127.0.0.1"));  // IPv4-mapped matches the IPv4 range
  CHECK_FALSE(in(loopback, "128.0.0.1"));
  CHECK_FALSE(in(loopback, "126.255.255.255"));
  CHECK_FALSE(in(loopback, "::2"));
  CHECK_FALSE(in(loopback, "127.evil.example"));  // the old string-prefix test let these in
  CHECK_FALSE(in(loopback, "127.0.0.1.example"));
  CHECK_FALSE(in(loopback, "::ffff:127.0.0.1.example"));
  CHECK_FALSE(in(loopback, "unix:"));
  CHECK_FALSE(in(loopback, ""));
  CHECK(in({"10.0.0.0/31"}, "10.0.0.1"));
  CHECK_FALSE(in({"10.0.0.0/31"}, "10.0.0.2"));
  CHECK(in({"10.0.0.7/32"}, "10.0.0.7"));
  CHECK_FALSE(in({"10.0.0.7/32"}, "10.0.0.6"));
  CHECK(in({"0.0.0.0/0"}, "203.0.113.9"));
  CHECK_FALSE(in({"0.0.0.0/0"}, "2001:db8::1"));  // IPv4 ranges hold no IPv6 address
  CHECK(in({"::/0"}, "2001:db8::1"));
  CHECK(in({"2001:db8:0:1::/64"}, "2001:db8:0:1:ffff::9"));
  CHECK_FALSE(in({"2001:db8:0:1::/64"}, "2001:db8:0:2::1"));
  CHECK(in({"2001:db8::/33"}, "2001:db8:7fff::1"));
  CHECK_FALSE(in({"2001:db8::/33"}, "2001:db8:8000::1"));
  CHECK_FALSE(in({}, "127.0.0.1"));
}
