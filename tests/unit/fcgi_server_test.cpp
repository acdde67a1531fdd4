// FcgiServer on a private unix socket with the real handler and fake
// collaborators: requests arriving a byte at a time and pipelined, Pipwave's
// answer coming back on another thread, the read deadline, shutdown.
#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fakes.h"
#include "fcgi_protocol.h"
#include "fcgi_server.h"
#include "handler.h"
#include "temp_dir.h"

using namespace pvgate;
using pvgate_test::CapturingLogger;
using pvgate_test::FakeClock;

namespace {

const char* kConfig = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
limits:
  read_timeout_ms: 100
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
)";

// Holds each call until the test answers it from its own thread, as the
// upstream's event loop would, or, as a Polled one (CurlUpstream with
// Driver::external), until a worker drives it after ready().
class HeldUpstream final : public Upstream, public Polled {
 public:
  HeldUpstream() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
  ~HeldUpstream() override { ::close(fd_); }
  HeldUpstream(const HeldUpstream&) = delete;
  HeldUpstream& operator=(const HeldUpstream&) = delete;

  int poll_fd() const override { return fd_; }
  // Answers what is held, on the caller's thread, once ready() said so.
  void drive() override {
    std::uint64_t n = 0;
    if (::read(fd_, &n, sizeof n) != sizeof n) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drivers_.push_back(std::this_thread::get_id());
    }
    answer_all();
  }
  void ready() {
    const std::uint64_t one = 1;
    REQUIRE(::write(fd_, &one, sizeof one) == sizeof one);
  }
  std::vector<std::thread::id> drivers() {
    std::lock_guard<std::mutex> lock(mutex_);
    return drivers_;
  }

  void post_async(const UpstreamConfig&, UpstreamCall, Done done) override {
    std::lock_guard<std::mutex> lock(mutex_);
    held_.push_back(std::move(done));
  }
  UpstreamResult post(const UpstreamConfig&, const UpstreamCall&) override { return {}; }
  std::size_t held() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_.size();
  }
  void answer_all() {
    std::vector<Done> done;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done.swap(held_);
    }
    for (auto& d : done) {
      UpstreamResult r;
      r.http_status = 200;
      r.body = R"({"status":200,"message":"Token sent.","reference":7})";
      d(std::move(r));
    }
  }

 private:
  int fd_;
  std::mutex mutex_;
  std::vector<Done> held_;
  std::vector<std::thread::id> drivers_;
};

std::string record(fcgi::Type type, std::uint16_t id, const std::string& content) {
  std::string out;
  fcgi::append_record(out, type, id, content);
  return out;
}

std::string pair(const std::string& name, const std::string& value) {
  return std::string(1, static_cast<char>(name.size())) +
         std::string(1, static_cast<char>(value.size())) + name + value;
}

std::string request(const std::string& method, const std::string& route,
                    const std::string& body = "", std::uint16_t id = 1) {
  const std::string begin("\0\1\1\0\0\0\0\0", 8);  // responder, keep the connection
  const std::string params = pair("REQUEST_METHOD", method) +
                             pair("DOCUMENT_URI", "/pvgate/" + route) +
                             pair("CONTENT_TYPE", "application/x-www-form-urlencoded") +
                             pair("CONTENT_LENGTH", std::to_string(body.size())) +
                             pair("PVGATE_MERCHANT", "shop-a") + pair("REMOTE_ADDR", "127.0.0.1");
  std::string out = record(fcgi::Type::begin_request, id, begin) +
                    record(fcgi::Type::params, id, params) + record(fcgi::Type::params, id, "");
  if (!body.empty()) out += record(fcgi::Type::stdin_stream, id, body);
  return out + record(fcgi::Type::stdin_stream, id, "");
}

const std::string kSend = "user_id=505315&contact_no_country_dialing_code=60&contact_no=123456789";

template <typename Cond>
bool eventually(Cond cond, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

struct Client {
  int fd = -1;
  explicit Client(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Client() { ::close(fd); }
  void send(const std::string& bytes) const {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  // STDOUT of one reply, up to its END_REQUEST ("" when the server closed).
  std::string reply() {
    std::string out;
    while (true) {
      while (buffer.size() < 8) {
        if (!fill()) return "";
      }
      const auto b = [&](std::size_t i) { return static_cast<unsigned char>(buffer[i]); };
      const std::size_t length = (b(4) << 8) | b(5);
      const std::size_t total = 8 + length + b(6);
      while (buffer.size() < total) {
        if (!fill()) return "";
      }
      const int type = b(1);
      if (type == 6) out += buffer.substr(8, length);
      buffer.erase(0, total);
      if (type == 3) return out;
    }
  }
  bool closed_by_server() {
    char c;
    return ::recv(fd, &c, 1, 0) == 0;
  }

 private:
  bool fill() {
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  std::string buffer;
};

struct Fixture {
  explicit Fixture(int threads = 2, bool polled = false)
      : holder(load_config_text(kConfig, "t").config), handler(holder, upstream, clock, log) {
    ServerOptions o;
    o.socket = dir.path() + "/pvgate.sock";
    o.threads = threads;
    if (polled) o.polled = &upstream;
    o.drain_deadline = std::chrono::seconds(5);
    server = std::make_unique<FcgiServer>(o, handler, holder, log);
    std::string error;
    REQUIRE(server->listen(error));
    server->start();
  }
  ~Fixture() {
    if (server) server->stop();
  }
  std::string path() const { return dir.path() + "/pvgate.sock"; }

  pvgate_test::TempDir dir;
  ConfigHolder holder;
  HeldUpstream upstream;
  FakeClock clock;
  CapturingLogger log;
  Handler handler;
  std::unique_ptr<FcgiServer> server;
};

}  // namespace

TEST_CASE("server: a request sent one byte at a time, then another on the same connection") {
  Fixture f;
  Client c(f.path());
  const std::string bytes = request("GET", "nope");
  for (const char b : bytes) c.send(std::string(1, b));
  CHECK(c.reply().rfind("Status: 404 Not Found\r\n", 0) == 0);
  c.send(request("GET", "healthz"));
  CHECK(c.reply().rfind("Status: 200 OK\r\n", 0) == 0);
  CHECK(f.server->requests_served() == 2);
}

TEST_CASE("server: pipelined requests are answered in order") {
  Fixture f;
  Client c(f.path());
  c.send(request("GET", "nope") + request("GET", "healthz") + request("POST", "nope", "a=1"));
  CHECK(c.reply().rfind("Status: 404", 0) == 0);
  CHECK(c.reply().rfind("Status: 200", 0) == 0);
  CHECK(c.reply().rfind("Status: 404", 0) == 0);
}

TEST_CASE("server: a request waiting on the upstream holds no worker; the answer comes back") {
  Fixture f(1);  // one worker: it must be free while the call is out
  Client forwarded(f.path());
  forwarded.send(request("POST", "send-token", kSend));
  REQUIRE(eventually([&] { return f.upstream.held() == 1; }));
  Client other(f.path());
  other.send(request("GET", "healthz"));
  CHECK(other.reply().rfind("Status: 200", 0) == 0);
  std::thread loop([&] { f.upstream.answer_all(); });  // the upstream's thread
  const std::string reply = forwarded.reply();
  loop.join();
  CHECK(reply.rfind("Status: 200 OK\r\n", 0) == 0);
  CHECK(reply.find("\"reference\":7") != std::string::npos);
}

TEST_CASE("server: the workers drive a polled upstream, and the answers it finishes are replied") {
  Fixture f(1, true);  // one worker: it drives, then completes every answered request itself
  for (int round = 0; round < 2; ++round) {  // the poll fd is re-armed after each drive
    INFO("round " << round);
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 3; ++i) {
      clients.push_back(std::make_unique<Client>(f.path()));
      clients.back()->send(request("POST", "send-token", kSend));
    }
    REQUIRE(eventually([&] { return f.upstream.held() == 3; }));
    f.upstream.ready();
    for (auto& c : clients) {
      const std::string reply = c->reply();
      CHECK(reply.rfind("Status: 200 OK\r\n", 0) == 0);
      CHECK(reply.find("\"reference\":7") != std::string::npos);
    }
    const std::vector<std::thread::id> drivers = f.upstream.drivers();
    REQUIRE(drivers.size() == static_cast<std::size_t>(round + 1));
    CHECK(drivers.back() != std::this_thread::get_id());  // a worker
  }
  CHECK(f.server->requests_served() == 6);
}

TEST_CASE("server: part of a request past read_timeout_ms is closed, an idle connection is not") {
  Fixture f;
  Client idle(f.path());
  Client partial(f.path());
  partial.send(request("GET", "healthz").substr(0, 20));
  REQUIRE(eventually([&] { return f.server->connections() == 2; }));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] {
    f.server->sweep();
    return f.server->connections() == 1;
  }));
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(50));
  CHECK(partial.closed_by_server());
  idle.send(request("GET", "healthz"));
  CHECK(idle.reply().rfind("Status: 200", 0) == 0);
}

TEST_CASE("server: protocol errors and closed clients free their connection") {
  Fixture f;
  {
    Client bad(f.path());
    bad.send(std::string("\x07\x01\x00\x01\x00\x08\x00\x00", 8));  // version 7
    CHECK(bad.closed_by_server());
    Client gone(f.path());
    gone.send(request("GET", "healthz").substr(0, 30));
  }
  CHECK(eventually([&] { return f.server->connections() == 0; }));
  Client c(f.path());
  c.send(request("GET", "healthz"));
  CHECK(c.reply().rfind("Status: 200", 0) == 0);
}

TEST_CASE("server: stop() closes idle connections and finishes a request waiting upstream") {
  Fixture f(1);
  Client idle(f.path());
  Client waiting(f.path());
  waiting.send(request("POST", "send-token", kSend));
  REQUIRE(eventually([&] { return f.upstream.held() == 1; }));
  REQUIRE(eventually([&] { return f.server->connections() == 2; }));
  std::thread answer([&] {
    // Answer once stop() has closed the idle connection.
    eventually([&] { return f.server->connections() == 1; });
    f.upstream.answer_all();
  });
  CHECK(f.server->stop());
  answer.join();
  CHECK(idle.closed_by_server());
  CHECK(waiting.reply().rfind("Status: 200", 0) == 0);
  CHECK(waiting.closed_by_server());
  f.server.reset();
}
