// The request pipeline. One Exchange per request (exchange.h) goes through
// the stages of stages.h, in this order:
//   operations (healthz, metrics, jwks.json, challenge) -> route -> merchant
//   -> origin -> method -> size -> content type -> decode -> validate -> phone
//   -> challenge [-> siteverify call -> challenge_checked] -> throttle
//   -> session -> sign -> forward -> answer (sanitize) -> settle_session
//   -> count_challenge_pressure -> finish (metrics, log line).
// Everything up to forward runs on the FastCGI worker that read the request.
// The forward hands the signed call to the Upstream. In pvgate the workers
// drive it (Driver::external): the worker that posts the call sends it, and
// the worker woken by Pipwave's answer stores it in the exchange and calls
// its `resume`, which hands the exchange back to the FastCGI server; a worker
// then calls complete(), which runs answer and finish. Only workers write
// replies (a standalone Upstream with its own thread hands back the same
// way). Each stage passes on or produces the final Result. Collaborators
// (config, upstream, clock, store, metrics, logger) come in as interfaces,
// so the tests run the whole pipeline with no socket, no network and no wall
// clock.
#pragma once

#include <optional>
#include <string_view>

#include "clock.h"
#include "config.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "stages.h"
#include "upstream.h"

namespace pvgate {

class Handler {
 public:
  // `store` may be null when no throttle store is configured.
  Handler(const ConfigHolder& config, Upstream& upstream, const Clock& clock, Logger& log,
          ThrottleStore* store = nullptr, Metrics* metrics = nullptr)
      : config_(config), upstream_(upstream), services_{clock, log, store, metrics} {}

  // Starts a request: takes the configuration snapshot it is served under
  // (and so its body limit) and its start time.
  void begin(Exchange& ex) const;

  // Runs the stages on `ex` (begun, request filled in). True: ex.reply is
  // final. False: a call went to the upstream, and ex.resume(ex) will run
  // once, where the upstream finished the call, when the answer is in; the owner then
  // calls complete(ex) on one of its own threads. Never throws: an internal
  // failure becomes a 500 with a generic message.
  bool run(Exchange& ex);

  // After ex.resume. A CAPTCHA provider's answer: checks it and goes on with
  // the stages after the challenge, and may call the upstream again (false,
  // as run). Pipwave's answer: sanitizes it into ex.reply (true). Never
  // throws.
  bool complete(Exchange& ex);

  // begin + run (+ complete), waiting for the reply: for tests and tools.
  HttpReply handle(const HttpRequest& request);

 private:
  // The local stages from kLocalStages[first] on, then the call they
  // prepared (false) or the final reply (true).
  bool advance(Exchange& ex, std::size_t first);
  // Metrics and the log line; the reply from the result.
  void finish(Exchange& ex, const Result& result);

  const ConfigHolder& config_;
  Upstream& upstream_;
  Services services_;
};

}  // namespace pvgate
