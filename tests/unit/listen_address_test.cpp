#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "listen_address.h"
#include "temp_dir.h"

using namespace pvgate;
using Kind = ListenAddress::Kind;

namespace {

ListenAddress parsed(const std::string& spec) {
  ListenAddress a;
  const std::string error = parse_listen_address(spec, a);
  INFO(spec << ": " << error);
  REQUIRE(error.empty());
  return a;
}

std::string refused(const std::string& spec) {
  ListenAddress a;
  const std::string error = parse_listen_address(spec, a);
  INFO(spec);
  CHECK_FALSE(error.empty());
  return error;
}

}  // namespace

TEST_CASE("listen address: unix paths") {
  for (const char* spec : {"/run/pvgate.sock", "./pvgate.sock", "pvgate.sock", "../a:b",
                           "/tmp/with:colon", "localhost"}) {
    const ListenAddress a = parsed(spec);
    CHECK(a.kind == Kind::unix_path);
    CHECK(a.host == spec);
  }
  CHECK(parsed("/" + std::string(106, 'p')).kind == Kind::unix_path);
  CHECK(refused("/" + std::string(107, 'p')).find("longer than 107") != std::string::npos);
}

TEST_CASE("listen address: IPv4 and host names") {
  ListenAddress a = parsed("127.0.0.1:9000");
  CHECK(a.kind == Kind::ipv4);
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 9000);
  a = parsed(":9001");
  CHECK(a.kind == Kind::ipv4);
  CHECK(a.host.empty());
  CHECK(a.port == 9001);
  a = parsed("localhost:1");
  CHECK(a.kind == Kind::hostname);
  CHECK(a.port == 1);
  CHECK(parsed("fcgi-1.example:65535").port == 65535);
  for (const char* bad : {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:80x",
                          "127.0.0.1:-1", "host name:9000", "ho$t:9000"}) {
    refused(bad);
  }
}

TEST_CASE("listen address: IPv6 only in brackets") {
  ListenAddress a = parsed("[::1]:9471");
  CHECK(a.kind == Kind::ipv6);
  CHECK(a.host == "::1");
  CHECK(a.port == 9471);
  a = parsed("[::]:80");
  CHECK(a.kind == Kind::ipv6);
  CHECK(a.host == "::");
  CHECK(parsed("[fe80::1:2]:65535").port == 65535);
  const std::string error = refused("::1:9471");
  CHECK(error.find("ambiguous") != std::string::npos);
  CHECK(error.find("[::1]:9000") != std::string::npos);
  refused("fe80::1:9471");
  refused("[::1]");
  refused("[::1]9471");
  refused("[::1]:");
  refused("[::1]:65536");
  refused("[127.0.0.1]:9000");
  refused("[not-v6]:9000");
  refused("");
}

TEST_CASE("listen address: opening a unix socket replaces a stale file and sets the mode") {
  pvgate_test::TempDir dir;
  const std::string path = dir.path() + "/s.sock";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fclose(f);
  }
  std::string error;
  const int fd = open_listener(parsed(path), 0640, 16, error);
  INFO(error);
  REQUIRE(fd >= 0);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0640);
  ::close(fd);
}

TEST_CASE("listen address: [::1]:PORT listens on IPv6 loopback") {
  // A port that was free a moment ago (the kernel's pick for port 0).
  const int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_loopback;
  if (probe < 0 || ::bind(probe, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
    WARN("no IPv6 loopback here; skipped");
    if (probe >= 0) ::close(probe);
    return;
  }
  socklen_t len = sizeof any;
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&any), &len);
  const std::string port = std::to_string(ntohs(any.sin6_port));
  ::close(probe);

  std::string error;
  const int fd = open_listener(parsed("[::1]:" + port), 0, 16, error);
  INFO(error);
  REQUIRE(fd >= 0);
  sockaddr_in6 bound{};
  len = sizeof bound;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0);
  CHECK(bound.sin6_family == AF_INET6);
  CHECK(std::to_string(ntohs(bound.sin6_port)) == port);
  CHECK(IN6_IS_ADDR_LOOPBACK(&bound.sin6_addr));
  ::close(fd);
}
