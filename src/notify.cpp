#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace pvgate {
namespace {

// sockaddr_un for `name`: a path, or '@' + an abstract name (sun_path[0] is
// NUL, and the length counts no terminator, as systemd binds it).
bool make_address(const std::string& name, sockaddr_un& addr, socklen_t& length) {
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (name.size() < 2 || (name[0] != '/' && name[0] != '@')) return false;
  if (name[0] == '/') {
    if (name.size() >= sizeof addr.sun_path) return false;  // room for the NUL
    std::memcpy(addr.sun_path, name.data(), name.size());
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
  } else {
    if (name.size() > sizeof addr.sun_path) return false;
    addr.sun_path[0] = '\0';
    std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  }
  return true;
}

}  // namespace

Notifier Notifier::from_environment() {
  const char* name = std::getenv("NOTIFY_SOCKET");
  return Notifier(name == nullptr ? std::string() : std::string(name));
}

Notifier::Notifier(std::string socket_name) {
  sockaddr_un addr;
  socklen_t length = 0;
  if (make_address(socket_name, addr, length)) socket_ = std::move(socket_name);
}

bool Notifier::send(std::string_view state, std::string* error) const {
  if (!enabled()) return true;
  sockaddr_un addr;
  socklen_t length = 0;
  make_address(socket_, addr, length);  // checked by the constructor
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (error != nullptr) *error = std::string("notify socket: ") + std::strerror(errno);
    return false;
  }
  ssize_t n;
  do {
    n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&addr), length);
  } while (n < 0 && errno == EINTR);
  const int saved = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(state.size())) {
    if (error != nullptr) {
      *error = "notify " + socket_ + ": " + (n < 0 ? std::strerror(saved) : "short send");
    }
    return false;
  }
  return true;
}

std::string Notifier::reloading_message(std::uint64_t monotonic_usec) {
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec);
}

std::uint64_t Notifier::monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace pvgate
