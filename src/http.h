// The request and reply as the handler sees them: plain data, no libfcgi.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pvgate {

struct HttpRequest {
  std::string method;              // REQUEST_METHOD
  std::string path;                // DOCUMENT_URI (or SCRIPT_NAME)
  std::string content_type;        // CONTENT_TYPE, as sent
  std::size_t content_length = 0;  // CONTENT_LENGTH (0 when absent)
  std::string body;                // at most the snapshot's max_body_bytes + 1 bytes were kept
  std::string merchant;            // PVGATE_MERCHANT
  bool merchant_given = false;
  std::string remote_addr;  // REMOTE_ADDR
  std::string request_id;   // PVGATE_REQUEST_ID (nginx $request_id), may be empty
  std::string origin;       // HTTP_ORIGIN
  std::string referer;      // HTTP_REFERER
  // Every FastCGI param as sent, in order: views into a buffer the request's
  // owner keeps alive for as long as the request.
  std::vector<std::pair<std::string_view, std::string_view>> params;

  // The first param of that name, as FCGX_GetParam finds it.
  std::optional<std::string_view> param(std::string_view name) const {
    for (const auto& [n, v] : params) {
      if (n == name) return v;
    }
    return std::nullopt;
  }
};

struct HttpReply {
  int status = 500;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type
  std::string body;
  std::string log_line;  // with log.destination: fastcgi, written to FastCGI stderr
};

}  // namespace pvgate
