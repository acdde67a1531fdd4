#include "fcgi_server.h"

#include <fcgiapp.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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
constexpr int kKeptPollSliceMs = 100;  // how often an idle kept connection re-checks for starvation

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

std::string param(FCGX_Request& r, const char* name) {
  const char* v = FCGX_GetParam(name, r.envp);
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

}  // namespace

void block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, nullptr);
}

FcgiServer::FcgiServer(ServerOptions options, Handler& handler, Logger& log)
    : options_(std::move(options)), handler_(handler), log_(log) {}

FcgiServer::~FcgiServer() {
  if (!threads_.empty()) stop();
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
  set_nonblocking(listen_fd_);
  if (::pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    error = std::string("pipe2: ") + std::strerror(errno);
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
  const auto deadline = std::chrono::steady_clock::now() + options_.drain_deadline;
  while (running_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool clean = running_.load() == 0;
  for (auto& t : threads_) {
    if (clean) {
      t.join();
    } else {
      t.detach();  // the process is about to exit; see main
    }
  }
  threads_.clear();
  return clean;
}

void FcgiServer::run_until_signal(const std::function<void()>& on_reload) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (on_reload) on_reload();
      continue;
    }
    log_.info(std::string("signal ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
              ": finishing requests in flight");
    return;
  }
}

// Waits until `request` has something to read: a new request on its kept
// connection, or a new connection on the listening socket. False on stop.
bool FcgiServer::wait_for_work(FCGX_Request& request) {
  if (request.ipcFd < 0) {
    free_threads_.fetch_add(1);
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    int rc;
    do {
      rc = ::poll(fds, 2, -1);
    } while (rc < 0 && errno == EINTR);
    free_threads_.fetch_sub(1);
    return !stopping_.load();
  }

  // A kept-alive connection: nginx may send the next request on it, or never.
  const auto idle_since = std::chrono::steady_clock::now();
  while (!stopping_.load()) {
    const bool starving = free_threads_.load() == 0;
    pollfd fds[3] = {{request.ipcFd, POLLIN, 0},
                     {wake_pipe_[0], POLLIN, 0},
                     {starving ? listen_fd_ : -1, POLLIN, 0}};
    const int rc = ::poll(fds, 3, kKeptPollSliceMs);
    if (rc < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) return true;  // data or EOF: FCGX_Accept_r handles both
    if (fds[1].revents != 0) break;        // stopping
    if (fds[2].revents != 0 && free_threads_.load() == 0) break;  // others need this thread
    if (std::chrono::steady_clock::now() - idle_since > options_.keepalive_idle) break;
  }
  FCGX_Free(&request, 1);  // close the idle kept connection; nginx reconnects as needed
  return !stopping_.load();
}

void FcgiServer::worker() {
  FCGX_Request request;
  FCGX_InitRequest(&request, listen_fd_, 0);
  while (!stopping_.load()) {
    if (!wait_for_work(request)) break;
    const int rc = FCGX_Accept_r(&request);
    if (rc < 0) {
      // EAGAIN: another thread won the accept race; a closed kept connection
      // also lands here. Anything else is logged and retried.
      if (rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR && rc != -ECONNABORTED) {
        log_.warn(std::string("FCGX_Accept_r failed: ") + std::strerror(-rc));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      continue;
    }
    serve(request);
    FCGX_Finish_r(&request);
  }
  FCGX_Free(&request, 1);
  running_.fetch_sub(1);
}

void FcgiServer::serve(FCGX_Request& request) {
  HttpRequest http;
  std::size_t unread = 0;
  try {
    http.method = param(request, "REQUEST_METHOD");
    http.path = param(request, "DOCUMENT_URI");
    if (http.path.empty()) http.path = param(request, "SCRIPT_NAME");
    http.content_type = param(request, "CONTENT_TYPE");
    const std::string length = param(request, "CONTENT_LENGTH");
    if (!length.empty() && length.size() <= 18 &&
        length.find_first_not_of("0123456789") == std::string::npos) {
      http.content_length = static_cast<std::size_t>(std::stoull(length));
    }
    const char* merchant = FCGX_GetParam("PVGATE_MERCHANT", request.envp);
    http.merchant_given = merchant != nullptr;
    if (merchant != nullptr) http.merchant = merchant;
    http.remote_addr = param(request, "REMOTE_ADDR");
    http.request_id = param(request, "PVGATE_REQUEST_ID");

    // Read at most limit + 1 bytes: enough to tell "over the limit".
    const std::size_t want = std::min(http.content_length, options_.max_body_bytes + 1);
    http.body.resize(want);
    std::size_t got = 0;
    while (got < want) {
      const int n = FCGX_GetStr(&http.body[got], static_cast<int>(want - got), request.in);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    http.body.resize(got);
    unread = http.content_length > got ? http.content_length - got : 0;

    const HttpReply reply = handler_.handle(http);
    std::string head = "Status: " + std::to_string(reply.status) + " " +
                       std::string(reason_phrase(reply.status)) + "\r\n";
    head += "Content-Type: application/json\r\n";
    for (const auto& [name, value] : reply.headers) head += name + ": " + value + "\r\n";
    head += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n\r\n";
    FCGX_PutStr(head.data(), static_cast<int>(head.size()), request.out);
    FCGX_PutStr(reply.body.data(), static_cast<int>(reply.body.size()), request.out);
  } catch (const std::exception& e) {
    log_.error(std::string("request failed: ") + e.what());
    static const char kFallback[] =
        "Status: 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        "Cache-Control: no-store\r\n\r\n"
        "{\"message\":\"Phone verification is not available.\",\"status\":500}";
    FCGX_PutStr(kFallback, sizeof kFallback - 1, request.out);
  }
  served_.fetch_add(1, std::memory_order_relaxed);

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
