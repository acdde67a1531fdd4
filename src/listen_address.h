// Where --socket asks pvgate to listen, and opening that listening socket.
//
//   /run/pvgate.sock, ./pvgate.sock, pvgate.sock   a unix socket (a spec
//                                                   starting with / or ., or
//                                                   without any ':')
//   127.0.0.1:9000, localhost:9000, :9000         IPv4 (a host name resolves
//                                                   to IPv4; no host: any)
//   [::1]:9000, [::]:9000                         IPv6, always in brackets
//
// `::1:9000` is refused: it reads as [::1]:9000 and as the address ::1:9000
// with no port alike, and a listener must not guess.
#pragma once

#include <cstdint>
#include <string>

namespace pvgate {

struct ListenAddress {
  enum class Kind { unix_path, ipv4, ipv6, hostname };
  Kind kind = Kind::unix_path;
  std::string host;  // the path for unix_path; "" for any IPv4 address
  std::uint16_t port = 0;
};

// Parses a --socket value. Returns "" and fills `out`, or an error text
// that says which form to use.
std::string parse_listen_address(const std::string& spec, ListenAddress& out);

// Opens a non-blocking, close-on-exec listening socket. A unix socket's stale
// file is replaced, and the new one gets `mode` (created under a umask, so it
// is never more open than that, then chmod). Returns the fd, or -1 and `error`.
int open_listener(const ListenAddress& address, int mode, int backlog, std::string& error);

}  // namespace pvgate
