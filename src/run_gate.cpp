#include "run_gate.h"

#include <algorithm>

namespace pvgate {

RunGate::RunGate(int limit) : limit_(std::max(1, limit)) {}

RunGate*& RunGate::current() {
  thread_local RunGate* gate = nullptr;
  return gate;
}

void RunGate::arrive() {
  running_.fetch_add(1);
}

void RunGate::depart() {
  running_.fetch_sub(1);
  wake_spare_if_room();
}

bool RunGate::admit() {
  if (stopped_.load()) return false;
  if (running_.load() <= limit_) return true;  // the common case: no lock
  std::unique_lock<std::mutex> lock(mutex_);
  if (running_.load() <= limit_) return !stopped_.load();
  // Step back. A worker that stops running (block_begin, depart) after this
  // sees spares_ > 0 and notifies under the mutex; one that did so before
  // left running_ < limit_ for the predicate (both sequentially consistent).
  running_.fetch_sub(1);
  spares_.fetch_add(1);
  cv_.wait(lock, [this] { return stopped_.load() || running_.load() < limit_; });
  spares_.fetch_sub(1);
  running_.fetch_add(1);
  return !stopped_.load();
}

void RunGate::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void RunGate::block_begin() {
  running_.fetch_sub(1);
  wake_spare_if_room();
}

void RunGate::block_end() {
  // Runs at once, over the limit if need be: it holds a request. The excess
  // steps back at its next admit().
  running_.fetch_add(1);
}

void RunGate::wake_spare_if_room() {
  if (spares_.load() > 0 && running_.load() < limit_) {
    std::lock_guard<std::mutex> lock(mutex_);
    cv_.notify_one();
  }
}

}  // namespace pvgate
