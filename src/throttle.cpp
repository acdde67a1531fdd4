#include "throttle.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "crypto.h"
#include "phone.h"
#include "sanitize.h"

namespace pvgate {
namespace {

constexpr const char* kAnswerRule = "answer-attempts";
constexpr std::size_t kDigestDigits = 40;  // a key digest: hex SHA-1

bool contains(const std::vector<std::string>& list, std::string_view entry) {
  return std::find(list.begin(), list.end(), entry) != list.end();
}

// A numberless send has no region: the regions sharing its calling code
// decide, conservatively (see country_allowed in throttle.h). Only lists
// holding region entries (upper-case letters; codes are digits) ask.
bool numberless_code_listed(const std::vector<std::string>& list, std::string_view code,
                            bool allow) {
  const bool regions_listed = std::any_of(list.begin(), list.end(), [](const std::string& e) {
    return !e.empty() && e[0] >= 'A' && e[0] <= 'Z';
  });
  if (!regions_listed) return false;
  const std::vector<std::string> regions = regions_of_calling_code(code);
  const auto in_list = [&](const std::string& r) { return contains(list, r); };
  return allow ? !regions.empty() && std::all_of(regions.begin(), regions.end(), in_list)
               : std::any_of(regions.begin(), regions.end(), in_list);
}

// Appends the text a key part stands for (what key digests hash).
void append_part_value(std::string& out, KeyPart part, const ThrottleSubject& s,
                       std::uint32_t range_digits) {
  switch (part) {
    case KeyPart::merchant:
      out += s.merchant;
      return;
    case KeyPart::user:
      out += s.user_id;
      return;
    case KeyPart::phone:
      // Without a contact_no, Pipwave uses the number it holds for the user:
      // count such sends per user so they cannot dodge the phone rules.
      if (s.contact_no) {
        out.append(s.dialing_code).append(1, ':').append(*s.contact_no);
      } else {
        out.append("user:").append(s.user_id);
      }
      return;
    case KeyPart::phone_prefix:
      // The E.164 number without its last range_digits digits: pumping walks
      // runs of consecutive numbers, which all share this.
      if (s.contact_no) {
        const std::string& n = *s.contact_no;
        out.append(s.dialing_code).append(1, ':');
        out.append(n, 0, n.size() > range_digits ? n.size() - range_digits : 0);
        out.append(1, '/').append(std::to_string(range_digits));
      } else {
        out.append("user:").append(s.user_id);
      }
      return;
    case KeyPart::ip:
      out += ip_key(s.remote_addr);
      return;
    case KeyPart::country:
      out += s.dialing_code;
      return;
  }
}

void append_masked_value(std::string& out, KeyPart part, const ThrottleSubject& s,
                         std::uint32_t range_digits) {
  if (part != KeyPart::phone && part != KeyPart::phone_prefix) {
    return append_part_value(out, part, s, range_digits);
  }
  if (s.contact_no) {
    out.append("+").append(s.dialing_code).append(mask_phone(*s.contact_no));
    if (part == KeyPart::phone_prefix) out.append(" range ").append(std::to_string(range_digits));
  } else {
    out.append("(user's number)");
  }
}

std::string masked_key(const std::vector<KeyPart>& parts, const ThrottleSubject& s,
                       std::uint32_t range_digits) {
  std::string out;
  for (const auto part : parts) {
    if (!out.empty()) out.push_back(',');
    out.append(key_part_name(part)).push_back('=');
    append_masked_value(out, part, s, range_digits);
  }
  return out;
}

bool applies(const ThrottleRule& rule, Action action) {
  return action == Action::send_token ? rule.send_token : rule.verify;
}

}  // namespace

std::string ip_key(std::string_view remote_addr) {
  const std::string addr(remote_addr);
  unsigned char bytes[16];
  if (addr.find(':') == std::string::npos) return addr;
  if (inet_pton(AF_INET6, addr.c_str(), bytes) != 1) return addr;
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMapped, sizeof kMapped) == 0) {
    char v4[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, bytes + 12, v4, sizeof v4);
    return v4;
  }
  std::memset(bytes + 8, 0, 8);  // one subscriber holds a whole /64
  char v6[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, bytes, v6, sizeof v6);
  return std::string(v6) + "/64";
}

bool country_allowed(const ThrottleConfig& config, std::string_view code, std::string_view region) {
  // Lists hold calling codes and region codes; a number matches by either.
  const bool allow = !config.countries_allow.empty();
  const std::vector<std::string>& list = allow ? config.countries_allow : config.countries_deny;
  bool listed = contains(list, code) || (!region.empty() && contains(list, region));
  if (!listed && region.empty()) listed = numberless_code_listed(list, code, allow);
  return allow ? listed : !listed;
}

std::string rule_key(const std::string& rule_name, const std::vector<KeyPart>& parts,
                     const ThrottleSubject& subject) {
  return rule_name + ":" + key_digest(parts, subject);
}

namespace {

// Appends the text a key digest hashes to `material`.
void append_key_material(std::string& material, const std::vector<KeyPart>& parts,
                         const ThrottleSubject& subject, std::uint32_t range_digits) {
  for (const auto part : parts) {
    material.append(key_part_name(part)).push_back('=');
    append_part_value(material, part, subject, range_digits);
    material.push_back('\n');  // values never contain a newline (validated)
  }
}

// True when a key's parts say nothing about a person (merchant, country).
bool impersonal(const std::vector<KeyPart>& parts) {
  return std::all_of(parts.begin(), parts.end(), [](KeyPart part) {
    return part == KeyPart::merchant || part == KeyPart::country;
  });
}

// Appends key_digest(parts, subject, range_digits) to `out`, remembering the
// digests of impersonal keys (a merchant-wide rule hashes the same text on
// every request). Keys naming a user, phone or IP are never kept. The
// material is built in a buffer kept per thread: no allocation once warm.
void append_key_digest(std::string& out, const std::vector<KeyPart>& parts,
                       const ThrottleSubject& subject, std::uint32_t range_digits) {
  thread_local std::string material;
  material.clear();
  append_key_material(material, parts, subject, range_digits);
  if (range_digits > 0 || !impersonal(parts)) {
    append_sha1_hex(out, material);
    return;
  }
  constexpr std::size_t kMaxCached = 64;
  thread_local std::vector<std::pair<std::string, std::string>> cache;
  for (const auto& [text, digest] : cache) {
    if (text == material) {
      out += digest;
      return;
    }
  }
  if (cache.size() >= kMaxCached) cache.clear();
  std::string digest = sha1_hex(material);
  out += digest;
  cache.emplace_back(material, std::move(digest));
}

}  // namespace

std::string key_digest(const std::vector<KeyPart>& parts, const ThrottleSubject& subject,
                       std::uint32_t range_digits) {
  std::string material;
  material.reserve(96);
  append_key_material(material, parts, subject, range_digits);
  return sha1_hex(material);
}

ThrottleVerdict throttle_check(const ThrottleConfig& config, ThrottleStore* store,
                               const ThrottleSubject& subject, std::int64_t now_ms) {
  ThrottleVerdict verdict;
  verdict.stamp_ms = now_ms;
  if (!country_allowed(config, subject.dialing_code, subject.region)) {
    verdict.result = ThrottleResult::country_denied;
    return verdict;
  }
  if (store == nullptr) return verdict;
  // Key parts per verdict, for masked keys: built only for rules that are over.
  // It and the store's answer are kept per thread: no allocation once warm.
  thread_local std::vector<const ThrottleRule*> parts;
  thread_local ThrottleDecision decision;
  parts.clear();
  verdict.hits.reserve(config.rules.size() + 1);
  verdict.rules.reserve(config.rules.size() + 1);
  for (const auto& rule : config.rules) {
    if (!applies(rule, subject.action)) continue;
    std::string key;
    key.reserve(rule.name.size() + 1 + kDigestDigits);
    key.append(rule.name).append(1, ':');
    // Rules over the same parts (phone cooldown, per hour, per day) share one
    // digest: hashing is most of the policy's cost.
    const ThrottleHit* same = nullptr;
    for (std::size_t i = 0; i < parts.size() && same == nullptr; ++i) {
      if (parts[i]->key == rule.key && parts[i]->range_digits == rule.range_digits) {
        same = &verdict.hits[i];
      }
    }
    if (same != nullptr) {
      key.append(same->key, same->key.size() - kDigestDigits, kDigestDigits);
    } else {
      append_key_digest(key, rule.key, subject, rule.range_digits);
    }
    verdict.hits.push_back(ThrottleHit{std::move(key), rule.limit, rule.period_ms, !rule.dry_run});
    verdict.rules.push_back(RuleVerdict{rule.name, false, rule.dry_run, 0, {}});
    parts.push_back(&rule);
  }
  if (subject.action == Action::verify_token_answer && subject.reference &&
      config.max_answer_attempts > 0) {
    // Every attempt counts up front, so parallel guesses cannot overtake the count.
    verdict.hits.push_back(ThrottleHit{
        std::string(kAnswerRule) + ":" + sha1_hex(subject.merchant + "\n" + *subject.reference),
        config.max_answer_attempts, config.answer_lock_ms, true});
    verdict.rules.push_back(RuleVerdict{kAnswerRule, false, false, 0, {}});
    parts.push_back(nullptr);
  }
  if (verdict.hits.empty()) return verdict;

  decision.allowed = true;
  decision.wait_ms.clear();
  decision.broken = nullptr;
  decision.broken_hit = 0;
  verdict.store_status = store->check_and_commit(verdict.hits, now_ms, decision);
  if (verdict.store_status == StoreStatus::internal) {
    // A bug, not an outage: never let on_store_error: allow switch throttling off.
    verdict.result = ThrottleResult::store_internal;
    verdict.broken = decision.broken != nullptr ? decision.broken : "(not said)";
    if (decision.broken != nullptr && decision.broken_hit < verdict.rules.size()) {
      verdict.broken += " in rule " + verdict.rules[decision.broken_hit].rule;
    }
    verdict.hits.clear();  // nothing was committed
    return verdict;
  }
  if (verdict.store_status != StoreStatus::ok) {
    verdict.result = config.on_store_error == OnStoreError::deny ? ThrottleResult::store_denied
                                                                 : ThrottleResult::store_bypassed;
    verdict.hits.clear();  // nothing was committed
    return verdict;
  }
  std::int64_t longest = 0;
  for (std::size_t i = 0; i < verdict.rules.size() && i < decision.wait_ms.size(); ++i) {
    RuleVerdict& rv = verdict.rules[i];
    rv.wait_ms = decision.wait_ms[i];
    rv.over = rv.wait_ms > 0;
    if (rv.over && !rv.dry_run) longest = std::max(longest, rv.wait_ms);
    if (rv.over) {
      rv.masked_key =
          parts[i] != nullptr
              ? masked_key(parts[i]->key, subject, parts[i]->range_digits)
              : "merchant=" + subject.merchant + ",reference=" + subject.reference.value_or("");
    }
  }
  if (!decision.allowed) {
    verdict.result = ThrottleResult::reject;
    verdict.retry_after_s = std::max<std::int64_t>(1, (longest + 999) / 1000);
    verdict.hits.clear();  // nothing was committed
  }
  return verdict;
}

StoreStatus throttle_refund(ThrottleStore& store, const ThrottleVerdict& verdict) {
  if (verdict.hits.empty()) return StoreStatus::ok;
  return store.refund(verdict.hits, verdict.stamp_ms);
}

std::string describe_verdict(const ThrottleVerdict& verdict) {
  switch (verdict.store_status) {
    case StoreStatus::ok:
      break;
    case StoreStatus::unavailable:
      return "store unavailable: no rule decided";
    case StoreStatus::full:
      return "store full: no rule decided";
    case StoreStatus::internal:
      return "store internal error: no rule decided";
  }
  std::string out;
  out.reserve(24 * verdict.rules.size());
  for (const auto& r : verdict.rules) {
    if (!out.empty()) out.push_back(' ');
    out.append(r.rule).push_back(':');
    out.append(r.over ? (r.dry_run ? "over(dry)" : "over") : "ok");
    if (r.over) out.append(1, '[').append(r.masked_key).push_back(']');
  }
  return out;
}

}  // namespace pvgate
