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

}  // namespace pvgate
