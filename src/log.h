// One line per event: JSON objects by default (log.format), on stderr
// (journald under systemd) or, for request lines, FastCGI's stderr stream,
// which nginx writes to its error log (log.destination). Callers pass
// already-masked values: no phone number in clear, no secret.
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "json_codec.h"

namespace pvgate {

class Logger {
 public:
  explicit Logger(int fd = 2) : fd_(fd) {}
  virtual ~Logger() = default;

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  void set_json(bool json) { json_.store(json, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const {
    return static_cast<int>(level) >= static_cast<int>(level_.load(std::memory_order_relaxed));
  }

  // A free-text message: {"ts":..,"level":..,"msg":text} or "pvgate: <level> <text>".
  void log(LogLevel level, std::string_view text);
  // A structured record: {"ts":..,"level":.., fields...} or "pvgate: <level> k=v ...".
  void record(LogLevel level, const std::vector<LogField>& fields);
  // The line record() would write, without the newline (for FastCGI stderr).
  std::string format(LogLevel level, const std::vector<LogField>& fields) const;

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
  // Writes one finished line (no newline) in a single write(2). Tests
  // override it to capture lines.
  virtual void emit(LogLevel level, const std::string& line);

 private:
  int fd_;
  std::atomic<LogLevel> level_{LogLevel::info};
  std::atomic<bool> json_{true};
};

std::string_view level_name(LogLevel level);

// Control characters replaced by '?', so a value can never split or forge a line.
std::string printable(std::string_view text);

}  // namespace pvgate
