// Stages: origin, method.
#include <algorithm>

#include "stages.h"
#include "url.h"

namespace pvgate {

StageResult origin(Exchange& ex, const Services&) {
  // A hostile page could make its visitors' browsers send tokens, so a
  // merchant with allowed_origins refuses any other Origin (or, without one,
  // Referer) before anything else is read.
  const MerchantConfig& merchant = *ex.merchant;
  if (merchant.allowed_origins.empty()) return std::nullopt;
  const HttpRequest& request = ex.request;
  const bool none = request.origin.empty() && request.referer.empty();
  const std::string& sent = !request.origin.empty() ? request.origin : request.referer;
  const std::string claimed = normalize_origin(sent);
  const auto& list = merchant.allowed_origins;
  const bool listed =
      !claimed.empty() && std::find(list.begin(), list.end(), claimed) != list.end();
  if (none ? !merchant.allow_missing_origin : !listed) {
    ex.trace.detail = none ? "no Origin or Referer" : "origin " + quoted(sent, 80) + " not allowed";
    return local_result(Outcome::origin_denied);
  }
  if (!request.origin.empty()) ex.trace.cors_origin = claimed;
  return std::nullopt;
}

StageResult method(Exchange& ex, const Services&) {
  // OPTIONS is a CORS preflight (from an origin the stage before allowed);
  // anything else but POST is refused.
  if (ex.request.method == "OPTIONS") return local_result(Outcome::preflight);
  if (ex.request.method != "POST") return local_result(Outcome::method_not_allowed);
  return std::nullopt;
}

}  // namespace pvgate
