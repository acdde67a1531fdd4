// One line per event: JSON objects by default (log.format), on stderr
// (journald under systemd) or, for request lines, FastCGI's stderr stream,
// which nginx writes to its error log (log.destination). Callers pass
// already-masked values: no phone number in clear, no secret.
//
// When stderr is the journal's stream (is_journal_stream), each line on it
// starts with its syslog priority, "<4>{...}" (sd-daemon(3)): journald takes
// the prefix off and files the line at that priority, so `journalctl -p
// warning` finds warnings. Lines bound for nginx's error log carry none.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "json_codec.h"

namespace pvgate {

class Logger {
 public:
  explicit Logger(int fd = 2) : fd_(fd) {}
  virtual ~Logger() { flush(); }
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  // Group commit, for the server: while other threads are busy with a request
  // (between hold() and release()), an info or debug line waits in a buffer
  // and goes out with theirs in one write. It goes out at the latest when
  // the last busy thread lets go, when the buffer nears PIPE_BUF (4096 bytes:
  // a write to journald's pipe stays whole), when a warning or error comes,
  // or when flush_stale() finds it older than kMaxLineDelay. A thread that
  // is alone writes its line at once, so a lone request's line is written
  // before its reply. What a crash loses: lines of the last kMaxLineDelay.
  static constexpr std::chrono::milliseconds kMaxLineDelay{100};
  void set_batching(bool on) { batching_.store(on, std::memory_order_relaxed); }
  void hold() { busy_.fetch_add(1, std::memory_order_acq_rel); }
  void release();
  void flush();
  void flush_stale();

  // Each line written to the fd starts with "<N>" (syslog_priority). Set once,
  // before the threads start; batching stays whole-line (each line in a batch
  // has its own prefix).
  void set_priority_prefix(bool on) { prefix_.store(on, std::memory_order_relaxed); }

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  void set_json(bool json) { json_.store(json, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const {
    return static_cast<int>(level) >= static_cast<int>(level_.load(std::memory_order_relaxed));
  }

  // A free-text message: {"ts":..,"level":..,"msg":text} or "pvgate: <level> <text>".
  void log(LogLevel level, std::string_view text);
  // A structured record: LogLine, {"ts":..,"level":.., fields...} or
  // "pvgate: <level> k=v ...".

  void debug(std::string_view t) {
    if (enabled(LogLevel::debug)) log(LogLevel::debug, t);
  }
  void info(std::string_view t) {
    if (enabled(LogLevel::info)) log(LogLevel::info, t);
  }
  void warn(std::string_view t) {
    if (enabled(LogLevel::warn)) log(LogLevel::warn, t);
  }
  void error(std::string_view t) {
    if (enabled(LogLevel::error)) log(LogLevel::error, t);
  }

 protected:
  friend class LogLine;

  // Writes one finished line (no newline) in a single write(2), or with
  // batching on, queues it (see hold()). Tests override it to capture lines.
  virtual void emit(LogLevel level, const std::string& line);

 private:
  void write_all(const char* data, std::size_t size);
  // Writes the queued lines; `lock` holds mutex_ and is always released.
  void write_out(std::unique_lock<std::mutex>& lock);

  int fd_;
  std::atomic<bool> batching_{false};
  std::atomic<int> busy_{0};
  std::atomic<bool> has_pending_{false};
  std::mutex mutex_;        // guards pending_ and oldest_
  std::mutex write_mutex_;  // held while a batch is written: batches stay in order
  std::string pending_;
  std::chrono::steady_clock::time_point oldest_;
  std::atomic<LogLevel> level_{LogLevel::info};
  std::atomic<bool> json_{true};
  std::atomic<bool> prefix_{false};
};

// The one formatter of log lines: a record written field by field into a
// per-thread buffer (or a caller's string), with no list of fields and no
// copies, as the request line on every request's path needs. Keys are
// identifiers pvgate chose and are written as they are; values are escaped
// (JSON) or quoted with control characters replaced (text). Use one
// thread-buffer LogLine at a time per thread.
class LogLine {
 public:
  LogLine(const Logger& log, LogLevel level);                    // the thread's buffer
  LogLine(const Logger& log, LogLevel level, std::string& out);  // appended to `out`
  LogLine& text(std::string_view key, std::string_view value);
  LogLine& number(std::string_view key, std::int64_t value);
  // A free-text message: "msg" in JSON, the bare text (no key) in text format.
  LogLine& message(std::string_view text);
  // The finished line, without the newline; valid until the next LogLine on
  // this thread.
  const std::string& line();
  // Writes it (Logger::emit).
  void write(Logger& log);

 private:
  std::string& out_;
  LogLevel level_;
  bool json_;
  bool closed_ = false;
};

std::string_view level_name(LogLevel level);

// sd-daemon(3)'s SD_ERR (3), SD_WARNING (4), SD_INFO (6), SD_DEBUG (7).
int syslog_priority(LogLevel level);

// True when `fd` is the stream systemd names in JOURNAL_STREAM
// ("<st_dev>:<st_ino>" in decimal): the journal reads it. Checking the fd,
// not only that the variable is set, keeps a prefix out of a file or a pipe
// the service's stderr was redirected to (systemd.exec(5), JOURNAL_STREAM).
bool is_journal_stream(int fd, const char* journal_stream);

// Control characters replaced by '?', so a value can never split or forge a line.
std::string printable(std::string_view text);

}  // namespace pvgate
