#include "listen_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pvgate {
namespace {

constexpr std::size_t kMaxHostNameBytes = 253;

bool parse_port(const std::string& text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool host_name(const std::string& host) {
  if (host.empty() || host.size() > kMaxHostNameBytes) return false;
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

std::string parse_listen_address(const std::string& spec, ListenAddress& out) {
  out = ListenAddress{};
  if (spec.empty()) return "empty socket address";
  const std::size_t colon = spec.find(':');
  if (spec[0] == '/' || spec[0] == '.' || colon == std::string::npos) {
    if (spec.size() >= sizeof(sockaddr_un{}.sun_path))
      return "unix socket path '" + spec + "' is longer than " +
             std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes";
    out.kind = ListenAddress::Kind::unix_path;
    out.host = spec;
    return "";
  }
  if (spec[0] == '[') {
    const std::size_t close = spec.find("]:");
    if (close == std::string::npos)
      return "'" + spec + "': an IPv6 address is written [ADDRESS]:PORT, as [::1]:9000";
    out.host = spec.substr(1, close - 1);
    in6_addr ignored{};
    if (::inet_pton(AF_INET6, out.host.c_str(), &ignored) != 1)
      return "'" + spec + "': '" + out.host + "' is not an IPv6 address";
    if (!parse_port(spec.substr(close + 2), out.port))
      return "'" + spec + "': the port must be a number from 1 to 65535";
    out.kind = ListenAddress::Kind::ipv6;
    return "";
  }
  if (spec.find(':', colon + 1) != std::string::npos)
    return "'" + spec +
           "' is ambiguous: write an IPv6 address in brackets with the port after them, "
           "as [::1]:9000";
  out.host = spec.substr(0, colon);
  if (!parse_port(spec.substr(colon + 1), out.port))
    return "'" + spec + "': the port must be a number from 1 to 65535";
  in_addr ignored{};
  if (out.host.empty() || ::inet_pton(AF_INET, out.host.c_str(), &ignored) == 1) {
    out.kind = ListenAddress::Kind::ipv4;
  } else if (host_name(out.host)) {
    out.kind = ListenAddress::Kind::hostname;
  } else {
    return "'" + spec + "': '" + out.host + "' is neither an IPv4 address nor a host name";
  }
  return "";
}

int open_listener(const ListenAddress& address, int mode, int backlog, std::string& error) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  switch (address.kind) {
    case ListenAddress::Kind::unix_path: {
      auto& sun = reinterpret_cast<sockaddr_un&>(storage);
      sun.sun_family = AF_UNIX;
      std::memcpy(sun.sun_path, address.host.c_str(), address.host.size() + 1);
      length = sizeof sun;
      family = AF_UNIX;
      break;
    }
    case ListenAddress::Kind::ipv4: {
      auto& sin = reinterpret_cast<sockaddr_in&>(storage);
      sin.sin_family = AF_INET;
      sin.sin_port = htons(address.port);
      sin.sin_addr.s_addr = htonl(INADDR_ANY);
      if (!address.host.empty()) ::inet_pton(AF_INET, address.host.c_str(), &sin.sin_addr);
      length = sizeof sin;
      break;
    }
    case ListenAddress::Kind::ipv6: {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(storage);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_port = htons(address.port);
      ::inet_pton(AF_INET6, address.host.c_str(), &sin6.sin6_addr);
      length = sizeof sin6;
      family = AF_INET6;
      break;
    }
    case ListenAddress::Kind::hostname: {
      addrinfo hints{};
      hints.ai_family = AF_INET;  // as libfcgi's FCGX_OpenSocket did
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      const int rc = ::getaddrinfo(address.host.c_str(), nullptr, &hints, &found);
      if (rc != 0 || found == nullptr) {
        error = "cannot resolve '" + address.host + "': " + ::gai_strerror(rc);
        return -1;
      }
      std::memcpy(&storage, found->ai_addr, found->ai_addrlen);
      length = found->ai_addrlen;
      ::freeaddrinfo(found);
      reinterpret_cast<sockaddr_in&>(storage).sin_port = htons(address.port);
      break;
    }
  }
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = errno_text("socket");
    return -1;
  }
  const int on = 1;
  if (family != AF_UNIX) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  if (family == AF_UNIX) ::unlink(address.host.c_str());  // a stale socket from a crash
  const mode_t old_mask = family == AF_UNIX ? ::umask(0777 & ~mode) : 0;
  const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&storage), length);
  const int bind_errno = errno;
  if (family == AF_UNIX) ::umask(old_mask);
  if (bound != 0) {
    errno = bind_errno;
    error = errno_text("bind");
    ::close(fd);
    return -1;
  }
  if (family == AF_UNIX) ::chmod(address.host.c_str(), static_cast<mode_t>(mode));
  if (::listen(fd, backlog) != 0) {
    error = errno_text("listen");
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace pvgate
