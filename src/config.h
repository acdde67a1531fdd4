// pvgate's configuration: YAML parsed once into plain, validated structs. The
// only user of yaml-cpp. Requests read an immutable snapshot through
// ConfigHolder, so a reload can swap in a new one without locking the data path.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pvgate {

struct UpstreamConfig {
  std::string url;                             // https://host[:port]/path (http only for loopback)
  std::string ca_file;                         // extra PEM trusted besides the system store
  std::string ca_pem;                          // contents of ca_file, read at load time
  long connect_timeout_ms = 3000;              // 100 .. 60000
  long timeout_ms = 10000;                     // 100 .. 120000, whole call
  std::size_t max_response_bytes = 64 * 1024;  // 1 KiB .. 16 MiB
  bool loopback = false;                       // host is 127.0.0.0/8, ::1 or localhost
};

struct MerchantConfig {
  std::string name;
  std::string api_key;     // Pipwave's merchant key, 1-32 printable characters
  std::string api_secret;  // never logged, never sent
};

enum class LogLevel { debug, info, warn, error };

struct Config {
  std::string source;  // file name, for messages
  UpstreamConfig upstream;
  std::size_t max_body_bytes = 4096;  // request body limit, 64 .. 65536
  LogLevel log_level = LogLevel::info;
  std::map<std::string, MerchantConfig> merchants;

  // The merchant for a request: by name when given, else the only one.
  const MerchantConfig* find_merchant(const std::string& name, bool given) const;
};

struct ConfigResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<std::string> errors;       // "file:line: key.path: problem"
  std::vector<std::string> warnings;
};

ConfigResult load_config_file(const std::string& path);
ConfigResult load_config_text(const std::string& text, const std::string& source_name);

// Parses "https://host[:port]/path"; sets `loopback`. Returns an error text or "".
std::string check_upstream_url(const std::string& url, bool& loopback);

// The current configuration, swapped atomically on reload.
class ConfigHolder {
 public:
  explicit ConfigHolder(std::shared_ptr<const Config> initial) : config_(std::move(initial)) {}
  std::shared_ptr<const Config> get() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return config_;
  }
  void set(std::shared_ptr<const Config> next) {
    std::lock_guard<std::mutex> lock(mutex_);
    config_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Config> config_;
};

}  // namespace pvgate
