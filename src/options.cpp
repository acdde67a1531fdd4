#include "options.h"

#include <getopt.h>

#include <algorithm>
#include <mutex>
#include <thread>

namespace pvgate {

int default_threads() {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(8, 2 * cores);
}

std::string usage() {
  return "usage: pvgate --config FILE [--socket PATH | --socket HOST:PORT | --socket [IPV6]:PORT] "
         "[--socket-mode MODE]\n"
         "              [--threads N]\n"
         "       pvgate --check-config --config FILE\n"
         "       pvgate --help | --version\n"
         "\n"
         "FastCGI gate between browsers and Pipwave's phone-verify API.\n"
         "\n"
         "  --config FILE      YAML configuration (see conf/pvgate.yaml)\n"
         "  --socket SPEC      listen on a unix socket PATH, on HOST:PORT or on [IPV6]:PORT\n"
         "                     (an IPv6 address in brackets); without it the\n"
         "                     FastCGI listening socket is fd 0 (spawn-fcgi, systemd)\n"
         "  --socket-mode MODE octal permissions of a unix socket created by --socket (0660)\n"
         "  --threads N        worker threads, 1-1024 (default max(8, 2 x cores)); calls to\n"
         "                     Pipwave wait in an event set, not on these; at most\n"
         "                     the default number run at once, the rest while others wait\n"
         "                     on Redis\n"
         "  --check-config     validate the configuration, print every problem, exit 0 or 1\n"
         "  --help, --version\n"
         "\n"
         "Signals: SIGTERM/SIGINT/SIGQUIT finish requests in flight and exit 0; SIGHUP reloads "
         "the\n"
         "configuration (an invalid one is logged and the old one kept).\n";
}

namespace {

enum OptionId : int {
  kHelp = 'h',
  kConfig = 'c',
  kVersion = 1000,
  kCheckConfig,
  kSocket,
  kSocketMode,
  kThreads,
};

constexpr option kLongOptions[] = {
    {"help", no_argument, nullptr, kHelp},
    {"version", no_argument, nullptr, kVersion},
    {"check-config", no_argument, nullptr, kCheckConfig},
    {"config", required_argument, nullptr, kConfig},
    {"socket", required_argument, nullptr, kSocket},
    {"socket-mode", required_argument, nullptr, kSocketMode},
    {"threads", required_argument, nullptr, kThreads},
    {nullptr, 0, nullptr, 0},
};

// "+": stop at the first non-option (no reordering; it is an error below).
// ":": a missing value is reported as ':' rather than printed by getopt.
constexpr char kShortOptions[] = "+:hc:";

std::string option_name(int id) {
  for (const option* o = kLongOptions; o->name != nullptr; ++o) {
    if (o->val == id) return std::string("--") + o->name;
  }
  return "?";
}

// getopt_long's state (optind, optarg, its position inside a group of short
// options) is global: calls are serialised, and each starts from scratch.
std::mutex getopt_mutex;

}  // namespace

bool parse_options(const std::vector<std::string>& args, Options& out, std::string& error) {
  out = Options{};
  error.clear();
  // getopt_long wants a mutable argv with the program name first.
  std::vector<std::string> storage;
  storage.reserve(args.size() + 1);
  storage.emplace_back("pvgate");
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int argc = static_cast<int>(storage.size());

  std::lock_guard<std::mutex> lock(getopt_mutex);
  optind = 0;  // glibc: a full re-initialisation, also of a half-read group like "-hc"
  opterr = 0;  // errors are ours to report, not getopt's to print
  while (true) {
    const int id = getopt_long(argc, argv.data(), kShortOptions, kLongOptions, nullptr);
    if (id == -1) break;
    const std::string value = optarg != nullptr ? optarg : "";
    switch (id) {
      case kHelp:
        out.help = true;
        break;
      case kVersion:
        out.version = true;
        break;
      case kCheckConfig:
        out.check_config = true;
        break;
      case kConfig:
        out.config_path = value;
        break;
      case kSocket:
        if (value.empty()) {
          error = "--socket needs a path, HOST:PORT or [IPV6]:PORT";
          return false;
        }
        out.socket = value;
        break;
      case kSocketMode: {
        const bool octal =
            !value.empty() && value.size() <= 4 &&
            std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '7'; });
        if (!octal) {
          error = "--socket-mode must be an octal mode such as 0660";
          return false;
        }
        out.socket_mode = std::stoi(value, nullptr, 8);
        break;
      }
      case kThreads: {
        const bool digits =
            !value.empty() && value.size() <= 5 &&
            std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
        const int n = digits ? std::stoi(value) : 0;
        if (n < 1 || n > kMaxThreads) {
          error = "--threads must be from 1 to " + std::to_string(kMaxThreads);
          return false;
        }
        out.threads = n;
        break;
      }
      case ':':  // a value is missing; optopt is the option's id
        error = option_name(optopt) + " needs a value";
        return false;
      default: {  // '?': unknown, ambiguous, or given a value it takes none of
        std::string given = argv[optind - 1] != nullptr ? argv[optind - 1] : "";
        if (given.rfind("--", 0) == 0) {
          const bool with_value = given.find('=') != std::string::npos;
          given = given.substr(0, given.find('='));
          if (with_value && option_name(optopt) == given) {
            error = given + " takes no value";
            return false;
          }
        } else if (optopt != 0) {
          given = std::string("-") + static_cast<char>(optopt);
        }
        error = "unknown or ambiguous option '" + given + "'";
        return false;
      }
    }
  }
  if (optind < argc) {
    error = "unknown option '" + storage[static_cast<std::size_t>(optind)] + "'";
    return false;
  }
  if (!out.help && !out.version && out.config_path.empty()) {
    error = "--config FILE is required";
    return false;
  }
  if (out.threads == 0) out.threads = default_threads();
  return true;
}

}  // namespace pvgate
