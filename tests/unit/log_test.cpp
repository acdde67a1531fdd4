#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "log.h"

using namespace pvgate;

namespace {

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

// Expectations written by hand (JSON read back by nlohmann, text spelled out),
// never by another formatter built on LogLine.
TEST_CASE("a LogLine in JSON: every member, escaped, in order") {
  Logger log(-1);
  log.set_json(true);
  const std::string tricky = std::string("q\"b\\n\nt\tnul") + '\0' + " caf\xc3\xa9 bad\xff";
  LogLine line(log, LogLevel::warn);
  line.text("event", "request").text("detail", tricky).number("http", 502).number("ms", -3);
  const std::string out = line.line();

  // The raw text: ts first, then the members in the order written, each
  // escape as JSON spells it, the bad byte replaced by U+FFFD.
  REQUIRE(out.rfind("{\"ts\":\"", 0) == 0);
  const std::string ts = out.substr(7, 24);
  CHECK(std::regex_match(ts, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  CHECK(out.substr(31) ==
        "\",\"level\":\"warn\",\"event\":\"request\","
        "\"detail\":\"q\\\"b\\\\n\\nt\\tnul\\u0000 caf\xc3\xa9 bad\xef\xbf\xbd\","
        "\"http\":502,\"ms\":-3}");
  CHECK(out.find('\n') == std::string::npos);

  const auto doc = nlohmann::json::parse(out);
  CHECK(doc.size() == 6);
  CHECK(doc["ts"] == ts);
  CHECK(doc["level"] == "warn");
  CHECK(doc["event"] == "request");
  CHECK(doc["detail"] == std::string("q\"b\\n\nt\tnul") + '\0' + " caf\xc3\xa9 bad\xef\xbf\xbd");
  CHECK(doc["http"] == 502);
  CHECK(doc["ms"] == -3);

  std::string msg;
  LogLine(log, LogLevel::error, msg).message("a \"b\"\n");
  // line() was not called: the caller's string has no closing brace yet.
  CHECK(nlohmann::json::parse(msg + "}")["msg"] == "a \"b\"\n");
}

TEST_CASE("a LogLine in text format: literal lines") {
  Logger log(-1);
  log.set_json(false);
  const std::string tricky = std::string("q\"b\\n\nt\tnul") + '\0' + " caf\xc3\xa9 bad\xff";
  LogLine line(log, LogLevel::warn);
  line.text("event", "request").text("detail", tricky).number("http", 502).number("ms", -3);
  CHECK(line.line() ==
        "pvgate: warn event=\"request\" detail=\"q\\\"b\\\\n?t?nul? caf\xc3\xa9 bad\xff\" "
        "http=502 ms=-3");

  std::string out;
  LogLine(log, LogLevel::info, out).message("two\nlines\x7f").number("n", 0);
  CHECK(out == "pvgate: info two?lines? n=0");
  out.clear();
  LogLine(log, LogLevel::debug, out).text("empty", "");
  CHECK(out == "pvgate: debug empty=\"\"");
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

// sd-daemon(3): SD_ERR "<3>", SD_WARNING "<4>", SD_INFO "<6>", SD_DEBUG "<7>".
TEST_CASE("under the journal, every line starts with its syslog priority") {
  CHECK(syslog_priority(LogLevel::error) == 3);
  CHECK(syslog_priority(LogLevel::warn) == 4);
  CHECK(syslog_priority(LogLevel::info) == 6);
  CHECK(syslog_priority(LogLevel::debug) == 7);

  Capture cap;
  Logger log(cap.fds[1]);
  log.set_level(LogLevel::debug);
  SECTION("JSON lines, one write each") {
    log.set_priority_prefix(true);
    log.debug("d");
    log.info("i");
    log.warn("w");
    log.error("e");
    const auto w = cap.writes();
    REQUIRE(w.size() == 4);
    const char* want[] = {"<7>", "<6>", "<4>", "<3>"};
    for (std::size_t k = 0; k < 4; ++k) {
      REQUIRE(w[k].size() > 4);
      CHECK(w[k].substr(0, 3) == want[k]);
      CHECK(w[k].back() == '\n');
      // What follows the prefix is the unchanged JSON line.
      const auto doc = nlohmann::json::parse(w[k].substr(3, w[k].size() - 4));
      CHECK(doc["msg"] == std::string(1, "diwe"[k]));
    }
  }
  SECTION("text lines") {
    log.set_priority_prefix(true);
    log.set_json(false);
    log.warn("careful");
    CHECK(joined(cap.writes()) == "<4>pvgate: warn careful\n");
  }
  SECTION("without it, lines are as before") {
    log.warn("plain");
    const std::string all = joined(cap.writes());
    CHECK(all.rfind("{\"ts\":", 0) == 0);
  }
  SECTION("a batch: each line its own prefix, batches within PIPE_BUF") {
    log.set_priority_prefix(true);
    log.set_batching(true);
    log.hold();
    log.hold();
    for (int i = 0; i < 150; ++i) {
      LogLine(log, i % 3 == 0 ? LogLevel::debug : LogLevel::info)
          .number("i", i)
          .text("pad", std::string(50, 'x'))
          .write(log);
    }
    log.error("boom");  // goes out at once, with the queued lines before it
    log.release();
    log.release();
    const auto w = cap.writes();
    CHECK(w.size() > 1);
    std::vector<std::string> lines;
    for (const auto& batch : w) {
      CHECK(batch.size() <= 4096);
      REQUIRE(batch.back() == '\n');
      std::size_t start = 0;
      while (start < batch.size()) {
        const std::size_t end = batch.find('\n', start);
        lines.push_back(batch.substr(start, end - start));
        start = end + 1;
      }
    }
    REQUIRE(lines.size() == 151);
    for (int i = 0; i < 150; ++i) {
      const std::string& line = lines[static_cast<std::size_t>(i)];
      CHECK(line.substr(0, 3) == (i % 3 == 0 ? "<7>" : "<6>"));
      CHECK(nlohmann::json::parse(line.substr(3))["i"] == i);
    }
    CHECK(lines.back().substr(0, 3) == "<3>");
  }
  SECTION("lines for nginx's error log (a caller's string) never carry it") {
    log.set_priority_prefix(true);
    std::string out;
    LogLine(log, LogLevel::warn, out).message("to nginx");
    CHECK(out.rfind("{\"ts\":", 0) == 0);
  }
}

TEST_CASE("is_journal_stream: the fd's own device and inode, as systemd writes them") {
  Capture cap;
  struct stat st {};
  REQUIRE(::fstat(cap.fds[1], &st) == 0);
  const std::string mine = std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
                           std::to_string(static_cast<unsigned long long>(st.st_ino));
  CHECK(is_journal_stream(cap.fds[1], mine.c_str()));
  CHECK_FALSE(is_journal_stream(cap.fds[1], nullptr));
  CHECK_FALSE(is_journal_stream(cap.fds[1], ""));
  CHECK_FALSE(is_journal_stream(-1, mine.c_str()));
  // The other end of the pair is another inode: stderr redirected elsewhere
  // after systemd set the variable.
  CHECK_FALSE(is_journal_stream(cap.fds[0], mine.c_str()));
  const std::string dev = std::to_string(static_cast<unsigned long long>(st.st_dev));
  const std::string ino = std::to_string(static_cast<unsigned long long>(st.st_ino));
  for (const std::string& bad :
       {dev + ":" + std::to_string(static_cast<unsigned long long>(st.st_ino) + 1), ":" + ino,
        dev + ":", dev, dev + ":" + ino + "x", dev + ":" + ino + ":1", " " + mine, dev + ":-" + ino,
        std::string("a:b")}) {
    INFO(bad);
    CHECK_FALSE(is_journal_stream(cap.fds[1], bad.c_str()));
  }
}
