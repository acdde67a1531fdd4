// A private redis-server for the tests: started on first use on a unix socket
// in a fresh temporary directory (no TCP port, no persistence), killed when
// the test process exits (and by the kernel if the process dies first).
//
// RedisFactory gives the store contract suite a RedisStore on that socket
// after FLUSHALL, so each test case starts empty. kill()/restart() let the
// failure tests take the server away and bring it back on the same socket.
//
// The helpers speak RESP over a plain socket, so hiredis stays confined to
// src/redis_store.cpp.
#pragma once

#include <catch2/catch.hpp>

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "redis_store.h"
#include "temp_dir.h"

namespace pvgate_test {

inline constexpr std::chrono::milliseconds kRedisStartDeadline{10000};
inline constexpr std::chrono::milliseconds kRedisPollInterval{5};

// One RESP exchange on a fresh connection to the unix socket `path`: sends
// each command in `commands` and returns the reply to the last one, as
// "+OK", "-ERR ...", ":42", "$<bulk text>" or "*<n>" (arrays are not read
// further). "" when the server cannot be reached or does not answer within 1 s.
inline std::string redis_raw(const std::string& path,
                             const std::vector<std::vector<std::string>>& commands) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return "";
  path.copy(addr.sun_path, path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";

  std::string request;
  for (const auto& argv : commands) {
    request += "*" + std::to_string(argv.size()) + "\r\n";
    for (const auto& a : argv) request += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  }
  // MSG_NOSIGNAL: a server that just died must not kill the test with SIGPIPE.
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return "";
  }

  std::string buffer;
  std::size_t pos = 0;
  auto read_line = [&](std::string& line) {
    for (;;) {
      const std::size_t eol = buffer.find("\r\n", pos);
      if (eol != std::string::npos) {
        line = buffer.substr(pos, eol - pos);
        pos = eol + 2;
        return true;
      }
      char chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  };
  std::string line;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    if (!read_line(line) || line.empty()) return "";
    if (line[0] == '$' && line != "$-1") {
      std::string bulk;
      if (!read_line(bulk)) return "";
      line = "$" + bulk;
    } else if (line[0] == '*' && i + 1 < commands.size()) {
      return "";  // arrays are only supported as the last reply
    }
  }
  return line;
}

class RedisServer {
 public:
  // The process-wide server, started on first use.
  static RedisServer& instance() {
    static RedisServer server;
    return server;
  }

  const std::string& socket_path() const { return socket_; }
  std::string url() const { return "unix://" + socket_; }
  bool running() const { return pid_ > 0; }

  // Sends one command; see redis_raw().
  std::string command(const std::vector<std::string>& argv) const {
    return redis_raw(socket_, {argv});
  }

  // SIGKILL, like a crash or an OOM kill: no goodbye to connected clients.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  // Starts the server again on the same socket and waits until it answers.
  void restart() {
    kill();
    start();
  }

  ~RedisServer() { kill(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

 private:
  RedisServer() : socket_(dir_.path() + "/redis.sock") {
    if (socket_.size() >= sizeof(sockaddr_un{}.sun_path)) {
      FAIL("unix socket path too long (set TMPDIR to a shorter directory): " << socket_);
    }
    start();
  }

  void start() {
    ::unlink(socket_.c_str());
    const std::vector<std::string> args{"redis-server", "--port",    "0",
                                        "--unixsocket", socket_,     "--unixsocketperm",
                                        "700",          "--save",    "",
                                        "--appendonly", "no",        "--dir",
                                        dir_.path(),    "--logfile", dir_.path() + "/redis.log"};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid == 0) {
      // Dies with the test process even if it crashes (async-signal-safe calls only).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    if (pid < 0) FAIL("fork failed");
    pid_ = pid;

    const auto deadline = std::chrono::steady_clock::now() + kRedisStartDeadline;
    for (;;) {
      if (command({"PING"}) == "+PONG") return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("redis-server exited during start-up (is Debian's redis-server installed?); log:\n"
             << log_text());
      }
      if (std::chrono::steady_clock::now() > deadline) {
        kill();
        FAIL("redis-server did not answer PING within " << kRedisStartDeadline.count()
                                                        << " ms; log:\n"
                                                        << log_text());
      }
      std::this_thread::sleep_for(kRedisPollInterval);
    }
  }

  std::string log_text() const {
    std::ifstream in(dir_.path() + "/redis.log");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  TempDir dir_;  // removed after the server is killed (members die after ~RedisServer's body)
  std::string socket_;
  pid_t pid_ = -1;
};

// Options for a store on the fixture's server; tests adjust them.
inline pvgate::RedisStoreOptions redis_test_options() {
  pvgate::RedisStoreOptions options;
  options.url = RedisServer::instance().url();
  return options;
}

// A store on the fixture's server, which is emptied first (and restarted if a
// failed test left it killed).
inline std::unique_ptr<pvgate::RedisStore> make_redis_store(
    const pvgate::RedisStoreOptions& options, const pvgate::Clock* clock = nullptr) {
  RedisServer& server = RedisServer::instance();
  if (!server.running()) server.restart();
  REQUIRE(server.command({"FLUSHALL"}) == "+OK");
  std::string error;
  auto store = pvgate::RedisStore::create(options, error, clock);
  INFO(error);
  REQUIRE(store != nullptr);
  return store;
}

}  // namespace pvgate_test

struct RedisFactory {
  static std::unique_ptr<pvgate::ThrottleStore> make() {
    return pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  }
};
