// The request pipeline, in stage order:
//   route -> method -> merchant -> size -> content type -> decode -> validate
//   -> sign -> forward -> sanitize.
//   (throttle sits between validate and sign.)
// Each stage passes on or produces the final Result. Collaborators (config,
// upstream, clock, logger) come in as interfaces, so the tests run the whole
// pipeline with no socket, no network and no wall clock.
#pragma once

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

  // Never throws: any internal failure becomes a 500 with a generic message.
  HttpReply handle(const HttpRequest& request);

  struct Trace;  // what the per-request log line reports

 private:
  Result process(const HttpRequest& request, const Config& config, Trace& trace);
  // GET .../healthz and .../metrics (metrics from loopback only); nullopt
  // when the request is for neither.
  std::optional<HttpReply> operations(const HttpRequest& request);
  Result forward(const Config& config, const MerchantConfig& merchant, Action action,
                 const ClientFields& client, Trace& trace, const ThrottleVerdict& verdict);

  const ConfigHolder& config_;
  Upstream& upstream_;
  const Clock& clock_;
  Logger& log_;
  ThrottleStore* store_;
  Metrics* metrics_;
};

// Media type of a Content-Type value: lower-cased, parameters and blanks removed.
std::string media_type(std::string_view content_type);

// The last segment of a request path ("/pvgate/send-token" -> "send-token").
std::string_view last_segment(std::string_view path);

}  // namespace pvgate
