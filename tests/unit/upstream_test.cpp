// CurlUpstream against a loopback HTTP server in this process: the headers a
// call sends follow its UpstreamCall (Pipwave's JSON with x-api-key, a
// siteverify form without it), also when both kinds share the pooled transfers
// and their cached header lists at once; a header value that would add a line
// of its own is refused before anything is sent. The answers mapped to
// UpstreamResult (statuses, timeouts, TLS) are test_upstream.py's, through nginx.
// With upstream.http2 auto or off, calls to a server that never answers all end
// by their timeout (HTTP/2 itself: tests/integration/test_upstream_http2.py).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "text.h"
#include "upstream.h"

using namespace pvgate;

namespace {

constexpr int kIoTimeoutS = 10;  // a stuck test fails instead of hanging

struct Request {
  std::string head;  // request line and headers, as received
  std::string body;
};

// The values of header `name` (any case) in `head`, in order.
std::vector<std::string> header_values(const std::string& head, const std::string& name) {
  std::vector<std::string> out;
  const std::string want = ascii_lower(name) + ":";
  std::size_t at = head.find("\r\n");
  while (at != std::string::npos && at + 2 < head.size()) {
    const std::size_t start = at + 2;
    const std::size_t end = head.find("\r\n", start);
    const std::string line = head.substr(start, end - start);
    if (ascii_lower(line.substr(0, want.size())) == want) {
      std::string value = line.substr(want.size());
      value.erase(0, value.find_first_not_of(' '));
      out.push_back(value);
    }
    at = end;
  }
  return out;
}

// A listening TCP socket on 127.0.0.1, on a port the kernel picks (`port`).
int listen_on_loopback(int flags, int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(fd >= 0);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(fd, 128) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  port = ntohs(addr.sin_port);
  return fd;
}

// Loopback HTTP/1.1 on a port the kernel picks. One connection at a time:
// reads a request (Content-Length bodies only), keeps it, answers 200 with a
// small JSON body and closes. Enough for curl, which waits in the backlog.
class RecordingServer {
 public:
  RecordingServer() {
    fd_ = listen_on_loopback(0, port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~RecordingServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(fd_);
  }
  RecordingServer(const RecordingServer&) = delete;
  RecordingServer& operator=(const RecordingServer&) = delete;

  UpstreamConfig config(const std::string& path = "/siteverify") const {
    UpstreamConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(port_) + path;
    c.loopback = true;
    c.connect_timeout_ms = kIoTimeoutS * 1000;
    c.timeout_ms = kIoTimeoutS * 1000;
    return c;
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  void serve() {
    while (true) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;  // shut down
      timeval tv{kIoTimeoutS, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      Request r;
      if (read_request(c, r)) {
        {
          std::lock_guard<std::mutex> lock(mutex_);
          requests_.push_back(r);
        }
        const std::string answer =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n"
            "Connection: close\r\n\r\n{\"success\":true}";
        [[maybe_unused]] const ssize_t n = ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      ::close(c);
    }
  }
  static bool read_request(int c, Request& r) {
    std::string data;
    char buf[4096];
    std::size_t head_end = std::string::npos;
    std::size_t body_size = 0;
    while (head_end == std::string::npos || data.size() < head_end + 4 + body_size) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return false;
      data.append(buf, static_cast<std::size_t>(n));
      if (head_end == std::string::npos &&
          (head_end = data.find("\r\n\r\n")) != std::string::npos) {
        const auto length = header_values(data.substr(0, head_end + 2), "content-length");
        body_size = length.empty() ? 0 : std::stoul(length.front());
      }
    }
    r.head = data.substr(0, head_end + 2);
    r.body = data.substr(head_end + 4, body_size);
    return true;
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<Request> requests_;
};

// Loopback HTTP that accepts every connection and never answers: counts the
// connections, holds them open until destroyed.
class SilentServer {
 public:
  SilentServer() {
    fd_ = listen_on_loopback(SOCK_NONBLOCK, port_);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          held_.push_back(c);
          ++accepted_;
        }
      }
      for (const int c : held_) ::close(c);
    });
  }
  ~SilentServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;

  UpstreamConfig config(long timeout_ms) const {
    UpstreamConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(port_) + "/phone-verify";
    c.loopback = true;
    c.connect_timeout_ms = timeout_ms;
    c.timeout_ms = timeout_ms;
    return c;
  }
  int accepted() const { return accepted_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::vector<int> held_;  // the thread's own
  std::thread thread_;
};

// Loopback HTTP/1.1 that keeps its connections: each one is served by a
// thread of its own, every request answered 200 at once.
class KeepAliveServer {
 public:
  KeepAliveServer() {
    fd_ = listen_on_loopback(0, port_);
    thread_ = std::thread([this] {
      while (true) {
        const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;  // shut down
        std::lock_guard<std::mutex> lock(mutex_);
        conns_.push_back(c);
        servers_.emplace_back([this, c] { serve(c); });
      }
    });
  }
  ~KeepAliveServer() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const int c : conns_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : servers_) t.join();
    for (const int c : conns_) ::close(c);
    ::close(fd_);
  }
  KeepAliveServer(const KeepAliveServer&) = delete;
  KeepAliveServer& operator=(const KeepAliveServer&) = delete;

  UpstreamConfig config() const {
    UpstreamConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(port_) + "/phone-verify";
    c.loopback = true;
    c.connect_timeout_ms = kIoTimeoutS * 1000;
    c.timeout_ms = kIoTimeoutS * 1000;
    return c;
  }
  int requests() const { return requests_; }
  // Closes every connection from this side, as a server's keepalive timeout does.
  void close_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const int c : conns_) ::shutdown(c, SHUT_RDWR);
  }

 private:
  void serve(int c) {
    std::string data;
    char buf[4096];
    while (true) {
      const std::size_t end = data.find("\r\n\r\n");
      if (end != std::string::npos) {
        const auto length = header_values(data.substr(0, end + 2), "content-length");
        const std::size_t whole = end + 4 + (length.empty() ? 0 : std::stoul(length.front()));
        if (data.size() >= whole) {
          data.erase(0, whole);
          ++requests_;
          const std::string answer =
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
          if (::send(c, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return;
          continue;
        }
      }
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      data.append(buf, static_cast<std::size_t>(n));
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> requests_{0};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<int> conns_;
  std::vector<std::thread> servers_;
};

// Drives a CurlUpstream with Driver::external as pvgate's workers do: waits
// for its poll fd, then drive().
class DriverThread {
 public:
  explicit DriverThread(CurlUpstream& upstream)
      : thread_([this, &upstream] {
          while (!stop_) {
            pollfd p{upstream.poll_fd(), POLLIN, 0};
            if (::poll(&p, 1, 20) > 0) {
              upstream.drive();
              ++drives_;
            }
          }
        }) {}
  ~DriverThread() {
    stop_ = true;
    thread_.join();
  }
  DriverThread(const DriverThread&) = delete;
  DriverThread& operator=(const DriverThread&) = delete;
  int drives() const { return drives_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> drives_{0};
  std::thread thread_;
};

// Starts `n` calls at once and waits for them all: their results.
std::vector<UpstreamResult> post_all(CurlUpstream& upstream, const UpstreamConfig& config, int n) {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<UpstreamResult> results;
  for (int i = 0; i < n; ++i) {
    upstream.post_async(config, UpstreamCall{"pk-test-key", "{}"}, [&](UpstreamResult r) {
      std::lock_guard<std::mutex> lock(mutex);
      results.push_back(std::move(r));
      cv.notify_one();
    });
  }
  std::unique_lock<std::mutex> lock(mutex);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(kIoTimeoutS),
                      [&] { return results.size() == static_cast<std::size_t>(n); }));
  return results;
}

UpstreamCall pipwave_call(const std::string& body) {
  return UpstreamCall{"pk-test-key", body};  // content_type keeps its default
}

UpstreamCall form_call(const std::string& body) {
  UpstreamCall call;
  call.body = body;
  call.content_type = "application/x-www-form-urlencoded";
  return call;
}

void check_pipwave_shape(const Request& r) {
  INFO(r.head);
  CHECK(r.head.rfind("POST /siteverify HTTP/1.1\r\n", 0) == 0);
  CHECK(header_values(r.head, "content-type") == std::vector<std::string>{"application/json"});
  CHECK(header_values(r.head, "x-api-key") == std::vector<std::string>{"pk-test-key"});
  CHECK(header_values(r.head, "accept") == std::vector<std::string>{"application/json"});
}

void check_form_shape(const Request& r) {
  INFO(r.head);
  CHECK(header_values(r.head, "content-type") ==
        std::vector<std::string>{"application/x-www-form-urlencoded"});
  CHECK(header_values(r.head, "x-api-key").empty());
  CHECK(header_values(r.head, "accept") == std::vector<std::string>{"application/json"});
}

}  // namespace

TEST_CASE("upstream: a call sends its content type, and x-api-key only with an api_key") {
  upstream_global_init();
  RecordingServer server;
  CurlUpstream upstream(4);
  const UpstreamConfig config = server.config();

  // One transfer serves all three in turn (post() waits): its header list
  // follows each call, not the call before.
  const UpstreamResult a = upstream.post(config, pipwave_call("{\"n\":\"1\"}"));
  const UpstreamResult b = upstream.post(config, form_call("secret=s&response=t%2B1"));
  const UpstreamResult c = upstream.post(config, pipwave_call("{\"n\":\"3\"}"));
  for (const UpstreamResult* r : {&a, &b, &c}) {
    CHECK(r->error == UpstreamError::none);
    CHECK(r->http_status == 200);
    CHECK(r->body == "{\"success\":true}");
  }

  const std::vector<Request> got = server.requests();
  REQUIRE(got.size() == 3);
  check_pipwave_shape(got[0]);
  CHECK(got[0].body == "{\"n\":\"1\"}");
  check_form_shape(got[1]);
  CHECK(got[1].body == "secret=s&response=t%2B1");
  check_pipwave_shape(got[2]);
  CHECK(got[2].body == "{\"n\":\"3\"}");
}

TEST_CASE("upstream: both kinds of call at once share the transfers without mixing headers") {
  upstream_global_init();
  RecordingServer server;
  constexpr int kCalls = 40;
  CurlUpstream upstream(kCalls);  // all in flight at once; a call past the limit fails
  const UpstreamConfig config = server.config();

  std::mutex mutex;
  std::condition_variable cv;
  int done = 0;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    const std::string n = std::to_string(i);
    UpstreamCall call =
        i % 2 == 0 ? pipwave_call("{\"n\":\"" + n + "\"}") : form_call("secret=s&response=" + n);
    upstream.post_async(config, std::move(call), [&](UpstreamResult r) {
      std::lock_guard<std::mutex> lock(mutex);
      ok += r.error == UpstreamError::none && r.http_status == 200 ? 1 : 0;
      ++done;
      cv.notify_one();
    });
  }
  {
    std::unique_lock<std::mutex> lock(mutex);
    REQUIRE(
        cv.wait_for(lock, std::chrono::seconds(kIoTimeoutS * 3), [&] { return done == kCalls; }));
  }
  CHECK(ok == kCalls);

  const std::vector<Request> got = server.requests();
  REQUIRE(got.size() == static_cast<std::size_t>(kCalls));
  int forms = 0;
  for (const Request& r : got) {
    if (r.body.rfind("secret=", 0) == 0) {
      check_form_shape(r);
      ++forms;
    } else {
      check_pipwave_shape(r);
    }
  }
  CHECK(forms == kCalls / 2);
}

TEST_CASE("upstream: a header value with a control character is refused, unsent") {
  upstream_global_init();
  RecordingServer server;
  CurlUpstream upstream(2);
  const UpstreamConfig config = server.config();

  UpstreamCall key = pipwave_call("{}");
  key.api_key = "pk\r\nX-Injected: 1";
  UpstreamCall type = form_call("a=1");
  type.content_type = "application/x-www-form-urlencoded\nX-Injected: 1";
  UpstreamCall nul = pipwave_call("{}");
  nul.api_key = std::string("pk\0x", 4);
  for (const UpstreamCall* call : {&key, &type, &nul}) {
    const UpstreamResult r = upstream.post(config, *call);
    CHECK(r.error == UpstreamError::transport);
    CHECK(r.detail == "a header value holds a control character");
  }
  // The transfers are usable again, and nothing of the refused calls arrived.
  CHECK(upstream.post(config, form_call("a=2")).error == UpstreamError::none);
  const std::vector<Request> got = server.requests();
  REQUIRE(got.size() == 1);
  CHECK(got[0].body == "a=2");
  CHECK(got[0].head.find("X-Injected") == std::string::npos);
}

TEST_CASE("upstream: http2 auto or off, every call to a silent server ends by its timeout") {
  upstream_global_init();
  constexpr long kTimeoutMs = 400;
  // Past the timeout: curl's own, or the loop's sweep for a call still in
  // curl's queue (the h2 cap per host), plus a scheduling margin.
  constexpr auto kLatest = std::chrono::milliseconds(kTimeoutMs + 250 + 100 + 500);
  using Driver = CurlUpstream::Driver;
  for (const auto& [mode, driver] :
       {std::pair{Http2::automatic, Driver::own_thread}, std::pair{Http2::off, Driver::own_thread},
        std::pair{Http2::automatic, Driver::external}, std::pair{Http2::off, Driver::external}}) {
    INFO((mode == Http2::automatic ? "auto" : "off")
         << (driver == Driver::external ? ", driven from outside" : ", own thread"));
    SilentServer server;
    constexpr int kCalls = 12;
    CurlUpstream upstream(kCalls, mode, driver);
    // Its timers (curl's and the overdue sweep's) come through the poll fd.
    std::optional<DriverThread> outside;
    if (driver == Driver::external) outside.emplace(upstream);
    const auto start = std::chrono::steady_clock::now();
    // The connections open half-way to the timeout, before any call ended:
    // once the first ones time out and close, calls queued behind the cap
    // connect in their place, so the total at the end says nothing of it.
    std::atomic<int> midway{-1};
    std::thread sampler([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(kTimeoutMs / 2));
      midway = server.accepted();
    });
    const std::vector<UpstreamResult> results =
        post_all(upstream, server.config(kTimeoutMs), kCalls);
    sampler.join();
    CHECK(std::chrono::steady_clock::now() - start < kLatest);
    for (const UpstreamResult& r : results) CHECK(r.error == UpstreamError::timeout);
    if (mode == Http2::off) {
      CHECK(server.accepted() == kCalls);  // HTTP/1.1: one connection per call at once
    } else {
      // Plain http:// speaks HTTP/1.1 without waiting for a shared
      // connection, but before any answer has shown the server has no h2,
      // at most the per-host cap (8) connect.
      CHECK(midway.load() >= 0);
      CHECK(midway.load() <= CurlUpstream::kMinHostConnectionCap);
    }
  }
}

TEST_CASE(
    "upstream: driven from outside, a call on a kept connection leaves on the caller's "
    "thread, and its answer waits for drive()") {
  upstream_global_init();
  KeepAliveServer server;
  CurlUpstream upstream(4, Http2::off, CurlUpstream::Driver::external);
  std::mutex mutex;
  std::vector<UpstreamResult> results;
  const auto post = [&] {
    upstream.post_async(server.config(), pipwave_call("{}"), [&](UpstreamResult r) {
      std::lock_guard<std::mutex> lock(mutex);
      results.push_back(std::move(r));
    });
  };
  const auto answered = [&] {
    std::lock_guard<std::mutex> lock(mutex);
    return results.size();
  };
  // Drives whenever the poll fd says so, until `n` calls are answered.
  const auto drive_until = [&](std::size_t n) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(kIoTimeoutS);
    while (answered() < n && std::chrono::steady_clock::now() < end) {
      pollfd p{upstream.poll_fd(), POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) upstream.drive();
    }
    return answered() == n;
  };

  post();  // a new connection: connecting needs the poll fd and drive()
  REQUIRE(drive_until(1));
  post();  // the kept connection: written before post_async returned
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(kIoTimeoutS);
  while (server.requests() < 2 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  CHECK(server.requests() == 2);  // with nobody in drive()
  // The answer comes through the poll fd (or already did, when curl found it
  // there before post_async returned).
  REQUIRE(drive_until(2));
  std::lock_guard<std::mutex> lock(mutex);
  for (const UpstreamResult& r : results) {
    CHECK(r.error == UpstreamError::none);
    CHECK(r.http_status == 200);
    CHECK(r.body == "{}");
  }
  CHECK(results[0].connections_opened == 1);
  CHECK(results[1].connections_opened == 0);
}

TEST_CASE(
    "upstream: a kept connection its server closed is dropped, and the next call opens "
    "another") {
  upstream_global_init();
  KeepAliveServer server;
  CurlUpstream upstream(4, Http2::off, CurlUpstream::Driver::external);
  DriverThread driver(upstream);
  const UpstreamResult first = upstream.post(server.config(), pipwave_call("{}"));
  CHECK(first.error == UpstreamError::none);
  CHECK(first.connections_opened == 1);
  // The connection waits in curl's cache, still in the epoll set (parked).
  // Its server closes it: that readiness takes it out of the set once, it
  // does not keep the poll fd readable.
  const int at_close = driver.drives();
  server.close_all();
  // Wait for the drive that handles the close, then count what follows it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (driver.drives() == at_close && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(driver.drives() > at_close);  // the close made the poll fd readable
  const int before = driver.drives();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(driver.drives() - before < 10);  // a socket left readable: thousands
  const UpstreamResult second = upstream.post(server.config(), pipwave_call("{}"));
  CHECK(second.error == UpstreamError::none);
  CHECK(second.http_status == 200);
  CHECK(second.connections_opened == 1);  // a new one, not the closed one
  CHECK(server.requests() == 2);
}

TEST_CASE(
    "upstream: with http2 auto, calls that waited for a refused connection are not delivered") {
  upstream_global_init();
  // A port nobody listens on: listened on, then closed.
  int port = 0;
  ::close(listen_on_loopback(0, port));
  UpstreamConfig config;
  config.url = "https://127.0.0.1:" + std::to_string(port) + "/phone-verify";
  config.loopback = true;
  // Over https, the calls of a burst wait (CURLOPT_PIPEWAIT) for the first
  // one's connection; when it is refused, each fails as never sent (the quota
  // refund rule), as with one connection per call.
  constexpr int kCalls = 20;
  CurlUpstream upstream(kCalls, Http2::automatic);
  for (const UpstreamResult& r : post_all(upstream, config, kCalls)) {
    CHECK(r.error == UpstreamError::not_delivered);
  }
}
