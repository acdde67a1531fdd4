#include "log.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

namespace pvgate {
namespace {

// RFC 3339 UTC with milliseconds: 2026-11-27T12:30:01.123Z
std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms.count()));
  return buf;
}

}  // namespace

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
  }
  return "info";
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7F ? '?' : c);
  }
  return out;
}

std::string Logger::format(LogLevel level, const std::vector<LogField>& fields) const {
  if (json_.load(std::memory_order_relaxed)) {
    std::vector<LogField> all;
    all.reserve(fields.size() + 2);
    all.push_back(LogField{"ts", timestamp()});
    all.push_back(LogField{"level", std::string(level_name(level))});
    all.insert(all.end(), fields.begin(), fields.end());
    return encode_log_object(all);  // JSON escapes control characters itself
  }
  std::string line = "pvgate: ";
  line.append(level_name(level));
  for (const auto& f : fields) {
    line.push_back(' ');
    if (f.key == "msg") {
      line.append(printable(f.text));
      continue;
    }
    line.append(f.key).push_back('=');
    if (f.is_number) {
      line.append(std::to_string(f.number));
    } else {
      line.push_back('"');
      for (const char c : printable(f.text)) {
        if (c == '"' || c == '\\') line.push_back('\\');
        line.push_back(c);
      }
      line.push_back('"');
    }
  }
  return line;
}

void Logger::log(LogLevel level, std::string_view text) {
  emit(level, format(level, {LogField{"msg", std::string(text)}}));
}

void Logger::record(LogLevel level, const std::vector<LogField>& fields) {
  emit(level, format(level, fields));
}

void Logger::emit(LogLevel, const std::string& text) {
  std::string line = text;
  line.push_back('\n');
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log to; never fail a request over it
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace pvgate
