#include "upstream.h"

#include <curl/curl.h>

#include "version.h"

namespace pvgate {
namespace {

constexpr const char* kSystemCertDirFallback = "/etc/ssl/certs";

// The system store as a hashed directory (c_rehash layout): OpenSSL loads a
// CA from it only when a chain needs it, instead of parsing the whole bundle
// into every connection's context (about 1 MB each, times --threads).
std::string system_cert_dir() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return info != nullptr && info->capath != nullptr ? info->capath : kSystemCertDirFallback;
}

UpstreamError classify(CURLcode code, bool too_large) {
  switch (code) {
    case CURLE_OK:
      return UpstreamError::none;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
      return UpstreamError::not_delivered;
    case CURLE_OPERATION_TIMEDOUT:
      return UpstreamError::timeout;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      return too_large ? UpstreamError::too_large : UpstreamError::transport;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return UpstreamError::tls;
    default:
      return UpstreamError::transport;
  }
}

}  // namespace

struct CurlUpstream::Handle {
  Handle() : easy(curl_easy_init()) {}
  ~Handle() {
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  CURL* easy;
  bool trust_set = false;
  std::string trust_ca_file;  // the ca_file `easy` is set up with
  // Per-call state read by the write callback.
  std::string response;
  std::size_t cap = 0;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};
};

namespace {

// RAII for the per-call header list.
struct HeaderList {
  curl_slist* list = nullptr;
  ~HeaderList() { curl_slist_free_all(list); }
  bool add(const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (next == nullptr) return false;
    list = next;
    return true;
  }
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* h = static_cast<CurlUpstream::Handle*>(user);
  const size_t n = size * count;
  if (h->response.size() + n > h->cap) {
    h->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  h->response.append(data, n);
  return n;
}

}  // namespace

void upstream_global_init() {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

CurlUpstream::CurlUpstream() = default;
CurlUpstream::~CurlUpstream() = default;

std::unique_ptr<CurlUpstream::Handle> CurlUpstream::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  return std::make_unique<Handle>();
}

void CurlUpstream::release(std::unique_ptr<Handle> handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.push_back(std::move(handle));
}

UpstreamResult CurlUpstream::post(const UpstreamConfig& config, const UpstreamCall& call) {
  UpstreamResult result;
  std::unique_ptr<Handle> h = acquire();
  if (h->easy == nullptr) {
    result.error = UpstreamError::transport;
    result.detail = "curl_easy_init failed";
    return result;
  }
  CURL* e = h->easy;
  h->response.clear();
  h->cap = config.max_response_bytes;
  h->too_large = false;
  h->error[0] = '\0';

  // Trust: the system store, plus upstream.ca_file when set. Set only when
  // it changes, so a warm handle keeps its connection.
  if (!h->trust_set || h->trust_ca_file != config.ca_file) {
    static const std::string cert_dir = system_cert_dir();
    curl_easy_setopt(e, CURLOPT_CAPATH, cert_dir.c_str());
    curl_easy_setopt(e, CURLOPT_CAINFO, config.ca_file.empty() ? nullptr : config.ca_file.c_str());
    h->trust_set = true;
    h->trust_ca_file = config.ca_file;
  }

  HeaderList headers;
  const bool headers_ok = headers.add("Content-Type: application/json") &&
                          headers.add("Accept: application/json") &&
                          headers.add("x-api-key: " + call.api_key) && headers.add("Expect:");
  if (!headers_ok) {
    release(std::move(h));
    result.error = UpstreamError::transport;
    result.detail = "out of memory building headers";
    return result;
  }

  curl_easy_setopt(e, CURLOPT_URL, config.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, config.loopback ? "http,https" : "https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "pvgate/" PVGATE_VERSION);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, config.connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, config.timeout_ms);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(config.max_response_bytes));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, call.body.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, h.get());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->error);

  const CURLcode code = curl_easy_perform(e);
  if (code == CURLE_FILESIZE_EXCEEDED) h->too_large = true;
  result.error = classify(code, h->too_large);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &result.http_status);
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &result.connections_opened);
  if (result.error == UpstreamError::none) {
    result.body = std::move(h->response);
  } else {
    result.detail = std::string(curl_easy_strerror(code)) +
                    (h->error[0] != '\0' ? std::string(": ") + h->error : std::string{});
  }
  h->response = std::string{};
  // The header list dies with this call; never leave the handle pointing at it.
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
  release(std::move(h));
  return result;
}

}  // namespace pvgate
