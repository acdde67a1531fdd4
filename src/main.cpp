// pvgate: the FastCGI gate between browsers and Pipwave's phone-verify API.
// main wires the modules together; everything else lives in pvgate_core.
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "clock.h"
#include "config.h"
#include "fcgi_server.h"
#include "handler.h"
#include "jws.h"
#include "lmdb_store.h"
#include "log.h"
#include "metrics_file.h"
#include "notify.h"
#include "options.h"
#include "phone.h"
#include "redis_store.h"
#include "upstream.h"
#include "version.h"

namespace {

void print_config_summary(const pvgate::Config& config) {
  std::cout << "config OK: " << config.source << "\n"
            << "  upstream " << config.upstream.url
            << (config.upstream.ca_file.empty() ? ""
                                                : " (extra CA " + config.upstream.ca_file + ")")
            << ", connect " << config.upstream.connect_timeout_ms << " ms, total "
            << config.upstream.timeout_ms << " ms, answer <= " << config.upstream.max_response_bytes
            << " bytes, at most " << config.upstream.max_connections << " calls in flight, http2 "
            << (config.upstream.http2 == pvgate::Http2::automatic ? "auto" : "off") << "\n"
            << "  request body <= " << config.max_body_bytes << " bytes\n";
  for (const auto& [name, m] : config.merchants) {
    std::string origins;
    for (const auto& o : m.allowed_origins) origins += (origins.empty() ? "" : " ") + o;
    std::cout << "  merchant " << name << ": api_key set, api_secret set; origins: "
              << (origins.empty() ? "ANY (set allowed_origins)" : origins)
              << (m.allow_missing_origin ? ", or none" : "")
              << (m.user_id_param.empty() ? "" : "; user id from param " + m.user_id_param)
              << (config.verification.enabled ? "; token audience " + m.audience : "") << "\n";
    const pvgate::ChallengeConfig& c = m.challenge;
    if (c.kind == pvgate::ChallengeKind::none) {
      std::cout << "    challenge: none (every valid send-token may send an SMS)\n";
      continue;
    }
    const auto rule = [](const char* what, const pvgate::PressureRule& p) {
      return p.sends == 0 ? std::string()
                          : std::string(" ") + what + " " + std::to_string(p.sends) + "/" +
                                pvgate::format_period(p.period_ms);
    };
    const std::string pressure =
        rule("address", c.address) + rule("phone", c.phone) + rule("merchant", c.merchant);
    std::cout << "    challenge: " << pvgate::challenge_kind_name(c.kind) << ", "
              << (c.always ? "always" : "under pressure")
              << "; pressure:" << (pressure.empty() ? " none" : pressure);
    if (c.kind == pvgate::ChallengeKind::altcha) {
      std::cout << "; difficulty " << c.difficulty << ", under pressure " << c.hard_difficulty
                << ", expires " << pvgate::format_period(c.expires_ms);
    } else {
      std::cout << "; siteverify " << c.siteverify.url << ", timeout " << c.siteverify.timeout_ms
                << " ms, on_error " << (c.allow_on_error ? "allow" : "deny");
    }
    std::cout << "\n";
  }
  const pvgate::VerificationConfig& v = config.verification;
  if (v.enabled) {
    // Key ids only (RFC 7638 thumbprints of the public keys): never key material.
    std::string kids;
    for (std::size_t i = 0; i < v.signing_keys.size(); ++i) {
      const pvgate::SigningKey& key = *v.signing_keys[i];
      kids += (i == 0 ? "" : ", ") + key.kid() + " (" + key.alg() +
              (i == 0 ? ", signs" : ", published only") + ")";
    }
    std::cout << "  verification: issuer " << v.issuer << ", " << v.signing_keys.size()
              << (v.signing_keys.size() == 1 ? " key: " : " keys: ") << kids << "; session ttl "
              << pvgate::format_period(v.session_ttl_ms) << ", token ttl "
              << pvgate::format_period(v.token_ttl_ms) << "\n";
  } else {
    std::cout << "  verification: off (no verification: section; a verified answer carries no "
                 "signed token)\n";
  }
  const pvgate::ThrottleConfig& t = config.throttle;
  if (!t.enabled) {
    std::cout << "  throttle: none (no throttle: section; every valid request is forwarded)\n";
    return;
  }
  if (t.store == pvgate::StoreKind::local) {
    std::cout << "  throttle store: local " << t.path << " (at most " << t.max_size_mb << " MiB)";
  } else {
    // The URL as parsed, the password replaced by *** (the config has been
    // validated, so it parses).
    pvgate::ParsedRedisUrl url;
    std::string problem;
    const std::string shown =
        pvgate::parse_redis_url(t.redis_url, url, problem) ? pvgate::redacted_redis_url(url) : "?";
    std::cout << "  throttle store: redis " << shown << " (timeout " << t.redis_timeout_ms
              << " ms)";
  }
  std::cout << ", on_store_error: "
            << (t.on_store_error == pvgate::OnStoreError::deny ? "deny" : "allow") << "\n";
  for (const auto& rule : t.rules) {
    std::string key;
    for (const auto part : rule.key)
      key += (key.empty() ? "" : "+") + std::string(pvgate::key_part_name(part));
    std::cout << "  rule " << rule.name << ": " << rule.limit << " per "
              << pvgate::format_period(rule.period_ms) << " per " << key << " on "
              << (rule.send_token && rule.verify ? "both actions"
                  : rule.send_token              ? "send-token"
                                                 : "verify-token-answer")
              << (rule.dry_run ? " (dry run: counted and logged, never rejects)" : "") << "\n";
  }
  if (t.max_answer_attempts > 0) {
    if (v.enabled) {
      std::cout << "  answer attempts: " << t.max_answer_attempts
                << " per verification session (then 429 until it expires)\n";
    } else {
      std::cout << "  answer attempts: " << t.max_answer_attempts << " per reference per "
                << pvgate::format_period(t.answer_lock_ms) << "\n";
    }
  }
  if (!t.countries_allow.empty() || !t.countries_deny.empty()) {
    std::string list;
    for (const auto& c : t.countries_allow.empty() ? t.countries_deny : t.countries_allow) {
      list += (list.empty() ? "" : ", ") + c;
    }
    std::cout << "  countries " << (t.countries_allow.empty() ? "denied: " : "allowed: ") << list
              << "\n";
  }
}

// Opens the throttle store the configuration asks for (null when none).
std::unique_ptr<pvgate::ThrottleStore> open_store(const pvgate::ThrottleConfig& t,
                                                  std::string& error) {
  if (!t.enabled) return nullptr;
  try {
    if (t.store == pvgate::StoreKind::local) {
      pvgate::LmdbStoreOptions o;
      o.path = t.path;
      o.max_bytes = t.max_size_mb << 20;
      return std::make_unique<pvgate::LmdbStore>(o);
    }
    pvgate::RedisStoreOptions o;
    o.url = t.redis_url;
    o.connect_timeout = std::chrono::milliseconds(t.redis_timeout_ms);
    o.command_timeout = std::chrono::milliseconds(t.redis_timeout_ms);
    auto store = pvgate::RedisStore::create(o, error);
    if (store) return store;
    error = "throttle.redis: " + error;
  } catch (const std::exception& e) {
    error = e.what();
  }
  return nullptr;
}

}  // namespace

namespace {

// Every merchant's and rule's label set exists from the start (zeros).
void declare_labels(pvgate::Metrics& metrics, const pvgate::Config& config) {
  std::vector<std::string> merchants, rules;
  for (const auto& [name, merchant] : config.merchants) merchants.push_back(name);
  for (const auto& rule : config.throttle.rules) rules.push_back(rule.name);
  metrics.declare_merchants(merchants);
  metrics.declare_rules(rules);
}

// Host-wide metrics in metrics_file_path(config) when there is one; else
// this process's own, said once at start.
std::unique_ptr<pvgate::Metrics> open_metrics(const pvgate::Config& config, pvgate::Logger& log) {
  using namespace pvgate;
  std::unique_ptr<Metrics> metrics;
  const std::string path = metrics_file_path(config);
  if (path.empty()) {
    log.warn("metrics: no metrics.file and no local throttle store: each worker counts alone");
    metrics = std::make_unique<Metrics>();
  } else {
    std::string note, error;
    metrics = open_metrics_file(path, note, error);
    if (!note.empty()) log.warn(note);
    if (!metrics) {
      log.error(error);
      return nullptr;
    }
    log.info("metrics: host-wide, counted with every worker in " + metrics->source());
  }
  metrics->set_warn([&log](const std::string& text) { log.warn(text); });
  metrics->set_upstream_max(config.upstream.max_connections);
  declare_labels(*metrics, config);
  return metrics;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pvgate;
  // First of all: a SIGTERM from a supervisor during start-up must wait for
  // the orderly shutdown path, not kill the process half-initialised.
  block_signals();
  // glibc gives threads up to 8 malloc arenas per core, each holding on to its
  // own freed memory; requests here are small and short, so a few arenas do
  // (256 threads after 10,000 forwarded calls: 55-61 MiB -> 48 MiB RSS). An
  // operator's MALLOC_ARENA_MAX still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) {
    mallopt(M_ARENA_MAX, std::max(4, static_cast<int>(std::thread::hardware_concurrency())));
  }
  Options options;
  std::string error;
  if (!parse_options(std::vector<std::string>(argv + 1, argv + argc), options, error)) {
    std::cerr << "pvgate: " << error << "\n\n" << usage();
    return 2;
  }
  if (options.help) {
    std::cout << usage();
    return 0;
  }
  if (options.version) {
    std::cout << "pvgate " << PVGATE_VERSION << "\n"
              << "phone numbers: " << metadata_version() << "\n";
    return 0;
  }

  // Under systemd, stderr is the journal: every line then carries its
  // priority ("<4>..."), the service's log lines and --check-config's report alike.
  const bool journal = is_journal_stream(2, std::getenv("JOURNAL_STREAM"));
  ConfigResult loaded = load_config_file(options.config_path);
  if (options.check_config) {
    // A report for a person (or for `systemctl reload`'s ExecReload): plain text.
    const char* warning = journal ? "<4>pvgate: warning: " : "pvgate: warning: ";
    const char* problem = journal ? "<3>pvgate: " : "pvgate: ";
    for (const auto& w : loaded.warnings) std::cerr << warning << w << "\n";
    if (!loaded.errors.empty()) {
      for (const auto& e : loaded.errors) std::cerr << problem << e << "\n";
      std::cerr << problem << loaded.errors.size() << " problem(s) in the configuration\n";
      return 1;
    }
    print_config_summary(*loaded.config);
    return 0;
  }

  // The service: from here on every line is a log line, in the file's
  // log.format, start-up warnings and errors included.
  Logger log;
  log.set_priority_prefix(journal);
  log.set_json(loaded.log_json);
  // Start-up warnings are written whatever log.level says, as they always were.
  for (const auto& w : loaded.warnings) log.warn(w);
  if (!loaded.errors.empty()) {
    for (const auto& e : loaded.errors) log.error(e);
    log.error(std::to_string(loaded.errors.size()) + " problem(s) in the configuration");
    return 1;
  }
  log.set_level(loaded.config->log_level);

  upstream_global_init();
  {
    // libphonenumber builds its metadata on first use (about 5 ms): here,
    // not on the first request.
    PhoneError ignored = PhoneError::none;
    parse_phone("60", "198765432", ignored);
  }
  log.set_batching(true);  // request lines under load go out in groups (Logger::hold)
  ConfigHolder config(loaded.config);
  // Outlives the server: requests waiting on Pipwave finish before it goes.
  // Driven by the FastCGI workers (server_options.polled): no thread of its own.
  CurlUpstream upstream(loaded.config->upstream.max_connections, loaded.config->upstream.http2,
                        CurlUpstream::Driver::external);
  if (loaded.config->upstream.http2 == Http2::automatic && !upstream_http2_supported()) {
    log.warn("upstream.http2: auto, but this libcurl has no HTTP/2: every call uses HTTP/1.1");
  }
  SystemClock clock;
  std::unique_ptr<ThrottleStore> store = open_store(loaded.config->throttle, error);
  if (loaded.config->throttle.enabled && !store) {
    log.error(error);
    return 1;
  }
  std::unique_ptr<Metrics> metrics_owner = open_metrics(*loaded.config, log);
  if (!metrics_owner) return 1;
  Metrics& metrics = *metrics_owner;
  Handler handler(config, upstream, clock, log, store.get(), &metrics);

  ServerOptions server_options;
  server_options.socket = options.socket;
  server_options.socket_mode = options.socket_mode;
  server_options.threads = options.threads;
  server_options.polled = &upstream;
  server_options.drain_deadline =
      std::chrono::milliseconds(loaded.config->upstream.timeout_ms + 5000);
  FcgiServer server(server_options, handler, config, log);
  if (!server.listen(error)) {
    log.error(error);
    return 1;
  }
  server.start();
  log.info("pvgate " PVGATE_VERSION " serving with " + std::to_string(options.threads) +
           " threads, upstream " + loaded.config->upstream.url);

  // Type=notify: systemd counts the service as started once the socket is
  // open and the workers serve, and a reload as done once the new (or, when
  // rejected, the old) configuration is in place.
  const Notifier notifier = Notifier::from_environment();
  const auto tell = [&](const std::string& state) {
    std::string why;
    if (!notifier.send(state, &why)) log.warn(why);
  };
  tell(Notifier::ready_message());

  const std::string config_path = options.config_path;
  const auto reload = [&] {
    ConfigResult next = load_config_file(config_path);
    for (const auto& w : next.warnings) log.warn(w);
    if (!next.errors.empty()) {
      for (const auto& e : next.errors) log.error("reload rejected: " + e);
      log.error("reload rejected: keeping the previous configuration");
      metrics.reload(false);
      return;
    }
    for (const auto& change : restart_only_changes(*config.get(), *next.config)) {
      log.warn("reload: " + change);
    }
    log.set_level(next.config->log_level);
    log.set_json(next.config->log_json);
    config.set(next.config);
    declare_labels(metrics, *next.config);
    metrics.reload(true);
    log.info("reload: configuration " + config_path + " loaded");
  };
  server.run_until_signal([&] {
    tell(Notifier::reloading_message(Notifier::monotonic_usec()));
    reload();
    tell(Notifier::ready_message());
  });
  tell(Notifier::stopping_message());
  if (!server.stop()) {
    log.warn("requests still in flight at the drain deadline; exiting anyway");
    log.flush();
    std::fflush(nullptr);
    std::_Exit(0);
  }
  log.info("stopped after " + std::to_string(server.requests_served()) + " requests");
  return 0;
}
