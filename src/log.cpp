#include "log.h"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

namespace pvgate {
namespace {

// RFC 3339 UTC with milliseconds: 2026-11-27T12:30:01.123Z
// RFC 3339 UTC with milliseconds: 2026-11-27T12:30:01.123Z. The part up to
// the seconds is formatted once a second per thread.
void append_timestamp(std::string& out) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  thread_local std::time_t cached_secs = -1;
  thread_local char cached[24];
  if (secs != cached_secs) {
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  const int m = static_cast<int>(ms.count());  // 0..999
  const char frac[6] = {'.',
                        static_cast<char>('0' + m / 100),
                        static_cast<char>('0' + m / 10 % 10),
                        static_cast<char>('0' + m % 10),
                        'Z',
                        '\0'};
  out.append(cached).append(frac, 5);
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
    std::string out;
    out.reserve(320);
    out += "{\"ts\":\"";
    append_timestamp(out);
    out += "\",\"level\":\"";
    out += level_name(level);
    out += '"';
    if (!fields.empty()) out.push_back(',');
    append_log_members(out, fields);  // JSON escapes control characters itself
    out.push_back('}');
    return out;
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
  // The line and its newline in one writev(2): one record, never interleaved.
  char newline = '\n';
  iovec parts[2] = {{const_cast<char*>(text.data()), text.size()}, {&newline, 1}};
  int first = 0;
  while (first < 2) {
    const ssize_t n = ::writev(fd_, parts + first, 2 - first);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log to; never fail a request over it
    std::size_t done = static_cast<std::size_t>(n);
    while (first < 2 && done >= parts[first].iov_len) done -= parts[first++].iov_len;
    if (first < 2) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + done;
      parts[first].iov_len -= done;
    }
  }
}

}  // namespace pvgate
