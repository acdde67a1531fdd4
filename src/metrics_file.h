// The metrics file: every pvgate process on a host maps the same file
// (MAP_SHARED), so a scrape of any worker shows the host's totals, and a
// restarted worker maps the counts its predecessors left. The file holds
// only atomics (metrics_cells.h) and a versioned header.
#pragma once

#include <memory>
#include <string>

#include "metrics.h"

namespace pvgate {

// Maps `path`, creating it (mode 0640) when missing. A file with another
// layout (version, table sizes) is replaced by a fresh one, and `note` says
// so; the replacement is atomic (a new file renamed over the old), so a
// process still mapping the old file is never handed a half-written one.
// nullptr and `error` when the file cannot be made or mapped.
std::unique_ptr<Metrics> open_metrics_file(const std::string& path, std::string& note,
                                           std::string& error);

}  // namespace pvgate
