#include "notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace pvgate;

namespace {

// A datagram socket standing in for systemd's NOTIFY_SOCKET, bound to a path
// in a private directory or to an abstract name.
struct FakeManager {
  int fd = -1;
  std::string name;  // as NOTIFY_SOCKET spells it
  std::string dir;

  explicit FakeManager(bool abstract) {
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    socklen_t length;
    if (abstract) {
      name = "@pvgate-notify-test-" + std::to_string(::getpid());
      std::memcpy(addr.sun_path + 1, name.data() + 1, name.size() - 1);
      length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    } else {
      char tmpl[] = "/tmp/pvgate-notify-XXXXXX";
      REQUIRE(::mkdtemp(tmpl) != nullptr);
      dir = tmpl;
      name = dir + "/notify";
      std::memcpy(addr.sun_path, name.c_str(), name.size() + 1);
      length = static_cast<socklen_t>(sizeof addr);
    }
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), length) == 0);
  }
  ~FakeManager() {
    ::close(fd);
    if (!dir.empty()) {
      ::unlink(name.c_str());
      ::rmdir(dir.c_str());
    }
  }
  // The next datagram, or "(none)" when nothing is waiting.
  std::string next() const {
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n < 0 ? std::string("(none)") : std::string(buf, static_cast<std::size_t>(n));
  }
};

}  // namespace

TEST_CASE("notify messages are sd_notify's, one datagram each") {
  for (const bool abstract : {false, true}) {
    INFO("abstract socket name: " << abstract);
    FakeManager manager(abstract);
    const Notifier n(manager.name);
    REQUIRE(n.enabled());
    CHECK(n.ready());
    CHECK(manager.next() == "READY=1");
    CHECK(n.send("STATUS=x\nREADY=1"));
    CHECK(manager.next() == "STATUS=x\nREADY=1");
    CHECK(n.stopping());
    CHECK(manager.next() == "STOPPING=1");
    const std::uint64_t before = Notifier::monotonic_usec();
    CHECK(n.reloading());
    const std::uint64_t after = Notifier::monotonic_usec();
    const std::string msg = manager.next();
    const std::string head = "RELOADING=1\nMONOTONIC_USEC=";
    REQUIRE(msg.rfind(head, 0) == 0);
    const std::string digits = msg.substr(head.size());
    REQUIRE(!digits.empty());
    CHECK(digits.find_first_not_of("0123456789") == std::string::npos);
    const std::uint64_t usec = std::stoull(digits);
    CHECK(usec >= before);
    CHECK(usec <= after);
    CHECK(manager.next() == "(none)");
  }
}

TEST_CASE("the reloading message spelled out") {
  CHECK(Notifier::reloading_message(0) == "RELOADING=1\nMONOTONIC_USEC=0");
  CHECK(Notifier::reloading_message(18446744073709551615ull) ==
        "RELOADING=1\nMONOTONIC_USEC=18446744073709551615");
  CHECK(Notifier::ready_message() == "READY=1");
  CHECK(Notifier::stopping_message() == "STOPPING=1");
}

TEST_CASE("no NOTIFY_SOCKET, or one pvgate cannot use: nothing is sent, nothing fails") {
  for (const char* name : {"", "relative/path", "vsock:2:1234", "@", "/"}) {
    INFO(name);
    const Notifier n{std::string(name)};
    CHECK_FALSE(n.enabled());
    CHECK(n.ready());
  }
  const std::string too_long = "/" + std::string(sizeof(sockaddr_un::sun_path), 'x');
  CHECK_FALSE(Notifier(too_long).enabled());

  const char* saved = std::getenv("NOTIFY_SOCKET");
  const std::string keep = saved == nullptr ? "" : saved;
  ::unsetenv("NOTIFY_SOCKET");
  CHECK_FALSE(Notifier::from_environment().enabled());
  FakeManager manager(false);
  ::setenv("NOTIFY_SOCKET", manager.name.c_str(), 1);
  const Notifier from_env = Notifier::from_environment();
  CHECK(from_env.enabled());
  CHECK(from_env.ready());
  CHECK(manager.next() == "READY=1");
  if (saved != nullptr) {
    ::setenv("NOTIFY_SOCKET", keep.c_str(), 1);
  } else {
    ::unsetenv("NOTIFY_SOCKET");
  }
}

TEST_CASE("a socket nobody listens on: send reports why, and does not throw") {
  const Notifier n("/nonexistent-dir-pvgate/notify");
  REQUIRE(n.enabled());
  std::string why;
  CHECK_FALSE(n.send("READY=1", &why));
  CHECK(why.find("/nonexistent-dir-pvgate/notify") != std::string::npos);
}
