#include "url.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>

#include "text.h"

namespace pvgate {
namespace {

struct UrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
using UrlHandle = std::unique_ptr<CURLU, UrlDeleter>;

// One part of a parsed URL; false when the URL has none.
bool get_part(CURLU* u, CURLUPart part, std::string& out, unsigned flags = 0) {
  char* value = nullptr;
  if (curl_url_get(u, part, &value, flags) != CURLUE_OK || value == nullptr) return false;
  out = value;
  curl_free(value);
  return true;
}

std::string curl_problem(CURLUcode rc) {
  switch (rc) {
    case CURLUE_BAD_PORT_NUMBER:
      return "port must be a number in 1..65535";
    case CURLUE_NO_HOST:
      return "host is missing";
    case CURLUE_BAD_IPV6:
      return "host is not a valid IPv6 address";
    case CURLUE_BAD_HOSTNAME:
      return "host is not a valid host name or address";
    case CURLUE_MALFORMED_INPUT:
      return "is not a well-formed URL (spaces or control characters?)";
    default:
      return std::string("is not a well-formed URL (") + curl_url_strerror(rc) + ")";
  }
}

bool is_scheme_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.';
}

}  // namespace

int default_port(std::string_view scheme) {
  if (scheme == "https") return 443;
  if (scheme == "http") return 80;
  return 0;
}

bool parse_url(std::string_view text, Url& out, std::string& error) {
  out = Url{};
  error.clear();
  // curl accepts one to three slashes after the scheme and no scheme at all
  // with CURLU_GUESS_SCHEME (not set); a configuration must say
  // "scheme://host" exactly, so that much is checked before curl sees it.
  const std::size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0 ||
      !std::all_of(text.begin(), text.begin() + sep, is_scheme_char)) {
    error = "must start with scheme://";
    return false;
  }
  const std::string_view scheme = text.substr(0, sep);
  const bool file = scheme.size() == 4 && ascii_lower(std::string(scheme)) == "file";
  const std::string_view rest = text.substr(sep + 3);
  if (!file && (rest.empty() || rest.front() == '/')) {
    error = "host is missing";
    return false;
  }
  if (text.find('\0') != std::string_view::npos) {
    error = "is not a well-formed URL (spaces or control characters?)";
    return false;
  }
  // What curl repairs instead of refusing, read from the authority as written.
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  const std::size_t at = authority.rfind('@');
  const std::string_view host_port =
      at == std::string_view::npos ? authority : authority.substr(at + 1);
  if (host_port.find('%') != std::string_view::npos) {
    error = "host must not be %-encoded or carry an IPv6 zone id";
    return false;
  }
  if (!host_port.empty() && host_port.back() == ':') {
    error = "port is empty";
    return false;
  }

  UrlHandle u(curl_url());
  if (!u) {
    error = "out of memory";
    return false;
  }
  // PATH_AS_IS: keep "/a/../1" as written instead of resolving it.
  const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, std::string(text).c_str(),
                                    CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
  if (rc != CURLUE_OK) {
    error = curl_problem(rc);
    return false;
  }
  get_part(u.get(), CURLUPART_SCHEME, out.scheme);
  out.has_userinfo = at != std::string_view::npos;
  get_part(u.get(), CURLUPART_USER, out.user);
  get_part(u.get(), CURLUPART_PASSWORD, out.password);
  std::string zone;
  if (get_part(u.get(), CURLUPART_ZONEID, zone)) {
    error = "host must not be %-encoded or carry an IPv6 zone id";
    return false;
  }
  get_part(u.get(), CURLUPART_HOST, out.host);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.ipv6 = true;
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (!file && out.host.empty()) {
    error = "host is missing";
    return false;
  }
  std::string port;
  if (get_part(u.get(), CURLUPART_PORT, port)) {
    // curl has checked the digits and the upper bound; port 0 it lets through.
    out.port = std::stoi(port);
    if (out.port < 1) {
      error = "port must be a number in 1..65535";
      return false;
    }
  }
  get_part(u.get(), CURLUPART_PATH, out.path);
  out.has_query = get_part(u.get(), CURLUPART_QUERY, out.query);
  std::string fragment;
  out.has_fragment = get_part(u.get(), CURLUPART_FRAGMENT, fragment);
  return true;
}

bool is_loopback_host(std::string_view host) {
  if (ascii_lower(std::string(host)) == "localhost" || host == "::1") return true;
  // A dotted quad whose first part is 127.
  int parts = 0;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = host.find('.', start);
    const std::string_view part = host.substr(start, dot - start);
    if (part.empty() || part.size() > 3 ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(part)) > 255) {
      return false;
    }
    if (parts == 0 && part != "127") return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts == 4;
}

std::string normalize_origin(std::string_view url) {
  // An origin is a scheme and an authority: the rest of a Referer (path,
  // query, fragment) is not parsed at all, so an odd path can never make a
  // listed origin fail.
  const std::size_t sep = url.find("://");
  if (sep == std::string_view::npos) return {};
  const std::size_t end = url.find_first_of("/?#", sep + 3);
  Url parsed;
  std::string error;
  if (!parse_url(url.substr(0, end), parsed, error)) return {};
  if (parsed.scheme != "https" && parsed.scheme != "http") return {};
  if (parsed.has_userinfo) return {};
  const std::string host = ascii_lower(parsed.host);
  if (!parsed.ipv6 && !std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
      })) {
    return {};
  }
  std::string out = parsed.scheme + "://";
  out += parsed.ipv6 ? "[" + host + "]" : host;
  if (parsed.port != 0 && parsed.port != default_port(parsed.scheme)) {
    out += ':' + std::to_string(parsed.port);
  }
  return out;
}

// ---- Redis URLs -----------------------------------------------------------

namespace {

// "user:password" (either part may be %-encoded; the user may be empty).
bool parse_userinfo(const std::string& userinfo, ParsedRedisUrl& out, std::string& error) {
  const std::size_t colon = userinfo.find(':');
  if (colon == std::string::npos) {
    error =
        "credentials need a ':' before the password (redis://:password@host or "
        "redis://user:password@host)";
    return false;
  }
  if (!percent_decode(userinfo.substr(0, colon), out.user, /*plus_is_space=*/false) ||
      !percent_decode(userinfo.substr(colon + 1), out.password, /*plus_is_space=*/false)) {
    error = "bad %-escape in the credentials";
    return false;
  }
  if (out.password.empty()) {
    error = "credentials are given but the password is empty";
    return false;
  }
  return true;
}

// Letters, digits, '-', '.' and '_': what a Redis host name or master name may hold.
bool name_chars(const std::string& name) {
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// A parsed host that is a DNS name or an IP literal within kMaxRedisHostBytes.
bool valid_host(const Url& url) {
  return url.ipv6 || (url.host.size() <= kMaxRedisHostBytes && name_chars(url.host));
}

// A `?db=N` query (the text after '?'), N into `db`.
bool parse_db_query(const std::string& query, std::int64_t& db, std::string& error) {
  if (query.compare(0, 3, "db=") != 0 || query.find('&') != std::string::npos) {
    error = "the only query parameter allowed is ?db=N";
    return false;
  }
  if (!parse_decimal(query.substr(3), 0, kMaxRedisDb, db)) {
    error = "db must be a number in 0.." + std::to_string(kMaxRedisDb);
    return false;
  }
  return true;
}

// Splits `rest` at its last '@' into credentials (parsed into `out`) and
// what follows (`hostpart`); without an '@', all of it is the host part.
bool split_credentials(const std::string& rest, ParsedRedisUrl& out, std::string& hostpart,
                       std::string& error) {
  const std::size_t at = rest.rfind('@');
  if (at == std::string::npos) {
    hostpart = rest;
    return true;
  }
  if (!parse_userinfo(rest.substr(0, at), out, error)) return false;
  hostpart = rest.substr(at + 1);
  return true;
}

// The credentials are split off here, not by curl: they end at the last '@'
// (RFC 3986 and curl end them at the first, and the authority at the first
// '/'), so an unencoded '@' or '/' in a password still parses, as Redis
// clients accept it. The host, port and database go through parse_url().
bool parse_tcp(const std::string& rest, ParsedRedisUrl& out, std::string& error) {
  out.kind = ParsedRedisUrl::Kind::tcp;
  std::string hostpart;
  if (!split_credentials(rest, out, hostpart, error)) return false;
  Url url;
  if (!parse_url("redis://" + hostpart, url, error)) return false;
  if (url.has_userinfo || url.has_query || url.has_fragment) {
    error = "unexpected text after the host (expected [:port][/db])";
    return false;
  }
  out.host = url.host;
  if (!valid_host(url)) {
    error = "host must be a DNS name or an IP address (letters, digits, '-', '.', '_'; at most " +
            std::to_string(kMaxRedisHostBytes) + " bytes)";
    return false;
  }
  if (url.port != 0) out.port = url.port;
  const std::string db_text = url.path.empty() ? std::string() : url.path.substr(1);
  if (!db_text.empty() && !parse_decimal(db_text, 0, kMaxRedisDb, out.db)) {
    error =
        "database (the path after the host) must be a number in 0.." + std::to_string(kMaxRedisDb);
    return false;
  }
  return true;
}

// curl has no unix:// scheme: after the credentials, the rest is parsed as
// the file:// URL it is (an absolute path and a query).
bool parse_unix(const std::string& rest, ParsedRedisUrl& out, std::string& error) {
  out.kind = ParsedRedisUrl::Kind::unix_socket;
  std::string pathpart = rest;
  if (!rest.empty() && rest[0] != '/') {
    // unix://user:password@/path: the credentials end where the path begins.
    const std::size_t at = rest.find("@/");
    if (at == std::string::npos) {
      error = "socket path must be absolute (unix:///path/to/redis.sock)";
      return false;
    }
    if (!parse_userinfo(rest.substr(0, at), out, error)) return false;
    pathpart = rest.substr(at + 1);
  }
  Url url;
  if (pathpart.empty() || !parse_url("file://" + pathpart, url, error) || url.has_fragment ||
      url.path.size() < 2 || url.path[0] != '/' || url.path.back() == '/') {
    error = "socket path must be an absolute path to a file (unix:///path/to/redis.sock)";
    return false;
  }
  if (url.path.size() > kMaxRedisSocketPathBytes) {
    error = "socket path is longer than " + std::to_string(kMaxRedisSocketPathBytes) + " bytes";
    return false;
  }
  out.path = url.path;
  return !url.has_query || parse_db_query(url.query, out.db, error);
}

bool valid_master_name(const std::string& name) {
  return !name.empty() && name.size() <= kMaxRedisMasterNameBytes && name_chars(name);
}

// One sentinel's `host[:port]` (an IPv6 host in brackets), through parse_url().
bool parse_sentinel_address(const std::string& text, RedisAddress& out, std::string& error) {
  Url url;
  std::string problem;
  if (!parse_url("redis://" + text, url, problem)) {
    error = "sentinel address: " + problem;
    return false;
  }
  if (url.has_userinfo || url.has_query || url.has_fragment ||
      (!url.path.empty() && url.path != "/")) {
    error = "sentinel address: unexpected text after the host (expected host[:port])";
    return false;
  }
  if (!valid_host(url)) {
    error =
        "sentinel address: host must be a DNS name or an IP address (letters, digits, '-', '.', "
        "'_'; at most " +
        std::to_string(kMaxRedisHostBytes) + " bytes)";
    return false;
  }
  out.host = url.host;
  out.port = url.port != 0 ? url.port : kDefaultSentinelPort;
  return true;
}

// After the credentials (split off at the last '@', as in parse_tcp):
// `host[:port],host[:port].../master_name[?db=N]`.
bool parse_sentinel(const std::string& rest, ParsedRedisUrl& out, std::string& error) {
  out.kind = ParsedRedisUrl::Kind::sentinel;
  std::string hostpart;
  if (!split_credentials(rest, out, hostpart, error)) return false;
  const std::size_t slash = hostpart.find('/');
  if (slash == std::string::npos) {
    error = "the master name is missing (redis-sentinel://host:port/MASTER_NAME)";
    return false;
  }
  const std::string hosts = hostpart.substr(0, slash);
  std::string name = hostpart.substr(slash + 1);
  std::string query;
  bool has_query = false;
  if (const std::size_t q = name.find('?'); q != std::string::npos) {
    query = name.substr(q + 1);
    has_query = true;
    name.resize(q);
  }
  if (hosts.empty()) {
    error = "no sentinel address (redis-sentinel://host:port[,host:port...]/MASTER_NAME)";
    return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = hosts.find(',', start);
    const std::string one = hosts.substr(start, comma - start);
    if (one.empty()) {
      error = "empty sentinel address in the list (host:port[,host:port...])";
      return false;
    }
    if (out.sentinels.size() == kMaxRedisSentinels) {
      error = "more than " + std::to_string(kMaxRedisSentinels) + " sentinel addresses";
      return false;
    }
    RedisAddress address;
    if (!parse_sentinel_address(one, address, error)) return false;
    out.sentinels.push_back(std::move(address));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (!valid_master_name(name)) {
    error = "the master name (after the sentinel addresses) must be 1.." +
            std::to_string(kMaxRedisMasterNameBytes) + " letters, digits, '-', '_' or '.'";
    return false;
  }
  out.master_name = name;
  return !has_query || parse_db_query(query, out.db, error);
}

}  // namespace

std::string redis_address_text(const RedisAddress& address) {
  const bool ipv6 = address.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + address.host + "]" : address.host) + ":" + std::to_string(address.port);
}

std::string redacted_redis_url(const ParsedRedisUrl& url) {
  std::string credentials;
  if (!url.password.empty()) credentials = url.user + ":***@";
  switch (url.kind) {
    case ParsedRedisUrl::Kind::tcp:
      return "redis://" + credentials + redis_address_text({url.host, url.port}) + "/" +
             std::to_string(url.db);
    case ParsedRedisUrl::Kind::unix_socket:
      return "unix://" + credentials + url.path + "?db=" + std::to_string(url.db);
    case ParsedRedisUrl::Kind::sentinel: {
      std::string out = "redis-sentinel://" + credentials;
      for (std::size_t i = 0; i < url.sentinels.size(); ++i) {
        if (i != 0) out += ',';
        out += redis_address_text(url.sentinels[i]);
      }
      return out + "/" + url.master_name + "?db=" + std::to_string(url.db);
    }
  }
  return {};
}

bool parse_redis_url(const std::string& url, ParsedRedisUrl& out, std::string& error) {
  out = ParsedRedisUrl{};
  error.clear();
  if (url.empty()) {
    error = "is empty";
    return false;
  }
  if (url.size() > kMaxRedisUrlBytes) {
    error = "is longer than " + std::to_string(kMaxRedisUrlBytes) + " bytes";
    return false;
  }
  for (unsigned char c : url) {
    if (c < 0x20 || c == 0x7f) {
      error = "contains a control character";
      return false;
    }
  }
  ParsedRedisUrl parsed;
  bool ok = false;
  const std::string scheme = ascii_lower(url.substr(0, url.find("://") + 3));
  if (scheme == "redis://") {
    ok = parse_tcp(url.substr(8), parsed, error);
  } else if (scheme == "unix://") {
    ok = parse_unix(url.substr(7), parsed, error);
  } else if (scheme == "redis-sentinel://") {
    ok = parse_sentinel(url.substr(17), parsed, error);
  } else if (scheme == "rediss://") {
    error = "TLS (rediss://) is not supported; use redis:// on a trusted network or unix://";
  } else {
    error = "must start with redis://, unix:// or redis-sentinel://";
  }
  if (!ok) return false;
  out = std::move(parsed);
  return true;
}

}  // namespace pvgate
