// Stages: operations routes, route, merchant.
#include <string>

#include "stages.h"

namespace pvgate {

std::string_view last_segment(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string quoted(std::string_view s, std::size_t max) {
  std::string out = "\"";
  for (const char c : s.substr(0, max)) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  if (s.size() > max) out += "...";
  out.push_back('"');
  return out;
}

namespace {

HttpReply plain(int status, std::string content_type, std::string body) {
  HttpReply r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = std::move(body);
  return r;
}

}  // namespace

std::optional<HttpReply> operations(Exchange& ex, const Services& s) {
  const HttpRequest& request = ex.request;
  const std::string_view route = last_segment(request.path);
  if (route != "healthz" && route != "metrics" && route != "jwks.json" && route != "challenge") {
    return std::nullopt;
  }
  ex.operations = true;
  if (route == "challenge") return issue_challenge(ex, s);
  // Metrics only where nginx says so (PVGATE_METRICS on, set in its metrics
  // location alone: the route is the last segment, so /pvgate/x/metrics
  // reaches pvgate too) and only for the scraper's addresses (metrics.allow).
  if (route == "metrics" &&
      (s.metrics == nullptr || request.param("PVGATE_METRICS") != std::string_view("on") ||
       ex.config == nullptr || !address_in(ex.config->metrics_allow, request.remote_addr))) {
    return plain(404, "application/json", R"({"status":404,"message":"Unknown route."})");
  }
  if (request.method != "GET" && request.method != "HEAD") {
    HttpReply r = plain(405, "application/json", R"({"status":400,"message":"Use GET."})");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (route == "healthz") {
    // Healthy when a configuration is loaded and the throttle store answers.
    const bool config_ok = ex.config != nullptr;
    const bool store_ok = s.store == nullptr || s.store->ping() == StoreStatus::ok;
    if (config_ok && store_ok) {
      return plain(200, "application/json", R"({"message":"ok","status":200})");
    }
    return plain(503, "application/json",
                 std::string(R"({"message":")") +
                     (config_ok ? "throttle store not answering" : "no configuration") +
                     R"(","status":503})");
  }
  if (route == "jwks.json") {
    // The verification token's public keys (RFC 7517), for the shop's
    // server. Public by nature; cached for 5 minutes, so a key added for
    // rotation is fetched by verifiers well before it starts signing (see
    // README, Key rotation).
    if (ex.config == nullptr || !ex.config->verification.enabled) {
      return plain(404, "application/json",
                   R"({"status":404,"message":"No verification keys: verification is off."})");
    }
    HttpReply r;
    r.status = 200;
    r.content_type = "application/jwk-set+json";
    r.headers.emplace_back("Cache-Control", "public, max-age=300");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.body = ex.config->verification.jwks;
    return r;
  }
  ScrapeExtras extras;
  if (s.store != nullptr) {
    const ThrottleStore::Usage usage = s.store->usage();
    extras.store_used_bytes = usage.used_bytes;
    extras.store_max_bytes = usage.max_bytes;
  }
  return plain(200, "text/plain; version=0.0.4; charset=utf-8", s.metrics->render(extras));
}

StageResult route(Exchange& ex, const Services&) {
  ex.action = action_from_route(last_segment(ex.request.path));
  if (!ex.action) return local_result(Outcome::not_found);
  return std::nullopt;
}

StageResult merchant(Exchange& ex, const Services&) {
  // A server-side setting (nginx's PVGATE_MERCHANT), so a miss is a misconfiguration.
  const HttpRequest& request = ex.request;
  ex.merchant = ex.config->find_merchant(request.merchant, request.merchant_given);
  if (ex.merchant == nullptr) {
    ex.trace.detail = request.merchant_given
                          ? "unknown merchant " + quoted(request.merchant, 64)
                          : "PVGATE_MERCHANT not set and more than one merchant configured";
    return local_result(Outcome::misconfigured);
  }
  ex.trace.merchant = ex.merchant->name;
  return std::nullopt;
}

}  // namespace pvgate
