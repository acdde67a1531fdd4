// The request and reply as the handler sees them: plain data, no libfcgi.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pvgate {

struct HttpRequest {
  std::string method;              // REQUEST_METHOD
  std::string path;                // DOCUMENT_URI (or SCRIPT_NAME)
  std::string content_type;        // CONTENT_TYPE, as sent
  std::size_t content_length = 0;  // CONTENT_LENGTH (0 when absent)
  std::string body;                // at most max_body_bytes + 1 bytes were read
  std::string merchant;            // PVGATE_MERCHANT
  bool merchant_given = false;
  std::string remote_addr;  // REMOTE_ADDR
  std::string request_id;   // PVGATE_REQUEST_ID (nginx $request_id), may be empty
  std::string origin;       // HTTP_ORIGIN
  std::string referer;      // HTTP_REFERER
  // Any other FastCGI param by name (nullopt when absent); may be unset in tests.
  std::function<std::optional<std::string>(const std::string&)> param;
};

struct HttpReply {
  int status = 500;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type
  std::string body;
  std::string log_line;  // with log.destination: fastcgi, written to FastCGI stderr
};

}  // namespace pvgate
