#include "log.h"

#include <unistd.h>

#include <cerrno>

namespace pvgate {

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

void Logger::log(LogLevel level, std::string_view text) {
  std::string line;
  line.reserve(text.size() + 24);
  line.append("pvgate: ").append(level_name(level)).push_back(' ');
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    line.push_back(u < 0x20 || u == 0x7F ? '?' : c);
  }
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
