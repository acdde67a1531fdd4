// load_config_text (the YAML config loader; also what SIGHUP reloads). It must
// never throw or crash on any text. Invariants: errors and a config are
// exclusive (errors -> null config, none -> a config), every error names the
// file, and an accepted config obeys the ranges config.h documents.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>

#include "config.h"
#include "fuzz_check.h"

using namespace pvgate;
using pvgate_fuzz::as_text;

namespace {

const char* kSource = "fuzz.yaml";

bool printable_token(const std::string& s) {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) return false;
  }
  return true;
}

void check_config(const Config& c) {
  FUZZ_CHECK(!c.merchants.empty(), "accepted without merchants");
  for (const auto& [name, m] : c.merchants) {
    FUZZ_CHECK(m.name == name && !name.empty() && name.size() <= 64, name);
    FUZZ_CHECK(!m.api_key.empty() && m.api_key.size() <= 32 && printable_token(m.api_key),
               m.api_key);
    FUZZ_CHECK(!m.api_secret.empty() && printable_token(m.api_secret), name);
  }
  const auto& up = c.upstream;
  bool loopback = false;
  FUZZ_CHECK(check_upstream_url(up.url, loopback).empty() && loopback == up.loopback, up.url);
  FUZZ_CHECK(up.connect_timeout_ms >= 100 && up.connect_timeout_ms <= 60000,
             std::to_string(up.connect_timeout_ms));
  FUZZ_CHECK(up.timeout_ms >= 100 && up.timeout_ms <= 120000, std::to_string(up.timeout_ms));
  FUZZ_CHECK(up.max_response_bytes >= 1024 && up.max_response_bytes <= 16 * 1024 * 1024,
             std::to_string(up.max_response_bytes));
  FUZZ_CHECK(c.max_body_bytes >= 64 && c.max_body_bytes <= 65536, std::to_string(c.max_body_bytes));
  const auto& t = c.throttle;
  FUZZ_CHECK(t.countries_allow.empty() || t.countries_deny.empty(), "allow and deny");
  for (const auto& rule : t.rules) {
    FUZZ_CHECK(!rule.name.empty() && rule.name.size() <= 64, rule.name);
    FUZZ_CHECK(rule.send_token || rule.verify, rule.name);
    FUZZ_CHECK(!rule.key.empty(), rule.name);
    FUZZ_CHECK(rule.limit >= 1 && rule.limit <= 10000, rule.name);
    FUZZ_CHECK(rule.period_ms >= 1000 && rule.period_ms <= 30LL * 24 * 3600 * 1000, rule.name);
  }
  for (const auto* list : {&t.countries_allow, &t.countries_deny}) {
    for (const auto& code : *list) {
      FUZZ_CHECK(!code.empty() && code.size() <= 5 && pvgate_fuzz::all_of_set(code, "", false),
                 code);
    }
  }
  FUZZ_CHECK(t.max_answer_attempts <= 100, std::to_string(t.max_answer_attempts));
  FUZZ_CHECK(t.answer_lock_ms >= 1000 && t.answer_lock_ms <= 30LL * 24 * 3600 * 1000,
             std::to_string(t.answer_lock_ms));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(as_text(data, size));
  ConfigResult result;
  try {
    result = load_config_text(text, kSource);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false && "load_config_text threw", e.what());
  } catch (...) {
    FUZZ_CHECK(false && "load_config_text threw", "(not a std::exception)");
  }
  if (!result.errors.empty()) {
    FUZZ_CHECK(result.config == nullptr, result.errors.front());
    for (const auto& e : result.errors) FUZZ_CHECK(e.rfind(kSource, 0) == 0, e);
  } else {
    FUZZ_CHECK(result.config != nullptr, text);
    check_config(*result.config);
  }
  return 0;
}
