// The FastCGI side: worker threads sharing one epoll set, every socket
// non-blocking, requests assembled by fcgi_protocol's parser before a worker
// runs them. Only workers write to FastCGI sockets.
//
// Why not libfcgi's threaded.c pattern (threads blocking in FCGX_Accept_r
// behind one accept mutex): with nginx's `fastcgi_keep_conn on` a thread that
// finished a request blocks reading the next one on its kept connection, and
// nginx may never send one there, so threads get pinned to idle connections
// until none is left to accept (the classic deadlock). Closing an idle kept
// connection to free the thread is no cure either: nginx may already be
// writing a request into it, and it does not retry a POST, so the browser
// would get a 502. And any blocking read lets a client that sends one byte
// and stops hold a thread: a dozen such connections froze every worker.
//
// So connections, not threads, wait, and nobody blocks on a socket: the
// listening socket and every connection sit in one epoll set (connections
// EPOLLONESHOT, so one worker at a time owns one). An idle worker waits in
// epoll_wait for one event:
//   - the listening socket: it accepts one connection and reads what is there;
//   - a readable connection: it reads what is there (at most kMaxReadPerWake)
//     into the connection's parser. A request that is not whole yet costs no
//     thread: the connection is re-armed and the worker goes back to
//     epoll_wait. A whole request runs on that worker (Handler::run);
//   - the upstream's poll fd (ServerOptions::polled: CurlUpstream with
//     Driver::external, one-shot like the listening socket): a Pipwave
//     socket is ready; the worker drives the upstream (Polled::drive), and
//     of the requests whose answer that turn finished it completes the first
//     itself (Handler::complete, then the reply) and queues the others;
//   - the completion eventfd: such a queued request (or one answered on
//     another thread: its `resume` only queues the connection and writes the
//     eventfd); the worker calls Handler::complete and writes the reply.
// A reply is written non-blocking in one write(2) in the common case; what
// the socket does not take waits in the connection's buffer with EPOLLOUT
// armed. Only an idle worker accepts, so a busy process leaves new
// connections in the shared listen backlog for its spawn-fcgi -F siblings
// (and a crash of it cannot lose them). The listening socket is EPOLLONESHOT
// in each process's set: one worker of a process is woken for it and re-arms
// it right after its accept4, so the next connection can go to another idle
// worker. (Level-triggered, each event re-queued itself and woke the next
// sleeper, which usually found EAGAIN: with 64 threads and nginx opening a
// connection for every client beyond its `keepalive`, a chain of useless
// wake-ups per connection.) Not EPOLLEXCLUSIVE: that spreads one socket over
// several epoll sets; with -F N every process still gets a chance at a new
// connection, so a burst spreads over the processes.
//
// At most max(8, 2 x cores) workers run at once (run_gate.h); more
// --threads wait as spares and run only while others wait on Redis. Without
// it, each of 64 threads idle in epoll_wait was woken for an event a running
// worker was about to take: a context switch per request (issue 16).
//
// Each connection is in exactly one state, and only its owner touches it:
//   armed     in epoll waiting to be readable (idle between requests, or
//             holding part of one); owned by epoll, the sweep may close it
//   busy      a worker reads, runs or writes it
//   upstream  its request waits on Pipwave; nobody touches it until resume
//   writing   in epoll waiting to be writable, a reply pending; the sweep
//             may close it
// Connections live in slots that are never freed while the server lives; an
// epoll event carries slot index + generation, and closing a connection bumps
// the generation, so a stale event (one a worker took from epoll_wait just as
// another thread closed that connection) is recognised and dropped: no thread
// can reach a connection it does not own, nor a freed one.
//
// Deadlines (limits.read_timeout_ms, limits.write_timeout_ms, read from the
// current config snapshot, so a reload applies at once): a connection holding
// part of a request (any byte received, request not whole) is closed after
// read_timeout_ms; a reply its reader has not taken within write_timeout_ms
// of the first write that could not complete is dropped with the connection.
// An idle kept-alive connection has no deadline (see above: nginx may be
// writing to it). sweep() enforces them, called every 50 ms from
// run_until_signal (and stop()): no timer thread; pvgate's threads are the
// workers (which also drive the calls to Pipwave, ServerOptions::polled) and
// main.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "fcgi_protocol.h"
#include "handler.h"
#include "log.h"
#include "polled.h"
#include "run_gate.h"

namespace pvgate {

struct Connection;

struct ServerOptions {
  std::string socket;  // "" = fd 0; else a --socket value (listen_address.h)
  int socket_mode = 0660;
  int threads = 16;
  // Workers that may run at once (run_gate.h); 0: default_threads(), what
  // --threads defaults to, so more threads only add room for Redis waits.
  int running = 0;
  std::chrono::milliseconds drain_deadline{15000};  // how long SIGTERM waits for requests in flight
  // Driven by the workers from their epoll set (the upstream's calls); it
  // must outlive the server. Null: none.
  Polled* polled = nullptr;
};

class FcgiServer {
 public:
  // Bytes a worker reads from one connection per event before it lets
  // other connections have a turn (it re-arms; epoll reports it again).
  static constexpr std::size_t kMaxReadPerWake = 256 * 1024;
  // At most this many connections at once (what GET_VALUES answers); more
  // are accepted and closed. The fd limit (RLIMIT_NOFILE) usually comes first.
  static constexpr std::uint32_t kMaxConnections = fcgi::kMaxConnsAnswer;

  // `config` gives the deadlines (read each sweep).
  FcgiServer(ServerOptions options, Handler& handler, const ConfigHolder& config, Logger& log);
  ~FcgiServer();
  FcgiServer(const FcgiServer&) = delete;
  FcgiServer& operator=(const FcgiServer&) = delete;

  // Opens (or adopts fd 0 as) the listening socket. False + message on error.
  bool listen(std::string& error);

  // Starts the workers; returns at once.
  void start();
  // Stops accepting, closes idle connections, and keeps the workers running
  // until every connection is done (requests waiting on Pipwave answered,
  // replies written) or drain_deadline; then stops the workers. Returns
  // false if something was still in progress at the deadline (the workers
  // are then detached: exit the process).
  bool stop();

  // SIGTERM/SIGINT/SIGHUP must already be blocked in all threads (see
  // block_signals()). Waits for them: SIGHUP calls `on_reload`; SIGTERM or
  // SIGINT returns. Every 50 ms meanwhile: sweep() and the log's stale lines.
  void run_until_signal(const std::function<void()>& on_reload);

  // Closes connections past their read or write deadline. Any thread.
  void sweep();

  std::size_t requests_served() const { return served_.load(); }
  // Connections open now (for tests and the shutdown drain).
  std::size_t connections() const { return open_.load(); }

 private:
  void worker();
  // Re-arms one of the server's own one-shot fds (tagged `which`).
  void rearm(int fd, std::uint32_t events, std::uint32_t which);
  void accept_one();
  // Runs a connection this worker owns until it is handed off (armed,
  // writing, upstream) or closed.
  void drive(Connection& conn);
  // Runs a whole request; true while this worker still owns the connection.
  bool run_request(Connection& conn);
  // After Handler::run or complete returned `done`: while the handler waits
  // on an upstream call that already answered (on this thread), completes it
  // here. False: the connection now waits for on_resume.
  bool settle(Connection& conn, bool done);
  void finish_request(Connection& conn);  // the reply into the out buffer
  void on_resume(std::uint32_t index);    // whoever drives the upstream
  void take_completion();
  // The upstream's poll fd was ready: drives it, re-arms it, and completes
  // one request it answered.
  void drive_polled();
  // Handler::complete for an answered request, its reply, then on as drive.
  void resume_request(std::uint32_t index);
  // Hands a connection this worker owns back to epoll in `state`.
  void park(Connection& conn, int state);
  void close_owned(Connection& conn);
  Connection* slot(std::uint32_t index) const;
  Connection* new_slot();

  ServerOptions options_;
  Handler& handler_;
  const ConfigHolder& config_;
  Logger& log_;
  int listen_fd_ = -1;
  bool own_socket_path_ = false;
  std::string socket_path_;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;        // eventfd, written once by stop(): every worker exits
  int completion_fd_ = -1;  // eventfd, edge-triggered: a completion is queued
  std::atomic<bool> stopping_{false};
  std::atomic<int> running_{0};
  RunGate gate_;
  std::atomic<std::size_t> open_{0};
  std::atomic<std::size_t> served_{0};

  // Slots: chunks that are allocated on demand and never freed while the
  // server lives, so an index always names the same memory.
  static constexpr std::uint32_t kSlotsPerChunk = 64;
  std::unique_ptr<std::atomic<Connection*>[]> chunks_;
  std::mutex slots_mutex_;
  std::uint32_t slot_count_ = 0;              // slots ever made (under slots_mutex_)
  std::vector<std::uint32_t> free_;           // closed slots to reuse (under slots_mutex_)
  std::atomic<std::uint32_t> high_water_{0};  // slot_count_, for the sweep

  // Connections whose Pipwave answer came in, for the workers.
  std::mutex completions_mutex_;
  std::deque<std::uint32_t> completions_;

  std::vector<std::thread> threads_;
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every
// thread it starts afterwards) and ignores SIGPIPE. Call first in main.
void block_signals();

}  // namespace pvgate
