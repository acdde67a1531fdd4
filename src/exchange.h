// One request from the moment its FastCGI record begins to the moment its
// reply is written: the one object that holds its state (nghttpx's
// Downstream is the model). Its owner, the FastCGI connection, keeps it alive
// across the upstream call and reuses it (and its buffers) for the next
// request on a kept-alive connection. The stages (stages.h) read and fill it;
// nothing else holds a piece of a request.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "fields.h"
#include "http.h"
#include "outcome.h"
#include "phone.h"
#include "throttle.h"
#include "upstream.h"
#include "validate.h"

namespace pvgate {

// What the request's log line reports besides the exchange's own fields.
struct Trace {
  std::string merchant;
  std::string phone;  // masked
  std::int64_t upstream_status = -1;
  long upstream_http = 0;
  long upstream_ms = -1;
  std::string detail;       // why, for the operator; never secret, never a phone number
  std::string throttle;     // per-rule decisions, keys masked
  std::string cors_origin;  // the request's Origin when the merchant allows it
  std::string challenge;    // "altcha passed", "turnstile refused", ... (issue 14)
};

// The call an exchange waits on, if any.
enum class Waiting : std::uint8_t {
  none,
  siteverify,  // the CAPTCHA provider; then the stages go on from next_stage
  pipwave,     // the forward; then answer
};

struct Exchange {
  // Filled by the owner before Handler::run; `request.body` holds at most
  // config->max_body_bytes + 1 bytes.
  HttpRequest request;
  // The one configuration snapshot this request is served under, taken by
  // Handler::begin when the request starts: its body limit, merchant, rules
  // and answer all come from it, whatever a reload swaps in meanwhile.
  std::shared_ptr<const Config> config;
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point sent;  // when the call was handed to the upstream

  std::optional<Action> action;              // once the route named one
  bool operations = false;                   // healthz/metrics: not an API request
  const MerchantConfig* merchant = nullptr;  // in *config
  FieldList fields;                          // as decoded, before validation
  ClientFields client;  // after the phone stage: dialing code and number in canonical form
  // The number as libphonenumber reads it (phone stage); none for a send to
  // the user's stored number.
  std::optional<PhoneNumber> phone;
  // The challenge's pressure rules as store hits (stage_challenge.cpp): read
  // before the forward, counted once a code was sent.
  std::vector<ThrottleHit> pressure_hits;
  ThrottleVerdict verdict;
  std::string signature;
  // Verification sessions (stage_session.cpp): the store key of this
  // request's reference and the digest of who may use it.
  std::string session_key;
  std::string session_owner;
  UpstreamCall call;      // signed, ready to forward (or the siteverify call)
  UpstreamResult answer;  // the answer to `call`, once it came
  Waiting waiting = Waiting::none;
  std::uint8_t next_stage = 0;  // kLocalStages' index to go on from after a siteverify
  Trace trace;
  HttpReply reply;  // final once Handler::run returned true or Handler::complete ran

  // Set by the owner: runs once per call (a siteverify, then the forward),
  // on the thread that finished the call (a worker driving the upstream, or
  // the one that posted it), when `answer` is in. It must only hand the exchange back to the
  // owner's threads (which then call Handler::complete); it must not write a reply.
  std::function<void(Exchange&)> resume;

  // Clears every field for the next request, keeping the buffers' capacity
  // and `resume`.
  void reset();

  // The body limit of this request's snapshot (the read and the 413 check
  // both use it).
  std::size_t max_body_bytes() const { return config ? config->max_body_bytes : 0; }
};

}  // namespace pvgate
