// The calls pvgate makes: to Pipwave, and to a CAPTCHA provider's siteverify
// (siteverify.h). `Upstream` is the seam the handler depends on; CurlUpstream
// is the real one and the only user of libcurl.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "polled.h"

namespace pvgate {

// One POST. The headers sent are Content-Type, Accept: application/json and,
// when api_key is not empty, x-api-key. A header value holding a control
// character (CR, LF, NUL, ...) fails the call as `transport`, unsent.
struct UpstreamCall {
  std::string api_key;  // Pipwave's x-api-key header; "" sends none (siteverify)
  std::string body;     // Pipwave: JSON, already signed; siteverify: a form
  std::string content_type = "application/json";
};

enum class UpstreamError {
  none,           // an HTTP answer arrived (any status); see http_status/body
  not_delivered,  // provably never reached the server: refused, DNS failure, over max_connections
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
  using Done = std::function<void(UpstreamResult)>;
  virtual ~Upstream() = default;

  // Starts the call and returns. `done` runs exactly once with the result:
  // before post_async returns, or later on another thread. Must be safe to
  // call from many threads at once. The default runs post() inline.
  virtual void post_async(const UpstreamConfig& config, UpstreamCall call, Done done) {
    done(post(config, call));
  }
  // The same call, waiting for its result.
  virtual UpstreamResult post(const UpstreamConfig& config, const UpstreamCall& call) = 0;
};

// One-time libcurl initialisation; call from main before starting threads.
void upstream_global_init();

// Whether this libcurl speaks HTTP/2 (built with nghttp2). Without it,
// Http2::automatic means HTTP/1.1 for every call.
bool upstream_http2_supported();

// Every call runs in one curl multi handle driven by epoll through
// curl_multi_socket_action, so a thousand calls waiting on Pipwave cost
// sockets, not threads. Who drives it (`Driver`):
//   - own_thread: a thread of its own waits on the calls' sockets;
//   - external: nobody inside; poll_fd() (Polled) is readable whenever a
//     socket or curl's timer needs attention, and whoever sees that calls
//     drive(). pvgate's FastCGI workers do (fcgi_server.h): the worker that
//     reads Pipwave's answer writes the reply, and no thread hands anything
//     to another on the way (issue 16: the hand-overs to and from a loop
//     thread cost two context switches per forwarded request).
// Either way, post_async sends the call on the caller's thread when nobody
// else is driving the multi handle at that moment (else the one who is
// takes it over before letting go), so a call on a kept connection is on
// the wire when post_async returns. Connections stay open in the multi
// handle's cache and are reused; at most `max_connections` calls are in
// flight (the first config's upstream.max_connections), and a call beyond
// that fails at once as not delivered.
//
// HTTP/2 (`http2`, the first config's upstream.http2): with Http2::automatic
// each call asks for h2 through ALPN and waits for a connection being set up
// to the same host rather than opening its own (CURLOPT_PIPEWAIT), so calls to
// a server that offers h2 share a few connections as streams: about one per
// kMaxStreamsPerConnection calls in flight, and never more than
// max(8, max_connections / kMinStreamsPerConnection) per host (8 for 256). A server
// that answers ALPN with HTTP/1.1 (or a plain http:// loopback URL) gets one
// connection per call in flight, as with Http2::off, once its first answer
// has shown it (until then at most that many calls to it are in flight, the
// rest wait for them). Either way max_connections still counts calls, not
// connections, and timeouts and the not_delivered rule are the same: a call
// that waited for a shared connection that then failed to connect fails as
// not delivered, like one whose own connection failed.
class CurlUpstream final : public Upstream, public Polled {
 public:
  enum class Driver { own_thread, external };

  // Streams one h2 connection carries before another is opened (libcurl's
  // default, set explicitly; a server may allow fewer in its SETTINGS).
  static constexpr long kMaxStreamsPerConnection = 100;
  // The fewest streams per connection a server is expected to allow (RFC
  // 9113 recommends at least 100): it sizes the cap on h2 connections per
  // host, max_connections / this (8 for 256), see the constructor.
  static constexpr long kMinStreamsPerConnection = 32;
  // The cap is at least this (or max_connections when smaller).
  static constexpr long kMinHostConnectionCap = 8;

  explicit CurlUpstream(long max_connections = 256, Http2 http2 = Http2::automatic,
                        Driver driver = Driver::own_thread);
  // Stops the thread (own_thread), then fails the calls still in flight.
  // External: nobody may be in drive() any more.
  ~CurlUpstream() override;
  CurlUpstream(const CurlUpstream&) = delete;
  CurlUpstream& operator=(const CurlUpstream&) = delete;

  void post_async(const UpstreamConfig& config, UpstreamCall call, Done done) override;
  UpstreamResult post(const UpstreamConfig& config, const UpstreamCall& call) override;

  // Polled. The multi handle's epoll set (curl's sockets, its timer as a
  // timerfd). drive() handles what is ready, sends the calls handed over
  // meanwhile, and runs the finished calls' `done` on this thread after it
  // has let go of the multi handle. With Driver::own_thread only the thread
  // calls it.
  int poll_fd() const override;
  void drive() override;

  struct Transfer;
  struct Loop;

 private:
  std::unique_ptr<Loop> loop_;
};

}  // namespace pvgate
