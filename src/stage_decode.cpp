// Stages: size, content type + decode, validate.
#include <string>

#include "form.h"
#include "json_codec.h"
#include "sanitize.h"
#include "stages.h"
#include "validate.h"

namespace pvgate {

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

StageResult size(Exchange& ex, const Services&) {
  // Cheap, before any parsing. The limit is the one the body was read with:
  // both come from the request's own snapshot.
  const std::size_t limit = ex.max_body_bytes();
  if (ex.request.content_length > limit || ex.request.body.size() > limit) {
    return local_result(Outcome::payload_too_large,
                        "Request body too large (at most " + std::to_string(limit) + " bytes).");
  }
  return std::nullopt;
}

StageResult decode(Exchange& ex, const Services&) {
  const HttpRequest& request = ex.request;
  std::optional<DecodeError> error;
  if (is_media_type(request.content_type, "application/json")) {
    error = decode_json_fields(request.body, ex.fields);
  } else if (is_media_type(request.content_type, "application/x-www-form-urlencoded")) {
    error = decode_form(request.body, ex.fields);
  } else {
    return local_result(Outcome::unsupported_media,
                        "Unsupported content type; send application/json or "
                        "application/x-www-form-urlencoded.");
  }
  if (error) return local_result(Outcome::invalid_input, describe(*error));
  return std::nullopt;
}

StageResult validate(Exchange& ex, const Services&) {
  const MerchantConfig& merchant = *ex.merchant;
  ClientFields& client = ex.client;
  const bool user_from_server = !merchant.user_id_param.empty();
  if (auto bad = validate_fields(*ex.action, ex.fields, client, user_from_server,
                                 challenge_field(merchant.challenge.kind))) {
    return local_result(Outcome::invalid_input, bad->message);
  }
  if (user_from_server) {
    // Set by nginx after its own authentication (auth_request): trusted, but
    // still checked, since it is signed like any other field.
    const std::optional<std::string_view> user = ex.request.param(merchant.user_id_param);
    if (!user || !valid_user_id(*user)) {
      ex.trace.detail =
          "FastCGI param " + merchant.user_id_param +
          (user ? " is not a valid user id" : " is not set (is nginx authenticating?)");
      return local_result(Outcome::misconfigured);
    }
    client.user_id = std::string(*user);
  }
  if (client.contact_no) ex.trace.phone = client.dialing_code + mask_phone(*client.contact_no);
  return std::nullopt;
}

}  // namespace pvgate
