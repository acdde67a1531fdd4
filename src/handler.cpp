#include "handler.h"

#include <future>

namespace pvgate {

namespace {

// An exception inside pvgate: a generic 500 for the browser, the reason for the log.
Result internal_error(std::string& detail, const char* what) {
  detail = what != nullptr ? std::string("internal error: ") + what : "internal error";
  return local_result(Outcome::misconfigured);
}

}  // namespace

void Exchange::reset() {
  request.method.clear();
  request.path.clear();
  request.content_type.clear();
  request.content_length = 0;
  request.body.clear();
  request.merchant.clear();
  request.merchant_given = false;
  request.remote_addr.clear();
  request.request_id.clear();
  request.origin.clear();
  request.referer.clear();
  request.params.clear();
  config.reset();
  started = sent = {};
  action.reset();
  operations = false;
  merchant = nullptr;
  fields.clear();
  client = ClientFields{};
  phone.reset();
  pressure_hits.clear();
  verdict = ThrottleVerdict{};
  signature.clear();
  session_key.clear();
  session_owner.clear();
  call = UpstreamCall{};
  answer = UpstreamResult{};
  waiting = Waiting::none;
  next_stage = 0;
  trace = Trace{};
  reply = HttpReply{};
}

void Handler::begin(Exchange& ex) const {
  ex.config = config_.get();
  ex.started = services_.clock.steady();
}

bool Handler::run(Exchange& ex) {
  if (!ex.config) begin(ex);
  if (auto ops = operations(ex, services_)) {
    ex.reply = std::move(*ops);
    // Not an API request: counted by route alone.
    if (services_.metrics != nullptr) services_.metrics->operation(last_segment(ex.request.path));
    return true;
  }
  if (services_.metrics != nullptr) services_.metrics->in_flight(1);
  return advance(ex, 0);
}

bool Handler::advance(Exchange& ex, std::size_t first) {
  std::optional<Result> result;
  try {
    for (std::size_t i = first; i < std::size(kLocalStages); ++i) {
      result = kLocalStages[i](ex, services_);
      if (result) break;
      if (ex.waiting == Waiting::siteverify) {
        ex.next_stage = static_cast<std::uint8_t>(i + 1);
        break;
      }
    }
  } catch (const std::exception& e) {
    result = internal_error(ex.trace.detail, e.what());
  } catch (...) {
    result = internal_error(ex.trace.detail, nullptr);
  }
  if (result) {
    finish(ex, *result);
    return true;
  }
  // The call (a CAPTCHA check or the forward): whoever drives the upstream
  // (a worker, see handler.h) stores the answer and hands the exchange back.
  const bool siteverify = ex.waiting == Waiting::siteverify;
  if (!siteverify) {
    ex.waiting = Waiting::pipwave;
    ex.sent = services_.clock.steady();
  }
  const UpstreamConfig& target =
      siteverify ? ex.merchant->challenge.siteverify : ex.config->upstream;
  if (services_.metrics != nullptr) services_.metrics->upstream_in_flight(1);
  try {
    UpstreamCall call = std::move(ex.call);
    ex.call = UpstreamCall{};
    upstream_.post_async(target, std::move(call), [&ex](UpstreamResult answer) {
      ex.answer = std::move(answer);
      ex.resume(ex);
    });
  } catch (const std::exception& e) {
    // The upstream failed before it took the call (it never calls back then).
    if (services_.metrics != nullptr) services_.metrics->upstream_in_flight(-1);
    finish(ex, internal_error(ex.trace.detail, e.what()));
    return true;
  } catch (...) {
    if (services_.metrics != nullptr) services_.metrics->upstream_in_flight(-1);
    finish(ex, internal_error(ex.trace.detail, nullptr));
    return true;
  }
  return false;
}

bool Handler::complete(Exchange& ex) {
  if (services_.metrics != nullptr) services_.metrics->upstream_in_flight(-1);
  Result result;
  try {
    if (ex.waiting == Waiting::siteverify) {
      ex.waiting = Waiting::none;
      if (StageResult refused = challenge_checked(ex, services_)) {
        finish(ex, *refused);
        return true;
      }
      return advance(ex, ex.next_stage);
    }
    result = answer(ex, services_);
    settle_session(ex, services_, result);
    count_challenge_pressure(ex, services_, result);
  } catch (const std::exception& e) {
    result = internal_error(ex.trace.detail, e.what());
  } catch (...) {
    result = internal_error(ex.trace.detail, nullptr);
  }
  finish(ex, result);
  return true;
}

HttpReply Handler::handle(const HttpRequest& request) {
  Exchange ex;
  ex.request = request;
  // One promise per call: a CAPTCHA check, then the forward.
  std::promise<void> answered;
  ex.resume = [&answered](Exchange&) { answered.set_value(); };
  begin(ex);
  bool done = run(ex);
  while (!done) {
    answered.get_future().wait();
    answered = std::promise<void>();
    done = complete(ex);
  }
  return std::move(ex.reply);
}

void Handler::finish(Exchange& ex, const Result& result) {
  const Trace& trace = ex.trace;
  Logger& log = services_.log;
  ex.reply = make_reply(result, trace.cors_origin);
  const HttpReply& reply = ex.reply;
  if (services_.metrics != nullptr) {
    services_.metrics->in_flight(-1);
    services_.metrics->request(ex.merchant != nullptr ? std::string_view(ex.merchant->name) : "",
                               ex.action, result.outcome);
  }

  const LogLevel level = reply.status >= 500 ? LogLevel::warn : LogLevel::info;
  if (!log.enabled(level)) return;
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(services_.clock.steady() - ex.started);
  LogLine line(log, level);
  line.text("event", "request");
  if (!ex.request.request_id.empty())
    line.text("rid", std::string_view(ex.request.request_id).substr(0, 64));
  line.text("ip", std::string_view(ex.request.remote_addr).substr(0, 64));
  if (!trace.merchant.empty()) line.text("merchant", trace.merchant);
  if (ex.action) line.text("action", action_name(*ex.action));
  if (!trace.phone.empty()) line.text("phone", trace.phone);
  line.text("outcome", outcome_name(result.outcome));
  line.number("http", reply.status);
  if (trace.upstream_status >= 0) line.number("upstream_status", trace.upstream_status);
  if (trace.upstream_http > 0) line.number("upstream_http", trace.upstream_http);
  if (trace.upstream_ms >= 0) line.number("upstream_ms", trace.upstream_ms);
  line.number("ms", ms.count());
  if (!trace.challenge.empty()) line.text("challenge", trace.challenge);
  if (!trace.throttle.empty())
    line.text("throttle", std::string_view(trace.throttle).substr(0, 600));
  if (!trace.detail.empty()) line.text("detail", std::string_view(trace.detail).substr(0, 200));
  if (ex.config != nullptr && ex.config->log_to_fastcgi) {
    ex.reply.log_line = line.line();  // nginx's error log, via FastCGI stderr
  } else {
    line.write(log);
  }
}

}  // namespace pvgate
