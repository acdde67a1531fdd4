#include "redis_store.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <random>
#include <utility>

#include "run_gate.h"
#include "text.h"
#include "url.h"

namespace pvgate {
namespace {

// Why a sorted set (score = event time in ms, member = a unique nonce) and
// not a list: callers on different threads and hosts reach Redis with
// slightly out-of-order timestamps. A list orders events by arrival, so its
// "oldest" element would not be the oldest event and waits would be wrong; a
// sorted set orders by time whatever the arrival order. The set keeps only the
// newest `limit` events (ZREMRANGEBYRANK), so memory per key stays bounded by
// the limit, as in the LMDB engine.
//
// A hit is over its limit when the limit-th newest event is still inside the
// window (score > now - period): then `limit` events are in it. Its wait is
// the time until that event leaves. Events newer than `now` (a caller whose
// clock runs ahead) count too, which errs on the side of the limit.
//
// KEYS[i]: the hit's Redis key. ARGV[1]: now_ms; ARGV[2]: a nonce unique to
// this call, or "" for a peek, which checks and records nothing (it has no
// event to name); ARGV[3i], ARGV[3i+1], ARGV[3i+2]: limit, period_ms, enforce
// (1/0) of hit i. Returns {allowed (1/0), wait_ms of hit 1, ..., wait_ms of
// hit n}.
constexpr const char* kCheckScript = R"lua(
local now = tonumber(ARGV[1])
local result = {1}
local allowed = true
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i])
  local period = tonumber(ARGV[3 * i + 1])
  local wait = 0
  local nth = redis.call('ZREVRANGE', KEYS[i], limit - 1, limit - 1, 'WITHSCORES')
  if nth[2] then
    local leaves = tonumber(nth[2]) + period
    if leaves > now then
      wait = math.min(leaves - now, period)
      if ARGV[3 * i + 2] == '1' then allowed = false end
    end
  end
  result[i + 1] = wait
end
if not allowed then
  result[1] = 0
  return result
end
if ARGV[2] == '' then
  return result
end
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i])
  local period = tonumber(ARGV[3 * i + 1])
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2] .. ':' .. i)
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(limit + 1))
  -- Keep the key until this event leaves the window, never shortening a
  -- longer expiry set for an event stamped later than this one.
  if redis.call('PTTL', KEYS[i]) < period then
    redis.call('PEXPIRE', KEYS[i], period)
  end
end
return result
)lua";

// Removes one event scored exactly ARGV[1] from each key. Returns {removed}.
constexpr const char* kRefundScript = R"lua(
local removed = 0
for i = 1, #KEYS do
  local found = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], ARGV[1], 'LIMIT', 0, 1)
  if found[1] then
    removed = removed + redis.call('ZREM', KEYS[i], found[1])
  end
end
return {removed}
)lua";

// Sessions (throttle_store.h): a hash under key_prefix + '\x02' + the
// caller's key (no rule key, printable ASCII, can name it) with fields
// owner, issued, expires and attempts. Times are the caller's (ARGV).
constexpr char kSessionMark = '\x02';

// Open. ARGV: owner, now_ms, expires_ms, ttl_ms. Returns {1}. Redis drops
// the hash after ttl_ms by its own clock (relative, so clock skew between
// hosts and Redis cannot end a session early); `expires` decides before.
constexpr const char* kSessionOpenScript = R"lua(
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'issued', ARGV[2], 'expires', ARGV[3], 'attempts', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1}
)lua";

// Attempt. ARGV: owner, max_attempts (0 = no limit), now_ms. Returns
// {result, attempts, wait_ms}: result 0 unknown, 1 ok (counted), 2 locked.
constexpr const char* kSessionAttemptScript = R"lua(
local s = redis.call('HMGET', KEYS[1], 'owner', 'expires', 'attempts')
if not s[1] or s[1] ~= ARGV[1] or tonumber(s[2]) <= tonumber(ARGV[3]) then
  return {0, 0, 0}
end
local max = tonumber(ARGV[2])
local attempts = tonumber(s[3])
if max > 0 and attempts >= max then
  return {2, attempts, tonumber(s[2]) - tonumber(ARGV[3])}
end
return {1, redis.call('HINCRBY', KEYS[1], 'attempts', 1), 0}
)lua";

// Consume. ARGV: owner, now_ms. Returns {1} when this call ended the
// session, {0} when it was not there to end.
constexpr const char* kSessionConsumeScript = R"lua(
local s = redis.call('HMGET', KEYS[1], 'owner', 'expires')
if not s[1] or s[1] ~= ARGV[1] or tonumber(s[2]) <= tonumber(ARGV[2]) then
  return {0}
end
redis.call('DEL', KEYS[1])
return {1}
)lua";

// One-time claims (throttle_store.h): key_prefix + '\x03' + the caller's
// key, apart from rule keys (printable ASCII) and sessions ('\x02'), set by
// SET NX PX: one plain command, so atomic without a script, and expiring by
// Redis's own clock.
constexpr char kClaimMark = '\x03';

constexpr std::size_t kMaxHitKeyBytes = 200;  // ThrottleHit::key's documented bound
// Far beyond any real rule; keeps now + period exact in Lua's doubles.
constexpr std::int64_t kMaxPeriodMs = std::int64_t{1} << 45;
constexpr std::size_t kMaxErrorBytes = 200;  // of a hiredis or Redis error kept for the log

struct ReplyDeleter {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string clip(std::string text) {
  if (text.size() > kMaxErrorBytes) text.resize(kMaxErrorBytes);
  return text;
}

std::string make_nonce_prefix() {
  std::uint64_t value = 0;
  try {
    std::random_device rd;
    value = (std::uint64_t{rd()} << 32) ^ rd();
  } catch (...) {
    // No entropy source: the clock and the pid still differ between processes.
    value =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<std::uint64_t>(::getpid()) << 40);
  }
  unsigned char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<unsigned char>(value >> (56 - 8 * i));
  std::string out;
  append_hex(out, bytes, sizeof bytes);
  return out;
}

// ThrottleHit's documented ranges (broken_hit), and a period Lua's doubles
// keep exact. The config validates rules, so a failure here is a bug
// upstream: it is answered `internal` (refused whatever on_store_error says),
// never sent to Redis. Returns what broke, or nullptr.
const char* hit_problem(const ThrottleHit& hit) {
  if (const char* broken = broken_hit(hit)) return broken;
  if (hit.period_ms > kMaxPeriodMs) return "period over 2^45 ms";
  return nullptr;
}

}  // namespace

// ---- the store ------------------------------------------------------------

class RedisStore::Connection {
 public:
  Connection(redisContext* ctx, std::uint64_t generation) : ctx_(ctx), generation_(generation) {}
  ~Connection() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  redisContext* get() const { return ctx_; }
  std::uint64_t generation() const { return generation_; }
  std::string error() const { return clip(ctx_->errstr); }
  // Redis closed this connection (EOF, reset, broken pipe), as opposed to a
  // timeout: after a restart, CLIENT KILL or an idle `timeout`, every pooled
  // connection is dead this way although Redis itself is fine.
  bool peer_closed() const {
    if (ctx_->err == REDIS_ERR_EOF) return true;
    const std::string text = ctx_->errstr;
    return ctx_->err == REDIS_ERR_IO && (text.find("reset") != std::string::npos ||
                                         text.find("Broken pipe") != std::string::npos);
  }
  bool reused = false;  // taken from the idle pool (not connected for this call)

  // One command, binary-safe arguments. nullptr on an I/O error (then the
  // context is unusable: see error()).
  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    const BlockingSection waiting_on_redis;
    void* raw = redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data());
    return Reply(static_cast<redisReply*>(raw));
  }

 private:
  redisContext* ctx_;
  std::uint64_t generation_;
};

namespace {

bool is_error(const Reply& reply) {
  return reply->type == REDIS_REPLY_ERROR;
}

std::string reply_text(const Reply& reply) {
  return clip(reply->str != nullptr ? std::string(reply->str, reply->len) : std::string());
}

}  // namespace

std::unique_ptr<RedisStore> RedisStore::create(const RedisStoreOptions& options, std::string& error,
                                               const Clock* clock) {
  ParsedRedisUrl url;
  std::string url_error;
  if (!parse_redis_url(options.url, url, url_error)) {
    error = "url: " + url_error;
    return nullptr;
  }
  // hiredis (0.14) writes with write(2), not send(MSG_NOSIGNAL): a Redis
  // that closed the connection raises SIGPIPE, which by default kills the
  // process. The process must ignore it (pvgate's block_signals() does, as
  // do the unit tests' and benchmarks' mains); checked once here rather than
  // blocked and drained around every command (three system calls a call).
  struct sigaction pipe_action {};
  if (::sigaction(SIGPIPE, nullptr, &pipe_action) != 0 || pipe_action.sa_handler == SIG_DFL) {
    error = "SIGPIPE must be ignored (or handled) in a process that uses the Redis store";
    return nullptr;
  }
  if (options.connect_timeout.count() <= 0) {
    error = "connect_timeout must be > 0 ms";
    return nullptr;
  }
  if (options.command_timeout.count() <= 0) {
    error = "command_timeout must be > 0 ms";
    return nullptr;
  }
  if (options.retry_after.count() < 0) {
    error = "retry_after must be >= 0 ms";
    return nullptr;
  }
  if (options.key_prefix.size() > kMaxHitKeyBytes) {
    error = "key_prefix is longer than " + std::to_string(kMaxHitKeyBytes) + " bytes";
    return nullptr;
  }
  return std::unique_ptr<RedisStore>(new RedisStore(options, std::move(url), clock));
}

RedisStore::RedisStore(const RedisStoreOptions& options, ParsedRedisUrl url, const Clock* clock)
    : options_(options),
      url_(std::move(url)),
      own_clock_(clock == nullptr ? std::make_unique<SystemClock>() : nullptr),
      clock_(clock != nullptr ? *clock : *own_clock_),
      nonce_prefix_(make_nonce_prefix()) {}

RedisStore::~RedisStore() = default;

RedisStore::Stats RedisStore::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::string RedisStore::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

std::string RedisStore::primary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return primary_.host.empty() ? std::string() : redis_address_text(primary_);
}

void RedisStore::trip(const std::string& why, bool during_connect, std::uint64_t generation) {
  std::vector<std::unique_ptr<Connection>> dropped;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (during_connect) {
      ++stats_.connect_failures;
    } else {
      ++stats_.io_errors;
    }
    last_error_ = why;
    // A connection from before the last trip failing late (it was in flight
    // on a hung Redis) says nothing new, and must not reopen a breaker that
    // a successful probe has closed since.
    if (generation != generation_) return;
    breaker_open_ = true;
    retry_at_ = clock_.steady() + options_.retry_after;
    ++generation_;
    // With sentinels, any outage may be a failover: the probe that ends it
    // asks them where the primary is now. The breaker spaces the probes, so
    // the sentinels are asked at most once per retry_after.
    rediscover_ = true;
    dropped.swap(idle_);
  }
  // `dropped` closes its sockets here, outside the lock.
}

void RedisStore::note_error_reply(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.error_replies;
  last_error_ = why;
}

std::unique_ptr<RedisStore::Connection> RedisStore::acquire() {
  std::uint64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      conn->reused = true;
      return conn;
    }
    if (breaker_open_) {
      const auto now = clock_.steady();
      if (now < retry_at_) {
        ++stats_.short_circuited;
        return nullptr;
      }
      // This caller probes; every other one keeps failing fast meanwhile, so
      // a dead Redis sees one connect per retry_after, not one per request.
      retry_at_ = now + options_.retry_after;
    }
    ++stats_.connects;
    generation = generation_;
  }
  return connect(generation);
}

bool RedisStore::discover(RedisAddress& out, std::string& why) {
  const BlockingSection asking_sentinels;
  const timeval connect_tv = to_timeval(options_.connect_timeout);
  for (const RedisAddress& sentinel : url_.sentinels) {
    const std::string name = "sentinel " + redis_address_text(sentinel) + ": ";
    redisContext* ctx = redisConnectWithTimeout(sentinel.host.c_str(), sentinel.port, connect_tv);
    if (ctx == nullptr) {
      why = name + "out of memory";
      continue;
    }
    Connection conn(ctx, 0);
    if (ctx->err != 0) {
      why = name + conn.error();
      continue;
    }
    if (redisSetTimeout(ctx, to_timeval(options_.command_timeout)) != REDIS_OK) {
      why = name + "cannot set the command timeout";
      continue;
    }
    Reply reply = conn.command({"SENTINEL", "get-master-addr-by-name", url_.master_name});
    if (!reply) {
      why = name + conn.error();
      continue;
    }
    if (is_error(reply)) {
      why = name + reply_text(reply);
      continue;
    }
    // [ip, port], or nil when this sentinel monitors no master by that name.
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
      why = name + "knows no master named " + url_.master_name;
      continue;
    }
    std::int64_t port = 0;
    const std::string host(reply->element[0]->str, reply->element[0]->len);
    if (host.empty() || host.size() > kMaxRedisHostBytes ||
        !parse_decimal(std::string(reply->element[1]->str, reply->element[1]->len), 1, 65535,
                       port)) {
      why = name + "answered a malformed master address";
      continue;
    }
    out.host = host;
    out.port = static_cast<int>(port);
    return true;
  }
  return false;
}

bool RedisStore::demoted_reply(const std::string& text) const {
  // READONLY: a write reached a replica. MASTERDOWN: a replica that lost its
  // primary and serves no stale data. Either way the pool is on a node that
  // is no longer (or not yet) the primary.
  return url_.kind == ParsedRedisUrl::Kind::sentinel &&
         (text.compare(0, 8, "READONLY") == 0 || text.compare(0, 10, "MASTERDOWN") == 0);
}

void RedisStore::note_demoted(const Connection& conn, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.demoted;
  }
  trip(why, false, conn.generation());
}

std::unique_ptr<RedisStore::Connection> RedisStore::connect(std::uint64_t generation) {
  RedisAddress target{url_.host, url_.port};
  if (url_.kind == ParsedRedisUrl::Kind::sentinel) {
    bool ask = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ask = rediscover_ || primary_.host.empty();
      // Only this caller asks; the others (the pool growing meanwhile) use
      // the address known so far. A failure trips, which asks again.
      rediscover_ = false;
      target = primary_;
      if (ask) ++stats_.discoveries;
    }
    if (ask) {
      std::string why;
      if (!discover(target, why)) {
        trip(why, true, generation);
        return nullptr;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (target.host != primary_.host || target.port != primary_.port) {
        if (!primary_.host.empty()) ++stats_.primary_changes;
        primary_ = target;
      }
    } else if (target.host.empty()) {
      trip("sentinel: the primary is not known yet", true, generation);
      return nullptr;
    }
  }
  const timeval connect_tv = to_timeval(options_.connect_timeout);
  const BlockingSection connecting;
  redisContext* ctx = url_.kind == ParsedRedisUrl::Kind::unix_socket
                          ? redisConnectUnixWithTimeout(url_.path.c_str(), connect_tv)
                          : redisConnectWithTimeout(target.host.c_str(), target.port, connect_tv);
  if (ctx == nullptr) {
    trip("connect: out of memory", true, generation);
    return nullptr;
  }
  auto conn = std::make_unique<Connection>(ctx, generation);
  if (ctx->err != 0) {
    trip("connect: " + conn->error(), true, generation);
    return nullptr;
  }
  if (redisSetTimeout(ctx, to_timeval(options_.command_timeout)) != REDIS_OK) {
    trip("connect: cannot set the command timeout", true, generation);
    return nullptr;
  }
  if (!url_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!url_.user.empty()) auth.push_back(url_.user);
    auth.push_back(url_.password);
    Reply reply = conn->command(auth);
    if (!reply) {
      trip("AUTH: " + conn->error(), true, generation);
      return nullptr;
    }
    // Redis's answer names no credential ("WRONGPASS invalid username-password pair").
    if (is_error(reply)) {
      trip("AUTH: " + reply_text(reply), true, generation);
      return nullptr;
    }
  }
  if (url_.db != 0) {
    Reply reply = conn->command({"SELECT", std::to_string(url_.db)});
    if (!reply) {
      trip("SELECT: " + conn->error(), true, generation);
      return nullptr;
    }
    if (is_error(reply)) {
      trip("SELECT: " + reply_text(reply), true, generation);
      return nullptr;
    }
  }
  if (url_.kind == ParsedRedisUrl::Kind::sentinel) {
    // The sentinels' answer may be stale (a failover under way, or a
    // demoted node they have not reconfigured yet): trust the node only
    // when it says it is a master. ROLE first; INFO replication when an ACL
    // refuses ROLE.
    Reply reply = conn->command({"ROLE"});
    if (!reply) {
      trip("ROLE: " + conn->error(), true, generation);
      return nullptr;
    }
    bool master = false;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
        reply->element[0]->type == REDIS_REPLY_STRING) {
      master = std::string(reply->element[0]->str, reply->element[0]->len) == "master";
    } else if (is_error(reply)) {
      Reply info = conn->command({"INFO", "replication"});
      if (!info) {
        trip("INFO: " + conn->error(), true, generation);
        return nullptr;
      }
      master = info->type == REDIS_REPLY_STRING &&
               std::string(info->str, info->len).find("role:master") != std::string::npos;
    }
    if (!master) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.demoted;
      }
      trip("sentinel: " + redis_address_text(target) + " is not a master (yet)", true, generation);
      return nullptr;
    }
  }
  return conn;
}

void RedisStore::release(std::unique_ptr<Connection> conn) {
  std::unique_ptr<Connection> stale;  // closed after the lock is released
  std::lock_guard<std::mutex> lock(mutex_);
  if (conn->generation() != generation_) {
    stale = std::move(conn);
    return;
  }
  breaker_open_ = false;  // Redis answered: close the breaker
  idle_.push_back(std::move(conn));
}

namespace {

// Runs `once(stale)`, and once more when it set `stale`: a pooled connection
// Redis had closed, so the command never ran (that connection's server side
// was gone before it was written) and retrying once on a fresh connection
// cannot count an event or take a claim twice.
template <typename Once>
StoreStatus once_more_if_stale(const Once& once) {
  bool stale = false;
  const StoreStatus first = once(stale);
  if (!stale) return first;
  return once(stale);
}

}  // namespace

StoreStatus RedisStore::run_script(Script script, const std::vector<std::string>& keys,
                                   const std::vector<std::string>& args,
                                   std::vector<long long>& reply_ints) {
  return once_more_if_stale(
      [&](bool& stale) { return run_script_once(script, keys, args, reply_ints, stale); });
}

StoreStatus RedisStore::run_command(const std::vector<std::string>& argv, ReplyKind& kind) {
  return once_more_if_stale([&](bool& stale) { return run_command_once(argv, kind, stale); });
}

void RedisStore::drop_idle() {
  std::vector<std::unique_ptr<Connection>> dropped;
  std::lock_guard<std::mutex> lock(mutex_);
  dropped.swap(idle_);
}

StoreStatus RedisStore::io_failure(const Connection& conn, const std::string& what, bool& stale) {
  if (conn.reused && conn.peer_closed()) {
    stale = true;
    drop_idle();
    return StoreStatus::unavailable;
  }
  trip(what + conn.error(), false, conn.generation());
  return StoreStatus::unavailable;
}

StoreStatus RedisStore::run_command_once(const std::vector<std::string>& argv, ReplyKind& kind,
                                         bool& stale) {
  kind = ReplyKind::other;
  stale = false;
  std::unique_ptr<Connection> conn = acquire();
  if (!conn) return StoreStatus::unavailable;
  Reply reply = conn->command(argv);
  if (!reply) return io_failure(*conn, argv[0] + ": ", stale);
  if (is_error(reply)) {
    if (demoted_reply(reply_text(reply))) {
      note_demoted(*conn, argv[0] + ": " + reply_text(reply));
      return StoreStatus::unavailable;
    }
    note_error_reply(argv[0] + ": " + reply_text(reply));
    release(std::move(conn));
    return StoreStatus::unavailable;
  }
  if (reply->type == REDIS_REPLY_NIL) {
    kind = ReplyKind::nil;
  } else if (reply->type == REDIS_REPLY_STATUS && reply_text(reply) == "OK") {
    kind = ReplyKind::ok;
  }
  release(std::move(conn));
  return StoreStatus::ok;
}

StoreStatus RedisStore::run_script_once(Script script, const std::vector<std::string>& keys,
                                        const std::vector<std::string>& args,
                                        std::vector<long long>& reply_ints, bool& stale) {
  reply_ints.clear();
  stale = false;
  std::unique_ptr<Connection> conn = acquire();
  if (!conn) return StoreStatus::unavailable;
  const auto fail_io = [&](const std::string& what) { return io_failure(*conn, what, stale); };

  // In Script's order.
  static constexpr const char* kSources[] = {kCheckScript, kRefundScript, kSessionOpenScript,
                                             kSessionAttemptScript, kSessionConsumeScript};
  static_assert(std::size(kSources) == static_cast<std::size_t>(Script::kCount));
  const char* source = kSources[static_cast<int>(script)];
  std::string sha;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sha = script_sha_[static_cast<int>(script)];
  }
  // Loads the script (first use, or after Redis restarted or SCRIPT FLUSH).
  auto load = [&]() -> StoreStatus {
    Reply reply = conn->command({"SCRIPT", "LOAD", source});
    if (!reply) return fail_io("SCRIPT LOAD: ");
    if (reply->type != REDIS_REPLY_STRING) {
      note_error_reply("SCRIPT LOAD: " + (is_error(reply) ? reply_text(reply) : "bad reply"));
      release(std::move(conn));
      return StoreStatus::unavailable;
    }
    sha.assign(reply->str, reply->len);
    std::lock_guard<std::mutex> lock(mutex_);
    script_sha_[static_cast<int>(script)] = sha;
    return StoreStatus::ok;
  };
  if (sha.empty() && load() != StoreStatus::ok) return StoreStatus::unavailable;

  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(sha);
  argv.push_back(std::to_string(keys.size()));
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());

  Reply reply = conn->command(argv);
  if (reply && is_error(reply) && reply_text(reply).compare(0, 8, "NOSCRIPT") == 0) {
    if (load() != StoreStatus::ok) return StoreStatus::unavailable;
    argv[1] = sha;
    reply = conn->command(argv);
  }
  if (!reply) return fail_io("EVALSHA: ");
  if (is_error(reply)) {
    if (demoted_reply(reply_text(reply))) {
      note_demoted(*conn, "EVALSHA: " + reply_text(reply));
      return StoreStatus::unavailable;
    }
    note_error_reply("EVALSHA: " + reply_text(reply));
    release(std::move(conn));
    return StoreStatus::unavailable;
  }
  bool well_formed = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0;
  for (std::size_t i = 0; well_formed && i < reply->elements; ++i) {
    if (reply->element[i]->type != REDIS_REPLY_INTEGER) {
      well_formed = false;
    } else {
      reply_ints.push_back(reply->element[i]->integer);
    }
  }
  if (!well_formed) {
    reply_ints.clear();
    note_error_reply("EVALSHA: unexpected reply shape");
    release(std::move(conn));
    return StoreStatus::unavailable;
  }
  release(std::move(conn));
  return StoreStatus::ok;
}

StoreStatus RedisStore::check_and_commit(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                                         ThrottleDecision& out) {
  return decide(hits, now_ms, /*record=*/true, out);
}

StoreStatus RedisStore::peek(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                             ThrottleDecision& out) {
  return decide(hits, now_ms, /*record=*/false, out);
}

StoreStatus RedisStore::decide(const std::vector<ThrottleHit>& hits, std::int64_t now_ms,
                               bool record, ThrottleDecision& out) {
  out = ThrottleDecision{};
  if (hits.empty()) return StoreStatus::ok;
  std::vector<std::string> keys;
  std::vector<std::string> args;
  keys.reserve(hits.size());
  args.reserve(2 + 3 * hits.size());
  args.push_back(std::to_string(now_ms));
  // The check script records only with a nonce to name the event by.
  args.push_back(record ? nonce_prefix_ + ":" +
                              std::to_string(nonce_counter_.fetch_add(1, std::memory_order_relaxed))
                        : std::string());
  for (std::size_t i = 0; i < hits.size(); ++i) {
    const ThrottleHit& hit = hits[i];
    if (const char* broken = hit_problem(hit)) {
      out.broken = broken;
      out.broken_hit = i;
      return StoreStatus::internal;
    }
    keys.push_back(options_.key_prefix + hit.key);
    args.push_back(std::to_string(hit.limit));
    args.push_back(std::to_string(hit.period_ms));
    args.push_back(hit.enforce ? "1" : "0");
  }
  std::vector<long long> ints;
  const StoreStatus status = run_script(Script::check, keys, args, ints);
  if (status != StoreStatus::ok) return status;
  if (ints.size() != hits.size() + 1) {
    note_error_reply("EVALSHA: unexpected reply length");
    return StoreStatus::unavailable;
  }
  out.allowed = ints[0] == 1;
  out.wait_ms.assign(ints.begin() + 1, ints.end());
  return StoreStatus::ok;
}

StoreStatus RedisStore::refund(const std::vector<ThrottleHit>& hits, std::int64_t now_ms) {
  if (hits.empty()) return StoreStatus::ok;
  std::vector<std::string> keys;
  keys.reserve(hits.size());
  for (const auto& hit : hits) {
    if (hit_problem(hit) != nullptr) return StoreStatus::internal;
    keys.push_back(options_.key_prefix + hit.key);
  }
  std::vector<long long> ints;
  return run_script(Script::refund, keys, {std::to_string(now_ms)}, ints);
}

StoreStatus RedisStore::session_open(const std::string& key, const std::string& owner,
                                     std::int64_t now_ms, std::int64_t ttl_ms) {
  if (broken_session(key, owner) != nullptr || ttl_ms <= 0 || ttl_ms > kMaxPeriodMs) {
    return StoreStatus::internal;
  }
  std::vector<long long> ints;
  return run_script(
      Script::session_open, {options_.key_prefix + kSessionMark + key},
      {owner, std::to_string(now_ms), std::to_string(now_ms + ttl_ms), std::to_string(ttl_ms)},
      ints);
}

StoreStatus RedisStore::session_attempt(const std::string& key, const std::string& owner,
                                        std::uint32_t max_attempts, std::int64_t now_ms,
                                        SessionAttempt& out) {
  out = SessionAttempt{};
  if (broken_session(key, owner) != nullptr) return StoreStatus::internal;
  std::vector<long long> ints;
  const StoreStatus status =
      run_script(Script::session_attempt, {options_.key_prefix + kSessionMark + key},
                 {owner, std::to_string(max_attempts), std::to_string(now_ms)}, ints);
  if (status != StoreStatus::ok) return status;
  if (ints.size() != 3 || ints[0] < 0 || ints[0] > 2) {
    note_error_reply("EVALSHA: unexpected session reply");
    return StoreStatus::unavailable;
  }
  out.result = ints[0] == 1   ? SessionAttempt::Result::ok
               : ints[0] == 2 ? SessionAttempt::Result::locked
                              : SessionAttempt::Result::unknown;
  out.attempts = static_cast<std::uint32_t>(std::max<long long>(0, ints[1]));
  out.wait_ms = ints[2];
  return StoreStatus::ok;
}

StoreStatus RedisStore::session_consume(const std::string& key, const std::string& owner,
                                        std::int64_t now_ms, bool& consumed) {
  consumed = false;
  if (broken_session(key, owner) != nullptr) return StoreStatus::internal;
  std::vector<long long> ints;
  const StoreStatus status =
      run_script(Script::session_consume, {options_.key_prefix + kSessionMark + key},
                 {owner, std::to_string(now_ms)}, ints);
  if (status != StoreStatus::ok) return status;
  if (ints.size() != 1) {
    note_error_reply("EVALSHA: unexpected session reply");
    return StoreStatus::unavailable;
  }
  consumed = ints[0] == 1;
  return StoreStatus::ok;
}

StoreStatus RedisStore::claim_once(const std::string& key, std::int64_t /*now_ms*/,
                                   std::int64_t ttl_ms, bool& fresh) {
  fresh = false;
  if (broken_claim(key, ttl_ms) != nullptr) return StoreStatus::internal;
  ReplyKind kind = ReplyKind::other;
  const StoreStatus status = run_command(
      {"SET", options_.key_prefix + kClaimMark + key, "1", "NX", "PX", std::to_string(ttl_ms)},
      kind);
  if (status != StoreStatus::ok) return status;
  // OK: this call set it; nil: NX found it set (and not yet expired by Redis).
  if (kind == ReplyKind::other) {
    note_error_reply("SET: unexpected claim reply");
    return StoreStatus::unavailable;
  }
  fresh = kind == ReplyKind::ok;
  return StoreStatus::ok;
}

StoreStatus RedisStore::ping() {
  std::unique_ptr<Connection> conn = acquire();
  if (!conn) return StoreStatus::unavailable;
  Reply reply = conn->command({"PING"});
  if (!reply) {
    trip("PING: " + conn->error(), false, conn->generation());
    return StoreStatus::unavailable;
  }
  if (reply->type != REDIS_REPLY_STATUS) {
    note_error_reply("PING: " + (is_error(reply) ? reply_text(reply) : "bad reply"));
    release(std::move(conn));
    return StoreStatus::unavailable;
  }
  release(std::move(conn));
  return StoreStatus::ok;
}

// Redis's own INFO memory: used_memory is the whole server's (other keys
// included, and shared by every host), maxmemory its bound; maxmemory 0 means
// no bound, so the max stays unknown rather than a made-up number.
ThrottleStore::Usage RedisStore::usage() {
  Usage u;
  std::unique_ptr<Connection> conn = acquire();
  if (!conn) return u;
  Reply reply = conn->command({"INFO", "memory"});
  if (!reply) {
    trip("INFO: " + conn->error(), false, conn->generation());
    return u;
  }
  if (reply->type == REDIS_REPLY_STRING) {
    const std::string text(reply->str, reply->len);
    const auto field = [&text](const char* key) -> std::optional<std::uint64_t> {
      const std::string want = std::string("\n") + key + ":";
      const std::size_t at = ("\n" + text).find(want);
      if (at == std::string::npos) return std::nullopt;
      return std::strtoull(text.c_str() + at + want.size() - 1, nullptr, 10);
    };
    u.used_bytes = field("used_memory");
    const auto max = field("maxmemory");
    if (max && *max > 0) u.max_bytes = max;
  }
  release(std::move(conn));
  return u;
}

}  // namespace pvgate
