#include "upstream.h"

#include <curl/curl.h>
#include <poll.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <optional>
#include <stdexcept>
#include <string_view>

#include "version.h"

namespace pvgate {
namespace {

constexpr const char* kSystemCertDirFallback = "/etc/ssl/certs";

// The system store as a hashed directory (c_rehash layout): OpenSSL loads a
// CA from it only when a chain needs it, instead of parsing the whole bundle
// into every connection's context (about 1 MB each, times --threads).
std::string system_cert_dir() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return info != nullptr && info->capath != nullptr ? info->capath : kSystemCertDirFallback;
}

UpstreamError classify(CURLcode code, bool too_large) {
  switch (code) {
    case CURLE_OK:
      return UpstreamError::none;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      return UpstreamError::not_delivered;
    case CURLE_OPERATION_TIMEDOUT:
      return UpstreamError::timeout;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      return too_large ? UpstreamError::too_large : UpstreamError::transport;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return UpstreamError::tls;
    default:
      return UpstreamError::transport;
  }
}

// One request header list. curl only reads a CURLOPT_HTTPHEADER list, so one
// list serves every transfer that sends the same headers, at once.
struct HeaderList {
  HeaderList() = default;
  ~HeaderList() { curl_slist_free_all(list); }
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;

  std::string content_type;
  std::string api_key;
  curl_slist* list = nullptr;
};
using SharedHeaders = std::shared_ptr<const HeaderList>;

}  // namespace

struct CurlUpstream::Transfer {
  Transfer() : easy(curl_easy_init()) {}
  // The handle goes first; `headers` (a member) outlives it.
  ~Transfer() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  CURL* easy;
  bool trust_set = false;
  std::string trust_ca_file;  // the ca_file `easy` is set up with
  // Per-call state, set by the caller's thread before the hand-over to the
  // loop, read by the loop's callbacks.
  SharedHeaders headers;  // CURLOPT_HTTPHEADER points here, shared with other transfers
  std::string body;       // CURLOPT_POSTFIELDS points here (curl does not copy it)
  std::string response;
  std::size_t cap = 0;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};
  Done done;
  long timeout_ms = 0;  // upstream.timeout_ms of this call
  // The loop thread's own.
  bool in_multi = false;
  std::chrono::steady_clock::time_point due;  // in_multi: when the call must have ended
};

namespace {

using SteadyClock = std::chrono::steady_clock;
using Transfer = CurlUpstream::Transfer;

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->response.size() + n > t->cap) {
    t->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  t->response.append(data, n);
  return n;
}

bool add_header(curl_slist*& list, const std::string& line) {
  curl_slist* next = curl_slist_append(list, line.c_str());
  if (next == nullptr) return false;
  list = next;
  return true;
}

// A header value must not end its line early (CR, LF) or hold other control
// characters, which would let it add headers of its own.
bool header_value_ok(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7F;
  });
}

// The header lists built so far, one per distinct (content type, api key): a
// process sends a handful (Pipwave's per merchant key, siteverify's), so a call
// finds its list here instead of building four lines and list nodes each time.
class HeaderCache {
 public:
  // The list for this pair; null when a value holds a control character or
  // memory ran out (`why` says which, without the values).
  SharedHeaders get(std::string_view content_type, std::string_view api_key, const char*& why) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const SharedHeaders& h : lists_) {
      if (h->content_type == content_type && h->api_key == api_key) return h;
    }
    if (!header_value_ok(content_type) || !header_value_ok(api_key)) {
      why = "a header value holds a control character";
      return nullptr;
    }
    auto h = std::make_shared<HeaderList>();
    h->content_type = content_type;
    h->api_key = api_key;
    if (!add_header(h->list, "Content-Type: " + h->content_type) ||
        !add_header(h->list, "Accept: application/json") ||
        (!api_key.empty() && !add_header(h->list, "x-api-key: " + h->api_key)) ||
        !add_header(h->list, "Expect:")) {
      why = "out of memory building headers";
      return nullptr;
    }
    // Bounded even if reloads keep changing keys: the transfers in flight
    // keep their own lists alive.
    if (lists_.size() >= kMaxHeaderLists) lists_.clear();
    lists_.push_back(h);
    return h;
  }

 private:
  static constexpr std::size_t kMaxHeaderLists = 64;
  std::mutex mutex_;
  std::vector<SharedHeaders> lists_;
};

// Sets up `t` for one call, with `headers` from the cache. `http2`: the
// client's Http2::automatic.
void prepare(Transfer& t, const UpstreamConfig& config, UpstreamCall&& call, SharedHeaders headers,
             bool http2) {
  CURL* e = t.easy;
  t.response.clear();
  t.cap = config.max_response_bytes;
  t.too_large = false;
  t.error[0] = '\0';
  t.body = std::move(call.body);
  t.timeout_ms = config.timeout_ms;

  // Trust: the system store, plus upstream.ca_file when set. Set only when
  // it changes, so a warm handle keeps its session.
  if (!t.trust_set || t.trust_ca_file != config.ca_file) {
    static const std::string cert_dir = system_cert_dir();
    curl_easy_setopt(e, CURLOPT_CAPATH, cert_dir.c_str());
    curl_easy_setopt(e, CURLOPT_CAINFO, config.ca_file.empty() ? nullptr : config.ca_file.c_str());
    t.trust_set = true;
    t.trust_ca_file = config.ca_file;
  }

  t.headers = std::move(headers);

  curl_easy_setopt(e, CURLOPT_URL, config.url.c_str());
  // h2 is offered through ALPN, so only over https; a call waits to share a
  // connection being set up (CURLOPT_PIPEWAIT). A plain http:// (loopback)
  // URL speaks HTTP/1.1, and must not wait: without ALPN, libcurl 7.88 would
  // only learn that from the first answer, holding every other call till then.
  const bool h2 = http2 && ::strncasecmp(config.url.c_str(), "https:", 6) == 0;
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                   static_cast<long>(h2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_PIPEWAIT, h2 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, config.loopback ? "http,https" : "https");
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, config.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, config.timeout_ms);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(config.max_response_bytes));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers->list);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.body.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t.body.size()));
}

// The options no call or configuration changes, set once per handle.
// `open`/`loop`: the opensocket callback and its data.
void set_fixed_options(Transfer& t, curl_opensocket_callback open, void* loop) {
  CURL* e = t.easy;
  if (e == nullptr) return;
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, loop);
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "pvgate/" PVGATE_VERSION);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
}

UpstreamResult failure(UpstreamError error, std::string detail) {
  UpstreamResult r;
  r.error = error;
  r.detail = std::move(detail);
  return r;
}

}  // namespace

// A call still in the multi handle this long after its timeout_ms is
// overdue (sweep_overdue); checked this often while calls run.
constexpr std::chrono::milliseconds kOverdueGrace{250};
constexpr std::chrono::milliseconds kSweepEvery{100};
// curl timers already due handled in one turn before the rest waits for the
// timerfd (another turn, maybe another thread).
constexpr int kTimerRounds = 4;

namespace {

// A finished call, reported once the multi handle is let go.
struct Finished {
  Transfer* transfer;
  UpstreamResult result;
};

}  // namespace

// The multi handle and everything around it. Whoever drives it (a turn)
// holds `drive_mutex`: the thread (Driver::own_thread), a FastCGI worker that
// saw poll_fd readable, or a caller of post_async sending its own call.
struct CurlUpstream::Loop {
  Loop(long max, bool h2) : max_connections(static_cast<std::size_t>(max)), http2(h2) {}

  const std::size_t max_connections;
  const bool http2;  // Http2::automatic and this libcurl speaks h2
  CURLM* multi = nullptr;
  int epfd = -1;     // curl's sockets, timerfd, wakefd
  int timerfd = -1;  // curl's timer (and the overdue sweep's)
  int wakefd = -1;   // written once, to stop the thread
  std::thread thread;
  HeaderCache headers;  // used by the callers' threads

  // Shared with the callers' threads.
  std::mutex mutex;
  std::vector<std::unique_ptr<Transfer>> owned;  // every Transfer ever made (<= max_connections)
  std::vector<Transfer*> idle;
  std::vector<Transfer*> incoming;  // handed over, not yet in the multi handle
  bool stopping = false;
  // Set with a call in `incoming`: the turn in progress (if any) goes round
  // once more before it ends, or its driver takes another turn after.
  std::atomic<bool> pending{false};

  // Held by whoever drives; guards the multi handle, the transfers in it and
  // what follows.
  std::mutex drive_mutex;
  std::optional<SteadyClock::time_point> deadline;  // curl's timer
  std::optional<SteadyClock::time_point> armed;     // when the timerfd fires
  bool host_cap = false;  // CURLMOPT_MAX_HOST_CONNECTIONS is set (see the constructor)
  SteadyClock::time_point next_sweep{};
  int running = 0;  // transfers in the multi handle, as curl counts them

  // The epoll registration of each socket curl opened, by fd (under
  // drive_mutex): 0 none, else the events + 1, plus kParked once curl stopped
  // watching it. A connection curl puts back in its cache (CURL_POLL_REMOVE)
  // stays registered, parked, so taking it out for the next call costs no
  // epoll_ctl when it waits for the same events (issue 16: a DEL and an ADD
  // per call). A parked socket that becomes ready (its server closed it, or
  // sent something unasked) is taken out then (take_events); curl finds it
  // dead when it next looks. A closed socket leaves the epoll set by itself,
  // and a new one under the same number starts unregistered (on_open).
  static constexpr std::uint8_t kParked = 0x80;
  std::vector<std::uint8_t> registered;

  std::uint8_t& registration(curl_socket_t fd) {
    const auto i = static_cast<std::size_t>(fd);
    if (i >= registered.size()) registered.resize(std::max<std::size_t>(i + 1, 256), 0);
    return registered[i];
  }

  static curl_socket_t on_open(void* user, curlsocktype, curl_sockaddr* address) {
    auto* loop = static_cast<Loop*>(user);
    const curl_socket_t fd =
        ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd >= 0) loop->registration(fd) = 0;
    return fd < 0 ? CURL_SOCKET_BAD : fd;
  }

  static int on_socket(CURL*, curl_socket_t fd, int what, void* user, void*) {
    auto* loop = static_cast<Loop*>(user);
    std::uint8_t& reg = loop->registration(fd);
    if (what == CURL_POLL_REMOVE) {
      if (reg != 0) reg |= kParked;
      return 0;
    }
    const auto want = static_cast<std::uint8_t>(what + 1);
    if ((reg & ~kParked) == want) {
      reg = want;
      return 0;
    }
    epoll_event ev{};
    ev.events =
        ((what & CURL_POLL_IN) != 0 ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) != 0 ? EPOLLOUT : 0u);
    ev.data.fd = fd;
    const int op = reg == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(loop->epfd, op, fd, &ev) != 0 &&
        (errno != EEXIST || ::epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) != 0) &&
        (errno != ENOENT || ::epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)) {
      reg = 0;
      return -1;  // curl fails the transfers on this socket
    }
    reg = want;
    return 0;
  }

  static int on_timer(CURLM*, long timeout_ms, void* user) {
    auto* loop = static_cast<Loop*>(user);
    if (timeout_ms < 0) {
      loop->deadline.reset();
    } else {
      loop->deadline = SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
    }
    return 0;
  }

  // Takes a finished transfer out of the multi handle; reported later.
  void complete(Transfer* t, CURLcode code, std::vector<Finished>& finished) {
    curl_multi_remove_handle(multi, t->easy);
    t->in_multi = false;
    UpstreamResult result;
    if (code == CURLE_FILESIZE_EXCEEDED) t->too_large = true;
    result.error = classify(code, t->too_large);
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &result.http_status);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &result.connections_opened);
    if (host_cap && code == CURLE_OK) {
      long version = 0;
      curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &version);
      if (version == CURL_HTTP_VERSION_1_0 || version == CURL_HTTP_VERSION_1_1) {
        // A server without h2: one connection per call from now on.
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
        host_cap = false;
      }
    }
    if (result.error == UpstreamError::none) {
      result.body = std::move(t->response);
    } else {
      result.detail = std::string(curl_easy_strerror(code)) +
                      (t->error[0] != '\0' ? std::string(": ") + t->error : std::string{});
    }
    finished.push_back(Finished{t, std::move(result)});
  }

  // Returns `t` to the idle list, then runs its `done`. `t` is in no multi
  // handle: whoever holds it may touch it.
  void release(Transfer* t, UpstreamResult result) {
    // The body dies here and the header list may (when the cache dropped
    // it); never leave the handle pointing at them.
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, nullptr);
    t->headers.reset();
    t->body.clear();
    t->response = std::string{};
    Done done = std::move(t->done);
    t->done = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex);
      idle.push_back(t);
    }
    try {
      done(std::move(result));
    } catch (...) {
      // `done` must not throw; if it does, the others still run.
    }
  }

  void drain_messages(std::vector<Finished>& finished) {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      void* priv = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      const CURLcode code = msg->data.result;
      complete(static_cast<Transfer*>(priv), code, finished);  // invalidates msg
    }
  }

  // Adds the calls handed over to the multi handle (drive_mutex held).
  void take_incoming(std::vector<Finished>& finished) {
    std::vector<Transfer*> batch;
    bool stop = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (incoming.empty()) return;
      batch.swap(incoming);
      stop = stopping;
    }
    for (Transfer* t : batch) {
      if (stop) {
        finished.push_back(
            Finished{t, failure(UpstreamError::not_delivered, "pvgate is shutting down")});
      } else if (curl_multi_add_handle(multi, t->easy) != CURLM_OK) {
        finished.push_back(
            Finished{t, failure(UpstreamError::transport, "curl_multi_add_handle failed")});
      } else {
        t->in_multi = true;
        t->due = SteadyClock::now() + std::chrono::milliseconds(t->timeout_ms) + kOverdueGrace;
      }
    }
  }

  // The sockets (and the timerfd) that are ready now.
  void take_events() {
    epoll_event events[64];
    const int n = ::epoll_wait(epfd, events, 64, 0);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wakefd) continue;  // level-triggered, for the thread to see
      if (fd == timerfd) {
        std::uint64_t expirations = 0;
        [[maybe_unused]] const ssize_t r = ::read(timerfd, &expirations, sizeof expirations);
        armed.reset();
        continue;
      }
      std::uint8_t& reg = registration(fd);
      if ((reg & kParked) != 0) {  // curl does not watch it: out until it does
        ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
        reg = 0;
        continue;
      }
      const std::uint32_t ev = events[i].events;
      const int mask = ((ev & EPOLLIN) != 0 ? CURL_CSELECT_IN : 0) |
                       ((ev & EPOLLOUT) != 0 ? CURL_CSELECT_OUT : 0) |
                       ((ev & (EPOLLERR | EPOLLHUP)) != 0 ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(multi, fd, mask, &running);
    }
  }

  // curl's timers that are due (adding a call sets one to now).
  void run_timers() {
    for (int round = 0; round < kTimerRounds && deadline; ++round) {
      if (SteadyClock::now() < *deadline) break;
      deadline.reset();
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
  }

  // The timerfd fires at curl's deadline, or at the next overdue sweep while
  // calls run under the h2 cap. Set only when that is sooner than it is set
  // for: firing early costs a turn that finds nothing due and sets it again.
  void arm_timer() {
    std::optional<SteadyClock::time_point> want = deadline;
    if (host_cap && running > 0 && (!want || next_sweep < *want)) want = next_sweep;
    if (!want || (armed && *armed <= *want)) return;
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(want->time_since_epoch()).count();
    itimerspec spec{};
    // steady_clock is CLOCK_MONOTONIC; 0 would disarm the timer.
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(std::max<long long>(ns % 1000000000, 1));
    if (::timerfd_settime(timerfd, TFD_TIMER_ABSTIME, &spec, nullptr) == 0) armed = want;
  }

  // libcurl 7.88 does not time out a call waiting in its queue for a
  // connection (CURLMOPT_MAX_HOST_CONNECTIONS reached): it has none yet. Such
  // a call ends here, as a timeout, once upstream.timeout_ms (plus a grace
  // that lets curl's own timeout win everywhere else) has passed. Never sent,
  // but counted as a timeout like a connect timeout is: no refund either way.
  void sweep_overdue(std::vector<Finished>& finished) {
    const SteadyClock::time_point now = SteadyClock::now();
    if (now < next_sweep) return;
    next_sweep = now + kSweepEvery;
    // Callers' threads add to `owned` (under the mutex); in_multi and due
    // belong to whoever drives.
    std::vector<Transfer*> overdue;
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const auto& t : owned) {
        if (t->in_multi && now >= t->due) overdue.push_back(t.get());
      }
    }
    for (Transfer* t : overdue) complete(t, CURLE_OPERATION_TIMEDOUT, finished);
  }

  // One turn: `events`, what epoll has ready too; a call's own (from
  // post_async), only what was handed over. A turn that finds the multi
  // handle held leaves its work to the holder, who goes round again for a
  // call handed over (`pending`); a turn for events waits for it instead
  // (the holder might be a caller that only sends).
  void turn(bool events) {
    thread_local std::vector<Finished> finished;
    while (true) {
      if (events) {
        drive_mutex.lock();
      } else if (!drive_mutex.try_lock()) {
        return;
      }
      do {
        pending.store(false);
        take_incoming(finished);
        if (events) take_events();
        events = false;
        run_timers();
        drain_messages(finished);
        if (host_cap) sweep_overdue(finished);
        arm_timer();
      } while (pending.load());
      drive_mutex.unlock();
      // The callbacks, free of the multi handle (a `done` may post again).
      std::vector<Finished> batch;
      batch.swap(finished);
      for (Finished& f : batch) release(f.transfer, std::move(f.result));
      batch.clear();
      if (finished.empty()) finished.swap(batch);  // keep the capacity
      // A call handed over after the last look, by a caller whose try_lock
      // failed while this turn still held the handle.
      if (!pending.load()) return;
    }
  }

  // Driver::own_thread.
  void run() {
    pollfd p{};
    p.fd = epfd;
    p.events = POLLIN;
    while (true) {
      const int n = ::poll(&p, 1, -1);
      if (n < 0 && errno != EINTR) break;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping) break;
      }
      turn(true);
    }
  }

  // Fails every call still handed over or in flight (nobody drives any more).
  void fail_all() {
    std::vector<Finished> finished;
    {
      std::lock_guard<std::mutex> lock(drive_mutex);
      take_incoming(finished);       // stopping: each fails as not delivered
      for (const auto& t : owned) {  // nobody adds to `owned` any more
        if (!t->in_multi) continue;
        curl_multi_remove_handle(multi, t->easy);
        t->in_multi = false;
        finished.push_back(
            Finished{t.get(), failure(UpstreamError::transport, "pvgate is shutting down")});
      }
    }
    for (Finished& f : finished) release(f.transfer, std::move(f.result));
  }
};

void upstream_global_init() {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool upstream_http2_supported() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return info != nullptr && (info->features & CURL_VERSION_HTTP2) != 0;
}

CurlUpstream::CurlUpstream(long max_connections, Http2 http2, Driver driver)
    : loop_(std::make_unique<Loop>(std::max(1L, max_connections),
                                   http2 == Http2::automatic && upstream_http2_supported())) {
  Loop& l = *loop_;
  l.multi = curl_multi_init();
  l.epfd = ::epoll_create1(EPOLL_CLOEXEC);
  l.wakefd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  l.timerfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  bool ok = l.multi != nullptr && l.epfd >= 0 && l.wakefd >= 0 && l.timerfd >= 0;
  for (const int fd : {l.wakefd, l.timerfd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ok = ok && ::epoll_ctl(l.epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
  }
  if (!ok) {
    const int error = errno;
    for (const int fd : {l.epfd, l.wakefd, l.timerfd}) {
      if (fd >= 0) ::close(fd);
    }
    if (l.multi != nullptr) curl_multi_cleanup(l.multi);
    throw std::runtime_error(std::string("cannot start the upstream loop: ") +
                             std::strerror(error));
  }
  curl_multi_setopt(l.multi, CURLMOPT_SOCKETFUNCTION, &Loop::on_socket);
  curl_multi_setopt(l.multi, CURLMOPT_SOCKETDATA, &l);
  curl_multi_setopt(l.multi, CURLMOPT_TIMERFUNCTION, &Loop::on_timer);
  curl_multi_setopt(l.multi, CURLMOPT_TIMERDATA, &l);
  // Keep a connection open for every call that may be in flight (HTTP/1.1
  // needs one each; h2 needs fewer, and the cache only holds what was opened).
  curl_multi_setopt(l.multi, CURLMOPT_MAXCONNECTS, static_cast<long>(l.max_connections));
  // h2: streams share connections, up to kMaxStreamsPerConnection each, then
  // another connection opens. max_connections bounds calls in flight, not
  // connections, whatever the protocol.
  curl_multi_setopt(l.multi, CURLMOPT_PIPELINING, l.http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
  curl_multi_setopt(l.multi, CURLMOPT_MAX_CONCURRENT_STREAMS, kMaxStreamsPerConnection);
  if (l.http2) {
    // libcurl 7.88 (Debian 12) opens a connection for every call that
    // arrives while a second h2 connection to a host is being set up: it
    // skips connections still connecting (fixed in 8.0). A cap per host
    // bounds that: h2 needs few connections (calls wait in curl's queue for
    // the ones being set up), and a server that allows as few as
    // kMinStreamsPerConnection streams still carries max_connections calls.
    // The first HTTP/1 answer lifts the cap for good (complete()), so an
    // HTTP/1.1 server gets one connection per call again; until then, calls
    // beyond the cap (never below kMinHostConnectionCap, so a small
    // max_connections is never capped) wait for a free connection.
    const long max = static_cast<long>(l.max_connections);
    const long cap = std::max(std::min(max, kMinHostConnectionCap),
                              (max + kMinStreamsPerConnection - 1) / kMinStreamsPerConnection);
    curl_multi_setopt(l.multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap);
    l.host_cap = true;
  }
  if (driver == Driver::own_thread) l.thread = std::thread([&l] { l.run(); });
}

CurlUpstream::~CurlUpstream() {
  Loop& l = *loop_;
  {
    std::lock_guard<std::mutex> lock(l.mutex);
    l.stopping = true;
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(l.wakefd, &one, sizeof one);
  if (l.thread.joinable()) l.thread.join();
  l.fail_all();
  {
    std::lock_guard<std::mutex> lock(l.mutex);
    l.owned.clear();  // easy handles go before their multi handle
  }
  curl_multi_cleanup(l.multi);
  for (const int fd : {l.epfd, l.wakefd, l.timerfd}) ::close(fd);
}

int CurlUpstream::poll_fd() const {
  return loop_->epfd;
}

void CurlUpstream::drive() {
  loop_->turn(true);
}

void CurlUpstream::post_async(const UpstreamConfig& config, UpstreamCall call, Done done) {
  Loop& l = *loop_;
  Transfer* t = nullptr;
  {
    std::lock_guard<std::mutex> lock(l.mutex);
    if (l.stopping) {
      // Falls through to the refusal below.
    } else if (!l.idle.empty()) {
      t = l.idle.back();
      l.idle.pop_back();
    } else if (l.owned.size() < l.max_connections) {
      l.owned.push_back(std::make_unique<Transfer>());
      t = l.owned.back().get();
      set_fixed_options(*t, &Loop::on_open, &l);
    }
  }
  if (t == nullptr) {
    done(failure(UpstreamError::not_delivered, "more than upstream.max_connections (" +
                                                   std::to_string(l.max_connections) +
                                                   ") calls in flight, or shutting down"));
    return;
  }
  t->done = std::move(done);
  const char* why = "curl_easy_init failed";
  SharedHeaders headers;
  if (t->easy == nullptr ||
      (headers = l.headers.get(call.content_type, call.api_key, why)) == nullptr) {
    // Never handed to the loop: give it back from here.
    l.release(t, failure(UpstreamError::transport, why));
    return;
  }
  prepare(*t, config, std::move(call), std::move(headers), l.http2);
  {
    std::lock_guard<std::mutex> lock(l.mutex);
    l.incoming.push_back(t);
  }
  // Sent from here unless someone drives the multi handle now; then they do.
  l.pending.store(true);
  l.turn(false);
}

UpstreamResult CurlUpstream::post(const UpstreamConfig& config, const UpstreamCall& call) {
  std::promise<UpstreamResult> promise;
  std::future<UpstreamResult> result = promise.get_future();
  post_async(config, call, [&promise](UpstreamResult r) { promise.set_value(std::move(r)); });
  return result.get();
}

}  // namespace pvgate
