// Field rules for the client's part of a phone-verify call. Every rule cites
// its source: the interface section, tightened from
// shared/pipwave-api.md. Values are validated before signing because the
// signature joins pairs with no separator: a value with a ':' or letters where
// digits belong could forge another field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fields.h"

namespace pvgate {

enum class Action {
  send_token,           // send or resend a code
  verify_token_answer,  // check the code the user typed
};

std::string_view action_name(Action action);
// "send-token" / "verify-token-answer"; anything else is not a route.
std::optional<Action> action_from_route(std::string_view segment);

// The client's fields after validation; only these are ever forwarded.
struct ClientFields {
  std::string user_id;
  std::string dialing_code;               // contact_no_country_dialing_code
  std::optional<std::string> contact_no;  // absent or empty: left out of body and signature
  std::optional<std::string> reference;   // verify-token-answer only
  std::optional<std::string> answer;      // verify-token-answer only
  // send-token only: the challenge solution (ALTCHA payload or CAPTCHA
  // token) from the merchant's challenge field, when sent.
  std::optional<std::string> challenge;
};

struct FieldError {
  std::string field;    // the field the message is about
  std::string message;  // client-facing, names the field
};

// Single-value rules (pure; exposed for the tests).
bool valid_user_id(std::string_view v);       // 1-32 of [A-Za-z0-9._@-]
bool valid_dialing_code(std::string_view v);  // 1-5 ASCII digits
bool valid_contact_no(std::string_view v);    // 1-32 ASCII digits
bool valid_reference(std::string_view v);     // positive integer, 1-18 digits, no leading 0
bool valid_answer(std::string_view v);        // 1-6 of [A-Za-z0-9]
bool valid_challenge(std::string_view v);     // 1-4096 printable ASCII, no spaces

// Checks the whole field list for `action`: no duplicates, no unknown
// fields, none of the server-owned fields (api_key, api_secret, signature,
// timestamp, action), every required field present and well-formed.
// With `user_from_server` (the merchant's user_id_param), user_id is not
// required and a client that sends it is refused: the server provides it.
// `challenge_field` (the merchant's challenge kind's field: "altcha",
// "cf-turnstile-response", ...; empty for none) is accepted, optional, by
// send-token; any other field name stays unknown.
std::optional<FieldError> validate_fields(Action action, const FieldList& fields, ClientFields& out,
                                          bool user_from_server = false,
                                          std::string_view challenge_field = {});

}  // namespace pvgate
