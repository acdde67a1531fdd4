// The local throttle store: one LMDB file shared by every worker process and
// thread on the host (spawn-fcgi -F N gets one set of counts, not N), which
// survives a worker crash or restart. The only user of LMDB.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "throttle_store.h"

namespace pvgate {

struct LmdbStoreOptions {
  std::string path;                  // directory; created if missing
  std::size_t max_bytes = 64 << 20;  // the store never grows past this
  std::size_t sweep_per_write = 8;   // expired entries reclaimed by each write
};

class LmdbStore final : public ThrottleStore {
 public:
  // Opens or creates the store; throws std::runtime_error with a message
  // naming the path when it cannot.
  explicit LmdbStore(const LmdbStoreOptions& options);
  ~LmdbStore() override;
  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  StoreStatus check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                               ThrottleDecision& out) override;
  StoreStatus refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) override;
  StoreStatus peek(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                   ThrottleDecision& out) override;
  StoreStatus session_open(const std::string& key, const std::string& owner, std::int64_t now_ms,
                           std::int64_t ttl_ms) override;
  StoreStatus session_attempt(const std::string& key, const std::string& owner,
                              std::uint32_t max_attempts, std::int64_t now_ms,
                              SessionAttempt& out) override;
  StoreStatus session_consume(const std::string& key, const std::string& owner, std::int64_t now_ms,
                              bool& consumed) override;
  StoreStatus claim_once(const std::string& key, std::int64_t now_ms, std::int64_t ttl_ms,
                         bool& fresh) override;
  StoreStatus ping() override;
  Usage usage() override;

  // Deletes every entry expired at `now_ms`; returns how many (tests, and the
  // retry when the map is full).
  std::size_t sweep_all(std::int64_t now_ms);
  std::size_t entries();

  struct Env;

 private:
  enum class Attempt { done, full, failed };
  Attempt try_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                     ThrottleDecision& out);

  LmdbStoreOptions options_;
  std::unique_ptr<Env> env_;
  // Where the incremental sweep resumes; only touched inside a write
  // transaction, which LMDB serialises across threads and processes.
  std::string sweep_cursor_;
};

}  // namespace pvgate
