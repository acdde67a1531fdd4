// One line per event on stderr (spawn-fcgi and systemd both collect it).
// Callers pass already-masked values: no phone number in clear, no secret.
#pragma once

#include <atomic>
#include <string>
#include <string_view>

#include "config.h"

namespace pvgate {

class Logger {
 public:
  explicit Logger(int fd = 2) : fd_(fd) {}
  virtual ~Logger() = default;

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const {
    return static_cast<int>(level) >= static_cast<int>(level_.load(std::memory_order_relaxed));
  }
  // Writes "pvgate: <level> <text>\n" in one write(2), control characters
  // in `text` replaced by '?', so a line can never be split or forged.
  virtual void log(LogLevel level, std::string_view text);

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

 private:
  int fd_;
  std::atomic<LogLevel> level_{LogLevel::info};
};

std::string_view level_name(LogLevel level);

}  // namespace pvgate
