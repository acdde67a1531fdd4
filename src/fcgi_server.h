// The FastCGI side: a pool of threads, each accepting with FCGX_Accept_r on a
// shared listening socket. The only user of libfcgi.
//
// Why not libfcgi's threaded.c pattern (one accept mutex): with nginx's
// `fastcgi_keep_conn on`, FCGX_Accept_r on a kept connection blocks reading
// the next request while holding that mutex, and nginx may never send one on
// that connection: every other thread waits forever. Here no lock is held
// while waiting; each thread polls its own kept connection, the listening
// socket (non-blocking, so losers of an accept race just poll again) and a
// wake-up pipe, and gives up an idle kept connection when new connections
// are waiting and no thread is free to take them.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "handler.h"
#include "log.h"

struct FCGX_Request;

namespace pvgate {

struct ServerOptions {
  std::string socket;  // "" = fd 0; "/path" or "host:port" = open it
  int socket_mode = 0660;
  int threads = 16;
  std::size_t max_body_bytes = 4096;                // read at most this + 1 bytes of a body
  std::chrono::milliseconds drain_deadline{15000};  // how long SIGTERM waits for requests in flight
  std::chrono::milliseconds keepalive_idle{60000};  // an idle kept connection is closed after this
};

class FcgiServer {
 public:
  FcgiServer(ServerOptions options, Handler& handler, Logger& log);
  ~FcgiServer();

  // Opens (or adopts fd 0 as) the listening socket. False + message on error.
  bool listen(std::string& error);

  // Serves until stop() or a SIGTERM/SIGINT delivered through run_until_signal().
  void start();
  // Stops accepting, lets requests in flight finish (up to drain_deadline).
  // Returns false if some thread was still busy at the deadline.
  bool stop();

  // Blocks SIGTERM/SIGINT/SIGHUP must already be blocked in all threads (see
  // block_signals()). Waits for them: SIGHUP calls `on_reload`; SIGTERM or
  // SIGINT returns. Then call stop().
  void run_until_signal(const std::function<void()>& on_reload);

  std::size_t requests_served() const { return served_.load(); }

 private:
  void worker();
  bool wait_for_work(::FCGX_Request& request);
  void serve(::FCGX_Request& request);

  ServerOptions options_;
  Handler& handler_;
  Logger& log_;
  int listen_fd_ = -1;
  bool own_socket_path_ = false;
  int wake_pipe_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::atomic<int> free_threads_{0};  // threads waiting with no connection
  std::atomic<int> running_{0};
  std::atomic<std::size_t> served_{0};
  std::vector<std::thread> threads_;
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every
// thread it starts afterwards) and ignores SIGPIPE. Call first in main.
void block_signals();

}  // namespace pvgate
