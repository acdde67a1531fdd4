// The whole pipeline: Handler::handle with a fake upstream that answers with
// fuzzer-chosen bytes and a fake clock. The input is
//
//   METHOD PATH CONTENT-TYPE UPSTREAM-HTTP UPSTREAM-ERROR MERCHANT\n
//   request body
//   \n====\n
//   upstream answer body
//
// (header words are optional, missing ones take the defaults below; without
// the separator the upstream answers a fixed success). Invariants: handle never
// throws; every reply obeys check_client_reply; nothing is forwarded unless the
// request was a valid POST; the api_key, api_secret and the computed signature
// never reach the browser or the log unless the request itself contained them.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../unit/fakes.h"
#include "fuzz_check.h"
#include "handler.h"

using namespace pvgate;
using nlohmann::json;
using pvgate_fuzz::as_text;

namespace {

const char* kConfig = R"(upstream:
  url: https://staging-api.pipwave.com/phone-verify
merchants:
  shop-a:
    api_key: sdvdas23t3btg34bhb
    api_secret: my_api_secret
  shop-b:
    api_key: other-key
    api_secret: other-secret
throttle:
  countries:
    allow: [60, 65, 1]
  rules:
    - name: phone-cooldown
      key: [merchant, phone]
      limit: 1
      period: 60s
)";

using pvgate_test::CapturingLogger;
using pvgate_test::FakeClock;
using pvgate_test::FakeUpstream;

UpstreamError error_named(std::string_view name) {
  if (name == "not_delivered") return UpstreamError::not_delivered;
  if (name == "timeout") return UpstreamError::timeout;
  if (name == "tls") return UpstreamError::tls;
  if (name == "too_large") return UpstreamError::too_large;
  if (name == "transport") return UpstreamError::transport;
  return UpstreamError::none;
}

// The next space-separated word of the header line, or `fallback` when absent.
std::string word(std::string_view& header, const char* fallback) {
  while (!header.empty() && header.front() == ' ') header.remove_prefix(1);
  if (header.empty()) return fallback;
  const std::size_t end = header.find(' ');
  const std::string out(header.substr(0, end));
  header.remove_prefix(end == std::string_view::npos ? header.size() : end);
  return out;
}

bool contains(std::string_view hay, std::string_view needle) {
  return !needle.empty() && hay.find(needle) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ConfigHolder holder(load_config_text(kConfig, "fuzz.yaml").config);
  FUZZ_CHECK(holder.get() != nullptr, "fuzz config does not load");

  std::string_view input = as_text(data, size);
  const std::size_t eol = input.find('\n');
  std::string_view header = input.substr(0, eol);
  std::string_view rest =
      eol == std::string_view::npos ? std::string_view{} : input.substr(eol + 1);

  HttpRequest request;
  request.method = word(header, "POST");
  request.path = word(header, "/pvgate/send-token");
  request.content_type = word(header, "application/x-www-form-urlencoded");
  const std::string http_word = word(header, "200");
  const std::string error_word = word(header, "none");
  request.merchant = word(header, "shop-a");
  request.merchant_given = request.merchant != "-";
  request.remote_addr = "203.0.113.7";
  request.request_id = "fuzz";

  FakeUpstream upstream;
  upstream.next.error = error_named(error_word);
  upstream.next.http_status = 0;
  for (const char c : http_word.substr(0, 4)) {
    if (c < '0' || c > '9') break;
    upstream.next.http_status = upstream.next.http_status * 10 + (c - '0');
  }
  const std::size_t sep = rest.find("\n====\n");
  request.body = std::string(rest.substr(0, sep));
  request.content_length = request.body.size();
  upstream.next.body = sep == std::string_view::npos
                           ? R"({"status":200,"message":"Token sent.","reference":1001})"
                           : std::string(rest.substr(sep + 6));
  upstream.next.detail = "fuzz";

  FakeClock clock;
  CapturingLogger log;
  Handler handler(holder, upstream, clock, log);
  HttpReply reply;
  try {
    reply = handler.handle(request);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false && "Handler::handle threw", e.what());
  }
  const json out = pvgate_fuzz::check_client_reply(reply);

  // Forwarded only for a POST to a known route, and then signed and well-formed.
  std::string signature;
  FUZZ_CHECK(upstream.calls.size() <= 1, "more than one upstream call");
  if (!upstream.calls.empty()) {
    FUZZ_CHECK(request.method == "POST", request.method);
    const json sent = json::parse(upstream.calls[0].body, nullptr, false);
    FUZZ_CHECK(sent.is_object() && sent.contains("signature"), upstream.calls[0].body);
    FUZZ_CHECK(!sent.contains("api_secret"), upstream.calls[0].body);
    signature = sent["signature"].get<std::string>();
  }

  // No credential leaves through what Pipwave answered. Only forwarded requests
  // are checked, and only for credentials the client did not send itself: a
  // local rejection echoes the client's own field names, and a client that
  // sends "sdvdas23t3b\0tg34bhb" as a name already knows the key.
  const std::string_view client_part =
      input.substr(0, eol == std::string_view::npos ? input.size() : eol + 1 + request.body.size());
  std::string answer_text;  // Pipwave's message without control characters
  if (const json a = json::parse(upstream.next.body, nullptr, false);
      a.is_object() && a.contains("message") && a["message"].is_string()) {
    for (const char c : a["message"].get<std::string>()) {
      if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F) answer_text.push_back(c);
    }
  }
  // The credentials of the merchant the call was signed for.
  std::string api_key;
  std::string api_secret;
  if (!upstream.calls.empty()) {
    for (const auto& [name, m] : holder.get()->merchants) {
      if (m.api_key == upstream.calls[0].api_key) {
        api_key = m.api_key;
        api_secret = m.api_secret;
      }
    }
    FUZZ_CHECK(!api_key.empty(), upstream.calls[0].api_key);
  }
  for (const std::string_view secret :
       {std::string_view(api_key), std::string_view(api_secret), std::string_view(signature)}) {
    if (upstream.calls.empty() || contains(client_part, secret)) continue;
    // When Pipwave echoed the whole credential, not even a piece of it may pass
    // (a cut at the 255-byte limit or in the log must not leave a prefix).
    const std::size_t piece = contains(answer_text, secret) ? 8 : secret.size();
    for (std::size_t at = 0; at + piece <= secret.size(); ++at) {
      const std::string_view part = secret.substr(at, piece);
      if (contains(client_part, part)) continue;
      FUZZ_CHECK(!contains(reply.body, part), reply.body);
      for (const auto& [name, value] : reply.headers) FUZZ_CHECK(!contains(value, part), value);
      for (const auto& line : log.lines) FUZZ_CHECK(!contains(line, part), line);
    }
  }
  // One record per request; the operations routes (health checks, metric
  // scrapes, key-set fetches and ALTCHA challenges, fetched far more often
  // than codes are sent) are not logged.
  const std::string_view route = pvgate::last_segment(request.path);
  const std::size_t expected_lines =
      route == "healthz" || route == "metrics" || route == "jwks.json" || route == "challenge" ? 0
                                                                                               : 1;
  FUZZ_CHECK(log.lines.size() == expected_lines, std::to_string(log.lines.size()));
  return 0;
}
