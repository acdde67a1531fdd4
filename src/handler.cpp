#include "handler.h"

#include <algorithm>
#include <atomic>
#include <future>
#include <map>

#include "form.h"
#include "json_codec.h"
#include "sanitize.h"
#include "signer.h"
#include "validate.h"

namespace pvgate {

struct Handler::Trace {
  std::string merchant;
  std::string phone;  // masked
  std::int64_t upstream_status = -1;
  long upstream_http = 0;
  long upstream_ms = -1;
  std::string detail;       // why, for the operator; never secret, never a phone number
  std::string throttle;     // per-rule decisions, keys masked
  std::string cors_origin;  // the request's Origin when the merchant allows it
};

struct Handler::Exchange {
  std::chrono::steady_clock::time_point started;
  std::chrono::steady_clock::time_point sent;  // when the call was handed to the upstream
  std::string request_id;                      // at most 64 bytes
  std::string remote_addr;                     // at most 64 bytes
  std::shared_ptr<const Config> config;        // kept for the whole exchange (reloads swap it)
  std::optional<Action> action;                // once the route named one
  const MerchantConfig* merchant = nullptr;    // in *config
  ClientFields client;
  ThrottleVerdict verdict;
  std::string signature;
  Trace trace;
  std::atomic<bool> replied{false};  // `done` ran
};

namespace {

std::string upstream_default_message(std::int64_t status) {
  switch (status) {
    case 200:
      return "OK.";
    case 400:
      return "Request failed.";
    case 5001:
      return "Invalid phone number.";
    case 5002:
      return "Too many requests; try again later.";
    case 5003:
      return "A verification for this number is already in progress.";
    case 5051:
      return "Session expired or reference not found.";
    case 5052:
      return "Incorrect answer.";
    case 9001:
      return "Parameter error.";
    default:
      return "Request failed.";
  }
}

// Quotes a value for the log line; the logger replaces control characters.
std::string quoted(std::string_view s, std::size_t max = 120) {
  std::string out = "\"";
  for (const char c : s.substr(0, max)) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  if (s.size() > max) out += "...";
  out.push_back('"');
  return out;
}

}  // namespace

bool is_media_type(std::string_view content_type, std::string_view type) {
  std::size_t matched = 0;
  for (const char c : content_type.substr(0, content_type.find(';'))) {
    if (c == ' ' || c == '\t') continue;
    const char lower = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    if (matched == type.size() || type[matched] != lower) return false;
    ++matched;
  }
  return matched == type.size();
}

std::string_view last_segment(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

namespace {

// An exception inside pvgate: a generic 500 for the browser, the reason for the log.
Result internal_error(std::string& detail, const char* what) {
  detail = what != nullptr ? std::string("internal error: ") + what : "internal error";
  return local_result(Outcome::misconfigured);
}

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "::1" || addr.rfind("::ffff:127.", 0) == 0;
}

HttpReply plain(int status, std::string content_type, std::string body) {
  HttpReply r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.headers.emplace_back("Cache-Control", "no-store");
  r.body = std::move(body);
  return r;
}

}  // namespace

std::optional<HttpReply> Handler::operations(const HttpRequest& request) {
  const std::string_view route = last_segment(request.path);
  if (route != "healthz" && route != "metrics") return std::nullopt;
  if (request.method != "GET" && request.method != "HEAD") {
    HttpReply r = plain(405, "application/json", R"({"status":400,"message":"Use GET."})");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (route == "healthz") {
    // Healthy when a configuration is loaded and the throttle store answers.
    const bool config_ok = config_.get() != nullptr;
    const bool store_ok = store_ == nullptr || store_->ping() == StoreStatus::ok;
    if (config_ok && store_ok) {
      return plain(200, "application/json", R"({"message":"ok","status":200})");
    }
    return plain(503, "application/json",
                 std::string(R"({"message":")") +
                     (config_ok ? "throttle store not answering" : "no configuration") +
                     R"(","status":503})");
  }
  // Metrics are for the operator's scraper on this host, never for browsers.
  if (metrics_ == nullptr || !is_loopback(request.remote_addr)) {
    return plain(404, "application/json", R"({"status":404,"message":"Unknown route."})");
  }
  return plain(200, "text/plain; version=0.0.4; charset=utf-8", metrics_->render());
}

HttpReply Handler::handle(const HttpRequest& request) {
  std::promise<HttpReply> promise;
  std::future<HttpReply> reply = promise.get_future();
  handle_async(request, [&promise](HttpReply r) { promise.set_value(std::move(r)); });
  return reply.get();
}

void Handler::handle_async(const HttpRequest& request, Reply done) {
  if (auto ops = operations(request)) {
    if (metrics_ != nullptr)
      metrics_->request(2, ops->status == 200 ? Outcome::ok : Outcome::not_found);
    done(std::move(*ops));
    return;
  }
  auto ex = std::make_shared<Exchange>();
  ex->started = clock_.steady();
  ex->request_id = request.request_id.substr(0, 64);
  ex->remote_addr = request.remote_addr.substr(0, 64);
  if (metrics_ != nullptr) metrics_->in_flight(1);
  std::string& detail = ex->trace.detail;
  std::optional<Result> result;
  UpstreamCall call;
  try {
    ex->config = config_.get();
    result = process(request, *ex, call);
  } catch (const std::exception& e) {
    result = internal_error(detail, e.what());
  } catch (...) {
    result = internal_error(detail, nullptr);
  }
  if (result) {
    done(finish(*ex, *result));
    return;
  }
  ex->sent = clock_.steady();
  const UpstreamConfig& upstream_config = ex->config->upstream;
  try {
    upstream_.post_async(upstream_config, std::move(call), [this, ex, done](UpstreamResult answer) {
      Result r;
      try {
        r = answered(*ex, std::move(answer));
      } catch (const std::exception& e) {
        r = internal_error(ex->trace.detail, e.what());
      } catch (...) {
        r = internal_error(ex->trace.detail, nullptr);
      }
      if (ex->replied.exchange(true)) return;
      log_.hold();
      done(finish(*ex, r));
      log_.release();
    });
  } catch (const std::exception& e) {
    // The upstream failed before it took the call.
    if (!ex->replied.exchange(true)) done(finish(*ex, internal_error(detail, e.what())));
  } catch (...) {
    if (!ex->replied.exchange(true)) done(finish(*ex, internal_error(detail, nullptr)));
  }
}

HttpReply Handler::finish(Exchange& ex, const Result& result) {
  Trace& trace = ex.trace;
  HttpReply reply = make_reply(result, trace.cors_origin);
  if (metrics_ != nullptr) {
    metrics_->in_flight(-1);
    metrics_->request(ex.action ? static_cast<int>(*ex.action) : 2, result.outcome);
  }

  const LogLevel level = reply.status >= 500 ? LogLevel::warn : LogLevel::info;
  if (log_.enabled(level)) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady() - ex.started);
    LogLine line(log_, level);
    line.text("event", "request");
    if (!ex.request_id.empty()) line.text("rid", ex.request_id);
    line.text("ip", ex.remote_addr);
    if (!trace.merchant.empty()) line.text("merchant", trace.merchant);
    if (ex.action) line.text("action", action_name(*ex.action));
    if (!trace.phone.empty()) line.text("phone", trace.phone);
    line.text("outcome", outcome_name(result.outcome));
    line.number("http", reply.status);
    if (trace.upstream_status >= 0) line.number("upstream_status", trace.upstream_status);
    if (trace.upstream_http > 0) line.number("upstream_http", trace.upstream_http);
    if (trace.upstream_ms >= 0) line.number("upstream_ms", trace.upstream_ms);
    line.number("ms", ms.count());
    if (!trace.throttle.empty())
      line.text("throttle", std::string_view(trace.throttle).substr(0, 600));
    if (!trace.detail.empty()) line.text("detail", std::string_view(trace.detail).substr(0, 200));
    if (ex.config != nullptr && ex.config->log_to_fastcgi) {
      reply.log_line = line.line();  // nginx's error log, via FastCGI stderr
    } else {
      line.write(log_);
    }
  }
  return reply;
}

std::optional<Result> Handler::process(const HttpRequest& request, Exchange& ex,
                                       UpstreamCall& call) {
  const Config& config = *ex.config;
  Trace& trace = ex.trace;
  // route
  const auto action = action_from_route(last_segment(request.path));
  if (!action) return local_result(Outcome::not_found);
  ex.action = action;

  // merchant: a server-side setting, so a miss is a misconfiguration.
  const MerchantConfig* merchant = config.find_merchant(request.merchant, request.merchant_given);
  if (merchant == nullptr) {
    trace.detail = request.merchant_given
                       ? "unknown merchant " + quoted(request.merchant, 64)
                       : "PVGATE_MERCHANT not set and more than one merchant configured";
    return local_result(Outcome::misconfigured);
  }
  trace.merchant = merchant->name;
  ex.merchant = merchant;

  // origin: a hostile page could make its visitors' browsers send tokens, so
  // a listed merchant refuses any other Origin (or Referer) before anything else.
  if (!merchant->allowed_origins.empty()) {
    const bool none = request.origin.empty() && request.referer.empty();
    const std::string claimed =
        normalize_origin(!request.origin.empty() ? request.origin : request.referer);
    const auto& list = merchant->allowed_origins;
    const bool listed =
        !claimed.empty() && std::find(list.begin(), list.end(), claimed) != list.end();
    if (none ? !merchant->allow_missing_origin : !listed) {
      trace.detail =
          none
              ? "no Origin or Referer"
              : "origin " + quoted(!request.origin.empty() ? request.origin : request.referer, 80) +
                    " not allowed";
      return local_result(Outcome::origin_denied);
    }
    if (!request.origin.empty()) trace.cors_origin = claimed;
  }

  // method: OPTIONS is a CORS preflight; anything else but POST is refused.
  if (request.method == "OPTIONS") return local_result(Outcome::preflight);
  if (request.method != "POST") return local_result(Outcome::method_not_allowed);

  // size (cheap, before any parsing)
  if (request.content_length > config.max_body_bytes ||
      request.body.size() > config.max_body_bytes) {
    return local_result(
        Outcome::payload_too_large,
        "Request body too large (at most " + std::to_string(config.max_body_bytes) + " bytes).");
  }

  // content type + decode
  FieldList fields;
  std::optional<DecodeError> decode_error;
  if (is_media_type(request.content_type, "application/json")) {
    decode_error = decode_json_fields(request.body, fields);
  } else if (is_media_type(request.content_type, "application/x-www-form-urlencoded")) {
    decode_error = decode_form(request.body, fields);
  } else {
    return local_result(Outcome::unsupported_media,
                        "Unsupported content type; send application/json or "
                        "application/x-www-form-urlencoded.");
  }
  if (decode_error) return local_result(Outcome::invalid_input, describe(*decode_error));

  // validate
  ClientFields& client = ex.client;
  const bool user_from_server = !merchant->user_id_param.empty();
  if (auto bad = validate_fields(*action, fields, client, user_from_server)) {
    return local_result(Outcome::invalid_input, bad->message);
  }
  if (user_from_server) {
    // Set by nginx after its own authentication (auth_request): trusted, but
    // still checked, since it is signed like any other field.
    const std::optional<std::string> user =
        request.param ? request.param(merchant->user_id_param) : std::nullopt;
    if (!user || !valid_user_id(*user)) {
      trace.detail = "FastCGI param " + merchant->user_id_param +
                     (user ? " is not a valid user id" : " is not set (is nginx authenticating?)");
      return local_result(Outcome::misconfigured);
    }
    client.user_id = *user;
  }
  if (client.contact_no) trace.phone = client.dialing_code + mask_phone(*client.contact_no);

  // throttle: country filter, rules and the wrong-answer lock, all or nothing.
  ThrottleVerdict& verdict = ex.verdict;
  if (config.throttle.enabled) {
    if (store_ == nullptr && !config.throttle.rules.empty()) {
      trace.detail = "throttle rules configured but no store open (restart to apply)";
    }
    ThrottleSubject subject{
        *action,           merchant->name,   client.user_id,     client.dialing_code,
        client.contact_no, client.reference, request.remote_addr};
    verdict = throttle_check(config.throttle, store_, subject, clock_.unix_ms());
    trace.throttle = describe_verdict(verdict);
    if (metrics_ != nullptr) {
      thread_local std::vector<Metrics::ThrottleCount> counts;
      counts.clear();
      for (const auto& rv : verdict.rules) {
        counts.push_back({&rv.rule, !rv.over ? "ok" : rv.dry_run ? "over_dry_run" : "over"});
      }
      metrics_->throttle(counts);
      if (verdict.store_status != StoreStatus::ok) {
        metrics_->store_error(verdict.store_status == StoreStatus::full ? "full" : "unavailable");
      }
    }
    switch (verdict.result) {
      case ThrottleResult::pass:
        break;
      case ThrottleResult::reject: {
        Result r = local_result(Outcome::too_frequent);
        r.seconds_till_resend = verdict.retry_after_s;
        return r;
      }
      case ThrottleResult::country_denied:
        return local_result(Outcome::country_denied);
      case ThrottleResult::store_denied:
        trace.detail = "throttle store failed; on_store_error: deny";
        return local_result(Outcome::store_unavailable);
      case ThrottleResult::store_bypassed:
        trace.detail = "throttle store failed; on_store_error: allow";
        break;
    }
  }

  call = sign(ex);
  return std::nullopt;  // forward
}

UpstreamCall Handler::sign(Exchange& ex) {
  const MerchantConfig& merchant = *ex.merchant;
  const ClientFields& client = ex.client;
  const Action action = *ex.action;
  // sign: every field sent is signed; api_secret is mixed in and never sent.
  std::map<std::string, std::string> signed_fields{
      {"action", std::string(action_name(action))},
      {"timestamp", std::to_string(clock_.unix_seconds())},
      {"api_key", merchant.api_key},
      {"user_id", client.user_id},
      {"contact_no_country_dialing_code", client.dialing_code},
  };
  if (client.contact_no) signed_fields.emplace("contact_no", *client.contact_no);
  if (client.reference) signed_fields.emplace("reference", *client.reference);
  if (client.answer) signed_fields.emplace("answer", *client.answer);
  ex.signature = pipwave_signature(signed_fields, merchant.api_secret);

  std::vector<std::pair<std::string, std::string>> members(signed_fields.begin(),
                                                           signed_fields.end());
  members.emplace_back("signature", ex.signature);
  return UpstreamCall{merchant.api_key, encode_string_object(members)};
}

Result Handler::answered(Exchange& ex, UpstreamResult&& answer) {
  const Config& config = *ex.config;
  const MerchantConfig& merchant = *ex.merchant;
  const std::string& signature = ex.signature;
  Trace& trace = ex.trace;
  const auto sent = ex.sent;
  trace.upstream_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady() - sent).count();
  trace.upstream_http = answer.http_status;
  if (metrics_ != nullptr) {
    metrics_->upstream_latency(std::chrono::duration<double>(clock_.steady() - sent).count());
    metrics_->upstream_connections_opened(answer.connections_opened);
    switch (answer.error) {
      case UpstreamError::none:
        break;
      case UpstreamError::not_delivered:
        metrics_->upstream_fault(UpstreamFault::not_delivered);
        break;
      case UpstreamError::timeout:
        metrics_->upstream_fault(UpstreamFault::timeout);
        break;
      case UpstreamError::tls:
        metrics_->upstream_fault(UpstreamFault::tls);
        break;
      case UpstreamError::too_large:
        metrics_->upstream_fault(UpstreamFault::too_large);
        break;
      case UpstreamError::transport:
        metrics_->upstream_fault(UpstreamFault::transport);
        break;
    }
  }

  switch (answer.error) {
    case UpstreamError::none:
      break;
    case UpstreamError::timeout:
      trace.detail = "upstream timeout: " + answer.detail;
      return local_result(Outcome::gateway_timeout);
    case UpstreamError::not_delivered:
      // Provably never reached Pipwave: no SMS was sent, so give the quota back.
      trace.detail = "upstream unreachable: " + answer.detail;
      if (store_ != nullptr && throttle_refund(*store_, ex.verdict) != StoreStatus::ok) {
        trace.detail += " (throttle refund failed)";
      }
      return local_result(Outcome::bad_gateway);
    case UpstreamError::tls:
      trace.detail = "upstream TLS failure: " + answer.detail;
      return local_result(Outcome::bad_gateway);
    case UpstreamError::too_large:
      trace.detail =
          "upstream answer over " + std::to_string(config.upstream.max_response_bytes) + " bytes";
      return local_result(Outcome::bad_gateway);
    case UpstreamError::transport:
      trace.detail = "upstream transport error: " + answer.detail;
      return local_result(Outcome::bad_gateway);
  }

  // sanitize: only status, message, reference and seconds_till_resend survive.
  if (answer.http_status >= 500 || answer.http_status < 200) {
    if (metrics_ != nullptr) metrics_->upstream_fault(UpstreamFault::bad_http);
    trace.detail = "upstream HTTP " + std::to_string(answer.http_status);
    return local_result(Outcome::bad_gateway);
  }
  std::string why;
  const std::optional<UpstreamReply> reply = parse_upstream_reply(answer.body, why);
  if (!reply) {
    if (metrics_ != nullptr) metrics_->upstream_fault(UpstreamFault::bad_answer);
    trace.detail = why;
    return local_result(Outcome::bad_gateway);
  }
  trace.upstream_status = reply->status;
  const Outcome outcome = classify_upstream_status(reply->status);
  // The credential check runs once, on the message as it would be shown:
  // control characters removed (they could split a key so a raw search
  // misses it) and nothing cut yet (a cut could keep a key's prefix).
  const std::string shown = clean_message(reply->message.value_or(""), std::string::npos);
  const bool echoes = contains_any(shown, {merchant.api_key, merchant.api_secret, signature});
  if (outcome == Outcome::bad_gateway) {
    if (metrics_ != nullptr) metrics_->upstream_fault(UpstreamFault::bad_status);
    // Merchant-setup statuses (401, 403, 404, 5004-5006...) stay in the log.
    trace.detail =
        "upstream status " + std::to_string(reply->status) +
        (echoes ? " (message withheld: it echoed a credential)" : ": " + clean_message(shown, 120));
    return local_result(Outcome::bad_gateway);
  }

  Result result;
  result.outcome = outcome;
  result.body_status = reply->status;
  result.message = reply->message ? shown : upstream_default_message(reply->status);
  if (echoes) {
    trace.detail = "upstream message withheld: it echoed a credential";
    result.message = upstream_default_message(reply->status);
  }
  if (reply->reference && *reply->reference > 0) result.reference = reply->reference;
  if (reply->seconds_till_resend && *reply->seconds_till_resend >= 0) {
    result.seconds_till_resend = reply->seconds_till_resend;
  }
  return result;
}

}  // namespace pvgate
