// pvgate's configuration: YAML parsed once into plain, validated structs. The
// only user of yaml-cpp. Requests read an immutable snapshot through
// ConfigHolder, so a reload can swap in a new one without locking the data path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cidr.h"
#include "phone.h"

namespace pvgate {

class SigningKey;  // jws.h

// upstream.http2: how the upstream client speaks to an HTTPS server.
enum class Http2 {
  automatic,  // auto: HTTP/2 where the server offers it through ALPN (calls share
              // connections as streams), HTTP/1.1 where it does not and for http://
  off,        // HTTP/1.1 only: one connection per call in flight
};

struct UpstreamConfig {
  std::string url;                             // https://host[:port]/path (http only for loopback)
  std::string ca_file;                         // extra PEM trusted besides the system store
  long connect_timeout_ms = 3000;              // 100 .. 60000
  long timeout_ms = 10000;                     // 100 .. 120000, whole call
  std::size_t max_response_bytes = 64 * 1024;  // 1 KiB .. 16 MiB
  long max_connections = 256;                  // calls in flight at once, 1 .. 4096
  Http2 http2 = Http2::automatic;              // upstream: only, siteverify too; restart only
  bool loopback = false;                       // host is 127.0.0.0/8, ::1 or localhost
};

// A challenge before any SMS (issue 14): self-hosted proof of work (ALTCHA)
// or a CAPTCHA whose token pvgate checks with the provider's siteverify API.
enum class ChallengeKind { none, altcha, turnstile, hcaptcha, recaptcha };

// "N sends in a period": pressure that requires a challenge (and, for ALTCHA,
// a harder one). sends 0 = not watched.
struct PressureRule {
  std::uint32_t sends = 0;  // 1 .. 10000
  std::int64_t period_ms = 0;
};

struct ChallengeConfig {
  ChallengeKind kind = ChallengeKind::none;
  // when: always (every send-token needs a solution) or pressure (only while
  // one of the pressure rules below is reached).
  bool always = true;
  PressureRule address;   // sends from one address (IPv6 by its /64)
  PressureRule phone;     // sends to one E.164 number
  PressureRule merchant;  // all of the merchant's sends
  // altcha: the two HMAC secrets derived from key_file and the merchant's
  // name; the counter bound (expected work: 3/4 of it, in SHA-256s) normally
  // and under address or merchant pressure; how long a challenge lives.
  std::string altcha_signature_secret;
  std::string altcha_key_secret;
  std::uint32_t difficulty = 50000;
  std::uint32_t hard_difficulty = 500000;
  std::int64_t expires_ms = 10LL * 60 * 1000;
  // turnstile, hcaptcha, recaptcha: the provider's secret (from secret_file,
  // never logged), its siteverify endpoint and timeouts, what to do when it
  // cannot be reached or answers nonsense, and reCAPTCHA v3's lowest score.
  std::string secret;
  UpstreamConfig siteverify;
  bool allow_on_error = false;
  double min_score = 0;
};

struct MerchantConfig {
  std::string name;
  std::string api_key;     // Pipwave's merchant key, 1-32 printable characters
  std::string api_secret;  // never logged, never sent
  // Browser origins ("https://shop.example", lower case, no path) allowed to
  // call; empty = any origin (pvgate warns at start-up).
  std::vector<std::string> allowed_origins;
  bool allow_missing_origin = false;  // accept requests with neither Origin nor Referer
  std::string user_id_param;          // FastCGI param holding the user id; "" = from the client
  std::string audience;  // the verification token's aud; the merchant's name by default
  // Sends without contact_no (Pipwave texts the number it holds for the user)
  // are refused unless this is set; then the per-phone rules count them under
  // one key per user.
  bool allow_stored_number = false;
  ChallengeConfig challenge;
};

// normalize_origin() (url.h) reads the allowed_origins and the request's Origin.

enum class LogLevel { debug, info, warn, error };

// The parts a throttle key is built from.
enum class KeyPart {
  merchant,      // the merchant's name
  user,          // user_id
  phone,         // the E.164 number (the user's stored number when no contact_no is sent)
  phone_prefix,  // the E.164 number without its last range_digits digits: a run of numbers
  ip,            // REMOTE_ADDR; IPv6 by its /64
  country,       // dialing code
};

struct ThrottleRule {
  std::string name;                // unique, 1-64 of a-z 0-9 - _
  bool send_token = true;          // applies to send-token
  bool verify = true;              // applies to verify-token-answer
  std::vector<KeyPart> key;        // at least one part, no repeats
  std::uint32_t limit = 1;         // 1 .. 10000 requests ...
  std::int64_t period_ms = 60000;  // ... per this period (1 s .. 30 d)
  bool dry_run = false;            // count and log, never reject
  std::uint32_t range_digits = 0;  // with a phone_prefix part: digits cut off the end, 1 .. 6
};

enum class StoreKind { local, redis };
enum class OnStoreError { deny, allow };

struct ThrottleConfig {
  bool enabled = false;  // false when the config has no throttle: section
  StoreKind store = StoreKind::local;
  std::string path = "/var/lib/pvgate/throttle";  // local store directory
  std::size_t max_size_mb = 64;                   // local store size bound, 1 .. 65536
  std::string redis_url = "redis://127.0.0.1:6379/0";
  long redis_timeout_ms = 100;  // connect and command timeout, 10 .. 5000
  OnStoreError on_store_error = OnStoreError::deny;
  std::vector<ThrottleRule> rules;
  // Country calling codes ("60") or ISO 3166-1 alpha-2 regions ("MY"), each
  // one libphonenumber knows; empty = no allow list.
  std::vector<std::string> countries_allow;
  std::vector<std::string> countries_deny;
  std::uint32_t max_answer_attempts = 5;           // verify attempts per reference, 0 = unlimited
  std::int64_t answer_lock_ms = 60LL * 60 * 1000;  // how long those attempts are remembered
};

// Verification sessions and the signed result (issue 12). Without a
// verification: section (enabled false) verify-token-answer works as before
// and no token is issued.
struct VerificationConfig {
  bool enabled = false;
  std::string issuer;  // the token's iss: an https URL (http only for loopback)
  // The PEM private keys, loaded: the first signs, all are published.
  std::vector<std::shared_ptr<const SigningKey>> signing_keys;
  std::string jwks;                                // {"keys":[...]}, rendered once
  std::int64_t session_ttl_ms = 10LL * 60 * 1000;  // 1m .. 1d
  std::int64_t token_ttl_ms = 10LL * 60 * 1000;    // 1m .. 1d
};

// Which numbers may receive an SMS (issue 13).
struct PhoneConfig {
  // libphonenumber's types that may receive a code; the rest (premium_rate,
  // toll_free, shared_cost, voip, ...) are refused before any count or call.
  std::vector<PhoneType> number_types = {PhoneType::mobile, PhoneType::fixed_line_or_mobile};
};

struct Config {
  std::string source;  // file name, for messages
  UpstreamConfig upstream;
  std::size_t max_body_bytes = 4096;  // request body limit, 64 .. 65536
  // A FastCGI connection holding part of a request is closed after this long
  // (an idle kept-alive one is not), 100 .. 600000.
  long read_timeout_ms = 10000;
  // A reply the reader has not taken in this long is dropped, 100 .. 600000.
  long write_timeout_ms = 10000;
  LogLevel log_level = LogLevel::info;
  bool log_json = true;         // log.format: json (one object per line) or text
  bool log_to_fastcgi = false;  // log.destination: fastcgi puts request lines in nginx's error log
  std::map<std::string, MerchantConfig> merchants;
  ThrottleConfig throttle;
  VerificationConfig verification;
  PhoneConfig phone;
  // metrics.allow: client addresses (REMOTE_ADDR) the metrics route answers;
  // default 127.0.0.0/8 and ::1/128. Empty: it answers nobody.
  std::vector<CidrRange> metrics_allow = loopback_ranges();
  // metrics.file: the file every worker maps for host-wide metrics (absolute
  // path); empty: the local throttle store's directory, see metrics_file_path.
  std::string metrics_file;

  // The merchant for a request: by name when given, else the only one.
  const MerchantConfig* find_merchant(const std::string& name, bool given) const;
};

struct ConfigResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<std::string> errors;       // "file:line: key.path: problem"
  std::vector<std::string> warnings;
  // log.format as the file asks, even when it has errors elsewhere: the
  // service writes those errors in the format of its other lines.
  bool log_json = true;
};

ConfigResult load_config_file(const std::string& path);

// Where the metrics file is: metrics.file, else "metrics" in the local
// throttle store's directory, else "" (no file: each process counts alone).
std::string metrics_file_path(const Config& config);
ConfigResult load_config_text(const std::string& text, const std::string& source_name);

std::string_view key_part_name(KeyPart part);
std::string_view challenge_kind_name(ChallengeKind kind);  // "none", "altcha", "turnstile", ...
// "60s" style rendering of a period, for --check-config.
std::string format_period(std::int64_t period_ms);

// "60s", "10m", "1h", "1d" or plain seconds -> milliseconds; -1 when malformed.
std::int64_t parse_period(const std::string& text);

// Checks "https://host[:port]/path" (parse_url() in url.h); http only for a
// loopback host. Sets `loopback`. Returns an error text or "".
std::string check_upstream_url(const std::string& url, bool& loopback);

// What a reload from `old` to `next` cannot change: one message per
// restart-only key that differs ("throttle.path takes effect only on
// restart ..."), naming the key, never its value (a Redis URL may hold a
// password). Restart-only: the throttle store (the section's presence, store,
// path, max_size_mb, redis, redis_timeout_ms: the store is opened once) and
// upstream.max_connections and upstream.http2 (they shape the upstream
// client's connection pool, siteverify's calls included). Everything else,
// limits.max_body_bytes included, applies to the next request.
std::vector<std::string> restart_only_changes(const Config& old, const Config& next);

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
