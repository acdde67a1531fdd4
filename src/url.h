// The one module that parses URLs: the upstream URL, browser origins and the
// Redis URL all go through parse_url(), which is libcurl's URL parser
// (curl_url(), RFC 3986 plus what browsers send) with a few checks where
// curl is more lenient than a configuration file should be.
//
// This is the second module that includes libcurl (the first is upstream,
// which does the transfers): URL parsing needs no easy handle, no global
// init and no network, and config and the origin stage must not pull in the
// transfer code to read a URL. It includes only <curl/curl.h>'s URL API.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace pvgate
