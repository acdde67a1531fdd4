// Stage: sign. Every field sent is signed; api_secret is mixed in and never sent.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "json_codec.h"
#include "signer.h"
#include "stages.h"

namespace pvgate {

StageResult sign(Exchange& ex, const Services& s) {
  const MerchantConfig& merchant = *ex.merchant;
  const ClientFields& client = ex.client;
  std::map<std::string, std::string> signed_fields{
      {"action", std::string(action_name(*ex.action))},
      {"timestamp", std::to_string(s.clock.unix_seconds())},
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
  ex.call = UpstreamCall{merchant.api_key, encode_string_object(members)};
  return std::nullopt;
}

}  // namespace pvgate
