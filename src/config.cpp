#include "config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "altcha.h"
#include "crypto.h"
#include "jws.h"
#include "siteverify.h"
#include "throttle_store.h"
#include "url.h"

namespace pvgate {
namespace {

// The longest rule period or lock: 30 days.
constexpr std::int64_t kMaxPeriodMs = 30LL * 24 * 3600 * 1000;

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

  // An optional key that must be one of two words: true with `out` set to
  // whether it is `second`; false when absent or wrong (then reported as
  // "must be FIRST or SECOND").
  bool either(const YAML::Node& parent, const std::string& path, const char* key, const char* first,
              const char* second, bool& out) {
    std::string text;
    if (!string(parent, path, key, text, false)) return false;
    if (text != first && text != second) {
      error(parent[key], join(path, key), std::string("must be ") + first + " or " + second);
      return false;
    }
    out = text == second;
    return true;
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

  // true or false; keeps `out` when the key is absent.
  void boolean(const YAML::Node& parent, const std::string& path, const char* key, bool& out) {
    const YAML::Node node = parent[key];
    if (!node) return;
    if (node.IsScalar() && (node.Scalar() == "true" || node.Scalar() == "false")) {
      out = node.Scalar() == "true";
    } else {
      error(node, join(path, key), "must be true or false");
    }
  }

  // A duration ("60s", "10m", "1h", "1d") within [min_ms, max_ms]; keeps
  // `out` when the key is absent (an error then when `required`).
  void duration(const YAML::Node& parent, const std::string& path, const char* key,
                std::int64_t& out, std::int64_t min_ms, std::int64_t max_ms, const char* range,
                bool required = false) {
    std::string text;
    if (!string(parent, path, key, text, required)) return;
    const std::int64_t ms = parse_period(text);
    if (ms < min_ms || ms > max_ms) {
      error(parent[key], join(path, key), std::string("must be a duration from ") + range);
      return;
    }
    out = ms;
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

// Config, secret and CA files are small regular files: a device (/dev/zero,
// /dev/stdin) or a huge file would hang or exhaust the loader.
constexpr std::size_t kMaxReadBytes = 4 << 20;

bool read_file(const std::string& path, std::string& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::size_t>(st.st_size) > kMaxReadBytes) {
    return false;
  }
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

// Reads the secret in `file` (named by `key` of `node`) into `out` without its
// line ends; a file other users can read is a warning.
bool read_secret_file(Reader& r, const YAML::Node& node, const std::string& path, const char* key,
                      const std::string& file, std::string& out) {
  if (!read_file(file, out)) {
    r.error(node[key], Reader::join(path, key), "cannot read '" + file + "'");
    return false;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (world_readable(file)) {
    r.warn(node[key], Reader::join(path, key),
           "'" + file + "' is readable by other users; chmod 600 it");
  }
  return true;
}

bool printable_token(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c > 0x20 && c < 0x7F; });
}

// Checked here so a bad file fails at load; libcurl reads it itself.
void read_ca_file(Reader& r, const YAML::Node& node, const std::string& path,
                  const std::string& file) {
  std::string pem;
  if (!read_file(file, pem)) {
    r.error(node["ca_file"], path + ".ca_file", "cannot read '" + file + "'");
  } else if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    r.error(node["ca_file"], path + ".ca_file", "'" + file + "' holds no PEM certificate");
  }
}

void read_upstream(Reader& r, const YAML::Node& node, UpstreamConfig& up) {
  const std::string path = "upstream";
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path,
              {"url", "ca_file", "connect_timeout_ms", "timeout_ms", "max_response_bytes",
               "max_connections", "http2"});
  if (r.string(node, path, "url", up.url, true)) {
    const std::string problem = check_upstream_url(up.url, up.loopback);
    if (!problem.empty()) r.error(node["url"], "upstream.url", problem);
  }
  if (r.string(node, path, "ca_file", up.ca_file, false)) read_ca_file(r, node, path, up.ca_file);
  r.integer(node, path, "connect_timeout_ms", up.connect_timeout_ms, 100, 60000);
  r.integer(node, path, "timeout_ms", up.timeout_ms, 100, 120000);
  r.integer(node, path, "max_response_bytes", up.max_response_bytes, 1024, 16 * 1024 * 1024);
  r.integer(node, path, "max_connections", up.max_connections, 1, 4096);
  if (bool off = false; r.either(node, path, "http2", "auto", "off", off)) {
    up.http2 = off ? Http2::off : Http2::automatic;
  }
}

bool is_digits(const std::string& s, std::size_t min, std::size_t max) {
  return s.size() >= min && s.size() <= max &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// A YAML sequence of scalars (a lone scalar is accepted as a one-item list).
std::vector<std::pair<std::string, YAML::Node>> scalars(Reader& r, const YAML::Node& node,
                                                        const std::string& path) {
  std::vector<std::pair<std::string, YAML::Node>> out;
  if (node.IsScalar()) {
    out.emplace_back(node.Scalar(), node);
  } else if (node.IsSequence()) {
    for (const auto& item : node) {
      if (item.IsScalar()) {
        out.emplace_back(item.Scalar(), item);
      } else {
        r.error(item, path, "items must be plain values");
      }
    }
  } else {
    r.error(node, path, "must be a list");
  }
  return out;
}

void read_rule(Reader& r, const YAML::Node& node, const std::string& path, ThrottleConfig& t) {
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path, {"name", "actions", "key", "limit", "period", "dry_run", "range_digits"});
  ThrottleRule rule;
  if (r.string(node, path, "name", rule.name, true)) {
    const bool good = !rule.name.empty() && rule.name.size() <= 64 &&
                      std::all_of(rule.name.begin(), rule.name.end(), [](unsigned char c) {
                        return std::islower(c) || std::isdigit(c) || c == '-' || c == '_';
                      });
    if (!good) r.error(node["name"], path + ".name", "must be 1-64 of a-z 0-9 - _");
    for (const auto& other : t.rules) {
      if (other.name == rule.name)
        r.error(node["name"], path + ".name", "'" + rule.name + "' is used twice");
    }
  }
  if (const YAML::Node actions = node["actions"]) {
    rule.send_token = rule.verify = false;
    for (const auto& [value, at] : scalars(r, actions, path + ".actions")) {
      if (value == "send-token")
        rule.send_token = true;
      else if (value == "verify-token-answer")
        rule.verify = true;
      else
        r.error(at, path + ".actions", "'" + value + "' is not send-token or verify-token-answer");
    }
    if (!rule.send_token && !rule.verify)
      r.error(actions, path + ".actions", "must name an action");
  }
  if (const YAML::Node key = node["key"]) {
    for (const auto& [value, at] : scalars(r, key, path + ".key")) {
      KeyPart part;
      if (value == "merchant")
        part = KeyPart::merchant;
      else if (value == "user")
        part = KeyPart::user;
      else if (value == "phone")
        part = KeyPart::phone;
      else if (value == "phone_prefix")
        part = KeyPart::phone_prefix;
      else if (value == "ip")
        part = KeyPart::ip;
      else if (value == "country")
        part = KeyPart::country;
      else {
        r.error(at, path + ".key",
                "'" + value + "' is not one of merchant, user, phone, phone_prefix, ip, country");
        continue;
      }
      if (std::find(rule.key.begin(), rule.key.end(), part) != rule.key.end()) {
        r.error(at, path + ".key", "'" + value + "' is listed twice");
      }
      rule.key.push_back(part);
    }
    if (rule.key.empty()) r.error(key, path + ".key", "needs at least one part");
  } else {
    r.error(node, path + ".key",
            "is required (parts: merchant, user, phone, phone_prefix, ip, country)");
  }
  const bool ranged =
      std::find(rule.key.begin(), rule.key.end(), KeyPart::phone_prefix) != rule.key.end();
  if (node["range_digits"]) {
    r.integer(node, path, "range_digits", rule.range_digits, 1, 6);
    if (!ranged) {
      r.error(node["range_digits"], path + ".range_digits", "needs phone_prefix in key");
    }
  } else if (ranged) {
    r.error(node, path + ".range_digits",
            "is required with phone_prefix: how many final digits a range spans (1-6)");
  }
  if (!node["limit"]) r.error(node, path + ".limit", "is required");
  r.integer(node, path, "limit", rule.limit, 1, 10000);
  r.duration(node, path, "period", rule.period_ms, 1000, kMaxPeriodMs,
             "1s to 30d, like 60s, 10m, 1h, 1d", true);
  r.boolean(node, path, "dry_run", rule.dry_run);
  t.rules.push_back(std::move(rule));
}

void read_throttle(Reader& r, const YAML::Node& node, ThrottleConfig& t) {
  const std::string path = "throttle";
  if (!r.is_map(node, path)) return;
  t.enabled = true;
  r.only_keys(node, path,
              {"store", "path", "max_size_mb", "redis", "redis_timeout_ms", "on_store_error",
               "rules", "countries", "max_answer_attempts", "answer_lock_period"});
  std::string text;
  if (r.string(node, path, "store", text, false)) {
    if (text == "local")
      t.store = StoreKind::local;
    else if (text == "redis")
      t.store = StoreKind::redis;
    else
      r.error(node["store"], "throttle.store", "must be local or redis");
  }
  r.string(node, path, "path", t.path, false);
  if (t.path.empty()) r.error(node, "throttle.path", "must not be empty");
  r.integer(node, path, "max_size_mb", t.max_size_mb, 1, 65536);
  if (r.string(node, path, "redis", t.redis_url, false)) {
    ParsedRedisUrl parsed;
    std::string problem;
    if (!parse_redis_url(t.redis_url, parsed, problem)) {
      r.error(node["redis"], "throttle.redis",
              problem +
                  " (redis://[:password@]host[:port][/db], unix:///path[?db=N] or "
                  "redis-sentinel://[:password@]host:port[,host:port...]/master_name[?db=N])");
    }
  }
  r.integer(node, path, "redis_timeout_ms", t.redis_timeout_ms, 10, 5000);
  if (bool allow = false; r.either(node, path, "on_store_error", "deny", "allow", allow)) {
    t.on_store_error = allow ? OnStoreError::allow : OnStoreError::deny;
  }
  if (const YAML::Node rules = node["rules"]) {
    if (!rules.IsSequence()) {
      r.error(rules, "throttle.rules", "must be a list of rules");
    } else {
      for (std::size_t i = 0; i < rules.size(); ++i) {
        read_rule(r, rules[i], "throttle.rules[" + std::to_string(i) + "]", t);
      }
    }
  }
  if (const YAML::Node countries = node["countries"]) {
    if (r.is_map(countries, "throttle.countries")) {
      r.only_keys(countries, "throttle.countries", {"allow", "deny"});
      if (countries["allow"] && countries["deny"]) {
        r.error(countries, "throttle.countries", "set allow or deny, not both");
      }
      for (const char* which : {"allow", "deny"}) {
        if (!countries[which]) continue;
        const std::string p = std::string("throttle.countries.") + which;
        auto& list = std::string(which) == "allow" ? t.countries_allow : t.countries_deny;
        for (auto& [value, at] : scalars(r, countries[which], p)) {
          std::string code = value;
          if (!code.empty() && code.front() == '+') code.erase(0, 1);
          if (is_digits(code, 1, 3) && known_country_code(code)) {
            list.push_back(code);
          } else if (known_region(value)) {
            list.push_back(value);
          } else {
            r.error(at, p,
                    "'" + value +
                        "' is neither a country calling code nor an ISO 3166-1 region "
                        "(like 60 or MY) that libphonenumber knows");
          }
        }
      }
    }
  }
  r.integer(node, path, "max_answer_attempts", t.max_answer_attempts, 0, 100);
  r.duration(node, path, "answer_lock_period", t.answer_lock_ms, 1000, kMaxPeriodMs,
             "1s to 30d, like 15m or 1h");
}

// One pressure rule: {sends: N, period: 1h}.
void read_pressure(Reader& r, const YAML::Node& parent, const std::string& path, const char* key,
                   PressureRule& out) {
  const YAML::Node node = parent[key];
  if (!node) return;
  const std::string at = Reader::join(path, key);
  if (!r.is_map(node, at)) return;
  r.only_keys(node, at, {"sends", "period"});
  if (!node["sends"]) r.error(node, at + ".sends", "is required");
  r.integer(node, at, "sends", out.sends, 1, kMaxRuleLimit);
  r.duration(node, at, "period", out.period_ms, 1000, kMaxPeriodMs, "1s to 30d, like 10m, 1h, 1d",
             true);
}

void read_challenge(Reader& r, const YAML::Node& node, const std::string& path,
                    const std::string& merchant, ChallengeConfig& c) {
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path,
              {"kind", "when", "pressure", "key_file", "difficulty", "hard_difficulty", "expires",
               "secret_file", "siteverify_url", "ca_file", "timeout", "on_error", "min_score"});
  std::string text;
  if (r.string(node, path, "kind", text, true)) {
    if (text == "altcha") {
      c.kind = ChallengeKind::altcha;
    } else if (const auto captcha = captcha_kind_from_name(text)) {
      c.kind = *captcha == CaptchaKind::turnstile  ? ChallengeKind::turnstile
               : *captcha == CaptchaKind::hcaptcha ? ChallengeKind::hcaptcha
                                                   : ChallengeKind::recaptcha;
    } else {
      r.error(node["kind"], path + ".kind", "must be altcha, turnstile, hcaptcha or recaptcha");
      return;
    }
  }
  if (bool pressure = false; r.either(node, path, "when", "always", "pressure", pressure)) {
    c.always = !pressure;
  }
  if (const YAML::Node pressure = node["pressure"]) {
    const std::string at = path + ".pressure";
    if (r.is_map(pressure, at)) {
      r.only_keys(pressure, at, {"address", "phone", "merchant"});
      read_pressure(r, pressure, at, "address", c.address);
      read_pressure(r, pressure, at, "phone", c.phone);
      read_pressure(r, pressure, at, "merchant", c.merchant);
    }
  } else {
    // Documented defaults (README, Challenges): a second code to one phone
    // or a fourth from one address within an hour, or more than 60 codes a
    // minute for the whole shop, is what SMS pumping looks like.
    c.address = {3, 60LL * 60 * 1000};
    c.phone = {2, 60LL * 60 * 1000};
    c.merchant = {60, 60LL * 1000};
  }
  if (!c.always && c.address.sends == 0 && c.phone.sends == 0 && c.merchant.sends == 0) {
    r.error(node, path + ".when", "pressure needs at least one pressure rule");
  }

  const bool altcha = c.kind == ChallengeKind::altcha;
  for (const char* key : {"key_file", "difficulty", "hard_difficulty", "expires"}) {
    if (!altcha && node[key]) r.error(node[key], Reader::join(path, key), "is for kind altcha");
  }
  for (const char* key : {"secret_file", "siteverify_url", "ca_file", "timeout", "on_error"}) {
    if (altcha && node[key]) r.error(node[key], Reader::join(path, key), "is for CAPTCHA kinds");
  }
  if (c.kind != ChallengeKind::recaptcha && node["min_score"]) {
    r.error(node["min_score"], path + ".min_score", "is for kind recaptcha");
  }
  if (altcha) {
    std::string file;
    std::string key;
    if (r.string(node, path, "key_file", file, true) &&
        read_secret_file(r, node, path, "key_file", file, key)) {
      if (key.size() < 32) {
        r.error(node["key_file"], path + ".key_file",
                "'" + file + "' holds under 32 bytes: make one with openssl rand -hex 32");
      } else {
        const AltchaSecrets secrets = altcha_secrets(key, merchant);
        c.altcha_signature_secret = secrets.signature;
        c.altcha_key_secret = secrets.key_signature;
      }
      wipe(key);
    }
    r.integer(node, path, "difficulty", c.difficulty, 1000, 100000000);
    c.hard_difficulty = c.difficulty * 10ULL > 100000000 ? 100000000 : c.difficulty * 10;
    r.integer(node, path, "hard_difficulty", c.hard_difficulty, 1000, 100000000);
    if (c.hard_difficulty < c.difficulty) {
      r.error(node["hard_difficulty"], path + ".hard_difficulty", "must not be below difficulty");
    }
    r.duration(node, path, "expires", c.expires_ms, 10 * 1000, 24LL * 3600 * 1000,
               "10s to 1d, like 10m");
    return;
  }
  if (c.kind == ChallengeKind::none) return;
  const CaptchaKind captcha = captcha_of(c.kind);
  std::string file;
  if (r.string(node, path, "secret_file", file, true) &&
      read_secret_file(r, node, path, "secret_file", file, c.secret) &&
      (c.secret.empty() || !printable_token(c.secret))) {
    r.error(node["secret_file"], path + ".secret_file",
            "'" + file + "' must hold the provider's secret: printable characters, no spaces");
  }
  c.siteverify.url = std::string(captcha_default_url(captcha));
  if (r.string(node, path, "siteverify_url", c.siteverify.url, false)) {
    const std::string problem = check_upstream_url(c.siteverify.url, c.siteverify.loopback);
    if (!problem.empty()) r.error(node["siteverify_url"], path + ".siteverify_url", problem);
  }
  if (r.string(node, path, "ca_file", c.siteverify.ca_file, false)) {
    read_ca_file(r, node, path, c.siteverify.ca_file);
  }
  c.siteverify.connect_timeout_ms = 2000;
  c.siteverify.timeout_ms = 5000;
  std::int64_t timeout_ms = c.siteverify.timeout_ms;
  r.duration(node, path, "timeout", timeout_ms, 1000, 30 * 1000, "1s to 30s, like 5s");
  c.siteverify.timeout_ms = static_cast<long>(timeout_ms);
  c.siteverify.connect_timeout_ms =
      std::min(c.siteverify.connect_timeout_ms, c.siteverify.timeout_ms);
  c.siteverify.max_response_bytes = 16 * 1024;
  r.either(node, path, "on_error", "deny", "allow", c.allow_on_error);
  if (const YAML::Node score = node["min_score"]) {
    char* end = nullptr;
    const std::string v = score.IsScalar() ? score.Scalar() : std::string{};
    const double d = v.empty() ? -1 : std::strtod(v.c_str(), &end);
    if (v.empty() || end == nullptr || *end != '\0' || !(d >= 0 && d <= 1)) {
      r.error(score, path + ".min_score", "must be a number from 0 to 1");
    } else {
      c.min_score = d;
    }
  }
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
  r.only_keys(
      node, path,
      {"api_key", "api_secret", "api_secret_file", "allowed_origins", "allow_missing_origin",
       "user_id_param", "audience", "allow_stored_number", "challenge"});
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
    secret_ok = read_secret_file(r, node, path, "api_secret_file", secret_file, m.api_secret);
  }
  const bool secret_read = inline_secret != file_secret && secret_ok;
  if (secret_read && m.api_secret.empty()) r.error(node, path + ".api_secret", "must not be empty");
  if (!m.api_secret.empty() && !printable_token(m.api_secret)) {
    r.error(node, path + ".api_secret", "must be printable characters, no spaces");
  }
  if (const YAML::Node origins = node["allowed_origins"]) {
    for (const auto& [value, at] : scalars(r, origins, path + ".allowed_origins")) {
      const std::string origin = normalize_origin(value);
      if (origin.empty() || value.find('*') != std::string::npos) {
        r.error(at, path + ".allowed_origins",
                "'" + value + "' is not an origin like https://shop.example (no wildcards)");
        continue;
      }
      m.allowed_origins.push_back(origin);
    }
  } else {
    r.warn(key_node, path,
           "no allowed_origins: any web page can make its visitors' browsers send tokens");
  }
  r.boolean(node, path, "allow_missing_origin", m.allow_missing_origin);
  if (r.string(node, path, "user_id_param", m.user_id_param, false)) {
    const bool good =
        !m.user_id_param.empty() && m.user_id_param.size() <= 64 &&
        std::all_of(m.user_id_param.begin(), m.user_id_param.end(),
                    [](unsigned char c) { return std::isupper(c) || std::isdigit(c) || c == '_'; });
    if (!good) {
      r.error(node["user_id_param"], path + ".user_id_param",
              "must be a FastCGI param name: 1-64 of A-Z 0-9 _");
    }
  }
  r.boolean(node, path, "allow_stored_number", m.allow_stored_number);
  m.audience = m.name;
  if (r.string(node, path, "audience", m.audience, false) &&
      (m.audience.empty() || m.audience.size() > 256 || !printable_token(m.audience))) {
    r.error(node["audience"], path + ".audience", "must be 1-256 printable characters, no spaces");
  }
  if (const YAML::Node challenge = node["challenge"]) {
    read_challenge(r, challenge, path + ".challenge", m.name, m.challenge);
  }
  config.merchants.emplace(name, std::move(m));
}

void read_verification(Reader& r, const YAML::Node& node, VerificationConfig& v) {
  const std::string path = "verification";
  if (!r.is_map(node, path)) return;
  r.only_keys(node, path, {"issuer", "signing_keys", "session_ttl", "token_ttl"});
  v.enabled = true;
  if (r.string(node, path, "issuer", v.issuer, true, &node)) {
    bool loopback = false;
    const std::string problem = check_upstream_url(v.issuer, loopback);
    if (!problem.empty() || v.issuer.size() > 512) {
      r.error(node["issuer"], path + ".issuer",
              "must be an https URL naming this service, like https://shop.example/pvgate");
    }
  }
  if (!node["signing_keys"]) {
    r.error(node, path + ".signing_keys", "is required: a list of PEM private key files");
  } else {
    std::vector<SigningKey> loaded;
    const auto files = scalars(r, node["signing_keys"], path + ".signing_keys");
    for (auto& [file, at] : files) {
      std::string problem;
      std::optional<SigningKey> key = SigningKey::load_pem_file(file, problem);
      if (!key) {
        r.error(at, path + ".signing_keys", problem);
        continue;
      }
      if (world_readable(file)) {
        r.warn(at, path + ".signing_keys",
               "'" + file + "' is readable by other users; chmod 600 it");
      }
      for (const auto& seen : loaded) {
        if (seen.kid() == key->kid()) {
          r.error(at, path + ".signing_keys", "'" + file + "' is a key listed before");
        }
      }
      loaded.push_back(std::move(*key));
    }
    if (files.empty()) {
      r.error(node["signing_keys"], path + ".signing_keys", "needs at least one key file");
    }
    v.jwks = jwks(loaded);
    for (auto& key : loaded) {
      v.signing_keys.push_back(std::make_shared<const SigningKey>(std::move(key)));
    }
  }
  constexpr std::int64_t kMinute = 60'000;
  r.duration(node, path, "session_ttl", v.session_ttl_ms, kMinute, 24 * 60 * kMinute,
             "1m to 1d, like 10m");
  r.duration(node, path, "token_ttl", v.token_ttl_ms, kMinute, 24 * 60 * kMinute,
             "1m to 1d, like 10m");
}

void read_phone(Reader& r, const YAML::Node& node, PhoneConfig& phone) {
  if (!r.is_map(node, "phone")) return;
  r.only_keys(node, "phone", {"number_types"});
  const YAML::Node types = node["number_types"];
  if (!types) return;
  phone.number_types.clear();
  for (const auto& [value, at] : scalars(r, types, "phone.number_types")) {
    const std::optional<PhoneType> type = phone_type_from_name(value);
    if (!type || *type == PhoneType::unknown) {
      r.error(at, "phone.number_types",
              "'" + value +
                  "' is not a number type (mobile, fixed_line_or_mobile, fixed_line, toll_free, "
                  "premium_rate, shared_cost, voip, personal_number, pager, uan, voicemail)");
      continue;
    }
    phone.number_types.push_back(*type);
  }
  if (phone.number_types.empty()) {
    r.error(types, "phone.number_types", "needs at least one type");
  }
}

void read_metrics(Reader& r, const YAML::Node& node, Config& config) {
  if (!r.is_map(node, "metrics")) return;
  r.only_keys(node, "metrics", {"allow", "file"});
  if (r.string(node, "metrics", "file", config.metrics_file, false) &&
      (config.metrics_file.empty() || config.metrics_file[0] != '/')) {
    r.error(node["file"], "metrics.file", "must be an absolute path");
  }
  const YAML::Node allow = node["allow"];
  if (!allow) return;  // keep the default
  config.metrics_allow.clear();
  for (const auto& [value, at] : scalars(r, allow, "metrics.allow")) {
    std::string problem;
    if (const auto range = parse_cidr(value, problem)) {
      config.metrics_allow.push_back(*range);
    } else {
      r.error(at, "metrics.allow", problem);
    }
  }
}

ConfigResult load(const YAML::Node& root, Reader& r, const std::string& source) {
  auto config = std::make_shared<Config>();
  config->source = source;
  bool inline_secret = false;
  if (!root.IsMap()) {
    r.error(root, "(top level)", "must be a mapping with upstream: and merchants:");
  } else {
    r.only_keys(
        root, "",
        {"upstream", "merchants", "limits", "log", "throttle", "metrics", "verification", "phone"});
    if (const YAML::Node phone = root["phone"]) read_phone(r, phone, config->phone);
    if (const YAML::Node v = root["verification"]) {
      read_verification(r, v, config->verification);
      if (config->verification.enabled && !root["throttle"]) {
        r.error(v, "verification",
                "needs a throttle: section with a store: sessions live in the throttle store");
      }
    } else {
      r.warnings.push_back(source.empty() ? std::string("config") : source);
      r.warnings.back() +=
          ": no verification: section: the shop's server cannot trust a verified result "
          "(no signed token is issued); see README, Verified phones";
    }
    if (const YAML::Node throttle = root["throttle"]) read_throttle(r, throttle, config->throttle);
    if (root["upstream"]) {
      read_upstream(r, root["upstream"], config->upstream);
    } else {
      r.error(root, "upstream", "is required");
    }
    if (const YAML::Node limits = root["limits"]) {
      if (r.is_map(limits, "limits")) {
        r.only_keys(limits, "limits", {"max_body_bytes", "read_timeout_ms", "write_timeout_ms"});
        r.integer(limits, "limits", "max_body_bytes", config->max_body_bytes, 64, 65536);
        r.integer(limits, "limits", "read_timeout_ms", config->read_timeout_ms, 100, 600000);
        r.integer(limits, "limits", "write_timeout_ms", config->write_timeout_ms, 100, 600000);
      }
    }
    if (const YAML::Node metrics = root["metrics"]) read_metrics(r, metrics, *config);
    if (const YAML::Node log = root["log"]) {
      if (r.is_map(log, "log")) {
        r.only_keys(log, "log", {"level", "format", "destination"});
        std::string text;
        if (r.string(log, "log", "format", text, false)) {
          if (text == "json" || text == "text") {
            config->log_json = text == "json";
          } else {
            r.error(log["format"], "log.format", "must be json or text");
          }
        }
        if (r.string(log, "log", "destination", text, false)) {
          if (text == "stderr" || text == "fastcgi") {
            config->log_to_fastcgi = text == "fastcgi";
          } else {
            r.error(log["destination"], "log.destination", "must be stderr or fastcgi");
          }
        }
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
      for (const auto& [name, m] : config->merchants) {
        // ALTCHA solutions are claimed once and pressure is counted in the
        // throttle store.
        const ChallengeConfig& c = m.challenge;
        if (c.kind != ChallengeKind::none && (c.kind == ChallengeKind::altcha || !c.always) &&
            !root["throttle"]) {
          r.error(merchants[name]["challenge"], "merchants." + name + ".challenge",
                  "needs a throttle: section with a store: solutions are used once and pressure "
                  "is counted there");
        }
        if (c.kind != ChallengeKind::none && c.kind != ChallengeKind::altcha &&
            config->max_body_bytes < 8192) {
          r.warn(merchants[name]["challenge"], "merchants." + name + ".challenge",
                 "CAPTCHA tokens can run past 2 KB: set limits.max_body_bytes to 8192");
        }
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
  result.log_json = config->log_json;
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

}  // namespace

std::string_view challenge_kind_name(ChallengeKind kind) {
  switch (kind) {
    case ChallengeKind::none:
      return "none";
    case ChallengeKind::altcha:
      return "altcha";
    case ChallengeKind::turnstile:
      return "turnstile";
    case ChallengeKind::hcaptcha:
      return "hcaptcha";
    case ChallengeKind::recaptcha:
      return "recaptcha";
  }
  return "none";
}

std::string_view key_part_name(KeyPart part) {
  switch (part) {
    case KeyPart::merchant:
      return "merchant";
    case KeyPart::user:
      return "user";
    case KeyPart::phone:
      return "phone";
    case KeyPart::phone_prefix:
      return "phone_prefix";
    case KeyPart::ip:
      return "ip";
    case KeyPart::country:
      return "country";
  }
  return "?";
}

std::int64_t parse_period(const std::string& text) {
  if (text.empty() || text.size() > 12) return -1;
  std::int64_t unit = 1000;
  std::string digits = text;
  switch (text.back()) {
    case 's':
      unit = 1000;
      digits.pop_back();
      break;
    case 'm':
      unit = 60 * 1000;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600 * 1000;
      digits.pop_back();
      break;
    case 'd':
      unit = 24 * 3600 * 1000;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (!is_digits(digits, 1, 9)) return -1;
  return std::stoll(digits) * unit;
}

std::string format_period(std::int64_t ms) {
  const std::int64_t s = ms / 1000;
  if (s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

std::vector<std::string> restart_only_changes(const Config& old, const Config& next) {
  std::vector<std::string> out;
  const auto restart = [&](const std::string& key, const char* now) {
    out.push_back(key + " takes effect only on restart (" + now + ")");
  };
  const ThrottleConfig& a = old.throttle;
  const ThrottleConfig& b = next.throttle;
  constexpr const char* kStoreStays = "the store opened at start stays; rules apply now";
  if (a.enabled != b.enabled) {
    restart(b.enabled ? "throttle: section added" : "throttle: section removed",
            b.enabled ? "no store is open: nothing is throttled until then"
                      : "the store opened at start stays; no rule applies now");
  } else if (a.enabled) {
    if (a.store != b.store) {
      restart("throttle.store", kStoreStays);
    } else if (a.store == StoreKind::local) {
      if (a.path != b.path) restart("throttle.path", kStoreStays);
      if (a.max_size_mb != b.max_size_mb) restart("throttle.max_size_mb", kStoreStays);
    } else {
      if (a.redis_url != b.redis_url) restart("throttle.redis", kStoreStays);
      if (a.redis_timeout_ms != b.redis_timeout_ms) {
        restart("throttle.redis_timeout_ms", kStoreStays);
      }
    }
  }
  if (old.upstream.max_connections != next.upstream.max_connections) {
    restart("upstream.max_connections", "the limit set at start stays");
  }
  if (old.upstream.http2 != next.upstream.http2) {
    restart("upstream.http2", "connections go on as set at start");
  }
  if (metrics_file_path(old) != metrics_file_path(next)) {
    restart("metrics.file", "the file mapped at start keeps counting");
  }
  return out;
}

std::string metrics_file_path(const Config& config) {
  if (!config.metrics_file.empty()) return config.metrics_file;
  if (config.throttle.enabled && config.throttle.store == StoreKind::local) {
    return config.throttle.path + "/metrics";
  }
  return "";
}

const MerchantConfig* Config::find_merchant(const std::string& name, bool given) const {
  if (!given) return merchants.size() == 1 ? &merchants.begin()->second : nullptr;
  const auto it = merchants.find(name);
  return it == merchants.end() ? nullptr : &it->second;
}

std::string check_upstream_url(const std::string& url, bool& loopback) {
  loopback = false;
  Url parsed;
  std::string problem;
  if (!parse_url(url, parsed, problem)) {
    return problem == "must start with scheme://" ? "must start with https://" : problem;
  }
  if (parsed.scheme != "https" && parsed.scheme != "http") return "must start with https://";
  if (parsed.has_userinfo) return "must not contain user information";
  loopback = is_loopback_host(parsed.host);
  if (parsed.scheme != "https" && !loopback) {
    return "must be https (plain http is allowed only for loopback hosts)";
  }
  return {};
}

ConfigResult load_config_text(const std::string& text, const std::string& source_name) {
  return parse(text, source_name, false);
}

ConfigResult load_config_file(const std::string& path) {
  std::string text;
  if (!read_file(path, text)) {
    ConfigResult result;
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    result.errors.push_back(
        path + (!exists                ? ": cannot read the file"
                : !S_ISREG(st.st_mode) ? ": not a regular file (pipes and devices are refused)"
                : static_cast<std::size_t>(st.st_size) > kMaxReadBytes ? ": larger than 4 MiB"
                                                                       : ": cannot read the file"));
    return result;
  }
  return parse(text, path, true);
}

}  // namespace pvgate
