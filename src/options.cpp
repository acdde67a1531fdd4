#include "options.h"

#include <algorithm>
#include <thread>

namespace pvgate {

int default_threads() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(8, 2 * cores);
}

std::string usage() {
  return "usage: pvgate --config FILE [--socket PATH | --socket HOST:PORT] [--socket-mode MODE]\n"
         "              [--threads N]\n"
         "       pvgate --check-config --config FILE\n"
         "       pvgate --help | --version\n"
         "\n"
         "FastCGI gate between browsers and Pipwave's phone-verify API.\n"
         "\n"
         "  --config FILE      YAML configuration (see conf/pvgate.yaml)\n"
         "  --socket SPEC      listen on a unix socket PATH or on HOST:PORT; without it the\n"
         "                     FastCGI listening socket is fd 0 (spawn-fcgi, systemd)\n"
         "  --socket-mode MODE octal permissions of a unix socket created by --socket (0660)\n"
         "  --threads N        worker threads, 1-1024 (default max(8, 2 x cores)); calls to\n"
         "                     Pipwave wait on one event-loop thread, not on these\n"
         "  --check-config     validate the configuration, print every problem, exit 0 or 1\n"
         "  --help, --version\n"
         "\n"
         "Signals: SIGTERM/SIGINT/SIGQUIT finish requests in flight and exit 0; SIGHUP reloads "
         "the\n"
         "configuration (an invalid one is logged and the old one kept).\n";
}

bool parse_options(const std::vector<std::string>& args, Options& out, std::string& error) {
  out = Options{};
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    const auto take = [&](const char* name) -> bool {
      if (has_value) return true;
      if (i + 1 >= args.size()) {
        error = std::string(name) + " needs a value";
        return false;
      }
      value = args[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      out.help = true;
    } else if (arg == "--version") {
      out.version = true;
    } else if (arg == "--check-config") {
      out.check_config = true;
    } else if (arg == "--config" || arg == "-c") {
      if (!take("--config")) return false;
      out.config_path = value;
    } else if (arg == "--socket") {
      if (!take("--socket")) return false;
      if (value.empty()) {
        error = "--socket needs a path or HOST:PORT";
        return false;
      }
      out.socket = value;
    } else if (arg == "--socket-mode") {
      if (!take("--socket-mode")) return false;
      const bool octal =
          !value.empty() && value.size() <= 4 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '7'; });
      if (!octal) {
        error = "--socket-mode must be an octal mode such as 0660";
        return false;
      }
      out.socket_mode = std::stoi(value, nullptr, 8);
    } else if (arg == "--threads") {
      if (!take("--threads")) return false;
      const bool digits =
          !value.empty() && value.size() <= 5 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      const int n = digits ? std::stoi(value) : 0;
      if (n < 1 || n > kMaxThreads) {
        error = "--threads must be from 1 to " + std::to_string(kMaxThreads);
        return false;
      }
      out.threads = n;
    } else {
      error = "unknown option '" + arg + "'";
      return false;
    }
  }
  if (!out.help && !out.version && out.config_path.empty()) {
    error = "--config FILE is required";
    return false;
  }
  if (out.threads == 0) out.threads = default_threads();
  return true;
}

}  // namespace pvgate
