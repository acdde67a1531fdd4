// LmdbFactory for the store contract suite: a fresh store in a private
// directory per test case, removed when the store is destroyed.
#pragma once

#include <memory>

#include "lmdb_store.h"
#include "temp_dir.h"

namespace pvgate_test {

// Owns the directory and the store living in it.
class TempLmdbStore final : public pvgate::ThrottleStore {
 public:
  explicit TempLmdbStore(std::size_t max_bytes = 16 << 20)
      : store_(pvgate::LmdbStoreOptions{dir_.path() + "/throttle", max_bytes, 8}) {}
  pvgate::StoreStatus check_and_commit(const std::vector<pvgate::ThrottleHit>& hits,
                                       std::int64_t now_ms,
                                       pvgate::ThrottleDecision& out) override {
    return store_.check_and_commit(hits, now_ms, out);
  }
  pvgate::StoreStatus refund(const std::vector<pvgate::ThrottleHit>& hits,
                             std::int64_t now_ms) override {
    return store_.refund(hits, now_ms);
  }
  pvgate::StoreStatus peek(const std::vector<pvgate::ThrottleHit>& hits, std::int64_t now_ms,
                           pvgate::ThrottleDecision& out) override {
    return store_.peek(hits, now_ms, out);
  }
  pvgate::StoreStatus session_open(const std::string& key, const std::string& owner,
                                   std::int64_t now_ms, std::int64_t ttl_ms) override {
    return store_.session_open(key, owner, now_ms, ttl_ms);
  }
  pvgate::StoreStatus session_attempt(const std::string& key, const std::string& owner,
                                      std::uint32_t max_attempts, std::int64_t now_ms,
                                      pvgate::SessionAttempt& out) override {
    return store_.session_attempt(key, owner, max_attempts, now_ms, out);
  }
  pvgate::StoreStatus session_consume(const std::string& key, const std::string& owner,
                                      std::int64_t now_ms, bool& consumed) override {
    return store_.session_consume(key, owner, now_ms, consumed);
  }
  pvgate::StoreStatus claim_once(const std::string& key, std::int64_t now_ms, std::int64_t ttl_ms,
                                 bool& fresh) override {
    return store_.claim_once(key, now_ms, ttl_ms, fresh);
  }
  pvgate::StoreStatus ping() override { return store_.ping(); }
  pvgate::LmdbStore& store() { return store_; }
  const std::string& dir() const { return dir_.path(); }

 private:
  TempDir dir_;  // declared first: outlives the store
  pvgate::LmdbStore store_;
};

}  // namespace pvgate_test

struct LmdbFactory {
  static std::unique_ptr<pvgate::ThrottleStore> make() {
    return std::make_unique<pvgate_test::TempLmdbStore>();
  }
};
