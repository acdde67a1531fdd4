// Stage: sign. Every field sent is signed; api_secret is mixed in and never sent.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

#include "json_codec.h"
#include "signer.h"
#include "stages.h"

namespace pvgate {

StageResult sign(Exchange& ex, const Services& s) {
  const MerchantConfig& merchant = *ex.merchant;
  const ClientFields& client = ex.client;
  const std::string timestamp = std::to_string(s.clock.unix_seconds());
  // Views of the fields, not copies: they all outlive this function's use.
  thread_local FieldViews fields;
  fields.clear();
  fields.emplace_back("action", action_name(*ex.action));
  fields.emplace_back("timestamp", timestamp);
  fields.emplace_back("api_key", merchant.api_key);
  fields.emplace_back("user_id", client.user_id);
  fields.emplace_back("contact_no_country_dialing_code", client.dialing_code);
  if (client.contact_no) fields.emplace_back("contact_no", *client.contact_no);
  if (client.reference) fields.emplace_back("reference", *client.reference);
  if (client.answer) fields.emplace_back("answer", *client.answer);
  std::sort(fields.begin(), fields.end());  // byte order of the keys (each is there once)
  ex.signature = pipwave_signature(fields, merchant.api_secret);

  fields.emplace_back("signature", ex.signature);
  ex.call = UpstreamCall{merchant.api_key, encode_string_object(fields)};
  fields.clear();  // no view outlives the call
  return std::nullopt;
}

}  // namespace pvgate
