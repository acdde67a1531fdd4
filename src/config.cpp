#include "config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

namespace pvgate {
namespace {

// Collects every problem with its file, line and key path, so one run of
// --check-config lists them all.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  void error(const YAML::Node& at, const std::string& path, const std::string& what) {
    errors.push_back(where(at) + path + ": " + what);
  }
  void warn(const YAML::Node& at, const std::string& path, const std::string& what) {
    warnings.push_back(where(at) + path + ": " + what);
  }

  // Reports keys of `map` that are not in `allowed`.
  void only_keys(const YAML::Node& map, const std::string& path,
                 std::initializer_list<const char*> allowed) {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      const bool known =
          std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; });
      if (!known) {
        std::string list;
        for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        error(kv.first, join(path, key), "unknown key (allowed: " + list + ")");
      }
    }
  }

  bool is_map(const YAML::Node& node, const std::string& path) {
    if (node.IsMap()) return true;
    error(node, path, "must be a mapping");
    return false;
  }

  // `owner` is where a missing key is reported: the line of the mapping's own
  // key reads better than the line of its first member.
  bool string(const YAML::Node& parent, const std::string& path, const char* key, std::string& out,
              bool required, const YAML::Node* owner = nullptr) {
    const YAML::Node node = parent[key];
    if (!node) {
      if (required) error(owner != nullptr ? *owner : parent, join(path, key), "is required");
      return false;
    }
    if (!node.IsScalar()) {
      error(node, join(path, key), "must be a string");
      return false;
    }
    out = node.Scalar();
    return true;
  }

  template <typename T>
  void integer(const YAML::Node& parent, const std::string& path, const char* key, T& out,
               long long min, long long max) {
    const YAML::Node node = parent[key];
    if (!node) return;  // keep the default
    const std::string text = node.IsScalar() ? node.Scalar() : std::string{};
    long long value = 0;
    const bool digits =
        !text.empty() && text.size() <= 12 &&
        std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
    if (digits) value = std::stoll(text);
    if (!digits || value < min || value > max) {
      error(node, join(path, key),
            "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
      return;
    }
    out = static_cast<T>(value);
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

  std::vector<std::string> errors;
  std::vector<std::string> warnings;

 private:
  std::string where(const YAML::Node& at) const {
    const auto mark = at.Mark();
    if (mark.is_null()) return source_ + ": ";
    return source_ + ":" + std::to_string(mark.line + 1) + ": ";
  }
  std::string source_;
};

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return !in.bad();
}

bool world_readable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0;
}

bool printable_token(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > 0x20 && c < 0x7F; });
}

void read_upstream(Reader& r, const YAML::Node& node, UpstreamConfig& up) {
  const std::string path = "upstream";
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path,
              {"url", "ca_file", "connect_timeout_ms", "timeout_ms", "max_response_bytes"});
  if (r.string(node, path, "url", up.url, true)) {
    const std::string problem = check_upstream_url(up.url, up.loopback);
    if (!problem.empty()) r.error(node["url"], "upstream.url", problem);
  }
  if (r.string(node, path, "ca_file", up.ca_file, false)) {
    if (!read_file(up.ca_file, up.ca_pem)) {
      r.error(node["ca_file"], "upstream.ca_file", "cannot read '" + up.ca_file + "'");
    } else if (up.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      r.error(node["ca_file"], "upstream.ca_file", "'" + up.ca_file + "' holds no PEM certificate");
    }
  }
  r.integer(node, path, "connect_timeout_ms", up.connect_timeout_ms, 100, 60000);
  r.integer(node, path, "timeout_ms", up.timeout_ms, 100, 120000);
  r.integer(node, path, "max_response_bytes", up.max_response_bytes, 1024, 16 * 1024 * 1024);
}

void read_merchant(Reader& r, const std::string& name, const YAML::Node& key_node,
                   const YAML::Node& node, Config& config) {
  const std::string path = "merchants." + name;
  const bool good_name = !name.empty() && name.size() <= 64 &&
                         std::all_of(name.begin(), name.end(), [](unsigned char c) {
                           return std::isalnum(c) || c == '-' || c == '_' || c == '.';
                         });
  if (!good_name) r.error(key_node, path, "merchant names are 1-64 of A-Z a-z 0-9 - _ .");
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path, {"api_key", "api_secret", "api_secret_file"});
  MerchantConfig m;
  m.name = name;
  if (r.string(node, path, "api_key", m.api_key, true, &key_node) &&
      (m.api_key.empty() || m.api_key.size() > 32 || !printable_token(m.api_key))) {
    r.error(node["api_key"], path + ".api_key", "must be 1-32 printable characters, no spaces");
  }
  const bool inline_secret = r.string(node, path, "api_secret", m.api_secret, false);
  std::string secret_file;
  bool secret_ok = true;
  const bool file_secret = r.string(node, path, "api_secret_file", secret_file, false);
  if (inline_secret && file_secret) {
    r.error(node, path, "set api_secret or api_secret_file, not both");
  } else if (!inline_secret && !file_secret) {
    r.error(key_node, path + ".api_secret", "is required (or api_secret_file)");
  } else if (file_secret) {
    if (!read_file(secret_file, m.api_secret)) {
      secret_ok = false;
      r.error(node["api_secret_file"], path + ".api_secret_file",
              "cannot read '" + secret_file + "'");
    } else {
      while (!m.api_secret.empty() &&
             (m.api_secret.back() == '\n' || m.api_secret.back() == '\r')) {
        m.api_secret.pop_back();
      }
      if (world_readable(secret_file)) {
        r.warn(node["api_secret_file"], path + ".api_secret_file",
               "'" + secret_file + "' is readable by other users; chmod 600 it");
      }
    }
  }
  const bool secret_read = inline_secret != file_secret && secret_ok;
  if (secret_read && m.api_secret.empty()) r.error(node, path + ".api_secret", "must not be empty");
  if (!m.api_secret.empty() && !printable_token(m.api_secret)) {
    r.error(node, path + ".api_secret", "must be printable characters, no spaces");
  }
  config.merchants.emplace(name, std::move(m));
}

ConfigResult load(const YAML::Node& root, Reader& r, const std::string& source) {
  auto config = std::make_shared<Config>();
  config->source = source;
  bool inline_secret = false;
  if (!root.IsMap()) {
    r.error(root, "(top level)", "must be a mapping with upstream: and merchants:");
  } else {
    r.only_keys(root, "", {"upstream", "merchants", "limits", "log"});
    if (root["upstream"]) {
      read_upstream(r, root["upstream"], config->upstream);
    } else {
      r.error(root, "upstream", "is required");
    }
    if (const YAML::Node limits = root["limits"]) {
      if (r.is_map(limits, "limits")) {
        r.only_keys(limits, "limits", {"max_body_bytes"});
        r.integer(limits, "limits", "max_body_bytes", config->max_body_bytes, 64, 65536);
      }
    }
    if (const YAML::Node log = root["log"]) {
      if (r.is_map(log, "log")) {
        r.only_keys(log, "log", {"level"});
        std::string level;
        if (r.string(log, "log", "level", level, false)) {
          if (level == "debug")
            config->log_level = LogLevel::debug;
          else if (level == "info")
            config->log_level = LogLevel::info;
          else if (level == "warn")
            config->log_level = LogLevel::warn;
          else if (level == "error")
            config->log_level = LogLevel::error;
          else
            r.error(log["level"], "log.level", "must be one of debug, info, warn, error");
        }
      }
    }
    const YAML::Node merchants = root["merchants"];
    if (!merchants) {
      r.error(root, "merchants", "is required (at least one merchant)");
    } else if (r.is_map(merchants, "merchants")) {
      if (merchants.size() == 0) r.error(merchants, "merchants", "needs at least one merchant");
      for (const auto& kv : merchants) {
        read_merchant(r, kv.first.Scalar(), kv.first, kv.second, *config);
        if (kv.second.IsMap() && kv.second["api_secret"]) inline_secret = true;
      }
    }
  }
  ConfigResult result;
  if (inline_secret && !source.empty() && world_readable(source)) {
    r.warnings.push_back(source +
                         ": holds an inline api_secret and is readable by other "
                         "users; chmod 600 it or use api_secret_file");
  }
  result.errors = std::move(r.errors);
  result.warnings = std::move(r.warnings);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

ConfigResult parse(const std::string& text, const std::string& source, bool is_file) {
  Reader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    ConfigResult result;
    result.errors.push_back(source + ":" + std::to_string(e.mark.line + 1) +
                            ": YAML syntax error: " + e.msg);
    return result;
  }
  try {
    return load(root, r, is_file ? source : std::string{});
  } catch (const YAML::Exception& e) {
    ConfigResult result;
    result.errors.push_back(source + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    return result;
  }
}

// A dotted-quad IPv4 literal in 127.0.0.0/8 ("127.evil.example" is not).
bool is_ipv4_loopback(const std::string& host) {
  int parts = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = host.find('.', start);
    const std::string part = host.substr(start, dot - start);
    if (part.empty() || part.size() > 3 ||
        !std::all_of(part.begin(), part.end(), [](unsigned char c) { return std::isdigit(c); }) ||
        std::stoi(part) > 255) {
      return false;
    }
    if (parts == 0 && part != "127") return false;
    ++parts;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts == 4;
}

}  // namespace

const MerchantConfig* Config::find_merchant(const std::string& name, bool given) const {
  if (!given) return merchants.size() == 1 ? &merchants.begin()->second : nullptr;
  const auto it = merchants.find(name);
  return it == merchants.end() ? nullptr : &it->second;
}

std::string check_upstream_url(const std::string& url, bool& loopback) {
  loopback = false;
  std::string rest;
  bool https = false;
  if (url.rfind("https://", 0) == 0) {
    https = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else {
    return "must start with https://";
  }
  const std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (authority.find('@') != std::string::npos) return "must not contain user information";
  std::string host;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string::npos) return "has an unterminated IPv6 address";
    host = authority.substr(1, close - 1);
  } else {
    host = authority.substr(0, authority.find(':'));
  }
  if (host.empty()) return "has no host";
  std::string lower = host;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  loopback = lower == "localhost" || lower == "::1" || is_ipv4_loopback(lower);
  if (!https && !loopback) return "must be https (plain http is allowed only for loopback hosts)";
  return {};
}

ConfigResult load_config_text(const std::string& text, const std::string& source_name) {
  return parse(text, source_name, false);
}

ConfigResult load_config_file(const std::string& path) {
  std::string text;
  if (!read_file(path, text)) {
    ConfigResult result;
    result.errors.push_back(path + ": cannot read the file");
    return result;
  }
  return parse(text, path, true);
}

}  // namespace pvgate
