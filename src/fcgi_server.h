// The FastCGI side: a pool of worker threads sharing one epoll set. The only
// user of libfcgi.
//
// Why not libfcgi's threaded.c pattern (threads blocking in FCGX_Accept_r
// behind one accept mutex): with nginx's `fastcgi_keep_conn on` a thread that
// finished a request blocks reading the next one on its kept connection, and
// nginx may never send one there, so threads get pinned to idle connections
// until none is left to accept (the classic deadlock). Closing an idle kept
// connection to free the thread is no cure either: nginx may already be
// writing a request into it, and it does not retry a POST, so the browser
// would get a 502.
//
// So connections, not threads, wait: the listening socket and every idle
// connection sit in one epoll set (connections one-shot). An idle worker
// waits in epoll_wait for one event: on the listening socket it accepts one
// connection and arms it; on a readable connection it calls FCGX_Accept_r
// (which reads the request from that connection), serves it, and re-arms the
// connection if nginx asked to keep it. Idle kept connections cost no thread;
// nor does a request waiting on Pipwave: the handler hands its call to the
// upstream's event loop, which finishes the request when the answer comes;
// and only an idle worker accepts,
// so a busy process leaves new connections in the shared listen backlog for
// its spawn-fcgi -F siblings (and a crash of it cannot lose them).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "handler.h"
#include "log.h"

struct FCGX_Request;

namespace pvgate {

struct Connection;

struct ServerOptions {
  std::string socket;  // "" = fd 0; "/path" or "host:port" = open it
  int socket_mode = 0660;
  int threads = 16;
  std::size_t max_body_bytes = 4096;                // read at most this + 1 bytes of a body
  std::chrono::milliseconds drain_deadline{15000};  // how long SIGTERM waits for requests in flight
};

class FcgiServer {
 public:
  FcgiServer(ServerOptions options, Handler& handler, Logger& log);
  ~FcgiServer();

  // Opens (or adopts fd 0 as) the listening socket. False + message on error.
  bool listen(std::string& error);

  // Starts the workers; returns at once.
  void start();
  // Stops accepting, lets requests in flight finish (up to drain_deadline).
  // Returns false if some thread was still busy at the deadline.
  bool stop();

  // SIGTERM/SIGINT/SIGHUP must already be blocked in all threads (see
  // block_signals()). Waits for them: SIGHUP calls `on_reload`; SIGTERM or
  // SIGINT returns. Then call stop().
  void run_until_signal(const std::function<void()>& on_reload);

  std::size_t requests_served() const { return served_.load(); }

 private:
  void worker();
  void accept_one();
  void serve_connection(Connection* conn);
  void watch(Connection* conn);  // (re)arm a connection in epoll, one-shot
  void close_connection(Connection* conn);
  void serve(Connection* conn);
  // Writes the reply (null: a fixed 500), ends the request and re-arms or
  // closes the connection. Runs on the worker, or on the upstream's thread.
  void finish(Connection* conn, const HttpReply* reply);
  void drain_body(::FCGX_Request& request, std::size_t unread);

  ServerOptions options_;
  Handler& handler_;
  Logger& log_;
  int listen_fd_ = -1;
  bool own_socket_path_ = false;
  int epoll_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::atomic<int> running_{0};
  std::atomic<int> in_flight_{0};  // requests read and not yet answered
  std::atomic<std::size_t> served_{0};

  // Every open connection, so shutdown can close the idle ones.
  std::mutex conns_mutex_;
  std::unordered_set<Connection*> conns_;

  std::vector<std::thread> threads_;
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every
// thread it starts afterwards) and ignores SIGPIPE. Call first in main.
void block_signals();

}  // namespace pvgate
