#include "lmdb_store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

namespace pvgate {
namespace {

// Layout. Every key holds a log: the timestamps of its recent events,
// ascending, in one value (all native byte order, at any alignment, so every
// field is read and written with memcpy):
//
//   [int64 expires_ms][uint32 tail_count][uint32 seg_count]
//   [int64 tail[tail_count]]
//   and only when seg_count > 0:
//   [uint32 next_id][uint32 0][int64 dropped_to][SegRef refs[seg_count]]
//
// A small log (limit <= 64, every shipped rule but the merchant-wide one)
// is all tail and never has segments: byte for byte the
// layout of the stores written before segments existed, so those are read as
// they are. A long log (merchant-hour: up to 1000 stamps) keeps its newest
// stamps in the tail and seals every segment_stamps() of them into a segment
// entry of its own, under the log's key + '\x01' + big-endian uint32 id,
// holding a plain log (seg_count 0). The log's value lists the segments
// oldest first (SegRef: first and last stamp, count, id); segments and tail
// are disjoint in time and in order, so the whole log is seg[0] .. seg[n-1],
// tail. LMDB is copy-on-write: a decision now rewrites a value of at most
// about 1 KB on a leaf page instead of a 1000-stamp log on overflow pages,
// and reads a segment only when the log is within one segment of its limit.
//
// A plain log drops a stamp when it leaves the window or when `limit` newer
// ones are kept. A segmented log drops whole segments, or rewrites the oldest
// one when more than `limit` live stamps would be kept; stamps that left the
// window stay in the oldest segment until all of it has, and `dropped_to`
// (the latest window floor any commit applied) says they are gone: every
// stamp <= dropped_to counts as dropped, for checks and refunds alike. So a
// segmented log decides exactly as the plain one, even when a later caller's
// clock reads a few ms earlier (not when it reads more than a whole period
// earlier than a commit already made: its event then counts as dropped).
//
// expires_ms is the newest stamp + the period: the sweep reclaims a log (or
// a segment) at that time. Anything that does not parse is treated as empty
// and reclaimed by the sweep.
constexpr std::size_t kHeader = 16;
constexpr std::size_t kSegTrailer = 16;
constexpr std::size_t kSegRef = 24;
constexpr char kSegmentMark = '\x01';  // never in a caller's key (printable ASCII)

// Tail stamps sealed into one segment: the limit / 16, at least 64 (the
// merchant-wide rule's 1000 gives 64: a value of at most 64 stamps + 17 refs,
// under 1 KB) and at most 256 (a limit of 10,000: 40 segments).
std::uint32_t segment_stamps(std::uint32_t limit) {
  return std::clamp<std::uint32_t>(limit / 16, 64, 256);
}

// A log's segments are only used when its limit exceeds one segment.
bool segmented(std::uint32_t limit) {
  return limit > segment_stamps(limit);
}

std::int64_t load64(const unsigned char* p) {
  std::int64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::uint32_t load32(const unsigned char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct SegRef {
  std::int64_t first = 0;
  std::int64_t last = 0;
  std::uint32_t count = 0;
  std::uint32_t id = 0;
};

// A parsed value, pointing into LMDB's page.
struct Log {
  std::int64_t expires_ms = 0;
  const unsigned char* tail = nullptr;
  std::uint32_t tail_count = 0;
  std::uint32_t seg_count = 0;
  std::uint32_t next_id = 0;
  std::int64_t dropped_to = std::numeric_limits<std::int64_t>::min();
  const unsigned char* refs = nullptr;

  std::int64_t stamp(std::uint32_t i) const {
    return load64(tail + 8 * static_cast<std::size_t>(i));
  }
  SegRef ref(std::uint32_t i) const {
    const unsigned char* p = refs + kSegRef * i;
    return SegRef{load64(p), load64(p + 8), load32(p + 16), load32(p + 20)};
  }
};

// A well-formed value, or false for anything else (a foreign or damaged
// value, treated as empty and reclaimed by the sweep).
bool parse_log(const MDB_val& v, Log& log) {
  if (v.mv_size < kHeader) return false;
  const auto* p = static_cast<const unsigned char*>(v.mv_data);
  log.expires_ms = load64(p);
  log.tail_count = load32(p + 8);
  log.seg_count = load32(p + 12);
  if (log.tail_count > kMaxRuleLimit || log.seg_count > kMaxRuleLimit) return false;
  const std::size_t tail_end = kHeader + 8 * static_cast<std::size_t>(log.tail_count);
  log.tail = p + kHeader;
  if (log.seg_count == 0) {
    log.next_id = 0;
    log.dropped_to = std::numeric_limits<std::int64_t>::min();
    log.refs = nullptr;
    return v.mv_size == tail_end;
  }
  if (v.mv_size != tail_end + kSegTrailer + kSegRef * log.seg_count) return false;
  log.next_id = load32(p + tail_end);
  log.dropped_to = load64(p + tail_end + 8);
  log.refs = p + tail_end + kSegTrailer;
  return true;
}

// Sessions (throttle_store.h) live under '\x02' + the caller's key, which
// no rule key (printable ASCII) can name, in a value of their own layout:
//
//   [int64 expires_ms][uint32 attempts][uint32 kSessionMagic][int64 issued_ms][owner]
//
// The sweeps reclaim them by expires_ms like any log. A store written by an
// earlier pvgate has none; an earlier pvgate's sweep reads them as damaged
// logs and deletes them (its workers would then refuse those references).
constexpr char kSessionMark = '\x02';
constexpr std::uint32_t kSessionMagic = 0x31534553;  // "SES1"
constexpr std::size_t kSessionHeader = 24;
constexpr std::size_t kMaxOwnerBytes = kMaxSessionOwnerBytes;

struct Session {
  std::int64_t expires_ms = 0;
  std::uint32_t attempts = 0;
  std::int64_t issued_ms = 0;
  std::string_view owner;
};

bool parse_session(const MDB_val& v, Session& out) {
  if (v.mv_size <= kSessionHeader || v.mv_size > kSessionHeader + kMaxOwnerBytes) return false;
  const auto* p = static_cast<const unsigned char*>(v.mv_data);
  if (load32(p + 12) != kSessionMagic) return false;
  out.expires_ms = load64(p);
  out.attempts = load32(p + 8);
  out.issued_ms = load64(p + 16);
  out.owner = std::string_view(reinterpret_cast<const char*>(p + kSessionHeader),
                               v.mv_size - kSessionHeader);
  return true;
}

std::string encode_session(const Session& s) {
  std::string out(kSessionHeader + s.owner.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  std::memcpy(p, &s.expires_ms, 8);
  std::memcpy(p + 8, &s.attempts, 4);
  std::memcpy(p + 12, &kSessionMagic, 4);
  std::memcpy(p + 16, &s.issued_ms, 8);
  std::memcpy(p + kSessionHeader, s.owner.data(), s.owner.size());
  return out;
}

// One-time claims (throttle_store.h) live under '\x03' + the caller's key,
// apart from logs (printable keys) and sessions ('\x02'), in a value of
// exactly [int64 expires_ms]. The sweeps reclaim them at that time. As for
// sessions, an earlier pvgate's sweep reads them as damaged logs and deletes
// them.
constexpr char kClaimMark = '\x03';

// A claim's expiry, or false for a value that does not parse (treated as no
// claim, and reclaimed by the sweep).
bool parse_claim(const MDB_val& v, std::int64_t& expires_ms) {
  if (v.mv_size != 8) return false;
  expires_ms = load64(static_cast<const unsigned char*>(v.mv_data));
  return true;
}

// Whether the sweep may delete this entry at `now`: expired, or damaged.
bool reclaimable(const MDB_val& key, const MDB_val& val, std::int64_t now) {
  const char mark = key.mv_size > 0 ? *static_cast<const char*>(key.mv_data) : '\0';
  if (mark == kSessionMark) {
    Session session;
    return !parse_session(val, session) || session.expires_ms <= now;
  }
  if (mark == kClaimMark) {
    std::int64_t expires_ms = 0;
    return !parse_claim(val, expires_ms) || expires_ms <= now;
  }
  Log log;
  return !parse_log(val, log) || log.expires_ms <= now;
}

MDB_val as_val(const std::string& s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}

// `key`'s segment `id`, in `out` (reused: no allocation once warm).
MDB_val segment_key(const std::string& key, std::uint32_t id, std::string& out) {
  out.assign(key);
  out.push_back(kSegmentMark);
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((id >> shift) & 0xff));
  return as_val(out);
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

// Where a segmented log keeps what goes with its segments.
struct SegState {
  std::uint32_t next_id = 0;  // of the next segment sealed
  std::int64_t dropped_to = std::numeric_limits<std::int64_t>::min();
};

// What a check learned of one hit's log, copied out of LMDB's pages before
// any write of the transaction can move or free them.
struct HitLog {
  std::size_t tail_offset = 0;  // the live tail stamps, in Scratch::stamps
  std::uint32_t tail_count = 0;
  std::size_t ref_offset = 0;  // the segments, in Scratch::refs
  std::uint32_t ref_count = 0;
  SegState state;
};

// Reused per thread: a decision costs no allocation once warm.
struct Scratch {
  std::vector<Log> found;  // each hit's log as its check found it, in LMDB's pages
  std::vector<HitLog> logs;
  std::vector<std::int64_t> stamps;
  std::vector<SegRef> refs;
  std::vector<std::int64_t> merged;   // the tail being written
  std::vector<std::int64_t> segment;  // a segment being rewritten
  std::vector<SegRef> kept;           // the segments of the log being written
  std::string seg_key;
  std::vector<MDB_cursor*> cursors;  // HitCursors'
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// One cursor per hit of a decision, open from the hit's check to its write:
// LMDB keeps a write transaction's cursors in place across its other writes
// (the sweep's, other hits'), so the write starts from the leaf its check
// found instead of searching the tree again. Opened by the check only while
// the decision may still pass (a refused one writes nothing), and closed
// before the transaction ends, which would free them.
class HitCursors {
 public:
  HitCursors(MDB_txn* txn, MDB_dbi dbi, std::size_t n, std::vector<MDB_cursor*>& open)
      : txn_(txn), dbi_(dbi), open_(open) {
    open_.assign(n, nullptr);
  }
  ~HitCursors() {
    for (MDB_cursor* cursor : open_) {
      if (cursor != nullptr) mdb_cursor_close(cursor);
    }
    open_.clear();
  }
  HitCursors(const HitCursors&) = delete;
  HitCursors& operator=(const HitCursors&) = delete;
  // Hit i's cursor, opened on first use. Returns an LMDB error, or 0.
  int open(std::size_t i, MDB_cursor*& cursor) {
    if (open_[i] == nullptr) {
      if (const int rc = mdb_cursor_open(txn_, dbi_, &open_[i])) {
        open_[i] = nullptr;
        return rc;
      }
    }
    cursor = open_[i];
    return 0;
  }
  // Hit i's cursor, or nullptr when its check did not open one.
  MDB_cursor* get(std::size_t i) const { return open_[i]; }

 private:
  MDB_txn* txn_;
  MDB_dbi dbi_;
  std::vector<MDB_cursor*>& open_;
};

// The window floor of `hit` at `now` for a log: stamps at or below it do not count.
std::int64_t floor_of(const ThrottleHit& hit, std::int64_t now, std::int64_t dropped_to) {
  return std::max(now - hit.period_ms, dropped_to);
}

// Writes a log under `key` into the space mdb_put reserves; through `cursor`
// when not null (a cursor of the same transaction and database, anywhere).
int put_log(MDB_txn* txn, MDB_dbi dbi, MDB_val key, std::int64_t expires_ms,
            const std::vector<std::int64_t>& tail, const SegRef* refs, std::size_t ref_count,
            const SegState& state, MDB_cursor* cursor = nullptr) {
  const std::size_t tail_bytes = 8 * tail.size();
  MDB_val val{kHeader + tail_bytes + (ref_count > 0 ? kSegTrailer + kSegRef * ref_count : 0),
              nullptr};
  const int rc = cursor != nullptr ? mdb_cursor_put(cursor, &key, &val, MDB_RESERVE)
                                   : mdb_put(txn, dbi, &key, &val, MDB_RESERVE);
  if (rc != 0) return rc;
  auto* p = static_cast<unsigned char*>(val.mv_data);
  const auto tail_count = static_cast<std::uint32_t>(tail.size());
  const auto seg_count = static_cast<std::uint32_t>(ref_count);
  std::memcpy(p, &expires_ms, 8);
  std::memcpy(p + 8, &tail_count, 4);
  std::memcpy(p + 12, &seg_count, 4);
  if (tail_bytes > 0) std::memcpy(p + kHeader, tail.data(), tail_bytes);
  if (ref_count > 0) {
    unsigned char* q = p + kHeader + tail_bytes;
    std::memcpy(q, &state.next_id, 4);
    std::memset(q + 4, 0, 4);
    std::memcpy(q + 8, &state.dropped_to, 8);
    q += kSegTrailer;
    for (std::size_t i = 0; i < ref_count; ++i, q += kSegRef) {
      std::memcpy(q, &refs[i].first, 8);
      std::memcpy(q + 8, &refs[i].last, 8);
      std::memcpy(q + 16, &refs[i].count, 4);
      std::memcpy(q + 20, &refs[i].id, 4);
    }
  }
  return 0;
}

// A segment (a plain log) under its own key.
int put_segment(MDB_txn* txn, MDB_dbi dbi, const std::string& key, const SegRef& ref,
                std::int64_t expires_ms, const std::vector<std::int64_t>& stamps,
                std::string& seg_key) {
  return put_log(txn, dbi, segment_key(key, ref.id, seg_key), expires_ms, stamps, nullptr, 0,
                 SegState{});
}

int del_segment(MDB_txn* txn, MDB_dbi dbi, const std::string& key, std::uint32_t id,
                std::string& seg_key) {
  MDB_val k = segment_key(key, id, seg_key);
  const int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == MDB_NOTFOUND ? 0 : rc;  // the sweep was first
}

// Reads segment `ref` into `out`, with its expiry; a segment the sweep took
// (it had expired) or a damaged one reads as empty. Returns an LMDB error, or 0.
int read_segment(MDB_txn* txn, MDB_dbi dbi, const std::string& key, const SegRef& ref,
                 std::string& seg_key, std::vector<std::int64_t>& out, std::int64_t& expires_ms) {
  out.clear();
  expires_ms = 0;
  MDB_val k = segment_key(key, ref.id, seg_key);
  MDB_val v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  Log seg;
  if (!parse_log(v, seg) || seg.seg_count != 0) return 0;
  out.resize(seg.tail_count);
  if (seg.tail_count > 0) std::memcpy(out.data(), seg.tail, 8 * out.size());
  expires_ms = seg.expires_ms;
  return 0;
}

// Sets `wait` to how long until `hit` has a free slot at `now` in `log` (0
// when it has one now). Only the newest `limit` stamps decide: the hit is
// over when the limit-th newest is still inside the window, and its wait is
// the time until that one leaves. Reads a segment only when the log is
// within one segment of its limit. Returns an LMDB error, or 0.
int wait_for(MDB_txn* txn, MDB_dbi dbi, const std::string& key, const Log& log,
             const ThrottleHit& hit, std::int64_t now, Scratch& s, std::int64_t& wait) {
  wait = 0;
  const std::int64_t floor = floor_of(hit, now, log.dropped_to);
  const std::uint32_t first_live = upper_bound_stamp(log.tail, log.tail_count, floor);
  const std::uint32_t tail_live = log.tail_count - first_live;
  std::int64_t pivot = 0;
  if (tail_live >= hit.limit) {
    pivot = log.stamp(log.tail_count - hit.limit);
  } else {
    // Segments are older than every tail stamp: none is live past a dead one.
    if (first_live > 0 || log.seg_count == 0) return 0;
    std::uint64_t at_most = tail_live;
    for (std::uint32_t i = 0; i < log.seg_count; ++i) {
      const SegRef ref = log.ref(i);
      if (ref.last > floor) at_most += ref.count;
    }
    if (at_most < hit.limit) return 0;
    // The segment holding the limit-th newest stamp, newest segment first.
    std::uint32_t need = hit.limit - tail_live;
    std::uint32_t i = log.seg_count;
    SegRef ref;
    while (true) {
      if (i == 0) return 0;
      ref = log.ref(--i);
      if (ref.last <= floor) return 0;
      if (ref.count >= need) break;
      need -= ref.count;
    }
    std::int64_t expires_ms = 0;
    if (const int rc = read_segment(txn, dbi, key, ref, s.seg_key, s.segment, expires_ms)) {
      return rc;
    }
    if (s.segment.size() < need) return 0;
    pivot = s.segment[s.segment.size() - need];
  }
  if (pivot <= floor) return 0;
  // An event stamped later than `now` (another worker's clock read a moment
  // after ours) must not make the wait longer than one period.
  wait = std::clamp<std::int64_t>(pivot + hit.period_ms - now, 1, hit.period_ms);
  return 0;
}

// Inserts `now` after the stamps <= it.
void insert_stamp(std::vector<std::int64_t>& stamps, std::int64_t now) {
  stamps.insert(std::upper_bound(stamps.begin(), stamps.end(), now), now);
}

// Adds `now` to segment `ref` of `key`'s log (an event stamped before the
// newest of that segment: two workers committing out of clock order).
int insert_into_segment(MDB_txn* txn, MDB_dbi dbi, const std::string& key, SegRef& ref,
                        const ThrottleHit& hit, std::int64_t now, Scratch& s) {
  std::int64_t expires_ms = 0;
  if (const int rc = read_segment(txn, dbi, key, ref, s.seg_key, s.segment, expires_ms)) return rc;
  insert_stamp(s.segment, now);
  ref.first = s.segment.front();
  ref.last = s.segment.back();
  ref.count = static_cast<std::uint32_t>(s.segment.size());
  return put_segment(txn, dbi, key, ref, ref.last + hit.period_ms, s.segment, s.seg_key);
}

// Keeps only the newest `limit` live stamps of the log being written (s.kept,
// then s.merged), as a plain log would: whole segments go, and the oldest one
// left is rewritten without the rest. Reads the oldest segment only when the
// log may hold more than `limit` live stamps.
int keep_newest(MDB_txn* txn, MDB_dbi dbi, const std::string& key, const ThrottleHit& hit,
                std::int64_t floor, Scratch& s) {
  std::uint64_t total = s.merged.size();
  for (const SegRef& ref : s.kept) total += ref.count;
  if (total <= hit.limit) return 0;
  if (!s.kept.empty() && s.kept.front().first <= floor) {
    // The oldest segment reaches below the window: count its live stamps.
    SegRef& ref = s.kept.front();
    std::int64_t expires_ms = 0;
    if (const int rc = read_segment(txn, dbi, key, ref, s.seg_key, s.segment, expires_ms)) {
      return rc;
    }
    const auto live = static_cast<std::uint32_t>(
        s.segment.end() - std::upper_bound(s.segment.begin(), s.segment.end(), floor));
    total -= ref.count - live;
    ref.count = live;  // for the count below; rewritten if it stays
    if (total <= hit.limit) {
      ref.count = static_cast<std::uint32_t>(s.segment.size());
      return 0;  // its dead stamps are dropped by `dropped_to`
    }
  }
  std::size_t drop = 0;
  while (drop < s.kept.size() && total - s.kept[drop].count >= hit.limit) {
    total -= s.kept[drop].count;
    if (const int rc = del_segment(txn, dbi, key, s.kept[drop].id, s.seg_key)) return rc;
    ++drop;
  }
  s.kept.erase(s.kept.begin(), s.kept.begin() + static_cast<std::ptrdiff_t>(drop));
  if (total > hit.limit && !s.kept.empty()) {
    // The oldest segment keeps only its newest stamps.
    SegRef& ref = s.kept.front();
    std::int64_t expires_ms = 0;
    if (const int rc = read_segment(txn, dbi, key, ref, s.seg_key, s.segment, expires_ms)) {
      return rc;
    }
    if (s.segment.empty()) {
      // Missing or damaged (read_segment found nothing it could parse): its
      // stamps are gone, so its reference goes too rather than being trusted.
      if (const int rc = del_segment(txn, dbi, key, ref.id, s.seg_key)) return rc;
      s.kept.erase(s.kept.begin());
      return 0;
    }
    const auto keep = static_cast<std::size_t>(ref.count - (total - hit.limit));
    s.segment.erase(s.segment.begin(), s.segment.end() - static_cast<std::ptrdiff_t>(
                                                             std::min(keep, s.segment.size())));
    ref.first = s.segment.front();
    ref.count = static_cast<std::uint32_t>(s.segment.size());
    return put_segment(txn, dbi, key, ref, expires_ms, s.segment, s.seg_key);
  }
  if (s.kept.empty() && s.merged.size() > hit.limit) {
    s.merged.erase(s.merged.begin(),
                   s.merged.begin() + static_cast<std::ptrdiff_t>(s.merged.size() - hit.limit));
  }
  return 0;
}

// Writes `key`'s log with one more event at `now`, from what the check found,
// through `cursor` (the one the check left near the key).
int record(MDB_txn* txn, MDB_dbi dbi, MDB_cursor* cursor, const std::string& key,
           const HitLog& found, const ThrottleHit& hit, std::int64_t now, Scratch& s) {
  SegState state = found.state;
  const std::int64_t floor = floor_of(hit, now, state.dropped_to);
  state.dropped_to = floor;
  // Segments wholly out of the window go (their entries have expired too).
  s.kept.clear();
  for (std::uint32_t i = 0; i < found.ref_count; ++i) {
    const SegRef& ref = s.refs[found.ref_offset + i];
    if (ref.last > floor) {
      s.kept.push_back(ref);
    } else if (const int rc = del_segment(txn, dbi, key, ref.id, s.seg_key)) {
      return rc;
    }
  }
  const auto tail = s.stamps.begin() + static_cast<std::ptrdiff_t>(found.tail_offset);
  s.merged.assign(tail, tail + found.tail_count);
  // `now` goes after every stamp <= it: into the tail unless a segment ends later.
  std::size_t j = 0;
  while (j < s.kept.size() && s.kept[j].last <= now) ++j;
  if (j == s.kept.size()) {
    insert_stamp(s.merged, now);
  } else if (const int rc = insert_into_segment(txn, dbi, key, s.kept[j], hit, now, s)) {
    return rc;
  }
  if (const int rc = keep_newest(txn, dbi, key, hit, floor, s)) return rc;
  if (segmented(hit.limit) && s.merged.size() >= segment_stamps(hit.limit)) {
    // Seal the tail into a segment of its own: from now on it is rewritten
    // only to drop its oldest stamps, for an out-of-order event or a refund.
    const SegRef ref{s.merged.front(), s.merged.back(), static_cast<std::uint32_t>(s.merged.size()),
                     state.next_id++};
    if (const int rc =
            put_segment(txn, dbi, key, ref, ref.last + hit.period_ms, s.merged, s.seg_key)) {
      return rc;
    }
    s.kept.push_back(ref);
    s.merged.clear();
  }
  const std::int64_t newest = s.merged.empty() ? s.kept.back().last : s.merged.back();
  return put_log(txn, dbi, as_val(key), newest + hit.period_ms, s.merged, s.kept.data(),
                 s.kept.size(), state, cursor);
}

// Resets `out` for a decision on `hits`; false, with what broke in `out`,
// when a hit is outside ThrottleHit's ranges. The layout relies on them: a
// limit of 0 would index before a log's first stamp, and a key outside
// printable ASCII could name a segment, a session or a claim.
bool begin_decision(const std::vector<ThrottleHit>& hits, ThrottleDecision& out) {
  out.allowed = true;
  out.wait_ms.clear();  // keeps its capacity for the caller's next decision
  out.broken = nullptr;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    if (const char* broken = broken_hit(hits[i])) {
      out.broken = broken;
      out.broken_hit = i;
      return false;
    }
  }
  return true;
}

// Reads `key`'s value through `cursor`, leaving the cursor at the key or,
// when there is none, where it would go: mdb_get, but the write that
// follows starts from that leaf instead of the root. Returns 0, MDB_NOTFOUND
// or an LMDB error.
int seek(MDB_cursor* cursor, const std::string& key, MDB_val& val) {
  MDB_val k = as_val(key);
  const int rc = mdb_cursor_get(cursor, &k, &val, MDB_SET_RANGE);
  if (rc != 0) return rc;
  if (k.mv_size != key.size() || std::memcmp(k.mv_data, key.data(), key.size()) != 0) {
    return MDB_NOTFOUND;
  }
  return 0;
}

// The check half of a decision: fills `out.allowed` and `out.wait_ms` from
// each hit's log as `txn` sees it, and leaves the logs found in s.found for
// the commit half. Writes nothing, so a read-only transaction serves a peek.
// With `cursors`, each hit checked while the decision may still pass is read
// through a cursor of its own, which stays near the key for the write.
// Returns an LMDB error, or 0.
int check_hits(MDB_txn* txn, MDB_dbi dbi, const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
               Scratch& s, ThrottleDecision& out, HitCursors* cursors = nullptr) {
  if (s.found.size() < hits.size()) s.found.resize(hits.size());
  out.allowed = true;
  out.wait_ms.assign(hits.size(), 0);
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const ThrottleHit& hit = hits[i];
    Log& log = s.found[i];
    log = Log{};
    MDB_val key = as_val(hit.key);
    MDB_val val;
    int rc = 0;
    if (cursors != nullptr && out.allowed) {
      MDB_cursor* cursor = nullptr;
      if ((rc = cursors->open(i, cursor)) != 0) return rc;
      rc = seek(cursor, hit.key, val);
    } else {
      rc = mdb_get(txn, dbi, &key, &val);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    if (rc != 0 || !parse_log(val, log)) {
      log = Log{};  // none, or damaged: empty
      continue;
    }
    if (log.expires_ms <= now_ms) continue;  // every stamp has left the window
    std::int64_t wait = 0;
    if (const int err = wait_for(txn, dbi, hit.key, log, hit, now_ms, s, wait)) return err;
    out.wait_ms[i] = wait;
    if (wait > 0 && hit.enforce) out.allowed = false;
  }
  return 0;
}

}  // namespace

LmdbStore::Attempt LmdbStore::try_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                         ThrottleDecision& out) {
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return Attempt::failed;
  Scratch& s = scratch();
  if (s.logs.size() < hits.size()) s.logs.resize(hits.size());
  {
    HitCursors cursors(txn.get(), env_->dbi, hits.size(), s.cursors);
    if (check_hits(txn.get(), env_->dbi, hits, now_ms, s, out, &cursors) != 0) {
      return Attempt::failed;
    }
    if (!out.allowed) return Attempt::done;  // the transaction aborts: nothing recorded

    // Copy the live stamps and the segments out: the writes below may move or
    // free the pages they were found in.
    s.stamps.clear();
    s.refs.clear();
    for (std::size_t i = 0; i < hits.size(); ++i) {
      const Log& log = s.found[i];
      HitLog& found = s.logs[i];
      found = HitLog{s.stamps.size(), 0, s.refs.size(), 0, SegState{log.next_id, log.dropped_to}};
      if (log.expires_ms <= now_ms) continue;  // also none or damaged (expires_ms 0)
      const std::uint32_t first_live =
          upper_bound_stamp(log.tail, log.tail_count, floor_of(hits[i], now_ms, log.dropped_to));
      found.tail_count = log.tail_count - first_live;
      s.stamps.resize(found.tail_offset + found.tail_count);
      if (found.tail_count > 0) {
        std::memcpy(s.stamps.data() + found.tail_offset,
                    log.tail + 8 * static_cast<std::size_t>(first_live), 8 * found.tail_count);
      }
      found.ref_count = log.seg_count;
      for (std::uint32_t r = 0; r < log.seg_count; ++r) s.refs.push_back(log.ref(r));
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
        if (reclaimable(key, val, now_ms)) {
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
      const int rc =
          record(txn.get(), env_->dbi, cursors.get(i), hits[i].key, s.logs[i], hits[i], now_ms, s);
      if (rc == MDB_MAP_FULL) return Attempt::full;
      if (rc != 0) return Attempt::failed;
    }
  }  // the cursors close here, before the commit
  const int rc = txn.commit();
  if (rc == MDB_MAP_FULL) return Attempt::full;
  return rc == 0 ? Attempt::done : Attempt::failed;
}

StoreStatus LmdbStore::check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                        ThrottleDecision& out) {
  if (!begin_decision(hits, out)) return StoreStatus::internal;
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

StoreStatus LmdbStore::peek(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                            ThrottleDecision& out) {
  if (!begin_decision(hits, out)) return StoreStatus::internal;
  if (hits.empty()) return StoreStatus::ok;
  // A read-only transaction: it sees one consistent snapshot, takes no write
  // lock, and cannot record anything.
  Txn txn(env_->env, MDB_RDONLY);
  if (txn.begin_rc() == 0 && check_hits(txn.get(), env_->dbi, hits, now_ms, scratch(), out) == 0) {
    return StoreStatus::ok;
  }
  out.allowed = true;
  out.wait_ms.clear();
  return StoreStatus::unavailable;
}

namespace {

// Removes one stamp equal to `now` from `key`'s log, newest part first.
// Returns an LMDB error, or 0 (also when there is no such stamp).
int refund_one(MDB_txn* txn, MDB_dbi dbi, const std::string& key, std::int64_t now, Scratch& s) {
  MDB_val k = as_val(key);
  MDB_val v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  Log log;
  if (!parse_log(v, log) || now <= log.dropped_to) return 0;
  // Copy the log out: the writes below may move its page.
  const std::int64_t expires_ms = log.expires_ms;
  const SegState state{log.next_id, log.dropped_to};
  s.merged.resize(log.tail_count);
  if (log.tail_count > 0) std::memcpy(s.merged.data(), log.tail, 8 * s.merged.size());
  s.kept.clear();
  for (std::uint32_t i = 0; i < log.seg_count; ++i) s.kept.push_back(log.ref(i));

  const auto in_tail = std::find(s.merged.begin(), s.merged.end(), now);
  if (in_tail != s.merged.end()) {
    s.merged.erase(in_tail);
  } else {
    // In a segment whose span holds `now`, newest first.
    bool found = false;
    for (std::size_t i = s.kept.size(); i > 0 && !found;) {
      SegRef& ref = s.kept[--i];
      if (now < ref.first || now > ref.last) continue;
      std::int64_t seg_expires = 0;
      if ((rc = read_segment(txn, dbi, key, ref, s.seg_key, s.segment, seg_expires)) != 0) {
        return rc;
      }
      const auto at = std::find(s.segment.begin(), s.segment.end(), now);
      if (at == s.segment.end()) continue;
      found = true;
      s.segment.erase(at);
      if (s.segment.empty()) {
        if ((rc = del_segment(txn, dbi, key, ref.id, s.seg_key)) != 0) return rc;
        s.kept.erase(s.kept.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ref.first = s.segment.front();
        ref.last = s.segment.back();
        ref.count = static_cast<std::uint32_t>(s.segment.size());
        // The expiry stays as it was.
        if ((rc = put_segment(txn, dbi, key, ref, seg_expires, s.segment, s.seg_key)) != 0) {
          return rc;
        }
      }
    }
    if (!found) return 0;  // nothing to give back
  }
  if (s.merged.empty() && s.kept.empty()) return mdb_del(txn, dbi, &k, nullptr);
  // The expiry stays as it was.
  return put_log(txn, dbi, as_val(key), expires_ms, s.merged, s.kept.data(), s.kept.size(), state);
}

}  // namespace

StoreStatus LmdbStore::refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) {
  for (const auto& hit : hits) {
    if (broken_hit(hit) != nullptr) return StoreStatus::internal;
  }
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return StoreStatus::unavailable;
  Scratch& s = scratch();
  for (const auto& hit : hits) {
    if (refund_one(txn.get(), env_->dbi, hit.key, now_ms, s) != 0) return StoreStatus::unavailable;
  }
  return txn.commit() == 0 ? StoreStatus::ok : StoreStatus::unavailable;
}

namespace {

std::string session_key(const std::string& key) {
  std::string k(1, kSessionMark);
  return k.append(key);
}

// Reads the session under `k` into `out` when it is live and `owner`'s:
// 0 and `found` set; 0 and `found` false when it is not (unknown, expired,
// another's, damaged: the sweep's); an LMDB error otherwise.
int find_session(MDB_txn* txn, MDB_dbi dbi, MDB_val& k, const std::string& owner,
                 std::int64_t now_ms, Session& out, bool& found) {
  found = false;
  MDB_val v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc != 0) return rc;
  found = parse_session(v, out) && out.expires_ms > now_ms && out.owner == owner;
  return 0;
}

}  // namespace

StoreStatus LmdbStore::session_open(const std::string& key, const std::string& owner,
                                    std::int64_t now_ms, std::int64_t ttl_ms) {
  if (broken_session(key, owner) != nullptr || ttl_ms <= 0) return StoreStatus::internal;
  const std::string k = session_key(key);
  const std::string v = encode_session(Session{now_ms + ttl_ms, 0, now_ms, owner});
  for (int attempt = 0; attempt < 2; ++attempt) {
    Txn txn(env_->env, 0);
    if (txn.begin_rc() != 0) return StoreStatus::unavailable;
    MDB_val mk = as_val(k);
    MDB_val mv = as_val(v);
    int rc = mdb_put(txn.get(), env_->dbi, &mk, &mv, 0);
    if (rc == 0) rc = txn.commit();
    if (rc == 0) return StoreStatus::ok;
    if (rc != MDB_MAP_FULL) return StoreStatus::unavailable;
    if (attempt == 0) sweep_all(now_ms);  // as check_and_commit: expired entries only
  }
  return StoreStatus::full;
}

StoreStatus LmdbStore::session_attempt(const std::string& key, const std::string& owner,
                                       std::uint32_t max_attempts, std::int64_t now_ms,
                                       SessionAttempt& out) {
  out = SessionAttempt{};
  if (broken_session(key, owner) != nullptr) return StoreStatus::internal;
  const std::string k = session_key(key);
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return StoreStatus::unavailable;
  MDB_val mk = as_val(k);
  Session session;
  bool found = false;
  if (find_session(txn.get(), env_->dbi, mk, owner, now_ms, session, found) != 0) {
    return StoreStatus::unavailable;
  }
  if (!found) return StoreStatus::ok;  // unknown
  if (max_attempts > 0 && session.attempts >= max_attempts) {
    out.result = SessionAttempt::Result::locked;
    out.attempts = session.attempts;
    out.wait_ms = session.expires_ms - now_ms;
    return StoreStatus::ok;
  }
  ++session.attempts;
  const std::string v = encode_session(session);  // copies the owner off the page
  MDB_val next = as_val(v);
  int put = mdb_put(txn.get(), env_->dbi, &mk, &next, 0);
  if (put == 0) put = txn.commit();
  if (put == MDB_MAP_FULL) return StoreStatus::full;  // same size: not expected
  if (put != 0) return StoreStatus::unavailable;
  out.result = SessionAttempt::Result::ok;
  out.attempts = session.attempts;
  return StoreStatus::ok;
}

StoreStatus LmdbStore::session_consume(const std::string& key, const std::string& owner,
                                       std::int64_t now_ms, bool& consumed) {
  consumed = false;
  if (broken_session(key, owner) != nullptr) return StoreStatus::internal;
  const std::string k = session_key(key);
  Txn txn(env_->env, 0);
  if (txn.begin_rc() != 0) return StoreStatus::unavailable;
  MDB_val mk = as_val(k);
  Session session;
  bool found = false;
  if (find_session(txn.get(), env_->dbi, mk, owner, now_ms, session, found) != 0) {
    return StoreStatus::unavailable;
  }
  if (!found) return StoreStatus::ok;
  if (mdb_del(txn.get(), env_->dbi, &mk, nullptr) != 0 || txn.commit() != 0) {
    return StoreStatus::unavailable;
  }
  consumed = true;
  return StoreStatus::ok;
}

StoreStatus LmdbStore::claim_once(const std::string& key, std::int64_t now_ms, std::int64_t ttl_ms,
                                  bool& fresh) {
  fresh = false;
  if (broken_claim(key, ttl_ms) != nullptr) return StoreStatus::internal;
  std::string k(1, kClaimMark);
  k.append(key);
  const std::int64_t expires_ms = now_ms + ttl_ms;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // The read and the write share one write transaction, which LMDB
    // serialises across threads and processes: one caller sees no live claim.
    Txn txn(env_->env, 0);
    if (txn.begin_rc() != 0) return StoreStatus::unavailable;
    MDB_val mk = as_val(k);
    MDB_val found;
    int rc = mdb_get(txn.get(), env_->dbi, &mk, &found);
    if (rc != 0 && rc != MDB_NOTFOUND) return StoreStatus::unavailable;
    std::int64_t found_expires = 0;
    if (rc == 0 && parse_claim(found, found_expires) && found_expires > now_ms) {
      return StoreStatus::ok;  // claimed already
    }
    MDB_val mv{sizeof expires_ms, const_cast<std::int64_t*>(&expires_ms)};
    rc = mdb_put(txn.get(), env_->dbi, &mk, &mv, 0);
    if (rc == 0) rc = txn.commit();
    if (rc == 0) {
      fresh = true;
      return StoreStatus::ok;
    }
    if (rc != MDB_MAP_FULL) return StoreStatus::unavailable;
    if (attempt == 0) sweep_all(now_ms);  // as check_and_commit: expired entries only
  }
  return StoreStatus::full;
}

StoreStatus LmdbStore::ping() {
  Txn txn(env_->env, MDB_RDONLY);
  return txn.begin_rc() == 0 ? StoreStatus::ok : StoreStatus::unavailable;
}

// Used: the pages holding the data now (the main tree's branch, leaf and
// overflow pages, plus the two meta pages), which is what must fit; pages
// freed by deletes are reused, so the file's high-water mark would overstate
// it. Max: the map size (throttle.max_size_mb), the bound past which a write
// fails as full.
ThrottleStore::Usage LmdbStore::usage() {
  Usage u;
  MDB_envinfo info{};
  if (mdb_env_info(env_->env, &info) == 0) u.max_bytes = info.me_mapsize;
  Txn txn(env_->env, MDB_RDONLY);
  MDB_stat stat{};
  if (txn.begin_rc() == 0 && mdb_stat(txn.get(), env_->dbi, &stat) == 0) {
    u.used_bytes = (stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages + 2) *
                   static_cast<std::uint64_t>(stat.ms_psize);
  }
  return u;
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
      if (reclaimable(key, val, now_ms)) {
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
