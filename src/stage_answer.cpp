// Stage: answer. Pipwave's reply sanitized: only status, message, reference
// and seconds_till_resend survive; merchant-setup statuses and transport
// faults become a generic 502/504 with the cause in the log; a call that
// provably never left gives its throttle quota back.
#include <string>

#include "json_codec.h"
#include "sanitize.h"
#include "stages.h"
#include "throttle.h"

namespace pvgate {
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

}  // namespace

Result answer(Exchange& ex, const Services& s) {
  UpstreamResult& answer = ex.answer;
  const Config& config = *ex.config;
  const MerchantConfig& merchant = *ex.merchant;
  const std::string& signature = ex.signature;
  Trace& trace = ex.trace;
  const auto sent = ex.sent;
  trace.upstream_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(s.clock.steady() - sent).count();
  trace.upstream_http = answer.http_status;
  if (s.metrics != nullptr) {
    s.metrics->upstream_latency(std::chrono::duration<double>(s.clock.steady() - sent).count());
    s.metrics->upstream_connections_opened(answer.connections_opened);
    switch (answer.error) {
      case UpstreamError::none:
        break;
      case UpstreamError::not_delivered:
        s.metrics->upstream_fault(UpstreamFault::not_delivered);
        break;
      case UpstreamError::timeout:
        s.metrics->upstream_fault(UpstreamFault::timeout);
        break;
      case UpstreamError::tls:
        s.metrics->upstream_fault(UpstreamFault::tls);
        break;
      case UpstreamError::too_large:
        s.metrics->upstream_fault(UpstreamFault::too_large);
        break;
      case UpstreamError::transport:
        s.metrics->upstream_fault(UpstreamFault::transport);
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
      if (s.store != nullptr) {
        const StoreStatus refunded = throttle_refund(*s.store, ex.verdict);
        if (refunded == StoreStatus::internal) {
          // The hits the store just committed now break its invariant: a bug.
          s.log.error("throttle refund: broken invariant in the request's hits; nothing refunded");
          if (s.metrics != nullptr) s.metrics->store_error(StoreFault::internal);
        }
        if (refunded != StoreStatus::ok) trace.detail += " (throttle refund failed)";
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
    if (s.metrics != nullptr) s.metrics->upstream_fault(UpstreamFault::bad_http);
    trace.detail = "upstream HTTP " + std::to_string(answer.http_status);
    return local_result(Outcome::bad_gateway);
  }
  std::string why;
  const std::optional<UpstreamReply> reply = parse_upstream_reply(answer.body, why);
  if (!reply) {
    if (s.metrics != nullptr) s.metrics->upstream_fault(UpstreamFault::bad_answer);
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
    if (s.metrics != nullptr) s.metrics->upstream_fault(UpstreamFault::bad_status);
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
