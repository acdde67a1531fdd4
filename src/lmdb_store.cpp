#include "lmdb_store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace pvgate {
namespace {

// Value layout: [int64 expires_ms][uint32 count][uint32 0][int64 stamps[count], ascending],
// native byte order. Values sit at any alignment inside LMDB's pages, so every
// field is read and written with memcpy.
//
// The hot path never decodes a log into a container: a check reads the header
// and binary-searches the stamps where they lie, and a commit writes the new
// log straight into the space mdb_put reserves (MDB_RESERVE), copying the
// surviving stamps in at most two pieces. LMDB is copy-on-write, so a changed
// value is always written in full to a fresh page; a ring buffer of fixed size
// would save nothing over this and keeps expired stamps around, so the
// compact layout stays (and with it every entry already on disk).
constexpr std::size_t kHeader = 16;

std::int64_t load64(const unsigned char* p) {
  std::int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// The header of a well-formed value, or false for anything else (a foreign or
// damaged value, treated as empty and reclaimed by the sweep).
bool parse_header(const MDB_val& v, std::int64_t& expires_ms, std::uint32_t& count) {
  if (v.mv_size < kHeader) return false;
  const auto* p = static_cast<const unsigned char*>(v.mv_data);
  std::memcpy(&expires_ms, p, 8);
  std::memcpy(&count, p + 8, 4);
  return count <= kMaxRuleLimit && v.mv_size == kHeader + 8 * static_cast<std::size_t>(count);
}

MDB_val as_val(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// Index of the first stamp greater than `t` in stamps[0, count).
std::uint32_t upper_bound_stamp(const unsigned char* stamps, std::uint32_t count, std::int64_t t) {
  std::uint32_t lo = 0;
  std::uint32_t hi = count;
  while (lo < hi) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    if (load64(stamps + 8 * static_cast<std::size_t>(mid)) <= t) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
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
  // WRITEMAP + NOSYNC: commits are memory writes to a shared mapping with no
  // fsync, so a killed worker loses nothing (the kernel still holds every
  // committed page). A host crash or power loss is different: the kernel
  // writes dirty pages back in no particular order, so it can lose the last
  // writes or leave data.mdb inconsistent (LMDB's own warning for
  // NOSYNC | WRITEMAP). The counts are disposable: after such a crash, delete
  // the store directory before starting pvgate. Syncing every decision would
  // cost a disk flush per request.
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

namespace {

// One hit's log as a check found it: the live stamps (newer than the hit's
// window floor), copied out before any write of the transaction can move them.
struct LiveLog {
  std::size_t offset = 0;  // into the per-thread stamp arena
  std::uint32_t count = 0;
};

// The stamps still inside the window of `hit` at `now` of a stored value
// (none when it is missing, expired or malformed), located in place.
struct Located {
  const unsigned char* stamps = nullptr;
  std::uint32_t first_live = 0;
  std::uint32_t count = 0;
};

Located locate(const MDB_val* val, const ThrottleHit& hit, std::int64_t now) {
  Located at;
  std::int64_t expires_ms = 0;
  std::uint32_t count = 0;
  if (val == nullptr || !parse_header(*val, expires_ms, count) || expires_ms <= now) return at;
  at.stamps = static_cast<const unsigned char*>(val->mv_data) + kHeader;
  at.count = count;
  at.first_live = upper_bound_stamp(at.stamps, count, now - hit.period_ms);
  return at;
}

// The wait until a slot frees (0 when one is free now).
std::int64_t wait_for(const Located& at, const ThrottleHit& hit, std::int64_t now) {
  if (at.count - at.first_live < hit.limit) return 0;
  // The limit-th newest event decides when a slot frees.
  const std::int64_t pivot = load64(at.stamps + 8 * static_cast<std::size_t>(at.count - hit.limit));
  // An event stamped later than `now` (another worker's clock read a moment
  // after ours) must not make the wait longer than one period.
  return std::clamp<std::int64_t>(pivot + hit.period_ms - now, 1, hit.period_ms);
}

// stamps from[first, first + n) to `to` (no-op for none: `from` may be null then).
void copy_stamps(unsigned char* to, const std::int64_t* from, std::size_t first, std::size_t n) {
  if (n > 0) std::memcpy(to, from + first, 8 * n);
}

// Writes the log `live` + one event at `now` (inserted in order, then only
// the newest `limit` kept) under `key`, in the space mdb_put reserves.
int put_recorded(MDB_txn* txn, MDB_dbi dbi, MDB_val* key, const std::int64_t* live,
                 std::uint32_t live_count, const ThrottleHit& hit, std::int64_t now) {
  // Insert after equal stamps, as std::upper_bound would.
  std::uint32_t pos = live_count;
  while (pos > 0 && live[pos - 1] > now) --pos;
  const std::uint32_t total = live_count + 1;
  const std::uint32_t count = std::min<std::uint32_t>(total, hit.limit);
  const std::uint32_t drop = total - count;  // the oldest of the merged log
  MDB_val val{kHeader + 8 * static_cast<std::size_t>(count), nullptr};
  const int rc = mdb_put(txn, dbi, key, &val, MDB_RESERVE);
  if (rc != 0) return rc;
  auto* p = static_cast<unsigned char*>(val.mv_data);
  auto* out = p + kHeader;
  // merged[i] = live[i] for i < pos, now at pos, live[i - 1] after it; keep merged[drop, total).
  if (drop <= pos) {
    const std::size_t head = pos - drop;
    copy_stamps(out, live, drop, head);
    std::memcpy(out + 8 * head, &now, 8);
    copy_stamps(out + 8 * (head + 1), live, pos, live_count - pos);
  } else {
    // `now` is older than every stamp kept: it is dropped at once.
    copy_stamps(out, live, drop - 1, count);
  }
  std::int64_t newest = 0;
  std::memcpy(&newest, out + 8 * static_cast<std::size_t>(count - 1), 8);
  const std::int64_t expires_ms = newest + hit.period_ms;
  std::memcpy(p, &expires_ms, 8);
  std::memcpy(p + 8, &count, 4);
  std::memset(p + 12, 0, 4);
  return 0;
}

}  // namespace

LmdbStore::Attempt LmdbStore::try_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                         ThrottleDecision& out) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return Attempt::failed;
  // Reused per thread: a decision costs no allocation once warm.
  thread_local std::vector<Located> located;
  thread_local std::vector<LiveLog> logs;
  thread_local std::vector<std::int64_t> arena;
  if (located.size() < hits.size()) {
    located.resize(hits.size());
    logs.resize(hits.size());
  }
  out.allowed = true;
  out.wait_ms.assign(hits.size(), 0);
  std::size_t live_total = 0;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    MDB_val key = as_val(hits[i].key);
    MDB_val val;
    const int rc = mdb_get(txn.get(), env_->dbi, &key, &val);
    if (rc != 0 && rc != MDB_NOTFOUND) return Attempt::failed;
    located[i] = locate(rc == 0 ? &val : nullptr, hits[i], now_ms);
    live_total += located[i].count - located[i].first_live;
    out.wait_ms[i] = wait_for(located[i], hits[i], now_ms);
    if (out.wait_ms[i] > 0 && hits[i].enforce) out.allowed = false;
  }
  if (!out.allowed) return Attempt::done;  // the transaction aborts: nothing recorded

  // Copy the live stamps out: the writes below may move or free the pages
  // the values were found in.
  if (arena.size() < live_total) arena.resize(live_total);
  for (std::size_t i = 0, offset = 0; i < hits.size(); ++i) {
    const Located& at = located[i];
    logs[i].offset = offset;
    logs[i].count = at.count - at.first_live;
    if (logs[i].count > 0) {
      std::memcpy(arena.data() + offset, at.stamps + 8 * static_cast<std::size_t>(at.first_live),
                  8 * static_cast<std::size_t>(logs[i].count));
    }
    offset += logs[i].count;
  }

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
      std::int64_t expires_ms = 0;
      std::uint32_t count = 0;
      if (!parse_header(val, expires_ms, count) || expires_ms <= now_ms) {
        const int del = mdb_cursor_del(cursor.get(), 0);
        if (del == MDB_MAP_FULL) return Attempt::full;
        if (del != 0) return Attempt::failed;
      }
      // After a delete LMDB's MDB_NEXT yields the entry that followed it.
      rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
    }
    if (rc == 0) {
      sweep_cursor_.assign(static_cast<const char*>(key.mv_data), key.mv_size);
    } else {
      sweep_cursor_.clear();
    }
  }

  for (std::size_t i = 0; i < hits.size(); ++i) {
    MDB_val key = as_val(hits[i].key);
    const int rc = put_recorded(txn.get(), env_->dbi, &key, arena.data() + logs[i].offset,
                                logs[i].count, hits[i], now_ms);
    if (rc == MDB_MAP_FULL) return Attempt::full;
    if (rc != 0) return Attempt::failed;
  }
  const int rc = txn.commit();
  if (rc == MDB_MAP_FULL) return Attempt::full;
  return rc == 0 ? Attempt::done : Attempt::failed;
}

StoreStatus LmdbStore::check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                        ThrottleDecision& out) {
  out.allowed = true;
  out.wait_ms.clear();  // keeps its capacity for the caller's next decision
  if (hits.empty()) return StoreStatus::ok;
  Attempt a = try_commit(hits, now_ms, out);
  if (a == Attempt::full) {
    // Full: reclaim every expired entry and try once more. Live entries are
    // never evicted: a full store of live cooldowns is on_store_error's case.
    sweep_all(now_ms);
    a = try_commit(hits, now_ms, out);
  }
  if (a == Attempt::done) return StoreStatus::ok;
  out.allowed = true;
  out.wait_ms.clear();
  return a == Attempt::full ? StoreStatus::full : StoreStatus::unavailable;
}

StoreStatus LmdbStore::refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return StoreStatus::unavailable;
  std::vector<unsigned char> bytes;
  for (const auto& hit : hits) {
    MDB_val key = as_val(hit.key);
    MDB_val val;
    const int rc = mdb_get(txn.get(), env_->dbi, &key, &val);
    if (rc == MDB_NOTFOUND) continue;
    if (rc != 0) return StoreStatus::unavailable;
    std::int64_t expires_ms = 0;
    std::uint32_t count = 0;
    if (!parse_header(val, expires_ms, count)) continue;
    const auto* stamps = static_cast<const unsigned char*>(val.mv_data) + kHeader;
    std::uint32_t found = 0;
    while (found < count && load64(stamps + 8 * static_cast<std::size_t>(found)) != now_ms) {
      ++found;
    }
    if (found == count) continue;
    int put = 0;
    if (count == 1) {
      put = mdb_del(txn.get(), env_->dbi, &key, nullptr);
    } else {
      // The same log without that one stamp; the expiry stays as it was.
      const auto* p = static_cast<const unsigned char*>(val.mv_data);
      const std::size_t cut = kHeader + 8 * static_cast<std::size_t>(found);
      bytes.assign(p, p + cut);
      bytes.insert(bytes.end(), p + cut + 8, p + val.mv_size);
      const std::uint32_t left = count - 1;
      std::memcpy(&bytes[8], &left, 4);
      MDB_val v{bytes.size(), bytes.data()};
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
      std::int64_t expires_ms = 0;
      std::uint32_t count = 0;
      if (!parse_header(val, expires_ms, count) || expires_ms <= now_ms) {
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
