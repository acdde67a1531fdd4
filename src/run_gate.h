// How many of pvgate's worker threads run at once.
//
// --threads bounds the requests a process works on at once, including those
// whose worker waits on a network round trip to Redis. Were every idle one
// of them waiting in epoll_wait, each event would wake a sleeper even while
// the running workers are about to take it: with 64 threads on 2 cores, one
// context switch per request and dozens of threads on the run queue
// (measured: a third less throughput than 8 threads; issue 16).
//
// So a RunGate lets at most `limit` workers run (poll, parse, decide, write);
// the others wait as spares on a condition variable. A worker about to wait
// on the network marks it with a BlockingSection: while it waits, it does not
// count, and a spare takes its place if one is needed. When the wait is over
// it runs at once (never queued mid-request); a worker over the limit steps
// back between requests, in admit(). Windows' I/O completion ports do the same
// with their concurrency value; this is the user-space version, in which
// only the waits pvgate knows of (Redis) count as blocking.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace pvgate {

class RunGate {
 public:
  // limit >= 1: workers that may run at once.
  explicit RunGate(int limit);

  // A worker thread starts running (counted) / ends.
  void arrive();
  void depart();
  // Between requests: returns at once while at most `limit` run, else waits
  // as a spare until one stops running. False once stop() was called.
  bool admit();
  // Wakes every spare; admit() returns false from then on.
  void stop();

  // The calling thread's gate (set by the worker that runs it), for
  // BlockingSection. nullptr outside worker threads.
  static RunGate*& current();

  int limit() const { return limit_; }
  int running() const { return running_.load(); }

 private:
  friend class BlockingSection;
  void block_begin();
  void block_end();
  void wake_spare_if_room();

  const int limit_;
  std::atomic<int> running_{0};
  std::atomic<int> spares_{0};
  std::atomic<bool> stopped_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
};

// Around a call that waits on the network (a Redis command): the worker does
// not count against its gate's limit meanwhile. Does nothing outside a
// worker thread.
class BlockingSection {
 public:
  // A section inside another counts once: the outer one clears current().
  BlockingSection() : gate_(RunGate::current()) {
    if (gate_ == nullptr) return;
    RunGate::current() = nullptr;
    gate_->block_begin();
  }
  ~BlockingSection() {
    if (gate_ == nullptr) return;
    gate_->block_end();
    RunGate::current() = gate_;
  }
  BlockingSection(const BlockingSection&) = delete;
  BlockingSection& operator=(const BlockingSection&) = delete;

 private:
  RunGate* gate_;
};

}  // namespace pvgate
