// The Redis engine of ThrottleStore: many pvgate hosts share their throttle
// counts through one Redis. The only module that includes hiredis.
//
// Each check is one Lua script run server-side (EVALSHA), so the whole
// check-and-commit across every hit is atomic with respect to every other
// pvgate on every host; a one-time claim is one SET NX. Every key carries an
// expiry, so idle keys vanish on their own and Redis needs no cleanup job.
//
// A dead or hung Redis must not add seconds to every request: each connection
// has a connect and a command timeout; on an I/O error the store opens a
// circuit breaker and answers `unavailable` without touching the network until
// `retry_after` has passed, then lets one caller probe. It recovers by itself.
//
// High availability (redis-sentinel://): the store asks the sentinels for the
// primary's address, checks with ROLE that the node there is a master, and
// connects the pool to it. When the primary stops answering, or answers with
// an error that says it was demoted (READONLY, a ROLE other than master), the
// breaker opens as for any outage and the next probe (at most one per
// `retry_after`) asks the sentinels again, so the pool follows a failover by
// itself. Replication is asynchronous and WAIT is not used: counts, sessions
// and claims written to the old primary and not yet replicated are lost with
// it (the README says what that means).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "clock.h"
#include "throttle_store.h"
#include "url.h"

namespace pvgate {

struct RedisStoreOptions {
  std::string url;
  std::chrono::milliseconds connect_timeout{100};  // per connect attempt (DNS lookup excluded)
  std::chrono::milliseconds command_timeout{100};  // per blocking read or write of a command
  std::chrono::milliseconds retry_after{500};      // circuit breaker: wait between reconnect tries
  std::string key_prefix = "pvgate:";              // Redis key = key_prefix + ThrottleHit::key
};

class RedisStore final : public ThrottleStore {
 public:
  // Counters for health reporting and tests; monotonic since construction.
  struct Stats {
    std::uint64_t connects = 0;          // connection attempts (each one touches the network)
    std::uint64_t connect_failures = 0;  // connect, AUTH or SELECT failed
    std::uint64_t io_errors = 0;         // a command on an established connection failed
    std::uint64_t error_replies = 0;     // Redis answered with an error (other than NOSCRIPT)
    std::uint64_t short_circuited = 0;   // calls answered `unavailable` by the open breaker
    std::uint64_t discoveries = 0;       // sentinel: times the sentinels were asked
    std::uint64_t primary_changes = 0;   // sentinel: the primary's address changed (a failover)
    std::uint64_t demoted = 0;           // sentinel: READONLY, or ROLE not master, from the primary
  };

  // Returns nullptr and an error (naming the option, never quoting the URL)
  // when the options are invalid, or when SIGPIPE is not ignored: hiredis
  // writes with write(2), so a Redis that closed a connection would raise it
  // and kill the process (pvgate's main ignores it in block_signals()). Does not connect: the first
  // call does, so pvgate starts even while Redis is down. `clock` (only its steady() is read, for
  // the breaker) must outlive the store; nullptr = the system clock.
  static std::unique_ptr<RedisStore> create(const RedisStoreOptions& options, std::string& error,
                                            const Clock* clock = nullptr);

  ~RedisStore() override;
  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // All of these are safe to call from many threads at once and never throw.
  // Hits that break ThrottleHit's documented ranges answer `internal`.
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

  Stats stats() const;
  // The last failure, for the log: a hiredis or Redis error text (no secret).
  std::string last_error() const;
  // sentinel: the primary the pool connects to ("host:port"), "" before the
  // first discovery. Other forms: "".
  std::string primary() const;

 private:
  class Connection;  // RAII owner of one redisContext*; defined in redis_store.cpp

  RedisStore(const RedisStoreOptions& options, ParsedRedisUrl url, const Clock* clock);

  enum class Script { check, refund, session_open, session_attempt, session_consume, kCount };
  StoreStatus run_script_once(Script script, const std::vector<std::string>& keys,
                              const std::vector<std::string>& args,
                              std::vector<long long>& reply_ints, bool& stale);
  void drop_idle();
  // An I/O failure of `conn`. A pooled connection that Redis had closed is
  // not an outage: the command never ran, so `stale` asks for one retry and
  // the pool (its other members died the same way) is dropped; anything else
  // trips the breaker.
  StoreStatus io_failure(const Connection& conn, const std::string& what, bool& stale);

  // check_and_commit (`record`) and peek: the check script either way.
  StoreStatus decide(const std::vector<ThrottleHit>& hits, std::int64_t now_ms, bool record,
                     ThrottleDecision& out);

  // What a plain command answered, as far as the store reads it.
  enum class ReplyKind { ok, nil, other };  // +OK, a nil reply, anything else but an error
  // Runs one plain command (not a script); an error reply answers
  // `unavailable`. Retried once on a stale pooled connection, as run_script.
  StoreStatus run_command(const std::vector<std::string>& argv, ReplyKind& kind);
  StoreStatus run_command_once(const std::vector<std::string>& argv, ReplyKind& kind, bool& stale);

  // Takes an idle connection or opens one; nullptr while the breaker is open
  // or when connecting fails (the breaker is then opened).
  std::unique_ptr<Connection> acquire();
  // Returns a connection that got an answer from Redis to the pool and
  // closes the breaker, unless a trip() happened since it was opened.
  void release(std::unique_ptr<Connection> conn);
  // Connects, sets the command timeout, AUTH, SELECT (and with sentinels:
  // finds the primary first when asked to, and checks its ROLE); trips on
  // failure.
  std::unique_ptr<Connection> connect(std::uint64_t generation);
  // Asks each sentinel in turn for the primary's address (connect and command
  // timeout each); true with `out` from the first one that names it.
  bool discover(RedisAddress& out, std::string& why);
  // The Redis error reply `text` says the node is no longer the primary
  // (sentinel mode): the pool is dropped and the sentinels are asked again.
  bool demoted_reply(const std::string& text) const;
  void note_demoted(const Connection& conn, const std::string& why);
  // Opens the breaker and drops every idle connection (they share the fate of
  // the one that failed: a dead Redis would cost each of them a timeout).
  // Only a failure of a current-generation connection trips.
  void trip(const std::string& why, bool during_connect, std::uint64_t generation);
  void note_error_reply(const std::string& why);

  // Runs `script` by EVALSHA (SCRIPT LOAD first, and again on NOSCRIPT);
  // fills `reply_ints` from its array-of-integers reply.
  StoreStatus run_script(Script script, const std::vector<std::string>& keys,
                         const std::vector<std::string>& args, std::vector<long long>& reply_ints);

  const RedisStoreOptions options_;
  const ParsedRedisUrl url_;
  std::unique_ptr<Clock> own_clock_;  // set when no clock was passed in
  const Clock& clock_;
  const std::string nonce_prefix_;  // makes event members unique across processes and hosts
  std::atomic<std::uint64_t> nonce_counter_{0};

  mutable std::mutex mutex_;  // guards everything below
  std::vector<std::unique_ptr<Connection>> idle_;
  std::uint64_t generation_ = 0;  // bumped by trip(); older connections are not pooled again
  bool breaker_open_ = false;
  std::chrono::steady_clock::time_point retry_at_{};  // while open: next probe allowed at
  // SHA1 of each script, as SCRIPT LOAD returned it ("" until loaded).
  std::string script_sha_[static_cast<int>(Script::kCount)];
  Stats stats_;
  std::string last_error_;
  // sentinel: where the pool connects, and whether the next connect asks the
  // sentinels first (at the start, and after any trip).
  RedisAddress primary_;
  bool rediscover_ = true;
};

}  // namespace pvgate
