// Stage: session, and what follows Pipwave's answer for it (issue 12).
//
// Every reference Pipwave returns for a send-token is recorded as a session
// in the throttle store: the merchant, a digest of the user id and the
// phone, when it was issued, its answer attempts. A verify-token-answer
// whose reference pvgate never issued, that expired, was used, or belongs to
// another user or phone gets the same 400 / 5051 in every case, is never
// forwarded and uses none of the real session's attempts. Attempts count per
// session. A verified session is consumed, and the answer gains a signed
// token the shop's server can check (jws.h).
//
// A store failure here refuses (503) whatever on_store_error says: without
// its session a verify cannot be tied to the user who asked for the code,
// and no SMS is at stake in refusing it.
#include <string>

#include "crypto.h"
#include "jws.h"
#include "stages.h"

namespace pvgate {

namespace {

// The E.164 number the session and the token are about (the phone stage's),
// or "" when the client sent none (Pipwave then texts the number it holds
// for the user).
const std::string& phone_of(const Exchange& ex) {
  static const std::string kNone;
  return ex.phone ? ex.phone->e164 : kNone;
}

// The store key of a merchant's reference, and the digest of who may use it.
void session_ids(Exchange& ex, const std::string& reference) {
  const std::string& merchant = ex.merchant->name;
  ex.session_key = "session:" + sha1_hex(merchant + "\n" + reference);
  ex.session_owner = sha1_hex(merchant + "\n" + ex.client.user_id + "\n" + phone_of(ex));
}

void count(const Services& s, VerificationEvent event) {
  if (s.metrics != nullptr) s.metrics->verification(event);
}

Result store_failed(Exchange& ex, const Services& s, StoreStatus status, const char* what) {
  ex.trace.detail = std::string("session store failed (") + what + ")";
  count_store_status(s, status);
  if (status == StoreStatus::internal) {
    s.log.error(std::string("session store: broken invariant in ") + what);
  }
  return local_result(Outcome::store_unavailable);
}

}  // namespace

StageResult session(Exchange& ex, const Services& s) {
  const Config& config = *ex.config;
  if (!config.verification.enabled || *ex.action != Action::verify_token_answer) {
    return std::nullopt;
  }
  if (s.store == nullptr) {
    ex.trace.detail = "verification sessions need the throttle store (restart to open it)";
    return local_result(Outcome::store_unavailable);
  }
  session_ids(ex, *ex.client.reference);
  SessionAttempt attempt;
  const StoreStatus status =
      s.store->session_attempt(ex.session_key, ex.session_owner,
                               config.throttle.max_answer_attempts, s.clock.unix_ms(), attempt);
  if (status != StoreStatus::ok) return store_failed(ex, s, status, "attempt");
  switch (attempt.result) {
    case SessionAttempt::Result::ok:
      return std::nullopt;
    case SessionAttempt::Result::unknown:
      count(s, VerificationEvent::unknown_reference);
      ex.trace.detail = "reference unknown, expired, used, or another user's or phone's";
      return local_result(Outcome::reference_unknown);
    case SessionAttempt::Result::locked: {
      count(s, VerificationEvent::locked);
      ex.trace.detail = "answer attempts used up (" + std::to_string(attempt.attempts) + ")";
      Result r = local_result(Outcome::too_frequent);
      r.seconds_till_resend = std::max<std::int64_t>(1, (attempt.wait_ms + 999) / 1000);
      return r;
    }
  }
  return std::nullopt;
}

void settle_session(Exchange& ex, const Services& s, Result& result) {
  const Config& config = *ex.config;
  if (!config.verification.enabled || ex.merchant == nullptr || !ex.action) return;
  if (*ex.action == Action::send_token) {
    if (result.outcome != Outcome::ok || !result.reference) return;
    if (s.store == nullptr) {
      ex.trace.detail = "session not recorded: no throttle store open";
      return;
    }
    // The code is on its way: the answer stays Pipwave's 200 even if the
    // session cannot be recorded (its verify will then get 5051).
    session_ids(ex, std::to_string(*result.reference));
    const std::int64_t now = s.clock.unix_ms();
    const StoreStatus status = s.store->session_open(ex.session_key, ex.session_owner, now,
                                                     config.verification.session_ttl_ms);
    if (status != StoreStatus::ok) {
      store_failed(ex, s, status, "open");
      ex.trace.detail += ": its verify will be refused";
      s.log.warn("session store failed: a reference Pipwave issued was not recorded");
      return;
    }
    count(s, VerificationEvent::issued);
    return;
  }
  // verify-token-answer
  if (result.outcome == Outcome::upstream_rejected && result.body_status == 5052) {
    count(s, VerificationEvent::wrong_answer);
  }
  if (result.outcome == Outcome::upstream_rejected && result.body_status == 5051) {
    count(s, VerificationEvent::unknown_reference);
  }
  if (result.outcome != Outcome::ok) return;
  bool consumed = false;
  const std::int64_t now_ms = s.clock.unix_ms();
  const StoreStatus status =
      s.store->session_consume(ex.session_key, ex.session_owner, now_ms, consumed);
  if (status != StoreStatus::ok) {
    result = store_failed(ex, s, status, "consume");
    return;
  }
  if (!consumed) {
    // A parallel answer with the same reference consumed it first: one
    // verified session, one token.
    count(s, VerificationEvent::unknown_reference);
    ex.trace.detail = "session consumed by a parallel answer";
    result = local_result(Outcome::reference_unknown);
    return;
  }
  const std::string& phone = phone_of(ex);
  if (phone.empty()) {
    // Pipwave texted the number it holds for the user: pvgate cannot say
    // which, so it signs nothing.
    ex.trace.detail = "verified without contact_no: no token (the number is unknown here)";
    count(s, VerificationEvent::verified);
    return;
  }
  TokenClaims claims;
  claims.iss = config.verification.issuer;
  claims.aud = ex.merchant->audience;
  claims.sub = ex.client.user_id;
  claims.phone_number = phone;
  claims.iat = now_ms / 1000;
  claims.exp = claims.iat + config.verification.token_ttl_ms / 1000;
  claims.jti = new_jti();
  std::string token;
  if (!claims.jti.empty()) {
    token = sign_jwt(*config.verification.signing_keys.front(), claims_json(claims));
  }
  if (token.empty()) {
    ex.trace.detail = "verified, but the token could not be signed";
    s.log.error("verification token: signing failed");
    result = local_result(Outcome::misconfigured);
    return;
  }
  count(s, VerificationEvent::verified);
  result.verification_token = std::move(token);
}

}  // namespace pvgate
