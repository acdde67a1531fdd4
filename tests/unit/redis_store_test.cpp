// RedisStore beyond the shared contract (store_contract_test.cpp): URL
// parsing, expiry, the sorted-set details, AUTH/SELECT, and what happens when
// Redis dies, comes back, or hangs. Runs against the private redis-server of
// redis_fixture.h; the hung server is a loopback listener that never answers.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "redis_fixture.h"
#include "redis_store.h"

using namespace pvgate;
using pvgate_test::RedisServer;
using std::chrono::milliseconds;

namespace {

constexpr std::int64_t kT0 = 1'700'000'000'000;
constexpr std::int64_t kMinute = 60'000;
constexpr milliseconds kCallBound{1000};  // no call may take this long (a bound, not a bench)
constexpr milliseconds kRecoveryDeadline{5000};  // a restarted Redis must be usable by then

// Only steady() matters to the store: it drives the circuit breaker.
class BreakerClock final : public Clock {
 public:
  std::int64_t unix_ms() const override { return kT0; }
  std::chrono::steady_clock::time_point steady() const override {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns_.load()));
  }
  void advance(milliseconds d) { ns_ += std::chrono::nanoseconds(d).count(); }

 private:
  std::atomic<std::int64_t> ns_{1'000'000'000};
};

template <class F>
milliseconds time_of(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
}

StoreStatus check(ThrottleStore& store, const std::vector<ThrottleHit>& hits, std::int64_t now,
                  ThrottleDecision* out = nullptr) {
  ThrottleDecision d;
  const StoreStatus status = store.check_and_commit(hits, now, d);
  if (out != nullptr) *out = d;
  return status;
}

std::string redis(const std::vector<std::string>& argv) {
  return RedisServer::instance().command(argv);
}

// A loopback TCP listener that completes handshakes (the kernel's backlog)
// but never accepts or reads: a Redis that hangs.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::string url(const std::string& credentials = "") const {
    return "redis://" + credentials + "127.0.0.1:" + std::to_string(port_);
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace

// ---- URL parsing ------------------------------------------------------------

TEST_CASE("redis url: accepted forms", "[redis][url]") {
  using Kind = ParsedRedisUrl::Kind;
  struct Good {
    std::string url;
    Kind kind;
    std::string host_or_path;
    int port;
    std::string user;
    std::string password;
    std::int64_t db;
  };
  const std::vector<Good> cases{
      {"redis://127.0.0.1", Kind::tcp, "127.0.0.1", 6379, "", "", 0},
      {"redis://localhost:6380/2", Kind::tcp, "localhost", 6380, "", "", 2},
      {"redis://redis.internal/", Kind::tcp, "redis.internal", 6379, "", "", 0},
      {"REDIS://Cache-1.example_net:1", Kind::tcp, "Cache-1.example_net", 1, "", "", 0},
      {"redis://h:65535/2147483647", Kind::tcp, "h", 65535, "", "", 2147483647},
      {"redis://:s3cret@10.0.0.5:6379/0", Kind::tcp, "10.0.0.5", 6379, "", "s3cret", 0},
      {"redis://pvgate:s3cret@10.0.0.5/15", Kind::tcp, "10.0.0.5", 6379, "pvgate", "s3cret", 15},
      {"redis://:p%40ss%2Fw%3Ard%25@h", Kind::tcp, "h", 6379, "", "p@ss/w:rd%", 0},
      {"redis://:p@ss/w:rd@h:7/3", Kind::tcp, "h", 7, "", "p@ss/w:rd", 3},  // unencoded
      {"redis://[::1]", Kind::tcp, "::1", 6379, "", "", 0},
      {"redis://[fe80::1:2]:7000/1", Kind::tcp, "fe80::1:2", 7000, "", "", 1},
      {"redis://[::ffff:127.0.0.1]:6379", Kind::tcp, "::ffff:127.0.0.1", 6379, "", "", 0},
      {"unix:///run/redis/redis.sock", Kind::unix_socket, "/run/redis/redis.sock", 6379, "", "", 0},
      {"unix:///tmp/r.sock?db=4", Kind::unix_socket, "/tmp/r.sock", 6379, "", "", 4},
      {"unix://:s3cret@/tmp/r.sock?db=1", Kind::unix_socket, "/tmp/r.sock", 6379, "", "s3cret", 1},
      {"unix://u:s%3Acret@/tmp/r.sock", Kind::unix_socket, "/tmp/r.sock", 6379, "u", "s:cret", 0},
      {"unix:///" + std::string(kMaxRedisSocketPathBytes - 1, 'p'), Kind::unix_socket,
       "/" + std::string(kMaxRedisSocketPathBytes - 1, 'p'), 6379, "", "", 0},
      {"redis://" + std::string(kMaxRedisHostBytes, 'h'), Kind::tcp,
       std::string(kMaxRedisHostBytes, 'h'), 6379, "", "", 0},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    ParsedRedisUrl parsed;
    std::string error;
    REQUIRE(parse_redis_url(c.url, parsed, error));
    CHECK(error.empty());
    CHECK(parsed.kind == c.kind);
    CHECK((c.kind == Kind::tcp ? parsed.host : parsed.path) == c.host_or_path);
    if (c.kind == Kind::tcp) CHECK(parsed.port == c.port);
    CHECK(parsed.user == c.user);
    CHECK(parsed.password == c.password);
    CHECK(parsed.db == c.db);
  }
}

TEST_CASE("redis url: rejected forms, and the password never appears in the error",
          "[redis][url]") {
  const std::vector<std::string> cases{
      "",
      "s3cret",
      "http://:s3cret@h",
      "redis:/h",
      "redis://",
      "redis://:s3cret@",
      "redis://:s3cret@:6379",
      "redis://:s3cret@h:0",
      "redis://:s3cret@h:65536",
      "redis://:s3cret@h:99999999999999999999",
      "redis://:s3cret@h:",
      "redis://:s3cret@h:-1",
      "redis://:s3cret@h:+1",
      "redis://:s3cret@h:abc",
      "redis://:s3cret@h/x",
      "redis://:s3cret@h/-1",
      "redis://:s3cret@h/2147483648",
      "redis://:s3cret@h/0?db=1",
      "redis://s3cret@h",         // no ':' before the password
      "redis://user:@h",          // empty password
      "redis://:s3cr%zzet@h",     // bad escape
      "redis://:s3cret%4@h",      // truncated escape
      "redis://:s3cret@[::1",     // no ']'
      "redis://:s3cret@[::1]x",   // junk after ']'
      "redis://:s3cret@[::1]:",   // empty port
      "redis://:s3cret@[zz::1]",  // not hex
      "redis://:s3cret@[127.0.0.1]",
      "redis://:s3cret@h h",
      "redis://:s3cret@h\n",
      std::string("redis://:s3cret@h\0x", 19),
      "redis://:s3cret@" + std::string(kMaxRedisHostBytes + 1, 'h'),
      "redis://:s3cret@h/" + std::string(kMaxRedisUrlBytes, '1'),
      "rediss://:s3cret@h",
      "unix://",
      "unix:///",
      "unix:/tmp/r.sock",
      "unix://relative.sock",
      "unix://:s3cret@tmp/r.sock",
      "unix://:s3cret@/tmp/dir/",
      "unix://:s3cret@/tmp/r.sock?db=x",
      "unix://:s3cret@/tmp/r.sock?db=",
      "unix://:s3cret@/tmp/r.sock?foo=1",
      "unix:///tmp/r.sock?db=1&password=s3cret",
      "unix:///" + std::string(kMaxRedisSocketPathBytes, 'p'),
  };
  for (const auto& url : cases) {
    INFO(url);
    ParsedRedisUrl parsed;
    std::string error;
    CHECK_FALSE(parse_redis_url(url, parsed, error));
    CHECK_FALSE(error.empty());
    CHECK(error.find("s3cret") == std::string::npos);
    CHECK(error.find("s3cr") == std::string::npos);

    RedisStoreOptions options;
    options.url = url;
    std::string create_error;
    CHECK(RedisStore::create(options, create_error) == nullptr);
    CHECK(create_error.find("s3cr") == std::string::npos);
  }
}

TEST_CASE("redis url: sentinel forms", "[redis][url][sentinel]") {
  struct Good {
    std::string url;
    std::vector<std::string> sentinels;  // "host:port" as redacted_redis_url writes them
    std::string master;
    std::string user;
    std::string password;
    std::int64_t db;
    std::string shown;  // redacted_redis_url
  };
  const std::vector<Good> cases{
      {"redis-sentinel://127.0.0.1:26379/mymaster",
       {"127.0.0.1:26379"},
       "mymaster",
       "",
       "",
       0,
       "redis-sentinel://127.0.0.1:26379/mymaster?db=0"},
      {"redis-sentinel://:s3cret@a:1,b:2,c/main-1.x_y?db=3",
       {"a:1", "b:2", "c:26379"},
       "main-1.x_y",
       "",
       "s3cret",
       3,
       "redis-sentinel://:***@a:1,b:2,c:26379/main-1.x_y?db=3"},
      {"REDIS-SENTINEL://u:p%40ss@[::1]:5000,10.0.0.2:26380/m",
       {"[::1]:5000", "10.0.0.2:26380"},
       "m",
       "u",
       "p@ss",
       0,
       "redis-sentinel://u:***@[::1]:5000,10.0.0.2:26380/m?db=0"},
      {"redis-sentinel://:p@ss/w@h:1/m?db=2147483647",
       {"h:1"},
       "m",
       "",
       "p@ss/w",
       2147483647,
       "redis-sentinel://:***@h:1/m?db=2147483647"},
      {"redis-sentinel://h:1/" + std::string(kMaxRedisMasterNameBytes, 'm'),
       {"h:1"},
       std::string(kMaxRedisMasterNameBytes, 'm'),
       "",
       "",
       0,
       "redis-sentinel://h:1/" + std::string(kMaxRedisMasterNameBytes, 'm') + "?db=0"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    ParsedRedisUrl parsed;
    std::string error;
    REQUIRE(parse_redis_url(c.url, parsed, error));
    CHECK(error.empty());
    CHECK(parsed.kind == ParsedRedisUrl::Kind::sentinel);
    std::vector<std::string> sentinels;
    for (const auto& s : parsed.sentinels) {
      sentinels.push_back((s.host.find(':') != std::string::npos ? "[" + s.host + "]" : s.host) +
                          ":" + std::to_string(s.port));
    }
    CHECK(sentinels == c.sentinels);
    CHECK(parsed.master_name == c.master);
    CHECK(parsed.user == c.user);
    CHECK(parsed.password == c.password);
    CHECK(parsed.db == c.db);
    CHECK(redacted_redis_url(parsed) == c.shown);
  }
  // The most addresses one URL may list, and one more.
  std::string hosts = "h:1";
  for (std::size_t i = 1; i < kMaxRedisSentinels; ++i) hosts += ",h:1";
  ParsedRedisUrl parsed;
  std::string error;
  CHECK(parse_redis_url("redis-sentinel://" + hosts + "/m", parsed, error));
  CHECK(parsed.sentinels.size() == kMaxRedisSentinels);
  CHECK_FALSE(parse_redis_url("redis-sentinel://" + hosts + ",h:1/m", parsed, error));
  CHECK(error == "more than " + std::to_string(kMaxRedisSentinels) + " sentinel addresses");
  // The other forms, redacted.
  REQUIRE(parse_redis_url("redis://:s3cret@h:7/2", parsed, error));
  CHECK(redacted_redis_url(parsed) == "redis://:***@h:7/2");
  REQUIRE(parse_redis_url("unix:///tmp/r.sock", parsed, error));
  CHECK(redacted_redis_url(parsed) == "unix:///tmp/r.sock?db=0");
}

TEST_CASE("redis url: bad sentinel forms name the problem, never the password",
          "[redis][url][sentinel]") {
  struct Bad {
    std::string url;
    std::string error_has;
  };
  const std::vector<Bad> cases{
      {"redis-sentinel://:s3cret@h:1", "master name is missing"},
      {"redis-sentinel://:s3cret@/m", "no sentinel address"},
      {"redis-sentinel://:s3cret@h:1/", "master name"},
      {"redis-sentinel://:s3cret@h:1,/m", "empty sentinel address"},
      {"redis-sentinel://:s3cret@,h:1/m", "empty sentinel address"},
      {"redis-sentinel://:s3cret@h:0/m", "port must be a number in 1..65535"},
      {"redis-sentinel://:s3cret@h:65536/m", "port must be a number in 1..65535"},
      {"redis-sentinel://:s3cret@h:/m", "port is empty"},
      {"redis-sentinel://:s3cret@h:x/m", "sentinel address"},
      {"redis-sentinel://:s3cret@h h:1/m", "sentinel address"},
      {"redis-sentinel://:s3cret@[::1/m", "sentinel address"},
      {"redis-sentinel://:s3cret@h:1/m/x", "master name"},
      {"redis-sentinel://:s3cret@h:1/m x", "master name"},
      {"redis-sentinel://:s3cret@h:1/m%41", "master name"},
      {"redis-sentinel://:s3cret@h:1/" + std::string(kMaxRedisMasterNameBytes + 1, 'm'),
       "master name"},
      {"redis-sentinel://:s3cret@h:1/m?db=x", "db must be a number"},
      {"redis-sentinel://:s3cret@h:1/m?db=2147483648", "db must be a number"},
      {"redis-sentinel://:s3cret@h:1/m?db=1&x=2", "only query parameter"},
      {"redis-sentinel://:s3cret@h:1/m?password=s3cret", "only query parameter"},
      {"redis-sentinel://s3cret@h:1/m", "credentials need a ':'"},
      {"redis-sentinel://u:@h:1/m", "password is empty"},
      {"redis-sentinel://:s3cr%zzet@h:1/m", "bad %-escape"},
      {"redis-sentinel:/h:1/m", "must start with"},
      {"rediss-sentinel://h:1/m", "must start with"},
  };
  for (const auto& c : cases) {
    INFO(c.url);
    ParsedRedisUrl parsed;
    std::string error;
    CHECK_FALSE(parse_redis_url(c.url, parsed, error));
    CHECK(error.find(c.error_has) != std::string::npos);
    CHECK(error.find("s3cr") == std::string::npos);
    RedisStoreOptions options;
    options.url = c.url;
    std::string create_error;
    CHECK(RedisStore::create(options, create_error) == nullptr);
    CHECK(create_error.find("s3cr") == std::string::npos);
  }
}

TEST_CASE("redis store: invalid options are refused at creation", "[redis]") {
  RedisStoreOptions options;
  options.url = "redis://127.0.0.1";
  std::string error;
  REQUIRE(RedisStore::create(options, error) != nullptr);

  auto bad = options;
  bad.connect_timeout = milliseconds(0);
  CHECK(RedisStore::create(bad, error) == nullptr);
  CHECK(error.find("connect_timeout") != std::string::npos);
  bad = options;
  bad.command_timeout = milliseconds(0);
  CHECK(RedisStore::create(bad, error) == nullptr);
  CHECK(error.find("command_timeout") != std::string::npos);
  bad = options;
  bad.retry_after = milliseconds(-1);
  CHECK(RedisStore::create(bad, error) == nullptr);
  CHECK(error.find("retry_after") != std::string::npos);
}

TEST_CASE("redis store: refused while SIGPIPE would kill the process", "[redis]") {
  RedisStoreOptions options;
  options.url = "redis://127.0.0.1";
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  struct sigaction before {};
  REQUIRE(::sigaction(SIGPIPE, &dfl, &before) == 0);
  std::string error;
  const bool refused = RedisStore::create(options, error) == nullptr;
  ::sigaction(SIGPIPE, &before, nullptr);  // back to ignored (tests/unit/main.cpp)
  CHECK(refused);
  CHECK(error.find("SIGPIPE") != std::string::npos);
  CHECK(RedisStore::create(options, error) != nullptr);
}

// ---- data in Redis -----------------------------------------------------------

TEST_CASE("redis store: usage is the server's used_memory; its max only with maxmemory",
          "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  REQUIRE(redis({"CONFIG", "SET", "maxmemory", "0"}) == "+OK");
  ThrottleStore::Usage u = store->usage();
  REQUIRE(u.used_bytes);
  CHECK(*u.used_bytes > 0);
  CHECK_FALSE(u.max_bytes);  // no bound: unknown, not a made-up number
  REQUIRE(redis({"CONFIG", "SET", "maxmemory", "1073741824"}) == "+OK");
  u = store->usage();
  REQUIRE(u.max_bytes);
  CHECK(*u.max_bytes == 1073741824u);
  CHECK(redis({"CONFIG", "SET", "maxmemory", "0"}) == "+OK");
}

TEST_CASE("redis store: keys carry an expiry and vanish on their own", "[redis]") {
  auto options = pvgate_test::redis_test_options();
  options.key_prefix = "t-prefix:";
  auto store = pvgate_test::make_redis_store(options);

  REQUIRE(check(*store, {{"e:minute", 3, kMinute}}, kT0) == StoreStatus::ok);
  const long long pttl = std::stoll(redis({"PTTL", "t-prefix:e:minute"}).substr(1));
  CHECK(pttl > 0);
  CHECK(pttl <= kMinute);
  CHECK(redis({"EXISTS", "e:minute"}) == ":0");  // the prefix is applied

  // Rejections record nothing and leave no key behind.
  REQUIRE(check(*store, {{"e:cool", 1, kMinute}}, kT0) == StoreStatus::ok);
  ThrottleDecision d;
  REQUIRE(check(*store, {{"e:cool", 1, kMinute}, {"e:other", 5, kMinute}}, kT0 + 1, &d) ==
          StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(redis({"EXISTS", "t-prefix:e:other"}) == ":0");

  // The shortest legal period: Redis itself removes the key after ~1 s.
  REQUIRE(check(*store, {{"e:second", 1, 1000}}, kT0) == StoreStatus::ok);
  CHECK(redis({"EXISTS", "t-prefix:e:second"}) == ":1");
  const auto deadline = std::chrono::steady_clock::now() + kRecoveryDeadline;
  while (redis({"EXISTS", "t-prefix:e:second"}) != ":0" &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(redis({"EXISTS", "t-prefix:e:second"}) == ":0");
}

TEST_CASE("redis store: out-of-order timestamps from concurrent callers stay exact", "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  const std::vector<ThrottleHit> hits{{"o:phone", 2, kMinute}};
  // Caller A (now = kT0 + 1000) reaches Redis before caller B (now = kT0).
  REQUIRE(check(*store, hits, kT0 + 1000) == StoreStatus::ok);
  ThrottleDecision d;
  REQUIRE(check(*store, hits, kT0, &d) == StoreStatus::ok);
  CHECK(d.allowed);
  // The oldest event is B's, although it arrived last: 59 s to wait, not 60.
  REQUIRE(check(*store, hits, kT0 + 1001, &d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == kMinute - 1001);
  // An event from a caller whose clock runs ahead counts too, but the wait it
  // causes is capped at one period (a client is never told more than that).
  REQUIRE(check(*store, {{"o:ahead", 1, kMinute}}, kT0 + 500) == StoreStatus::ok);
  REQUIRE(check(*store, {{"o:ahead", 1, kMinute}}, kT0, &d) == StoreStatus::ok);
  CHECK_FALSE(d.allowed);
  CHECK(d.wait_ms[0] == kMinute);
}

TEST_CASE("redis store: memory per key is bounded by the limit", "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  // Dry-run hits keep committing past their limit; only `limit` events stay.
  for (int i = 0; i < 50; ++i) {
    ThrottleDecision d;
    REQUIRE(check(*store, {{"m:dry", 5, kMinute, false}}, kT0 + i, &d) == StoreStatus::ok);
    CHECK(d.allowed);
    // From the sixth on, the fifth newest event is always 5 ms old.
    CHECK(d.wait_ms[0] == (i < 5 ? 0 : kMinute - 5));
  }
  CHECK(redis({"ZCARD", "pvgate:m:dry"}) == ":5");
}

TEST_CASE("redis store: refund removes exactly one event at now_ms", "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  const std::vector<ThrottleHit> hits{{"r:phone", 5, kMinute}};
  REQUIRE(check(*store, hits, kT0) == StoreStatus::ok);
  REQUIRE(check(*store, hits, kT0) == StoreStatus::ok);
  REQUIRE(check(*store, hits, kT0 + 1) == StoreStatus::ok);
  REQUIRE(redis({"ZCARD", "pvgate:r:phone"}) == ":3");
  CHECK(store->refund(hits, kT0) == StoreStatus::ok);
  CHECK(redis({"ZCARD", "pvgate:r:phone"}) == ":2");
  CHECK(store->refund(hits, kT0) == StoreStatus::ok);
  CHECK(redis({"ZCARD", "pvgate:r:phone"}) == ":1");
  CHECK(store->refund(hits, kT0) == StoreStatus::ok);  // none left at kT0
  CHECK(redis({"ZCARD", "pvgate:r:phone"}) == ":1");
  CHECK(store->refund(hits, kT0 + 1) == StoreStatus::ok);  // the last one: the key goes
  CHECK(redis({"EXISTS", "pvgate:r:phone"}) == ":0");
}

TEST_CASE("redis store: hits outside ThrottleHit's ranges never reach Redis", "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  ThrottleDecision d;
  CHECK(check(*store, {}, kT0, &d) == StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(d.wait_ms.empty());
  const std::vector<ThrottleHit> bad{
      {"", 1, kMinute},
      {std::string(201, 'k'), 1, kMinute},
      {"tab\there", 1, kMinute},
      {"caf\xc3\xa9", 1, kMinute},
      {"k", 0, kMinute},
      {"k", kMaxRuleLimit + 1, kMinute},
      {"k", 1, 999},
      {"k", 1, (std::int64_t{1} << 45) + 1},  // Lua's doubles would round now + period
  };
  for (const auto& hit : bad) {
    INFO(hit.key << " " << hit.limit << " " << hit.period_ms);
    CHECK(check(*store, {{"fine", 1, kMinute}, hit}, kT0) == StoreStatus::internal);
    CHECK(store->refund({hit}, kT0) == StoreStatus::internal);
  }
  CHECK(store->stats().connects == 0);
  CHECK(redis({"DBSIZE"}) == ":0");
  // The bounds themselves are fine.
  CHECK(check(*store, {{std::string(200, 'k'), kMaxRuleLimit, 1000}}, kT0) == StoreStatus::ok);
  CHECK(check(*store, {{" ~", 1, kMinute}}, kT0) == StoreStatus::ok);  // printable ASCII ends
}

TEST_CASE("redis store: a peek leaves Redis as it was", "[redis][peek]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  REQUIRE(check(*store, {{"p:phone", 2, kMinute}}, kT0) == StoreStatus::ok);
  ThrottleDecision d;
  for (int i = 0; i < 10; ++i) {
    REQUIRE(store->peek({{"p:phone", 2, kMinute}, {"p:new", 1, kMinute}}, kT0 + i, d) ==
            StoreStatus::ok);
    CHECK(d.allowed);
  }
  CHECK(redis({"ZCARD", "pvgate:p:phone"}) == ":1");
  CHECK(redis({"EXISTS", "pvgate:p:new"}) == ":0");
  CHECK(redis({"DBSIZE"}) == ":1");
}

TEST_CASE("redis store: a claim is one key under key_prefix + \\x03, on Redis's clock",
          "[redis][claim]") {
  auto options = pvgate_test::redis_test_options();
  options.key_prefix = "t-prefix:";
  auto store = pvgate_test::make_redis_store(options);
  bool fresh = false;
  REQUIRE(store->claim_once("c:k", kT0, kMinute, fresh) == StoreStatus::ok);
  REQUIRE(fresh);
  const std::string key = std::string("t-prefix:\x03") + "c:k";
  CHECK(redis({"GET", key}) == "$1");
  const long long pttl = std::stoll(redis({"PTTL", key}).substr(1));
  CHECK(pttl > 0);
  CHECK(pttl <= kMinute);
  CHECK(redis({"DBSIZE"}) == ":1");  // no log, no session beside it
  // Redis's clock decides, not the caller's: a host whose clock runs an
  // hour ahead still finds the claim taken.
  REQUIRE(store->claim_once("c:k", kT0 + 60 * kMinute, kMinute, fresh) == StoreStatus::ok);
  CHECK_FALSE(fresh);
}

TEST_CASE("redis store: claims and peeks outside their ranges never reach Redis",
          "[redis][claim]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  bool fresh = true;
  CHECK(store->claim_once("", kT0, kMinute, fresh) == StoreStatus::internal);
  CHECK(store->claim_once("k", kT0, 0, fresh) == StoreStatus::internal);
  CHECK(store->claim_once("k", kT0, kMaxClaimTtlMs + 1, fresh) == StoreStatus::internal);
  CHECK(store->claim_once("bad\r\nkey", kT0, kMinute, fresh) == StoreStatus::internal);
  CHECK_FALSE(fresh);
  ThrottleDecision d;
  CHECK(store->peek({{"k", 1, (std::int64_t{1} << 45) + 1}}, kT0, d) == StoreStatus::internal);
  CHECK(store->peek({{"k", 0, kMinute}}, kT0, d) == StoreStatus::internal);
  CHECK(store->stats().connects == 0);
  CHECK(redis({"DBSIZE"}) == ":0");
}

TEST_CASE("redis store: AUTH with an ACL user and SELECT of a database", "[redis]") {
  auto options = pvgate_test::redis_test_options();
  (void)pvgate_test::make_redis_store(options);  // empties the server
  REQUIRE(redis({"ACL", "SETUSER", "pvtest", "reset", "on", ">s3cret", "~*", "+@all"}) == "+OK");
  const std::string path = RedisServer::instance().socket_path();

  options.url = "unix://pvtest:s3cret@" + path + "?db=3";
  auto store = pvgate_test::make_redis_store(options);
  CHECK(store->ping() == StoreStatus::ok);
  CHECK(check(*store, {{"a:k", 1, kMinute}}, kT0) == StoreStatus::ok);
  CHECK(pvgate_test::redis_raw(path, {{"SELECT", "3"}, {"EXISTS", "pvgate:a:k"}}) == ":1");
  CHECK(redis({"EXISTS", "pvgate:a:k"}) == ":0");  // not in db 0

  options.url = "unix://pvtest:wrong-s3cret@" + path;
  auto denied = pvgate_test::make_redis_store(options);
  CHECK(denied->ping() == StoreStatus::unavailable);
  CHECK(denied->stats().connect_failures == 1);
  CHECK(denied->last_error().find("AUTH") != std::string::npos);
  CHECK(denied->last_error().find("s3cret") == std::string::npos);
  CHECK(redis({"ACL", "DELUSER", "pvtest"}) == ":1");
}

TEST_CASE("redis store: many threads share a pool of at most one connection each", "[redis]") {
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options());
  constexpr int kThreads = 8;
  constexpr int kCalls = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<ThrottleHit> hits{{"p:" + std::to_string(t), 1000, kMinute}};
      for (int i = 0; i < kCalls; ++i) {
        ThrottleDecision d;
        if (store->check_and_commit(hits, kT0 + i, d) != StoreStatus::ok || !d.allowed) ++failures;
        if (i % 10 == 0 && store->refund(hits, kT0 + i) != StoreStatus::ok) ++failures;
        if (i % 25 == 0 && store->ping() != StoreStatus::ok) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(store->stats().connects >= 1);
  CHECK(store->stats().connects <= static_cast<std::uint64_t>(kThreads));
  CHECK(redis({"ZCARD", "pvgate:p:0"}) == ":" + std::to_string(kCalls - kCalls / 10));
}

// ---- failures ----------------------------------------------------------------

TEST_CASE("redis store: killed server -> fast unavailable, breaker, recovery", "[redis][failure]") {
  BreakerClock clock;
  auto options = pvgate_test::redis_test_options();
  options.retry_after = milliseconds(500);
  auto store = pvgate_test::make_redis_store(options, &clock);
  const std::vector<ThrottleHit> hits{{"k:phone", 3, kMinute}};
  REQUIRE(check(*store, hits, kT0) == StoreStatus::ok);
  REQUIRE(store->stats().connects == 1);

  RedisServer::instance().kill();

  // The pooled connection fails at once (EOF/EPIPE, no timeout to wait for);
  // taken for a stale one, it is retried once on a fresh connection, which
  // is refused: that opens the breaker.
  StoreStatus status = StoreStatus::ok;
  CHECK(time_of([&] { status = check(*store, hits, kT0 + 1); }) < kCallBound);
  CHECK(status == StoreStatus::unavailable);
  CHECK(store->stats().connects == 2);
  CHECK(store->stats().connect_failures == 1);
  CHECK(store->last_error().find("connect") != std::string::npos);

  // The breaker is open: no connect is tried, every call answers at once.
  for (int i = 0; i < 100; ++i) {
    CHECK(time_of([&] { status = check(*store, hits, kT0 + 2 + i); }) < kCallBound);
    CHECK(status == StoreStatus::unavailable);
  }
  CHECK(store->ping() == StoreStatus::unavailable);
  CHECK(store->refund(hits, kT0) == StoreStatus::unavailable);
  CHECK(store->stats().connects == 2);
  CHECK(store->stats().short_circuited == 102);

  clock.advance(milliseconds(499));
  CHECK(check(*store, hits, kT0 + 200) == StoreStatus::unavailable);
  CHECK(store->stats().connects == 2);

  // retry_after has passed: one probe (refused: still dead), then open again.
  clock.advance(milliseconds(1));
  CHECK(time_of([&] { status = check(*store, hits, kT0 + 201); }) < kCallBound);
  CHECK(status == StoreStatus::unavailable);
  CHECK(store->stats().connects == 3);
  CHECK(store->stats().connect_failures == 2);
  CHECK(check(*store, hits, kT0 + 202) == StoreStatus::unavailable);
  CHECK(store->stats().connects == 3);

  // Back, but the breaker is still open: the store does not notice yet.
  RedisServer::instance().restart();
  CHECK(check(*store, hits, kT0 + 203) == StoreStatus::unavailable);
  CHECK(store->stats().connects == 3);

  // After retry_after the same store object works again (the restarted
  // server forgot the script: the NOSCRIPT path loads it again).
  clock.advance(milliseconds(500));
  ThrottleDecision d;
  REQUIRE(check(*store, hits, kT0 + 300, &d) == StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(store->stats().connects == 4);
  CHECK(check(*store, hits, kT0 + 301) == StoreStatus::ok);
  CHECK(store->stats().connects == 4);  // pooled again
  CHECK(store->ping() == StoreStatus::ok);
}

TEST_CASE("redis store: pooled connections Redis closed are replaced, not an outage",
          "[redis][failure]") {
  BreakerClock clock;
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options(), &clock);
  const std::vector<ThrottleHit> hits{{"stale:phone", 5, kMinute}};
  REQUIRE(check(*store, hits, kT0) == StoreStatus::ok);
  REQUIRE(store->stats().connects == 1);
  // Redis restarts while no request is looking: the pooled connection is dead.
  RedisServer::instance().kill();
  RedisServer::instance().restart();
  ThrottleDecision d;
  CHECK(check(*store, hits, kT0 + 1, &d) == StoreStatus::ok);
  CHECK(d.allowed);
  CHECK(store->stats().connects == 2);
  CHECK(store->stats().io_errors == 0);
  CHECK(store->stats().short_circuited == 0);
}

TEST_CASE(
    "redis store: a claim on a pooled connection Redis closed is retried; a dead Redis "
    "claims nothing",
    "[redis][failure][claim]") {
  BreakerClock clock;
  auto store = pvgate_test::make_redis_store(pvgate_test::redis_test_options(), &clock);
  bool fresh = false;
  REQUIRE(store->claim_once("stale:a", kT0, kMinute, fresh) == StoreStatus::ok);
  REQUIRE(fresh);
  REQUIRE(store->stats().connects == 1);
  // Redis restarts while no request is looking: the pooled connection is dead.
  RedisServer::instance().kill();
  RedisServer::instance().restart();
  REQUIRE(store->claim_once("stale:b", kT0, kMinute, fresh) == StoreStatus::ok);
  CHECK(fresh);
  CHECK(store->stats().connects == 2);
  CHECK(store->stats().io_errors == 0);
  // Gone for good: `unavailable`, never fresh, and the breaker opens.
  RedisServer::instance().kill();
  fresh = true;
  CHECK(store->claim_once("stale:c", kT0, kMinute, fresh) == StoreStatus::unavailable);
  CHECK_FALSE(fresh);
  CHECK(store->claim_once("stale:c", kT0, kMinute, fresh) == StoreStatus::unavailable);
  CHECK(store->stats().short_circuited == 1);
  RedisServer::instance().restart();
}

TEST_CASE("redis store: the breaker holds back concurrent callers too", "[redis][failure]") {
  BreakerClock clock;
  auto options = pvgate_test::redis_test_options();
  auto store = pvgate_test::make_redis_store(options, &clock);
  constexpr int kThreads = 8;
  constexpr int kCalls = 50;
  REQUIRE(store->ping() == StoreStatus::ok);
  const auto connects_before = store->stats().connects;

  RedisServer::instance().kill();
  std::atomic<int> not_unavailable{0};
  std::atomic<int> slow{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        StoreStatus status = StoreStatus::ok;
        const auto took = time_of([&] {
          status = check(*store, {{"b:" + std::to_string(t), 5, kMinute}}, kT0 + i);
        });
        if (status != StoreStatus::unavailable) ++not_unavailable;
        if (took >= kCallBound) ++slow;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(not_unavailable == 0);
  CHECK(slow == 0);
  // With the clock frozen, at most one connect per thread that found the
  // pool empty before the first failure opened the breaker; no storm.
  CHECK(store->stats().connects - connects_before <= static_cast<std::uint64_t>(kThreads));
  CHECK(store->stats().short_circuited >= static_cast<std::uint64_t>(kThreads * (kCalls - 1)));
  RedisServer::instance().restart();
}

TEST_CASE("redis store: killed and restarted under a real clock, same object recovers",
          "[redis][failure]") {
  auto options = pvgate_test::redis_test_options();
  options.retry_after = milliseconds(100);
  auto store = pvgate_test::make_redis_store(options);
  const std::vector<ThrottleHit> hits{{"real:phone", 1000, kMinute}};
  REQUIRE(check(*store, hits, kT0) == StoreStatus::ok);

  RedisServer::instance().kill();
  const auto dead_since = std::chrono::steady_clock::now();
  int calls = 0;
  int slow = 0;
  int not_unavailable = 0;
  while (std::chrono::steady_clock::now() - dead_since < milliseconds(400)) {
    StoreStatus status = StoreStatus::ok;
    if (time_of([&] { status = check(*store, hits, kT0 + ++calls); }) >= kCallBound) ++slow;
    if (status != StoreStatus::unavailable) ++not_unavailable;
  }
  CHECK(slow == 0);
  CHECK(not_unavailable == 0);
  const auto dead_for = std::chrono::steady_clock::now() - dead_since;
  // Hundreds of calls, but connects only about once per retry_after.
  CHECK(calls > 10);
  CHECK(store->stats().connects <=
        1 + static_cast<std::uint64_t>(dead_for / milliseconds(100)) + 1);

  RedisServer::instance().restart();
  StoreStatus status = StoreStatus::unavailable;
  const auto deadline = std::chrono::steady_clock::now() + kRecoveryDeadline;
  while (status != StoreStatus::ok && std::chrono::steady_clock::now() < deadline) {
    CHECK(time_of([&] { status = check(*store, hits, kT0 + ++calls); }) < kCallBound);
    if (status != StoreStatus::ok) std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(status == StoreStatus::ok);
  CHECK(store->ping() == StoreStatus::ok);
}

TEST_CASE("redis store: a server that never answers costs one command timeout",
          "[redis][failure]") {
  SilentListener silent;
  RedisStoreOptions options;
  options.url = silent.url();
  options.connect_timeout = milliseconds(100);
  options.command_timeout = milliseconds(100);
  std::string error;
  auto store = RedisStore::create(options, error);
  REQUIRE(store != nullptr);

  StoreStatus status = StoreStatus::ok;
  const auto took = time_of([&] { status = check(*store, {{"h:k", 1, kMinute}}, kT0); });
  CHECK(status == StoreStatus::unavailable);
  CHECK(took < kCallBound);
  CHECK(took >= milliseconds(90));  // it did wait for the timeout: the connect had succeeded
  CHECK(store->stats().connects == 1);
  CHECK(store->stats().connect_failures == 0);
  CHECK(store->stats().io_errors == 1);

  // The breaker is open now: the next call does not wait again.
  CHECK(time_of([&] { status = store->ping(); }) < milliseconds(90));
  CHECK(status == StoreStatus::unavailable);
  CHECK(store->stats().short_circuited == 1);

  // With a password, the AUTH at connect time is what hangs.
  options.url = silent.url(":s3cret@");
  auto with_auth = RedisStore::create(options, error);
  REQUIRE(with_auth != nullptr);
  CHECK(time_of([&] { status = with_auth->ping(); }) < kCallBound);
  CHECK(status == StoreStatus::unavailable);
  CHECK(with_auth->stats().connect_failures == 1);
  CHECK(with_auth->last_error().find("s3cret") == std::string::npos);
}
