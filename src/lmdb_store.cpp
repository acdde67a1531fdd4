#include "lmdb_store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pvgate {
namespace {

// Value layout: [int64 expires_ms][uint32 count][uint32 0][int64 stamps[count], ascending].
constexpr std::size_t kHeader = 16;

struct Log {
  std::int64_t expires_ms = 0;
  std::vector<std::int64_t> stamps;  // ascending
};

bool decode(const MDB_val& v, Log& out) {
  out.stamps.clear();
  if (v.mv_size < kHeader) return false;
  const auto* p = static_cast<const unsigned char*>(v.mv_data);
  std::uint32_t count = 0;
  std::memcpy(&out.expires_ms, p, 8);
  std::memcpy(&count, p + 8, 4);
  if (count > kMaxRuleLimit || v.mv_size != kHeader + 8 * static_cast<std::size_t>(count)) {
    return false;
  }
  out.stamps.resize(count);
  if (count > 0) std::memcpy(out.stamps.data(), p + kHeader, 8 * count);
  return true;
}

void encode(const Log& log, std::string& out) {
  out.resize(kHeader + 8 * log.stamps.size());
  const auto count = static_cast<std::uint32_t>(log.stamps.size());
  std::memcpy(&out[0], &log.expires_ms, 8);
  std::memcpy(&out[8], &count, 4);
  std::memset(&out[12], 0, 4);
  if (count > 0) std::memcpy(&out[kHeader], log.stamps.data(), 8 * log.stamps.size());
}

MDB_val as_val(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// Events of `log` inside the window ending at `now`, for `hit`; the wait
// until a slot frees (0 when one is free now).
std::int64_t wait_for(const Log& log, const ThrottleHit& hit, std::int64_t now) {
  const std::int64_t floor = now - hit.period_ms;
  const auto first_live = std::upper_bound(log.stamps.begin(), log.stamps.end(), floor);
  const auto live = static_cast<std::size_t>(log.stamps.end() - first_live);
  if (live < hit.limit) return 0;
  // The limit-th newest event decides when a slot frees.
  const std::int64_t pivot = *(log.stamps.end() - hit.limit);
  // An event stamped later than `now` (another worker's clock read a moment
  // after ours) must not make the wait longer than one period.
  return std::clamp<std::int64_t>(pivot + hit.period_ms - now, 1, hit.period_ms);
}

void record(Log& log, const ThrottleHit& hit, std::int64_t now) {
  const std::int64_t floor = now - hit.period_ms;
  log.stamps.erase(log.stamps.begin(),
                   std::upper_bound(log.stamps.begin(), log.stamps.end(), floor));
  log.stamps.insert(std::upper_bound(log.stamps.begin(), log.stamps.end(), now), now);
  if (log.stamps.size() > hit.limit) {
    log.stamps.erase(log.stamps.begin(), log.stamps.end() - hit.limit);
  }
  log.expires_ms = log.stamps.back() + hit.period_ms;
}

// RAII for a transaction that aborts unless committed.
class Txn {
 public:
  Txn(MDB_env* env, unsigned flags) { rc_ = mdb_txn_begin(env, nullptr, flags, &txn_); }
  ~Txn() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  int begin_rc() const { return rc_; }
  MDB_txn* get() const { return txn_; }
  int commit() {
    const int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    return rc;
  }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_ = 0;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = mdb_cursor_open(txn, dbi, &cursor_); }
  ~Cursor() {
    if (cursor_ != nullptr) mdb_cursor_close(cursor_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  MDB_cursor* get() const { return rc_ == 0 ? cursor_ : nullptr; }

 private:
  MDB_cursor* cursor_ = nullptr;
  int rc_ = 0;
};

void make_dirs(const std::string& path) {
  for (std::size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      const std::string part = path.substr(0, pos);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        throw std::runtime_error("throttle.path: cannot create '" + part +
                                 "': " + std::strerror(errno));
      }
    }
  }
}

}  // namespace

struct LmdbStore::Env {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  ~Env() {
    if (env != nullptr) mdb_env_close(env);
  }
};

LmdbStore::LmdbStore(const LmdbStoreOptions& options)
    : options_(options), env_(std::make_unique<Env>()) {
  const auto fail = [&](const char* what, int rc) {
    throw std::runtime_error("throttle store '" + options_.path + "': " + what + ": " +
                             mdb_strerror(rc));
  };
  make_dirs(options_.path);
  int rc = mdb_env_create(&env_->env);
  if (rc != 0) fail("mdb_env_create", rc);
  if ((rc = mdb_env_set_mapsize(env_->env, options_.max_bytes)) != 0) fail("set_mapsize", rc);
  if ((rc = mdb_env_set_maxreaders(env_->env, 512)) != 0) fail("set_maxreaders", rc);
  // WRITEMAP + NOSYNC: commits are memory writes to a shared mapping, so a
  // killed worker loses nothing; only a host crash can lose the last writes,
  // which for rate-limit counters is an acceptable trade for speed.
  const unsigned flags = MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS;
  if ((rc = mdb_env_open(env_->env, options_.path.c_str(), flags, 0600)) != 0) {
    fail("mdb_env_open", rc);
  }
  int dead = 0;
  mdb_reader_check(env_->env, &dead);  // slots of crashed processes
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) fail("mdb_txn_begin", txn.begin_rc());
  if ((rc = mdb_dbi_open(txn.get(), nullptr, 0, &env_->dbi)) != 0) fail("mdb_dbi_open", rc);
  if ((rc = txn.commit()) != 0) fail("mdb_txn_commit", rc);
}

LmdbStore::~LmdbStore() = default;

LmdbStore::Attempt LmdbStore::try_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                         ThrottleDecision& out) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return Attempt::failed;
  // Reused per thread: a request costs no allocation once warm.
  thread_local std::vector<Log> logs;
  thread_local std::string bytes;
  if (logs.size() < hits.size()) logs.resize(hits.size());
  out.allowed = true;
  out.wait_ms.assign(hits.size(), 0);
  for (std::size_t i = 0; i < hits.size(); ++i) {
    MDB_val key = as_val(hits[i].key);
    MDB_val val;
    const int rc = mdb_get(txn.get(), env_->dbi, &key, &val);
    logs[i].stamps.clear();
    logs[i].expires_ms = 0;
    if (rc == 0) {
      if (!decode(val, logs[i]) || logs[i].expires_ms <= now_ms) logs[i].stamps.clear();
    } else if (rc != MDB_NOTFOUND) {
      return Attempt::failed;
    }
    out.wait_ms[i] = wait_for(logs[i], hits[i], now_ms);
    if (out.wait_ms[i] > 0 && hits[i].enforce) out.allowed = false;
  }
  if (!out.allowed) return Attempt::done;  // the transaction aborts: nothing recorded

  // Reclaim a few expired entries on every write, so the store stays small
  // without a separate sweeper process.
  {
    Cursor cursor(txn.get(), env_->dbi);
    if (cursor.get() == nullptr) return Attempt::failed;
    MDB_val key = as_val(sweep_cursor_);
    MDB_val val;
    int rc = sweep_cursor_.empty() ? mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST)
                                   : mdb_cursor_get(cursor.get(), &key, &val, MDB_SET_RANGE);
    for (std::size_t n = 0; rc == 0 && n < options_.sweep_per_write; ++n) {
      Log log;
      if (!decode(val, log) || log.expires_ms <= now_ms) {
        const int del = mdb_cursor_del(cursor.get(), 0);
        if (del == MDB_MAP_FULL) return Attempt::full;
        if (del != 0) return Attempt::failed;
        // After a delete LMDB's MDB_NEXT yields the entry that followed it.
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
      } else {
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
      }
    }
    sweep_cursor_ =
        rc == 0 ? std::string(static_cast<const char*>(key.mv_data), key.mv_size) : std::string{};
  }

  for (std::size_t i = 0; i < hits.size(); ++i) {
    record(logs[i], hits[i], now_ms);
    encode(logs[i], bytes);
    MDB_val key = as_val(hits[i].key);
    MDB_val val = as_val(bytes);
    const int rc = mdb_put(txn.get(), env_->dbi, &key, &val, 0);
    if (rc == MDB_MAP_FULL) return Attempt::full;
    if (rc != 0) return Attempt::failed;
  }
  const int rc = txn.commit();
  if (rc == MDB_MAP_FULL) return Attempt::full;
  return rc == 0 ? Attempt::done : Attempt::failed;
}

StoreStatus LmdbStore::check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                        ThrottleDecision& out) {
  out = ThrottleDecision{};
  if (hits.empty()) return StoreStatus::ok;
  Attempt a = try_commit(hits, now_ms, out);
  if (a == Attempt::full) {
    // Full: reclaim every expired entry and try once more. Live entries are
    // never evicted: a full store of live cooldowns is on_store_error's case.
    sweep_all(now_ms);
    a = try_commit(hits, now_ms, out);
  }
  if (a == Attempt::done) return StoreStatus::ok;
  out = ThrottleDecision{};
  return a == Attempt::full ? StoreStatus::full : StoreStatus::unavailable;
}

StoreStatus LmdbStore::refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return StoreStatus::unavailable;
  for (const auto& hit : hits) {
    MDB_val key = as_val(hit.key);
    MDB_val val;
    const int rc = mdb_get(txn.get(), env_->dbi, &key, &val);
    if (rc == MDB_NOTFOUND) continue;
    if (rc != 0) return StoreStatus::unavailable;
    Log log;
    if (!decode(val, log)) continue;
    const auto it = std::find(log.stamps.begin(), log.stamps.end(), now_ms);
    if (it == log.stamps.end()) continue;
    log.stamps.erase(it);
    int put = 0;
    if (log.stamps.empty()) {
      put = mdb_del(txn.get(), env_->dbi, &key, nullptr);
    } else {
      std::string bytes;
      encode(log, bytes);
      MDB_val v = as_val(bytes);
      put = mdb_put(txn.get(), env_->dbi, &key, &v, 0);
    }
    if (put != 0) return StoreStatus::unavailable;
  }
  return txn.commit() == 0 ? StoreStatus::ok : StoreStatus::unavailable;
}

StoreStatus LmdbStore::ping() {
  Txn txn(env_->env, MDB_RDONLY);
  return txn.begin_rc() == 0 ? StoreStatus::ok : StoreStatus::unavailable;
}

std::size_t LmdbStore::sweep_all(std::int64_t now_ms) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return 0;
  std::size_t removed = 0;
  {
    Cursor cursor(txn.get(), env_->dbi);
    if (cursor.get() == nullptr) return 0;
    MDB_val key;
    MDB_val val;
    int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST);
    while (rc == 0) {
      Log log;
      if (!decode(val, log) || log.expires_ms <= now_ms) {
        if (mdb_cursor_del(cursor.get(), 0) != 0) break;
        ++removed;
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
      } else {
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
      }
    }
  }
  sweep_cursor_.clear();
  return txn.commit() == 0 ? removed : 0;
}

std::size_t LmdbStore::entries() {
  Txn txn(env_->env, MDB_RDONLY);
  if (txn.begin_rc() != 0) return 0;
  MDB_stat st;
  if (mdb_stat(txn.get(), env_->dbi, &st) != 0) return 0;
  return st.ms_entries;
}

}  // namespace pvgate
