#include "fcgi_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fcgi_protocol.h"
#include "listen_address.h"
#include "options.h"

namespace pvgate {
namespace {

using Steady = std::chrono::steady_clock;

constexpr int kBacklog = 1024;
// One read(2) at most; a worker's read buffer is this big.
constexpr std::size_t kReadChunk = 32 * 1024;
// A connection's buffers larger than this after a request are given back.
constexpr std::size_t kKeepBufferBytes = 64 * 1024;
constexpr auto kSweepEvery = std::chrono::milliseconds(50);

// epoll data: slot index in the low 32 bits, generation in the high ones.
// Index kSpecial marks the server's own fds, told apart by the high bits.
constexpr std::uint32_t kSpecial = 0xFFFFFFFFu;
constexpr std::uint32_t kStopTag = 0;
constexpr std::uint32_t kListenTag = 1;
// One worker per readiness, re-armed by it after its accept4 (accept_one).
constexpr std::uint32_t kListenEvents = EPOLLIN | EPOLLONESHOT;
constexpr std::uint32_t kCompletionTag = 2;
constexpr std::uint32_t kPolledTag = 3;
// One worker drives the upstream at a time; it re-arms after (drive_polled).
constexpr std::uint32_t kPolledEvents = EPOLLIN | EPOLLONESHOT;

// Set while this thread is a worker in drive_polled: the requests whose
// answer its turn finished, for it to complete (on_resume).
thread_local std::vector<std::uint32_t>* t_answered = nullptr;

std::uint64_t tag(std::uint32_t index, std::uint32_t generation) {
  return (static_cast<std::uint64_t>(generation) << 32) | index;
}

enum State : int {
  kFree,      // no connection in this slot
  kArmed,     // in epoll, waiting to be readable
  kBusy,      // a worker owns it
  kUpstream,  // its request waits on Pipwave
  kWriting,   // in epoll, waiting to be writable
};

bool is_listening_socket(int fd) {
  int accepting = 0;
  socklen_t len = sizeof accepting;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting != 0;
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

void signal_eventfd(int fd) {
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof one);
}

// The signals pvgate handles itself (blocked everywhere, taken by sigwait):
// TERM/INT/QUIT stop gracefully, HUP reloads.
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (const int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&set, sig);
  return set;
}

// Log lines of the request work between construction and destruction may
// wait for other busy workers' (Logger::hold).
class LogHold {
 public:
  explicit LogHold(Logger& log) : log_(log) { log_.hold(); }
  ~LogHold() { log_.release(); }
  LogHold(const LogHold&) = delete;
  LogHold& operator=(const LogHold&) = delete;

 private:
  Logger& log_;
};

}  // namespace

void block_signals() {
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, nullptr);
}

struct Connection {
  std::uint32_t index = 0;

  // Guards the fields up to the owner's; held briefly, never across I/O but
  // the epoll_ctl that hands the connection to epoll (so that a sweep cannot
  // close the fd between the state change and the registration). Taking it
  // also orders the hand-off between threads for tools such as
  // ThreadSanitizer, which cannot see through epoll.
  std::mutex mutex;
  std::uint32_t generation = 1;
  int state = kFree;
  int fd = -1;
  bool in_epoll = false;
  bool resumed = false;  // the upstream answered before Handler::run returned
  // Read by the sweep only in state kArmed / kWriting.
  Steady::time_point partial_since{};  // part of a request is here since (epoch: none)
  Steady::time_point writing_since{};  // a write first could not complete (epoch: none)

  // The owner's (state kBusy), untouched by anyone else.
  fcgi::RequestParser parser;
  Exchange ex;
  std::string pending;  // input read past a whole request, parsed after its reply
  std::string out;      // records to write
  std::size_t out_done = 0;
  bool reply_queued = false;  // `out` ends a request: then the next one, or close
  bool close_after_reply = false;

  // Back to a free slot (mutex held). The next connection starts clean.
  void clear() {
    if (fd >= 0) ::close(fd);  // also takes it out of epoll
    fd = -1;
    in_epoll = false;
    ++generation;
    state = kFree;
    resumed = false;
    partial_since = writing_since = {};
    parser = fcgi::RequestParser{};
    ex.reset();
    std::string().swap(pending);
    std::string().swap(out);
    out_done = 0;
    reply_queued = close_after_reply = false;
  }
};

FcgiServer::FcgiServer(ServerOptions options, Handler& handler, const ConfigHolder& config,
                       Logger& log)
    : options_(std::move(options)),
      handler_(handler),
      config_(config),
      log_(log),
      gate_(options_.running > 0 ? options_.running : default_threads()),
      chunks_(new std::atomic<Connection*>[kMaxConnections / kSlotsPerChunk]) {
  for (std::uint32_t i = 0; i < kMaxConnections / kSlotsPerChunk; ++i) chunks_[i] = nullptr;
}

FcgiServer::~FcgiServer() {
  if (!threads_.empty()) stop();
  for (std::uint32_t i = 0; i < kMaxConnections / kSlotsPerChunk; ++i) {
    Connection* chunk = chunks_[i].load();
    if (chunk == nullptr) continue;
    for (std::uint32_t k = 0; k < kSlotsPerChunk; ++k) {
      if (chunk[k].fd >= 0) ::close(chunk[k].fd);
    }
    delete[] chunk;
  }
  for (const int fd : {epoll_fd_, stop_fd_, completion_fd_}) {
    if (fd >= 0) ::close(fd);
  }
  if (listen_fd_ > 0) ::close(listen_fd_);
  if (own_socket_path_) ::unlink(socket_path_.c_str());
}

bool FcgiServer::listen(std::string& error) {
  if (options_.socket.empty()) {
    if (!is_listening_socket(0)) {
      error =
          "no --socket given and fd 0 is not a listening socket "
          "(start pvgate under spawn-fcgi or systemd, or pass --socket)";
      return false;
    }
    listen_fd_ = 0;
    // With spawn-fcgi -F N several processes share this socket, and the
    // losers of an accept race must not block.
    set_nonblocking(listen_fd_);
  } else {
    ListenAddress address;
    const std::string wrong = parse_listen_address(options_.socket, address);
    if (!wrong.empty()) {
      error = "--socket " + wrong;
      return false;
    }
    std::string why;
    listen_fd_ = open_listener(address, options_.socket_mode, kBacklog, why);
    if (listen_fd_ < 0) {
      error = "cannot listen on '" + options_.socket + "': " + why;
      return false;
    }
    if (address.kind == ListenAddress::Kind::unix_path) {
      own_socket_path_ = true;
      socket_path_ = address.host;
    }
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  completion_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (stop_fd_ < 0 || completion_fd_ < 0 || epoll_fd_ < 0) {
    error = std::string("eventfd/epoll_create1: ") + std::strerror(errno);
    return false;
  }
  const struct {
    int fd;
    std::uint32_t events;
    std::uint32_t which;
  } own[] = {
      // One-shot, re-armed by the worker that took it (accept_one): see the header.
      {listen_fd_, kListenEvents, kListenTag},
      // Level-triggered and never read: once written, every worker sees it.
      {stop_fd_, EPOLLIN, kStopTag},
      // Edge-triggered: each completion wakes one worker (take_completion).
      {completion_fd_, EPOLLIN | EPOLLET, kCompletionTag},
      {options_.polled != nullptr ? options_.polled->poll_fd() : -1, kPolledEvents, kPolledTag},
  };
  for (const auto& o : own) {
    if (o.fd < 0) continue;
    epoll_event ev{};
    ev.events = o.events;
    ev.data.u64 = tag(kSpecial, o.which);
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, o.fd, &ev) != 0) {
      error = std::string("epoll_ctl: ") + std::strerror(errno);
      return false;
    }
  }
  return true;
}

void FcgiServer::start() {
  running_ = options_.threads;
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { worker(); });
}

bool FcgiServer::stop() {
  if (threads_.empty()) return true;
  stopping_ = true;
  // No new connections; those in the backlog stay there for a sibling
  // process or the next pvgate.
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  const auto deadline = Steady::now() + options_.drain_deadline;
  // The sweep closes idle connections (and, while stopping, those that
  // become idle); requests in progress, waiting on Pipwave or being written
  // run to their end on the workers.
  while (true) {
    sweep();
    log_.flush_stale();
    if (open_.load() == 0 || Steady::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool drained = open_.load() == 0;
  signal_eventfd(stop_fd_);  // every idle worker returns
  gate_.stop();              // and every spare
  const auto exit_deadline = std::max(deadline, Steady::now() + std::chrono::milliseconds(200));
  while (running_.load() > 0 && Steady::now() < exit_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool clean = drained && running_.load() == 0;
  for (auto& t : threads_) {
    if (running_.load() == 0) {
      t.join();
    } else {
      t.detach();  // the process is about to exit; see main
    }
  }
  threads_.clear();
  return clean;
}

void FcgiServer::run_until_signal(const std::function<void()>& on_reload) {
  const sigset_t set = handled_signals();
  const timespec tick{0, 50 * 1000 * 1000};
  auto last_sweep = Steady::now();
  while (true) {
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (Steady::now() - last_sweep >= kSweepEvery) {
      // Deadlines, and log lines batched for too long.
      sweep();
      log_.flush_stale();
      last_sweep = Steady::now();
    }
    if (sig < 0) continue;
    if (sig == SIGHUP) {
      if (on_reload) on_reload();
      continue;
    }
    log_.info(std::string("signal ") +
              (sig == SIGTERM   ? "SIGTERM"
               : sig == SIGQUIT ? "SIGQUIT"
                                : "SIGINT") +
              ": finishing requests in flight");
    return;
  }
}

Connection* FcgiServer::slot(std::uint32_t index) const {
  return chunks_[index / kSlotsPerChunk].load(std::memory_order_acquire) + index % kSlotsPerChunk;
}

Connection* FcgiServer::new_slot() {
  std::lock_guard<std::mutex> lock(slots_mutex_);
  if (!free_.empty()) {
    const std::uint32_t index = free_.back();
    free_.pop_back();
    return slot(index);
  }
  if (slot_count_ == kMaxConnections) return nullptr;
  if (slot_count_ % kSlotsPerChunk == 0) {
    auto* chunk = new Connection[kSlotsPerChunk];
    for (std::uint32_t k = 0; k < kSlotsPerChunk; ++k) {
      const std::uint32_t index = slot_count_ + k;
      chunk[k].index = index;
      // Runs where the upstream finished the call: it only hands the connection back.
      chunk[k].ex.resume = [this, index](Exchange&) { on_resume(index); };
    }
    chunks_[slot_count_ / kSlotsPerChunk].store(chunk, std::memory_order_release);
  }
  const std::uint32_t index = slot_count_++;
  high_water_.store(slot_count_, std::memory_order_release);
  return slot(index);
}

void FcgiServer::worker() {
  RunGate::current() = &gate_;
  gate_.arrive();
  epoll_event event{};
  while (gate_.admit()) {
    // One event at a time: a worker takes work only when it is idle.
    const int n = ::epoll_wait(epoll_fd_, &event, 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_.error(std::string("epoll_wait: ") + std::strerror(errno));
      break;
    }
    if (n == 0) continue;
    const auto index = static_cast<std::uint32_t>(event.data.u64);
    const auto generation = static_cast<std::uint32_t>(event.data.u64 >> 32);
    if (index == kSpecial) {
      if (generation == kStopTag) break;
      if (generation == kListenTag) {
        accept_one();
      } else if (generation == kPolledTag) {
        drive_polled();
      } else {
        take_completion();
      }
      continue;
    }
    Connection& conn = *slot(index);
    {
      std::lock_guard<std::mutex> lock(conn.mutex);
      // A stale event: that connection was closed (and the slot maybe reused).
      if (conn.generation != generation || (conn.state != kArmed && conn.state != kWriting))
        continue;
      conn.state = kBusy;
    }
    drive(conn);
  }
  gate_.depart();
  running_.fetch_sub(1);
}

void FcgiServer::rearm(int fd, std::uint32_t events, std::uint32_t which) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag(kSpecial, which);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void FcgiServer::accept_one() {
  int fd;
  do {
    fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
  const int err = fd < 0 ? errno : 0;
  // The next connection is another idle worker's: re-arm at once. (After
  // stop() removed the listening socket this fails with ENOENT, as it should.)
  if (!stopping_.load()) rearm(listen_fd_, kListenEvents, kListenTag);
  if (fd < 0) {
    if (err != EAGAIN && err != EWOULDBLOCK) {
      log_.warn(std::string("accept: ") + std::strerror(err));
      // Out of fds or memory: back off briefly rather than spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return;  // EAGAIN: another worker (or process) took it
  }
  Connection* conn = new_slot();
  if (conn == nullptr) {
    ::close(fd);
    log_.warn("more than " + std::to_string(kMaxConnections) +
              " FastCGI connections: a new one was closed");
    return;
  }
  {
    std::lock_guard<std::mutex> lock(conn->mutex);
    conn->fd = fd;
    conn->state = kBusy;
  }
  open_.fetch_add(1);
  drive(*conn);  // nginx writes its request right after connecting: read it now
}

void FcgiServer::drive(Connection& c) {
  thread_local std::unique_ptr<char[]> buffer(new char[kReadChunk]);
  std::size_t budget = kMaxReadPerWake;
  try {
    while (true) {
      // Output first: a reply, or what the protocol answers by itself.
      while (c.out_done < c.out.size()) {
        const ssize_t n =
            ::send(c.fd, c.out.data() + c.out_done, c.out.size() - c.out_done, MSG_NOSIGNAL);
        if (n > 0) {
          c.out_done += static_cast<std::size_t>(n);
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          if (c.writing_since == Steady::time_point{}) c.writing_since = Steady::now();
          park(c, kWriting);
          return;
        } else {
          close_owned(c);  // the reader is gone
          return;
        }
      }
      if (!c.out.empty()) {
        c.out.clear();
        c.out_done = 0;
        c.writing_since = {};
        if (c.out.capacity() > kKeepBufferBytes) std::string().swap(c.out);  // after a /metrics
      }
      if (c.reply_queued) {
        c.reply_queued = false;
        if (c.close_after_reply || stopping_.load()) {
          close_owned(c);
          return;
        }
        c.parser.next();
        // nginx sends the next request only after this reply: wait for it in
        // epoll rather than try a read that would say EAGAIN.
        if (c.pending.empty()) {
          park(c, kArmed);
          return;
        }
      }

      // Input: what was left after the last request, else what the socket has.
      const char* data = nullptr;
      std::size_t size = 0;
      const bool from_pending = !c.pending.empty();
      if (from_pending) {
        data = c.pending.data();
        size = c.pending.size();
      } else {
        if (budget == 0) {  // others' turn; epoll reports the rest at once
          park(c, kArmed);
          return;
        }
        const ssize_t n = ::read(c.fd, buffer.get(), std::min(kReadChunk, budget));
        if (n > 0) {
          data = buffer.get();
          size = static_cast<std::size_t>(n);
          budget -= size;
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          park(c, kArmed);
          return;
        } else {
          close_owned(c);  // EOF (nginx closed it) or an error
          return;
        }
      }

      // Parse up to the end of the data or of a request.
      std::size_t used = 0;
      bool whole = false;
      while (used < size && !whole) {
        const fcgi::FeedResult r = c.parser.feed(data + used, size - used, c.out);
        used += r.consumed;
        switch (r.step) {
          case fcgi::Step::more:
            break;
          case fcgi::Step::begin:
            // The snapshot this request is served under gives its body limit.
            handler_.begin(c.ex);
            c.parser.set_body_limit(c.ex.max_body_bytes() + 1);
            break;
          case fcgi::Step::aborted:
            c.ex.reset();
            if (!c.parser.keep_conn()) {  // END_REQUEST is in `out`: write it, close
              c.reply_queued = c.close_after_reply = true;
              used = size;
              whole = true;
            }
            break;
          case fcgi::Step::error:
            log_.warn(std::string("FastCGI protocol error, connection closed: ") +
                      c.parser.error());
            close_owned(c);
            return;
          case fcgi::Step::complete:
            whole = true;
            break;
        }
      }
      if (from_pending) {
        c.pending.erase(0, used);
      } else if (used < size) {
        c.pending.assign(data + used, size - used);
      }
      if (whole && !c.reply_queued && !run_request(c)) return;  // handed to the upstream
      if (!whole) {
        // Every byte is parsed; the deadline runs from the first of a request.
        if (c.parser.idle()) {
          c.partial_since = {};
        } else if (c.partial_since == Steady::time_point{}) {
          c.partial_since = Steady::now();
        }
      }
    }
  } catch (const std::exception& e) {
    // Out of memory, most likely. The connection is still this worker's.
    log_.error(std::string("FastCGI connection dropped: ") + e.what());
    close_owned(c);
  }
}

bool FcgiServer::run_request(Connection& c) {
  c.partial_since = {};
  HttpRequest& request = c.ex.request;
  fcgi::fill_request(c.parser.params(), request);
  request.body.swap(c.parser.body());
  const LogHold hold(log_);
  if (!settle(c, handler_.run(c.ex))) return false;
  finish_request(c);
  return true;
}

bool FcgiServer::settle(Connection& c, bool done) {
  while (!done) {
    std::unique_lock<std::mutex> lock(c.mutex);
    if (!c.resumed) {
      c.state = kUpstream;  // from here on on_resume hands it to a worker
      return false;
    }
    c.resumed = false;  // the upstream answered at once, on this thread
    lock.unlock();
    done = handler_.complete(c.ex);  // false: it called the upstream again
  }
  return true;
}

void FcgiServer::finish_request(Connection& c) {
  fcgi::append_reply(c.out, c.parser.request_id(), c.ex.reply);
  c.reply_queued = true;
  c.close_after_reply = !c.parser.keep_conn() || c.parser.discard_overflow();
  c.ex.reset();  // before the parser's buffers, which its params point into, are reused
  served_.fetch_add(1, std::memory_order_relaxed);
}

void FcgiServer::on_resume(std::uint32_t index) {
  Connection& c = *slot(index);
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.state == kBusy) {  // Handler::run has not returned yet: its worker goes on
      c.resumed = true;
      return;
    }
  }
  if (t_answered != nullptr) {  // a worker driving the upstream: it takes them
    t_answered->push_back(index);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(completions_mutex_);
    completions_.push_back(index);
  }
  signal_eventfd(completion_fd_);  // an edge: one idle worker wakes
}

void FcgiServer::take_completion() {
  std::uint32_t index = 0;
  bool more = false;
  {
    std::lock_guard<std::mutex> lock(completions_mutex_);
    if (completions_.empty()) return;
    index = completions_.front();
    completions_.pop_front();
    more = !completions_.empty();
    if (!more) {
      std::uint64_t count = 0;  // keep the counter small; every push writes again
      [[maybe_unused]] const ssize_t n = ::read(completion_fd_, &count, sizeof count);
    }
  }
  // Edges that came together wake one worker: pass the rest on.
  if (more) signal_eventfd(completion_fd_);
  resume_request(index);
}

void FcgiServer::drive_polled() {
  thread_local std::vector<std::uint32_t> answered;
  answered.clear();
  t_answered = &answered;
  options_.polled->drive();
  t_answered = nullptr;
  // The next readiness is another idle worker's (also while stopping: the
  // requests waiting on Pipwave must be answered to drain).
  rearm(options_.polled->poll_fd(), kPolledEvents, kPolledTag);
  // All on this thread, in turn, as an event loop would: handing them to
  // sleeping workers costs a wake-up each (more than a request's own work).
  for (const std::uint32_t index : answered) resume_request(index);
}

void FcgiServer::resume_request(std::uint32_t index) {
  Connection& c = *slot(index);
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.state = kBusy;
  }
  try {
    const LogHold hold(log_);
    if (!settle(c, handler_.complete(c.ex))) return;  // a CAPTCHA check led to the forward
    finish_request(c);
  } catch (const std::exception& e) {
    log_.error(std::string("FastCGI connection dropped: ") + e.what());
    close_owned(c);
    return;
  }
  drive(c);
}

void FcgiServer::park(Connection& c, int state) {
  int error = 0;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (state == kArmed && stopping_.load() && c.parser.idle() && c.pending.empty()) {
      error = -1;  // shutting down: an idle connection is closed, not kept
    } else {
      c.state = state;
      epoll_event ev{};
      ev.events = (state == kWriting ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) | EPOLLONESHOT;
      ev.data.u64 = tag(c.index, c.generation);
      if (::epoll_ctl(epoll_fd_, c.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd, &ev) == 0) {
        c.in_epoll = true;
        return;
      }
      error = errno;
      c.state = kBusy;
    }
  }
  if (error > 0) log_.warn(std::string("epoll_ctl(connection): ") + std::strerror(error));
  close_owned(c);
}

void FcgiServer::close_owned(Connection& c) {
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.clear();
  }
  {
    std::lock_guard<std::mutex> lock(slots_mutex_);
    free_.push_back(c.index);
  }
  open_.fetch_sub(1);
}

void FcgiServer::sweep() {
  const std::shared_ptr<const Config> config = config_.get();
  const auto read_timeout = std::chrono::milliseconds(config->read_timeout_ms);
  const auto write_timeout = std::chrono::milliseconds(config->write_timeout_ms);
  const bool stopping = stopping_.load();
  const auto now = Steady::now();
  std::size_t partial = 0;
  std::size_t unread = 0;
  std::vector<std::uint32_t> closed;
  const std::uint32_t count = high_water_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < count; ++i) {
    Connection& c = *slot(i);
    std::lock_guard<std::mutex> lock(c.mutex);
    bool close = false;
    if (c.state == kArmed) {
      const bool idle = c.partial_since == Steady::time_point{};
      if (!idle && now - c.partial_since >= read_timeout) {
        close = true;
        ++partial;
      } else if (idle && stopping) {
        close = true;
      }
    } else if (c.state == kWriting && now - c.writing_since >= write_timeout) {
      close = true;
      ++unread;
    }
    if (close) {
      c.clear();
      closed.push_back(i);
    }
  }
  if (closed.empty()) return;
  {
    std::lock_guard<std::mutex> lock(slots_mutex_);
    free_.insert(free_.end(), closed.begin(), closed.end());
  }
  open_.fetch_sub(closed.size());
  if (partial > 0) {
    log_.info("closed " + std::to_string(partial) +
              " FastCGI connection(s) holding part of a request for over " +
              std::to_string(config->read_timeout_ms) + " ms (limits.read_timeout_ms)");
  }
  if (unread > 0) {
    log_.warn("dropped " + std::to_string(unread) +
              " FastCGI connection(s) whose reader did not take the reply within " +
              std::to_string(config->write_timeout_ms) + " ms (limits.write_timeout_ms)");
  }
}

}  // namespace pvgate
