#include "metrics_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "metrics_cells.h"

namespace pvgate {
namespace {

std::string errno_text(const std::string& what, const std::string& path) {
  return "metrics.file " + path + ": " + what + ": " + std::strerror(errno);
}

// Closes a descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// A zeroed file of the current layout at `path`, made beside it and then
// linked into place when there is none (so of two processes starting at once
// one file wins and both map it), or renamed over the file of another layout
// (under that file's lock, so only one replaces it).
bool make_fresh(const std::string& path, bool replace, std::string& error) {
  const std::string temp = path + ".new." + std::to_string(::getpid());
  Fd f{::open(temp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)};
  if (f.fd < 0) {
    error = errno_text("cannot create " + temp, path);
    return false;
  }
  if (::ftruncate(f.fd, sizeof(MetricsCells)) != 0) {
    error = errno_text("cannot size", path);
    ::unlink(temp.c_str());
    return false;
  }
  void* map = ::mmap(nullptr, sizeof(MetricsCells), PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
  if (map == MAP_FAILED) {
    error = errno_text("cannot map", path);
    ::unlink(temp.c_str());
    return false;
  }
  init_header(*static_cast<MetricsCells*>(map));
  ::munmap(map, sizeof(MetricsCells));
  const bool placed = replace ? ::rename(temp.c_str(), path.c_str()) == 0
                              : (::link(temp.c_str(), path.c_str()) == 0 || errno == EEXIST);
  if (!placed) error = errno_text("cannot put " + temp + " in place", path);
  ::unlink(temp.c_str());  // a no-op after a rename
  return placed;
}

}  // namespace

std::unique_ptr<Metrics> open_metrics_file(const std::string& path, std::string& note,
                                           std::string& error) {
  // A few rounds: another process may replace the file between our open and
  // our lock; we then see another inode at `path` and start over.
  for (int round = 0; round < 5; ++round) {
    Fd f{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
    if (f.fd < 0) {
      if (errno != ENOENT) {
        error = errno_text("cannot open", path);
        return nullptr;
      }
      if (!make_fresh(path, false, error)) return nullptr;
      continue;
    }
    if (::flock(f.fd, LOCK_EX) != 0) {
      error = errno_text("cannot lock", path);
      return nullptr;
    }
    struct stat held {
    }, named{};
    if (::fstat(f.fd, &held) != 0 || ::stat(path.c_str(), &named) != 0 ||
        held.st_ino != named.st_ino || held.st_dev != named.st_dev) {
      continue;  // replaced meanwhile
    }
    bool fits = static_cast<std::size_t>(held.st_size) == sizeof(MetricsCells);
    void* map = MAP_FAILED;
    if (fits) {
      map = ::mmap(nullptr, sizeof(MetricsCells), PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
      if (map == MAP_FAILED) {
        error = errno_text("cannot map", path);
        return nullptr;
      }
      fits = header_matches(*static_cast<MetricsCells*>(map));
    }
    if (!fits) {
      if (map != MAP_FAILED) ::munmap(map, sizeof(MetricsCells));
      note = "metrics.file " + path + " has another layout (" + std::to_string(held.st_size) +
             " bytes, want " + std::to_string(sizeof(MetricsCells)) + " of layout version " +
             std::to_string(kMetricsLayoutVersion) +
             "): replaced by a fresh one; host totals start again from zero";
      if (!make_fresh(path, true, error)) return nullptr;
      continue;  // our lock was on the old file: open the new one
    }
    ::flock(f.fd, LOCK_UN);
    auto* cells = static_cast<MetricsCells*>(map);
    return std::make_unique<Metrics>(
        cells, [cells] { ::munmap(cells, sizeof(MetricsCells)); }, path);
  }
  error = "metrics.file " + path + ": replaced repeatedly while opening it";
  return nullptr;
}

}  // namespace pvgate
