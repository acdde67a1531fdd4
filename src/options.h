// Command-line options of the pvgate binary.
#pragma once

#include <string>
#include <vector>

namespace pvgate {

struct Options {
  std::string config_path;
  std::string socket;      // empty: the listening socket is fd 0 (spawn-fcgi, systemd)
  int socket_mode = 0660;  // permissions of a unix socket pvgate creates itself
  int threads = 0;         // 0: default_threads()
  bool check_config = false;
  bool help = false;
  bool version = false;
};

inline constexpr int kMaxThreads = 1024;

// max(8, 2 x cores). Workers do CPU work and the throttle store's round trip;
// calls to Pipwave wait on the upstream's event loop, not on them. A few per
// core keep the cores busy while some wait on Redis; many more only spread
// each wake-up over threads whose caches are cold.
int default_threads();

// Parses argv; on error returns false and sets `error` to a one-line message.
bool parse_options(const std::vector<std::string>& args, Options& out, std::string& error);

std::string usage();

}  // namespace pvgate
