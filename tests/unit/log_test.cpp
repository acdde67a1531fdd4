#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "log.h"

using namespace pvgate;

namespace {

// The line without its timestamp, which differs between two calls.
std::string without_ts(const std::string& line) {
  const std::size_t at = line.find("\"ts\":\"");
  if (at == std::string::npos) return line;
  return line.substr(0, at) + line.substr(line.find('"', at + 6) + 1);
}

// Both ends of a SOCK_SEQPACKET pair: every write(2) the logger makes is one
// message, so a test sees how the lines were grouped into writes.
struct Capture {
  int fds[2] = {-1, -1};
  Capture() { REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) == 0); }
  ~Capture() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  // The writes made so far, without waiting.
  std::vector<std::string> writes() const {
    std::vector<std::string> out;
    char buf[65536];
    while (true) {
      const ssize_t n = ::recv(fds[0], buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      out.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
};

std::string joined(const std::vector<std::string>& writes) {
  std::string all;
  for (const auto& w : writes) all += w;
  return all;
}

}  // namespace

TEST_CASE("a LogLine writes exactly what record() writes, in both formats") {
  Logger log(-1);
  const std::string tricky = std::string("q\"b\\n\nt\tnul") + '\0' + " caf\xc3\xa9 bad\xff";
  for (const bool json : {true, false}) {
    INFO("json " << json);
    log.set_json(json);
    const std::string want =
        log.format(LogLevel::warn, {LogField{"event", "request"}, LogField{"detail", tricky},
                                    LogField{"http", {}, 502, true}, LogField{"ms", {}, -3, true}});
    LogLine line(log, LogLevel::warn);
    line.text("event", "request").text("detail", tricky).number("http", 502).number("ms", -3);
    CHECK(without_ts(line.line()) == without_ts(want));
  }
}

TEST_CASE("log lines: written at once when alone, grouped while others are busy") {
  Capture cap;
  Logger log(cap.fds[1]);
  log.set_batching(true);

  SECTION("a lone request's line is written before anything else happens") {
    log.hold();
    log.info("one");
    CHECK(cap.writes().size() == 1);
    log.release();
    CHECK(cap.writes().empty());
  }
  SECTION("while another request is busy, lines wait and leave together, in order") {
    log.hold();  // another request
    log.hold();  // this one
    log.info("first");
    log.info("second");
    CHECK(cap.writes().empty());
    log.release();
    CHECK(cap.writes().empty());  // the other one is still busy
    log.release();
    const auto w = cap.writes();
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("first") < w[0].find("second"));
    CHECK(w[0].back() == '\n');
  }
  SECTION("a warning goes out at once, after the lines queued before it") {
    log.hold();
    log.hold();
    log.info("queued");
    log.warn("urgent");
    const auto w = cap.writes();
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("queued") < w[0].find("urgent"));
    log.release();
    log.release();
    CHECK(cap.writes().empty());
  }
  SECTION("batches stay within PIPE_BUF and end on a whole line") {
    log.hold();
    log.hold();
    for (int i = 0; i < 200; ++i) log.info("line " + std::to_string(i) + std::string(60, 'x'));
    log.release();
    log.release();
    const auto w = cap.writes();
    CHECK(w.size() > 1);
    for (const auto& batch : w) {
      CHECK(batch.size() <= 4096);
      CHECK(batch.back() == '\n');
    }
    const std::string all = joined(w);
    std::size_t at = 0;
    for (int i = 0; i < 200; ++i) {  // every line, once, in order
      const std::size_t next = all.find("line " + std::to_string(i) + "x", at);
      REQUIRE(next != std::string::npos);
      at = next;
    }
  }
  SECTION("flush_stale writes a line once it is older than the bound") {
    log.hold();
    log.hold();
    log.info("stale");
    log.flush_stale();
    CHECK(cap.writes().empty());
    std::this_thread::sleep_for(Logger::kMaxLineDelay + std::chrono::milliseconds(20));
    log.flush_stale();
    CHECK(joined(cap.writes()).find("stale") != std::string::npos);
    log.release();
    log.release();
  }
}

TEST_CASE("log lines from many threads all arrive whole") {
  Capture cap;
  Logger log(cap.fds[1]);
  log.set_batching(true);
  constexpr int kThreads = 8;
  constexpr int kLines = 300;
  std::vector<std::thread> threads;
  std::string all;
  std::thread reader([&] {
    // Drain while the writers run, so the socket buffer never fills.
    char buf[65536];
    while (true) {
      const ssize_t n = ::recv(cap.fds[0], buf, sizeof buf, 0);
      if (n <= 0) break;
      all.append(buf, static_cast<std::size_t>(n));
    }
  });
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < kLines; ++i) {
        log.hold();
        LogLine(log, LogLevel::info).text("t", std::to_string(t)).number("i", i).write(log);
        log.release();
      }
    });
  }
  for (auto& th : threads) th.join();
  log.flush();
  ::shutdown(cap.fds[1], SHUT_WR);
  reader.join();
  std::size_t lines = 0;
  std::size_t start = 0;
  while (start < all.size()) {
    const std::size_t end = all.find('\n', start);
    REQUIRE(end != std::string::npos);
    const std::string line = all.substr(start, end - start);
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
    ++lines;
    start = end + 1;
  }
  CHECK(lines == kThreads * kLines);
}
