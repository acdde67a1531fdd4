// Stage: challenge (issue 14). A send-token must carry a solved challenge
// where the merchant requires one: always, or while pressure says a bot may
// be at work (N sends from one address or to one phone in a period, or the
// merchant's sends passing a rate). ALTCHA solutions are checked here, in
// microseconds, and claimed once in the throttle store; CAPTCHA tokens go to
// the provider's siteverify through the upstream and come back through
// challenge_checked(). A refusal is never counted and never forwarded: the
// stage runs before the throttle. Pressure counts only the codes Pipwave
// accepted to send (count_challenge_pressure, after the answer).
#include <algorithm>
#include <vector>

#include "altcha.h"
#include "siteverify.h"
#include "stages.h"
#include "throttle.h"

namespace pvgate {

namespace {

void count(const Services& s, ChallengeKind kind, ChallengeEvent event) {
  if (s.metrics != nullptr) s.metrics->challenge(static_cast<int>(kind), event);
}

// Which pressure rules are reached.
struct Pressure {
  bool address = false;
  bool phone = false;
  bool merchant = false;
  bool any() const { return address || phone || merchant; }
  // ALTCHA's difficulty follows what the challenge route can see too (the
  // phone is not known when the widget fetches a challenge).
  bool harder() const { return address || merchant; }
};

// The store hits of the merchant's pressure rules, in the order address,
// phone, merchant (those configured; the phone's only when `with_phone`).
// Rule names start with '~', which no configured rule's can, so their
// counts are apart from every throttle rule's.
void pressure_hits(const Exchange& ex, const ChallengeConfig& c, bool with_phone,
                   std::vector<ThrottleHit>& hits, std::vector<bool Pressure::*>& which) {
  ThrottleSubject subject;
  subject.merchant = ex.merchant->name;
  subject.remote_addr = ex.request.remote_addr;
  subject.dialing_code = ex.client.dialing_code;
  subject.contact_no = ex.client.contact_no;
  subject.user_id = ex.client.user_id;
  const auto add = [&](const PressureRule& rule, const char* name, std::vector<KeyPart> parts,
                       bool Pressure::*flag) {
    if (rule.sends == 0) return;
    hits.push_back(ThrottleHit{rule_key(name, parts, subject), rule.sends, rule.period_ms, false});
    which.push_back(flag);
  };
  add(c.address, "~challenge-address", {KeyPart::merchant, KeyPart::ip}, &Pressure::address);
  if (with_phone) {
    add(c.phone, "~challenge-phone", {KeyPart::merchant, KeyPart::phone}, &Pressure::phone);
  }
  add(c.merchant, "~challenge-merchant", {KeyPart::merchant}, &Pressure::merchant);
}

// Reads the pressure rules without counting, leaving their hits in `hits`.
// Without a store (a reload added a challenge that needs one: the store
// opens only at start) every rule reads as reached.
StoreStatus read_pressure(const Exchange& ex, const Services& s, const ChallengeConfig& c,
                          bool with_phone, std::vector<ThrottleHit>& hits, Pressure& out) {
  out = Pressure{};
  thread_local std::vector<bool Pressure::*> which;
  hits.clear();
  which.clear();
  pressure_hits(ex, c, with_phone, hits, which);
  if (hits.empty()) return StoreStatus::ok;
  if (s.store == nullptr) return StoreStatus::unavailable;
  thread_local ThrottleDecision decision;
  const StoreStatus status = s.store->peek(hits, s.clock.unix_ms(), decision);
  if (status != StoreStatus::ok) return status;
  for (std::size_t i = 0; i < which.size() && i < decision.wait_ms.size(); ++i) {
    if (decision.wait_ms[i] > 0) out.*which[i] = true;
  }
  return StoreStatus::ok;
}

// Whether pressure matters for `c`: it decides whether a challenge is
// needed (when: pressure) or how hard an ALTCHA one is.
bool watches_pressure(const ChallengeConfig& c) {
  return !c.always || (c.kind == ChallengeKind::altcha && c.hard_difficulty > c.difficulty);
}

// A store failure while reading pressure or claiming a solution: deny (503)
// or, with on_store_error allow, go on as if under pressure.
StageResult store_failed(Exchange& ex, const Services& s, StoreStatus status, const char* what) {
  count_store_status(s, status);
  if (status == StoreStatus::internal || ex.config->throttle.on_store_error == OnStoreError::deny) {
    ex.trace.detail = std::string("challenge: throttle store failed (") + what + "); refused";
    return local_result(Outcome::store_unavailable);
  }
  ex.trace.detail =
      std::string("challenge: throttle store failed (") + what + "); on_store_error: allow";
  return std::nullopt;
}

Result refuse(Exchange& ex, const Services& s, ChallengeKind kind, ChallengeEvent event,
              const char* message) {
  count(s, kind, event);
  ex.trace.challenge =
      std::string(challenge_kind_name(kind)) + " " + std::string(event_name(event));
  Result r = local_result(Outcome::challenge_required, message);
  r.challenge = challenge_kind_name(kind);
  return r;
}

constexpr const char* kSolveFirst = "Solve the challenge first.";
constexpr const char* kSolveAgain = "The challenge was not solved; solve a new one.";

}  // namespace

std::string_view challenge_field(ChallengeKind kind) {
  switch (kind) {
    case ChallengeKind::none:
      return {};
    case ChallengeKind::altcha:
      return "altcha";  // the widget's default field name
    case ChallengeKind::turnstile:
    case ChallengeKind::hcaptcha:
    case ChallengeKind::recaptcha:
      return captcha_field(captcha_of(kind));
  }
  return {};
}

StageResult challenge(Exchange& ex, const Services& s) {
  const ChallengeConfig& c = ex.merchant->challenge;
  if (c.kind == ChallengeKind::none || *ex.action != Action::send_token) return std::nullopt;
  Pressure pressure;
  if (watches_pressure(c)) {
    // The hits are kept: a code sent counts under them (count_challenge_pressure).
    const StoreStatus status = read_pressure(ex, s, c, true, ex.pressure_hits, pressure);
    if (status != StoreStatus::ok) {
      if (StageResult denied = store_failed(ex, s, status, "pressure")) return denied;
      pressure = Pressure{true, true, true};  // unknown: assume the worst
    }
  }
  if (!c.always && !pressure.any()) return std::nullopt;  // a solution sent anyway is ignored
  if (!ex.client.challenge) return refuse(ex, s, c.kind, ChallengeEvent::missing, kSolveFirst);

  if (c.kind != ChallengeKind::altcha) {
    // The provider decides; its answer comes back in challenge_checked().
    ex.call = siteverify_call(c.secret, *ex.client.challenge);
    ex.waiting = Waiting::siteverify;
    ex.trace.challenge = std::string(challenge_kind_name(c.kind)) + " asked";
    return std::nullopt;
  }

  const std::uint32_t difficulty = pressure.harder() ? c.hard_difficulty : c.difficulty;
  const std::int64_t now = s.clock.unix_ms();
  const AltchaCheck check = altcha_verify({c.altcha_signature_secret, c.altcha_key_secret},
                                          *ex.client.challenge, now, (difficulty + 1) / 2);
  switch (check.result) {
    case AltchaResult::ok:
      break;
    case AltchaResult::expired:
      return refuse(ex, s, c.kind, ChallengeEvent::expired,
                    "The challenge expired; solve a new one.");
    case AltchaResult::too_easy:
      return refuse(ex, s, c.kind, ChallengeEvent::too_easy,
                    "A harder challenge is needed now; solve a new one.");
    case AltchaResult::malformed:
    case AltchaResult::forged:
    case AltchaResult::wrong:
      // One answer for all three: a prober learns nothing of which check failed.
      ex.trace.detail = "altcha " + std::string(altcha_result_name(check.result));
      return refuse(ex, s, c.kind, ChallengeEvent::invalid, kSolveAgain);
  }
  // Once: the claim lives as long as the challenge could still be accepted.
  bool fresh = false;
  const StoreStatus status =
      s.store == nullptr
          ? StoreStatus::unavailable
          : s.store->claim_once(check.claim_key, now,
                                std::max<std::int64_t>(check.expires_ms - now, 1), fresh);
  if (status != StoreStatus::ok) {
    if (StageResult denied = store_failed(ex, s, status, "claim")) return denied;
    count(s, c.kind, ChallengeEvent::bypassed);
    ex.trace.challenge = "altcha unclaimed";
    return std::nullopt;
  }
  if (!fresh) {
    return refuse(ex, s, c.kind, ChallengeEvent::replayed,
                  "This challenge was already used; solve a new one.");
  }
  count(s, c.kind, ChallengeEvent::passed);
  ex.trace.challenge = "altcha passed";
  return std::nullopt;
}

StageResult challenge_checked(Exchange& ex, const Services& s) {
  const ChallengeConfig& c = ex.merchant->challenge;
  std::string detail;
  const SiteverifyVerdict verdict = read_siteverify(ex.answer, c.min_score, detail);
  ex.answer = UpstreamResult{};
  switch (verdict) {
    case SiteverifyVerdict::passed:
      count(s, c.kind, ChallengeEvent::passed);
      ex.trace.challenge = std::string(challenge_kind_name(c.kind)) + " passed";
      return std::nullopt;
    case SiteverifyVerdict::refused:
      ex.trace.detail = "siteverify: " + detail;
      return refuse(ex, s, c.kind, ChallengeEvent::refused,
                    "The challenge was not accepted; try it again.");
    case SiteverifyVerdict::fault:
      break;
  }
  count(s, c.kind, ChallengeEvent::provider_error);
  ex.trace.detail = "siteverify failed: " + detail;
  if (c.allow_on_error) {
    ex.trace.detail += "; on_error: allow";
    count(s, c.kind, ChallengeEvent::bypassed);
    ex.trace.challenge = std::string(challenge_kind_name(c.kind)) + " bypassed";
    return std::nullopt;
  }
  ex.trace.challenge = std::string(challenge_kind_name(c.kind)) + " provider_error";
  return local_result(Outcome::challenge_unavailable);
}

void count_challenge_pressure(Exchange& ex, const Services& s, const Result& result) {
  if (result.outcome != Outcome::ok || !ex.action || *ex.action != Action::send_token ||
      ex.merchant == nullptr || s.store == nullptr) {
    return;
  }
  // The hits the challenge stage read (none when it watches no pressure).
  if (ex.pressure_hits.empty()) return;
  thread_local ThrottleDecision decision;
  // The hits never enforce: this only records the send.
  count_store_status(s, s.store->check_and_commit(ex.pressure_hits, s.clock.unix_ms(), decision));
}

std::optional<HttpReply> issue_challenge(Exchange& ex, const Services& s) {
  if (StageResult r = merchant(ex, s)) return make_reply(*r);
  if (StageResult r = origin(ex, s)) return make_reply(*r, ex.trace.cors_origin);
  const ChallengeConfig& c = ex.merchant->challenge;
  HttpReply reply;
  if (ex.request.method != "GET") {
    reply = make_reply(local_result(Outcome::method_not_allowed, "Method not allowed; use GET."),
                       ex.trace.cors_origin);
    for (auto& [name, value] : reply.headers) {
      if (name == "Allow") value = "GET";
    }
    return reply;
  }
  if (c.kind != ChallengeKind::altcha) {
    return make_reply(local_result(Outcome::not_found, "This site has no challenge to fetch."),
                      ex.trace.cors_origin);
  }
  Pressure pressure;
  if (c.hard_difficulty > c.difficulty) {
    thread_local std::vector<ThrottleHit> hits;
    const StoreStatus status = read_pressure(ex, s, c, false, hits, pressure);
    if (status != StoreStatus::ok) {
      count_store_status(s, status);
      pressure = Pressure{true, true, true};  // unknown: the harder one
    }
  }
  const std::string body = altcha_issue({c.altcha_signature_secret, c.altcha_key_secret},
                                        pressure.harder() ? c.hard_difficulty : c.difficulty,
                                        s.clock.unix_ms(), c.expires_ms);
  if (body.empty()) {
    ex.trace.detail = "altcha: no random bytes";
    return make_reply(local_result(Outcome::misconfigured), ex.trace.cors_origin);
  }
  count(s, c.kind, ChallengeEvent::issued);
  reply = make_reply(local_result(Outcome::ok), ex.trace.cors_origin);
  reply.content_type = "application/json";
  reply.body = body;
  return reply;
}

}  // namespace pvgate
