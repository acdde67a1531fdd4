// Throttle policy: which rules apply to a request, the keys they count under,
// the country filter and the wrong-answer lock. Counting itself is the
// store's job (throttle_store.h); this module turns a request into hits and
// the store's answer into a verdict.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "throttle_store.h"
#include "validate.h"

namespace pvgate {

// The request as the throttle sees it (all fields already validated).
struct ThrottleSubject {
  Action action = Action::send_token;
  std::string merchant;
  std::string user_id;
  std::string dialing_code;
  std::optional<std::string> contact_no;
  std::optional<std::string> reference;
  std::string remote_addr;
  std::string region;  // the number's ISO 3166-1 region ("JM" for +1 876), when known
};

struct RuleVerdict {
  std::string rule;      // rule name, or "answer-attempts"
  bool over = false;     // this rule's limit was reached
  bool dry_run = false;  // over, but only counted and logged
  std::int64_t wait_ms = 0;
  std::string masked_key;  // for logs: parts with the phone masked
};

enum class ThrottleResult {
  pass,            // forward (dry-run rules may be over)
  reject,          // 429 with retry_after_s
  country_denied,  // 403 / 5001: dialing code not accepted
  store_denied,    // store failed and on_store_error is deny: 503
  store_bypassed,  // store failed and on_store_error is allow: forward, logged
  store_internal,  // the store found a broken invariant (a bug): 503 whatever on_store_error says
};

struct ThrottleVerdict {
  ThrottleResult result = ThrottleResult::pass;
  std::int64_t retry_after_s = 0;  // for reject: the longest wait among the rules broken
  std::vector<RuleVerdict> rules;
  std::vector<ThrottleHit> hits;  // what was committed (for refund)
  std::int64_t stamp_ms = 0;      // when
  StoreStatus store_status = StoreStatus::ok;
  // With store_internal: what broke and in which rule's hit, for the error
  // log (never a key, a phone number or a secret).
  std::string broken;
};

// Throttle key text for an IP: IPv4 as is, IPv6 as its /64 ("2001:db8:0:1::/64"),
// IPv4-mapped IPv6 as the IPv4 address. Unparseable input is returned as is.
std::string ip_key(std::string_view remote_addr);

// True when the dialing code passes the countries allow/deny list.
// `region` (the number's) matches region entries of the lists. Without one (a
// numberless send: Pipwave texts the number it holds, whose region pvgate
// cannot know) region entries are read conservatively: a denied region
// denies its whole calling code ("MY" denies "60"; "JM" denies all of "1"),
// and an allowed region allows a code only when every region sharing that
// code is allowed ("MY" allows "60"; "JM" alone does not allow "1").
bool country_allowed(const ThrottleConfig& config, std::string_view dialing_code,
                     std::string_view region = {});

// Store key of a rule for a subject: "<rule>:<sha1 of the parts>", so the
// store never holds a phone number or user id in clear.
std::string rule_key(const std::string& rule_name, const std::vector<KeyPart>& parts,
                     const ThrottleSubject& subject);

// The hex SHA-1 of a subject's values for `parts` (the part after "<rule>:").
// `range_digits`: a phone_prefix part's digits cut off the number.
std::string key_digest(const std::vector<KeyPart>& parts, const ThrottleSubject& subject,
                       std::uint32_t range_digits = 0);

// Decides for one request, committing its hits when it passes. Without a
// store (null) only the country filter applies.
ThrottleVerdict throttle_check(const ThrottleConfig& config, ThrottleStore* store,
                               const ThrottleSubject& subject, std::int64_t now_ms);

// Gives the request's hits back (it provably never reached Pipwave).
StoreStatus throttle_refund(ThrottleStore& store, const ThrottleVerdict& verdict);

// "phone-cooldown:over(dry) ip-hour:ok" style summary for the request log.
std::string describe_verdict(const ThrottleVerdict& verdict);

}  // namespace pvgate
