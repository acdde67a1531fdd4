// The call to Pipwave. `Upstream` is the seam the handler depends on;
// CurlUpstream is the real one and the only user of libcurl.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config.h"

namespace pvgate {

struct UpstreamCall {
  std::string api_key;  // for the x-api-key header
  std::string body;     // JSON, already signed
};

enum class UpstreamError {
  none,           // an HTTP answer arrived (any status); see http_status/body
  not_delivered,  // provably never reached Pipwave: refused, DNS failure
  timeout,        // connect or total deadline passed (may have reached it)
  tls,            // certificate or handshake failure
  too_large,      // answer over upstream.max_response_bytes
  transport,      // any other transport failure
};

struct UpstreamResult {
  UpstreamError error = UpstreamError::none;
  long http_status = 0;
  std::string body;
  std::string detail;           // for the log; never contains request data
  long connections_opened = 0;  // new connections this call needed (0 when one was reused)
};

class Upstream {
 public:
  virtual ~Upstream() = default;
  // Must be safe to call from many threads at once.
  virtual UpstreamResult post(const UpstreamConfig& config, const UpstreamCall& call) = 0;
};

// One-time libcurl initialisation; call from main before starting threads.
void upstream_global_init();

// A pool of curl easy handles, one per concurrent caller at most, so each
// keeps its TLS connection alive across requests.
class CurlUpstream final : public Upstream {
 public:
  CurlUpstream();
  ~CurlUpstream() override;
  UpstreamResult post(const UpstreamConfig& config, const UpstreamCall& call) override;

  struct Handle;

 private:
  std::unique_ptr<Handle> acquire();
  void release(std::unique_ptr<Handle> handle);

  std::mutex mutex_;
  std::vector<std::unique_ptr<Handle>> idle_;
};

}  // namespace pvgate
