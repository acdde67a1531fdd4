// The request pipeline, in stage order:
//   route -> method -> merchant -> size -> content type -> decode -> validate
//   -> throttle -> sign -> forward -> sanitize.
// Everything up to sign runs on the FastCGI worker's thread; the forward is
// handed to the Upstream, whose thread runs sanitize when Pipwave answers.
// Each stage passes on or produces the final Result. Collaborators (config,
// upstream, clock, logger) come in as interfaces, so the tests run the whole
// pipeline with no socket, no network and no wall clock.
#pragma once

#include <functional>
#include <optional>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "outcome.h"
#include "throttle.h"
#include "upstream.h"
#include "validate.h"

namespace pvgate {

class Handler {
 public:
  // `store` may be null when no throttle store is configured.
  Handler(const ConfigHolder& config, Upstream& upstream, const Clock& clock, Logger& log,
          ThrottleStore* store = nullptr, Metrics* metrics = nullptr)
      : config_(config),
        upstream_(upstream),
        clock_(clock),
        log_(log),
        store_(store),
        metrics_(metrics) {}

  using Reply = std::function<void(HttpReply)>;

  // Serves `request` and calls `done` exactly once with the reply: before
  // returning when the answer is local, else from the upstream's thread once
  // Pipwave answered. Never throws: any internal failure becomes a 500 with a
  // generic message. `request` is not used after the call returns.
  void handle_async(const HttpRequest& request, Reply done);
  // The same, waiting for the reply.
  HttpReply handle(const HttpRequest& request);

  struct Trace;     // what the per-request log line reports
  struct Exchange;  // one request's state across the upstream call

 private:
  // The stages up to the upstream call: the final result, or nullopt when
  // `call` is signed and ready to forward.
  std::optional<Result> process(const HttpRequest& request, Exchange& ex, UpstreamCall& call);
  // GET .../healthz and .../metrics (metrics from loopback only); nullopt
  // when the request is for neither.
  std::optional<HttpReply> operations(const HttpRequest& request);
  UpstreamCall sign(Exchange& ex);
  Result answered(Exchange& ex, UpstreamResult&& answer);  // sanitize Pipwave's answer
  HttpReply finish(Exchange& ex, const Result& result);    // metrics and the log line

  const ConfigHolder& config_;
  Upstream& upstream_;
  const Clock& clock_;
  Logger& log_;
  ThrottleStore* store_;
  Metrics* metrics_;
};

// Whether a Content-Type value names `type` (lower case): compared without
// case, parameters and blanks, and without building a string.
bool is_media_type(std::string_view content_type, std::string_view type);

// The last segment of a request path ("/pvgate/send-token" -> "send-token").
std::string_view last_segment(std::string_view path);

}  // namespace pvgate
