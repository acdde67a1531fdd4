// The one module that parses URLs: the upstream URL, browser origins and the
// Redis URLs (parse_redis_url, below) all go through parse_url(), which is
// libcurl's URL parser (curl_url(), RFC 3986 plus what browsers send) with a
// few checks where curl is more lenient than a configuration file should be.
//
// This is the second module that includes libcurl (the first is upstream,
// which does the transfers): URL parsing needs no easy handle, no global
// init and no network, and config and the origin stage must not pull in the
// transfer code to read a URL. It includes only <curl/curl.h>'s URL API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pvgate {

struct Url {
  std::string scheme;         // lower case ("https", "redis", "file")
  std::string user;           // as written, still %-encoded; "" = none
  std::string password;       // as written, still %-encoded
  bool has_userinfo = false;  // an '@' ended a (possibly empty) userinfo
  std::string host;           // as written (case kept); an IPv6 address without brackets
  bool ipv6 = false;          // host is an IPv6 literal ([...] in the URL)
  int port = 0;               // 1..65535; 0 = none written
  std::string path;           // as written ("/" when empty), %-escapes and dot segments kept
  std::string query;          // without '?'; has_query tells "?" from no query
  bool has_query = false;
  bool has_fragment = false;
};

// Parses an absolute URL `scheme://authority[/path][?query][#fragment]`
// through curl_url(). On top of curl's checks (host characters, IPv6
// literals, port digits, no spaces or control characters) it refuses what
// curl would repair or accept: not exactly two slashes after the scheme
// ("https:/h", "https:///h"; file URLs excepted), an empty port ("h:"), port
// 0, a %-encoded host, an IPv6 zone id. On failure returns false with `error`
// saying what is wrong; the error never quotes the URL (a password in it must
// not reach a log). IPv4 literals come back as curl normalises them
// ("127.1" -> "127.0.0.1"): the address libcurl would connect to.
bool parse_url(std::string_view text, Url& out, std::string& error);

// The default port of http (80) and https (443); 0 for other schemes.
int default_port(std::string_view scheme);

// "localhost" (any case), "::1" or a dotted-quad IPv4 literal in 127.0.0.0/8
// ("127.evil.example" is not).
bool is_loopback_host(std::string_view host);

// A browser origin: "https://Shop.Example:443/x?y" -> "https://shop.example"
// (scheme and host lower case, default port dropped, path, query and
// fragment ignored); "" when it is not an http(s) URL with a plain host
// (letters, digits, '-', '.', or an IPv6 literal) and no user information.
std::string normalize_origin(std::string_view url);

// ---- Redis URLs (throttle.redis) -----------------------------------------
// Their grammar is Redis clients', not RFC 3986's, in three places: the
// credentials end at the last '@' (an unencoded '@' or '/' in a password
// still parses, as Redis clients accept it), unix:// has no host, and a
// sentinel URL lists several hosts. Those splits are made here; every host,
// port, path and query goes through parse_url().

inline constexpr std::size_t kMaxRedisUrlBytes = 4096;
inline constexpr std::size_t kMaxRedisHostBytes = 253;        // a DNS name's limit
inline constexpr std::size_t kMaxRedisSocketPathBytes = 107;  // sizeof(sockaddr_un::sun_path) - 1
inline constexpr std::int64_t kMaxRedisDb = 2147483647;
inline constexpr std::size_t kMaxRedisSentinels = 16;  // addresses in one sentinel URL
inline constexpr std::size_t kMaxRedisMasterNameBytes = 128;
inline constexpr int kDefaultSentinelPort = 26379;

struct RedisAddress {
  std::string host;  // a name, an IPv4 address or an IPv6 address (without brackets)
  int port = 0;
};

struct ParsedRedisUrl {
  enum class Kind { tcp, unix_socket, sentinel };
  Kind kind = Kind::tcp;
  std::string host;      // tcp: a name, an IPv4 address or an IPv6 address (without brackets)
  int port = 6379;       // tcp
  std::string path;      // unix_socket: absolute path of the socket
  std::string user;      // "" = none (AUTH <password>); else AUTH <user> <password> (Redis 6 ACL)
  std::string password;  // "" = no AUTH
  std::int64_t db = 0;   // SELECT db when not 0
  // sentinel: the sentinels, asked in this order, and the name they know the
  // primary by. user/password/db apply to the data nodes (primary and
  // replicas); the sentinels are reached without AUTH.
  std::vector<RedisAddress> sentinels;
  std::string master_name;
};

// Accepts `redis://[[user]:password@]host[:port][/db]` (port 6379 and db 0 by
// default; an IPv6 host in brackets; user and password may be %-encoded) and
// `unix://[[user]:password@]/path/to/redis.sock[?db=N]` and
// `redis-sentinel://[[user]:password@]host[:port][,host[:port]...]/master_name[?db=N]`
// (sentinel port 26379 by default; at most kMaxRedisSentinels addresses; the
// master name is letters, digits, '-', '_', '.'). On failure returns
// false with `error` saying what is wrong; the error never quotes the URL, so
// a password in it can never leak into a log.
bool parse_redis_url(const std::string& url, ParsedRedisUrl& out, std::string& error);

// The parsed URL written back without its password, for --check-config and
// logs: "redis://127.0.0.1:6379/0", "redis-sentinel://:***@h:26379,g:26379/main?db=0".
std::string redacted_redis_url(const ParsedRedisUrl& url);

// "host:port", an IPv6 host in brackets ("[::1]:26379").
std::string redis_address_text(const RedisAddress& address);

}  // namespace pvgate
