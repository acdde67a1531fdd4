#include "log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>
#include <system_error>

namespace pvgate {
namespace {

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

int syslog_priority(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return 7;
    case LogLevel::info:
      return 6;
    case LogLevel::warn:
      return 4;
    case LogLevel::error:
      return 3;
  }
  return 6;
}

bool is_journal_stream(int fd, const char* journal_stream) {
  if (journal_stream == nullptr) return false;
  const std::string_view text(journal_stream);
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  const char* const first = text.data();
  const char* const last = first + text.size();
  const auto d = std::from_chars(first, first + colon, dev);
  const auto i = std::from_chars(first + colon + 1, last, ino);
  if (d.ec != std::errc() || d.ptr != first + colon || colon == 0 || i.ec != std::errc() ||
      i.ptr != last || colon + 1 == text.size()) {
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
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

namespace {

std::string& thread_buffer() {
  thread_local std::string buffer;
  if (buffer.capacity() > 16384) std::string().swap(buffer);  // after a long line
  buffer.clear();
  return buffer;
}

}  // namespace

LogLine::LogLine(const Logger& log, LogLevel level) : LogLine(log, level, thread_buffer()) {}

LogLine::LogLine(const Logger& log, LogLevel level, std::string& out)
    : out_(out), level_(level), json_(log.json_.load(std::memory_order_relaxed)) {
  if (json_) {
    out_ += "{\"ts\":\"";
    append_timestamp(out_);
    out_ += "\",\"level\":\"";
    out_ += level_name(level);
    out_ += '"';
  } else {
    out_ += "pvgate: ";
    out_ += level_name(level);
  }
}

LogLine& LogLine::text(std::string_view key, std::string_view value) {
  if (json_) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
    append_json_string(out_, value);
  } else {
    out_ += ' ';
    out_ += key;
    out_ += "=\"";
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7F) {
        out_.push_back('?');
        continue;
      }
      if (c == '"' || c == '\\') out_.push_back('\\');
      out_.push_back(c);
    }
    out_ += '"';
  }
  return *this;
}

LogLine& LogLine::number(std::string_view key, std::int64_t value) {
  char digits[24];
  const char* end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  if (json_) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
  } else {
    out_ += ' ';
    out_ += key;
    out_ += '=';
  }
  out_.append(digits, static_cast<std::size_t>(end - digits));
  return *this;
}

LogLine& LogLine::message(std::string_view text) {
  if (json_) return this->text("msg", text);
  out_ += ' ';
  out_ += printable(text);
  return *this;
}

const std::string& LogLine::line() {
  if (json_ && !closed_) out_.push_back('}');
  closed_ = true;
  return out_;
}

void LogLine::write(Logger& log) {
  log.emit(level_, line());
}

void Logger::log(LogLevel level, std::string_view text) {
  LogLine(*this, level).message(text).write(*this);
}

void Logger::emit(LogLevel level, const std::string& text) {
  constexpr std::size_t kBatchBytes = 4096;  // PIPE_BUF
  std::unique_lock<std::mutex> lock(mutex_);
  const bool prefix = prefix_.load(std::memory_order_relaxed);
  const std::size_t size = (prefix ? 3 : 0) + text.size() + 1;  // "<N>" line "\n"
  if (!pending_.empty() && pending_.size() + size > kBatchBytes) {
    write_out(lock);  // the batch is full: it goes first, whole
    lock.lock();
  }
  if (pending_.empty()) oldest_ = std::chrono::steady_clock::now();
  if (prefix) {
    // Per line, not per write: journald reads each line of a batch on its own.
    const char tag[3] = {'<', static_cast<char>('0' + syslog_priority(level)), '>'};
    pending_.append(tag, 3);
  }
  pending_.append(text).push_back('\n');
  has_pending_.store(true, std::memory_order_release);
  if (!batching_.load(std::memory_order_relaxed) || busy_.load(std::memory_order_acquire) <= 1 ||
      level >= LogLevel::warn || pending_.size() >= kBatchBytes ||
      std::chrono::steady_clock::now() - oldest_ >= kMaxLineDelay) {
    write_out(lock);
  }
}

void Logger::release() {
  if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      has_pending_.load(std::memory_order_acquire)) {
    flush();
  }
}

void Logger::flush() {
  std::unique_lock<std::mutex> lock(mutex_);
  write_out(lock);
}

void Logger::flush_stale() {
  if (!has_pending_.load(std::memory_order_acquire)) return;
  std::unique_lock<std::mutex> lock(mutex_);
  if (!pending_.empty() && std::chrono::steady_clock::now() - oldest_ >= kMaxLineDelay) {
    write_out(lock);
  }
}

void Logger::write_out(std::unique_lock<std::mutex>& lock) {
  if (pending_.empty()) {
    lock.unlock();
    return;
  }
  // The batch leaves the buffer, and the write happens outside mutex_ (other
  // threads go on queueing), but inside write_mutex_, taken before mutex_ is
  // let go: batches reach the file in the order they left the buffer.
  thread_local std::string batch;
  batch.swap(pending_);
  has_pending_.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> writing(write_mutex_);
  lock.unlock();
  write_all(batch.data(), batch.size());
  batch.clear();
  if (batch.capacity() > 8192) std::string().swap(batch);  // after a long line
}

void Logger::write_all(const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd_, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log to; never fail a request over it
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace pvgate
