#include "fcgi_server.h"

#include <fcgiapp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>

namespace pvgate {
namespace {

constexpr int kBacklog = 1024;
constexpr std::size_t kMaxDrainBytes = 1 << 20;  // unread body beyond this: drop the connection

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

// The params the handler reads, taken in one pass over the environment
// (FCGX_GetParam scans it from the start for each name). The first of
// duplicate names wins, as with FCGX_GetParam.
struct Params {
  const char* method = nullptr;
  const char* document_uri = nullptr;
  const char* script_name = nullptr;
  const char* content_type = nullptr;
  const char* content_length = nullptr;
  const char* merchant = nullptr;
  const char* remote_addr = nullptr;
  const char* request_id = nullptr;
  const char* origin = nullptr;
  const char* referer = nullptr;

  explicit Params(char** envp) {
    for (char** e = envp; e != nullptr && *e != nullptr; ++e) {
      const char* kv = *e;
      const char* eq = std::strchr(kv, '=');
      if (eq == nullptr) continue;
      const std::string_view name(kv, static_cast<std::size_t>(eq - kv));
      const char*& slot = name == "REQUEST_METHOD"      ? method
                          : name == "DOCUMENT_URI"      ? document_uri
                          : name == "SCRIPT_NAME"       ? script_name
                          : name == "CONTENT_TYPE"      ? content_type
                          : name == "CONTENT_LENGTH"    ? content_length
                          : name == "PVGATE_MERCHANT"   ? merchant
                          : name == "REMOTE_ADDR"       ? remote_addr
                          : name == "PVGATE_REQUEST_ID" ? request_id
                          : name == "HTTP_ORIGIN"       ? origin
                          : name == "HTTP_REFERER"      ? referer
                                                        : unused;
      if (slot == nullptr) slot = eq + 1;
    }
  }

 private:
  const char* unused = nullptr;
};

std::string text(const char* v) {
  return v == nullptr ? std::string{} : std::string(v);
}

bool is_listening_socket(int fd) {
  int accepting = 0;
  socklen_t len = sizeof accepting;
  return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting != 0;
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

// The signals pvgate handles itself (blocked everywhere, taken by sigwait):
// TERM/INT/QUIT stop gracefully, HUP reloads.
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (const int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaddset(&set, sig);
  return set;
}

}  // namespace

void block_signals() {
  const sigset_t set = handled_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, nullptr);
}

struct Connection {
  FCGX_Request request;
  Exchange ex;
  // Held while the connection is armed in epoll, and taken (empty) by the
  // worker that takes the event: the kernel already orders the two, but tools such
  // as ThreadSanitizer cannot see through epoll, so the hand-off of the
  // connection between threads is stated with a lock they do see.
  std::mutex handoff;
};

FcgiServer::FcgiServer(ServerOptions options, Handler& handler, Logger& log)
    : options_(std::move(options)), handler_(handler), log_(log) {}

FcgiServer::~FcgiServer() {
  if (!threads_.empty()) stop();
  for (Connection* conn : conns_) {
    FCGX_Free(&conn->request, 1);
    delete conn;
  }
  conns_.clear();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
  if (wake_pipe_[0] >= 0) ::close(wake_pipe_[0]);
  if (wake_pipe_[1] >= 0) ::close(wake_pipe_[1]);
  if (listen_fd_ > 0) ::close(listen_fd_);
  if (own_socket_path_) ::unlink(options_.socket.c_str());
}

bool FcgiServer::listen(std::string& error) {
  if (FCGX_Init() != 0) {
    error = "FCGX_Init failed";
    return false;
  }
  if (options_.socket.empty()) {
    if (!is_listening_socket(0)) {
      error =
          "no --socket given and fd 0 is not a listening socket "
          "(start pvgate under spawn-fcgi or systemd, or pass --socket)";
      return false;
    }
    listen_fd_ = 0;
  } else {
    const bool unix_path = options_.socket.find(':') == std::string::npos;
    if (unix_path) ::unlink(options_.socket.c_str());  // a stale socket from a crash
    const mode_t old_mask = ::umask(0777 & ~options_.socket_mode);
    listen_fd_ = FCGX_OpenSocket(options_.socket.c_str(), kBacklog);
    ::umask(old_mask);
    if (listen_fd_ < 0) {
      error = "cannot listen on '" + options_.socket + "': " + std::strerror(errno);
      return false;
    }
    if (unix_path) {
      own_socket_path_ = true;
      ::chmod(options_.socket.c_str(), static_cast<mode_t>(options_.socket_mode));
    }
  }
  // Non-blocking: with spawn-fcgi -F N several processes share this socket,
  // and the losers of an accept race must not block.
  set_nonblocking(listen_fd_);
  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
    return false;
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    error = std::string("epoll_create1: ") + std::strerror(errno);
    return false;
  }
  epoll_event ev{};
  // Not EPOLLEXCLUSIVE: with spawn-fcgi -F N every process gets a chance at a
  // new connection (the losers' accept just says EAGAIN), so a burst spreads
  // over the processes instead of piling onto whichever one the kernel picks.
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // nullptr: the listening socket
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) {
    error = std::string("epoll_ctl(listen): ") + std::strerror(errno);
    return false;
  }
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.ptr = wake_pipe_;  // the wake-up pipe
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_pipe_[0], &wake) != 0) {
    error = std::string("epoll_ctl(pipe): ") + std::strerror(errno);
    return false;
  }
  return true;
}

void FcgiServer::start() {
  running_ = options_.threads;
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { worker(); });
}

bool FcgiServer::stop() {
  stopping_ = true;
  if (wake_pipe_[1] >= 0) {
    const char byte = 'x';
    [[maybe_unused]] const ssize_t n = ::write(wake_pipe_[1], &byte, 1);
  }
  // Idle workers see the (never drained) wake-up pipe and exit; busy ones
  // finish their request first.
  const auto deadline = std::chrono::steady_clock::now() + options_.drain_deadline;
  // Requests waiting on Pipwave hold no worker: wait for them too.
  while ((running_.load() > 0 || in_flight_.load() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool clean = running_.load() == 0 && in_flight_.load() == 0;
  for (auto& t : threads_) {
    if (clean) {
      t.join();
    } else {
      t.detach();  // the process is about to exit; see main
    }
  }
  threads_.clear();
  if (clean) {
    // Idle kept connections: nginx sees them close and opens new ones elsewhere.
    std::lock_guard<std::mutex> lock(conns_mutex_);
    for (Connection* conn : conns_) {
      FCGX_Free(&conn->request, 1);
      delete conn;
    }
    conns_.clear();
  }
  return clean;
}

void FcgiServer::run_until_signal(const std::function<void()>& on_reload) {
  const sigset_t set = handled_signals();
  const timespec tick{0, 50 * 1000 * 1000};
  while (true) {
    // Every 50 ms without a signal: write out log lines batched for too long.
    const int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig < 0) {
      log_.flush_stale();
      continue;
    }
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

void FcgiServer::watch(Connection* conn) {
  std::unique_lock<std::mutex> lock(conn->handoff);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = conn;
  // MOD for a connection seen before, ADD for a new one.
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn->request.ipcFd, &ev) != 0 &&
      (errno != ENOENT || ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, conn->request.ipcFd, &ev) != 0)) {
    const int error = errno;
    lock.unlock();  // close_connection destroys the connection and its mutex
    log_.warn(std::string("epoll_ctl(connection): ") + std::strerror(error));
    close_connection(conn);
  }
}

void FcgiServer::accept_one() {
  int fd;
  do {
    fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
  if (fd < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      log_.warn(std::string("accept: ") + std::strerror(errno));
      // Out of fds or memory: back off briefly rather than spin.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return;  // EAGAIN: another worker (or process) took it
  }
  auto* conn = new Connection;
  // listen_sock -1: should libfcgi ever try to accept on its own (after
  // nginx closed this connection), it fails instead of stealing one.
  FCGX_InitRequest(&conn->request, -1, 0);
  conn->request.ipcFd = fd;
  // Makes FCGX_Accept_r's leading Finish keep the fd we just set; the
  // request's own FCGI_KEEP_CONN flag then decides for real.
  conn->request.keepConnection = 1;
  {
    std::lock_guard<std::mutex> lock(conns_mutex_);
    conns_.insert(conn);
  }
  watch(conn);
}

void FcgiServer::close_connection(Connection* conn) {
  {
    std::lock_guard<std::mutex> lock(conns_mutex_);
    conns_.erase(conn);
  }
  FCGX_Free(&conn->request, 1);  // closing the fd also removes it from epoll
  delete conn;
}

void FcgiServer::serve_connection(Connection* conn) {
  // The connection is readable: a request, or EOF (nginx closed it).
  if (FCGX_Accept_r(&conn->request) < 0) {
    close_connection(conn);
    return;
  }
  in_flight_.fetch_add(1);
  log_.hold();  // this thread's log line may wait for a busier one's (Logger::hold)
  serve(conn);  // finish(conn) runs now, or once Pipwave answered
  log_.release();
}

void FcgiServer::finish(Connection* conn, const HttpReply* reply) {
  FCGX_Request& request = conn->request;
  if (reply != nullptr) {
    // One buffer per thread, reused: a reply allocates nothing here.
    thread_local std::string head;
    head.clear();
    head += "Status: ";
    head += std::to_string(reply->status);
    head += ' ';
    head += reason_phrase(reply->status);
    head += "\r\nContent-Type: ";
    head += reply->content_type;
    head += "\r\n";
    for (const auto& [name, value] : reply->headers) {
      head += name;
      head += ": ";
      head += value;
      head += "\r\n";
    }
    head += "Content-Length: ";
    head += std::to_string(reply->body.size());
    head += "\r\n\r\n";
    head += reply->body;
    FCGX_PutStr(head.data(), static_cast<int>(head.size()), request.out);
    if (!reply->log_line.empty()) {
      // nginx writes FastCGI stderr to its error log, one entry per record.
      head.assign(reply->log_line).push_back('\n');
      FCGX_PutStr(head.data(), static_cast<int>(head.size()), request.err);
    }
    if (head.capacity() > 16384) std::string().swap(head);  // after a large /metrics
  } else {
    static const char kFallback[] =
        "Status: 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        "Cache-Control: no-store\r\n\r\n"
        "{\"message\":\"Phone verification is not available.\",\"status\":500}";
    FCGX_PutStr(kFallback, sizeof kFallback - 1, request.out);
  }
  served_.fetch_add(1, std::memory_order_relaxed);
  FCGX_Finish_r(&request);
  if (request.ipcFd < 0 || stopping_.load()) {
    close_connection(conn);  // nginx did not ask to keep it, or we are stopping
  } else {
    request.keepConnection = 1;  // see accept_one()
    watch(conn);
  }
  in_flight_.fetch_sub(1);
}

void FcgiServer::worker() {
  epoll_event event{};
  while (true) {
    const int n = ::epoll_wait(epoll_fd_, &event, 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_.error(std::string("epoll_wait: ") + std::strerror(errno));
      break;
    }
    if (n == 0) continue;
    void* tag = event.data.ptr;
    if (tag == wake_pipe_) break;  // stopping: level-triggered, every idle worker sees it
    if (tag == nullptr) {
      accept_one();
      continue;
    }
    auto* conn = static_cast<Connection*>(tag);
    { std::lock_guard<std::mutex> sync(conn->handoff); }  // see Connection::handoff
    serve_connection(conn);
  }
  running_.fetch_sub(1);
}

void FcgiServer::serve(Connection* conn) {
  FCGX_Request& request = conn->request;
  Exchange& ex = conn->ex;
  ex.reset();
  HttpRequest& http = ex.request;
  try {
    handler_.begin(ex);  // the snapshot whose body limit the read below uses
    const Params p(request.envp);
    http.method = text(p.method);
    http.path = text(p.document_uri);
    if (http.path.empty()) http.path = text(p.script_name);
    http.content_type = text(p.content_type);
    const std::string_view length = p.content_length == nullptr ? "" : p.content_length;
    if (!length.empty() && length.size() <= 18 &&
        length.find_first_not_of("0123456789") == std::string_view::npos) {
      http.content_length = static_cast<std::size_t>(std::stoull(std::string(length)));
    }
    http.merchant_given = p.merchant != nullptr;
    http.merchant = text(p.merchant);
    http.remote_addr = text(p.remote_addr);
    http.request_id = text(p.request_id);
    http.origin = text(p.origin);
    http.referer = text(p.referer);
    for (char** e = request.envp; e != nullptr && *e != nullptr; ++e) {
      const std::string_view kv = *e;
      const std::size_t eq = kv.find('=');
      if (eq != std::string_view::npos)
        http.params.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }

    // Read at most limit + 1 bytes: enough to tell "over the limit".
    const std::size_t want = std::min(http.content_length, ex.max_body_bytes() + 1);
    http.body.resize(want);
    std::size_t got = 0;
    while (got < want) {
      const int n = FCGX_GetStr(&http.body[got], static_cast<int>(want - got), request.in);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    http.body.resize(got);
    drain_body(request, http.content_length > got ? http.content_length - got : 0);
  } catch (const std::exception& e) {
    log_.error(std::string("request failed: ") + e.what());
    finish(conn, nullptr);
    return;
  }
  ex.resume = [this, conn](Exchange& done) {
    handler_.complete(done);
    log_.hold();
    finish(conn, &done.reply);
    log_.release();
  };
  if (handler_.run(ex)) finish(conn, &ex.reply);
}

void FcgiServer::drain_body(FCGX_Request& request, std::size_t unread) {
  // Consume what is left of the body so a kept connection stays in sync.
  char sink[4096];
  std::size_t drained = 0;
  while (unread > 0 && drained < kMaxDrainBytes) {
    const int n = FCGX_GetStr(sink, sizeof sink, request.in);
    if (n <= 0) break;
    drained += static_cast<std::size_t>(n);
    unread = unread > static_cast<std::size_t>(n) ? unread - static_cast<std::size_t>(n) : 0;
  }
  if (unread > 0) request.keepConnection = 0;  // give up on this connection rather than desync
}

}  // namespace pvgate
