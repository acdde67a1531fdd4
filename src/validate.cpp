#include "validate.h"

#include <algorithm>
#include <array>

namespace pvgate {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool all_digits(std::string_view v, std::size_t min, std::size_t max) {
  return v.size() >= min && v.size() <= max && std::all_of(v.begin(), v.end(), is_digit);
}

constexpr std::array<std::string_view, 5> kServerOwned = {"api_key", "api_secret", "signature",
                                                          "timestamp", "action"};

enum class Slot { user_id, dialing_code, contact_no, reference, answer };

struct FieldRule {
  std::string_view name;
  Slot slot;
  bool verify_only;  // accepted only by verify-token-answer
  bool (*valid)(std::string_view);
  std::string_view rule;  // for the message
};

constexpr std::array<FieldRule, 5> kRules = {{
    {"user_id", Slot::user_id, false, valid_user_id, "1-32 characters of A-Z a-z 0-9 . _ @ -"},
    {"contact_no_country_dialing_code", Slot::dialing_code, false, valid_dialing_code,
     "1-5 digits, without '+'"},
    {"contact_no", Slot::contact_no, false, valid_contact_no, "1-32 digits"},
    {"reference", Slot::reference, true, valid_reference, "a positive integer"},
    {"answer", Slot::answer, true, valid_answer, "1-6 letters or digits"},
}};

const FieldRule* find_rule(std::string_view name) {
  for (const auto& r : kRules) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

FieldError error(std::string_view field, std::string message) {
  return FieldError{std::string(field), std::move(message)};
}

}  // namespace

std::string_view action_name(Action action) {
  return action == Action::send_token ? "send-token" : "verify-token-answer";
}

std::optional<Action> action_from_route(std::string_view segment) {
  if (segment == "send-token") return Action::send_token;
  if (segment == "verify-token-answer") return Action::verify_token_answer;
  return std::nullopt;
}

bool valid_user_id(std::string_view v) {
  return !v.empty() && v.size() <= 32 && std::all_of(v.begin(), v.end(), [](char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '@' || c == '-';
  });
}
bool valid_dialing_code(std::string_view v) {
  return all_digits(v, 1, 5);
}
bool valid_contact_no(std::string_view v) {
  return all_digits(v, 1, 32);
}
bool valid_reference(std::string_view v) {
  return all_digits(v, 1, 18) && v.front() != '0';
}
bool valid_answer(std::string_view v) {
  return !v.empty() && v.size() <= 6 && std::all_of(v.begin(), v.end(), is_alnum);
}
bool valid_challenge(std::string_view v) {
  return !v.empty() && v.size() <= 4096 &&
         std::all_of(v.begin(), v.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::optional<FieldError> validate_fields(Action action, const FieldList& fields, ClientFields& out,
                                          bool user_from_server, std::string_view challenge_field) {
  out = ClientFields{};
  std::array<bool, kRules.size()> seen{};
  for (const auto& [name, value] : fields) {
    if (std::find(kServerOwned.begin(), kServerOwned.end(), name) != kServerOwned.end()) {
      return error(name, "field '" + name + "' is set by the server and must not be sent");
    }
    if (!challenge_field.empty() && name == challenge_field && action == Action::send_token) {
      if (out.challenge) return error(name, "field '" + name + "' given more than once");
      if (!valid_challenge(value)) {
        return error(name, "invalid " + name + ": 1-4096 printable characters, no spaces");
      }
      out.challenge = value;
      continue;
    }
    const FieldRule* rule = find_rule(name);
    if (rule == nullptr || (rule->verify_only && action != Action::verify_token_answer)) {
      return error(name, "unknown field '" + name + "'");
    }
    if (rule->slot == Slot::user_id && user_from_server) {
      return error(name, "field 'user_id' is set by the server for this site and must not be sent");
    }
    const auto index = static_cast<std::size_t>(rule - kRules.data());
    if (seen[index]) return error(name, "field '" + name + "' given more than once");
    seen[index] = true;

    // An empty optional field is treated as absent (the SDK's pattern).
    if (rule->slot == Slot::contact_no && value.empty()) continue;
    if (!rule->valid(value)) {
      return error(name, "invalid " + name + ": " + std::string(rule->rule));
    }
    switch (rule->slot) {
      case Slot::user_id:
        out.user_id = value;
        break;
      case Slot::dialing_code:
        out.dialing_code = value;
        break;
      case Slot::contact_no:
        out.contact_no = value;
        break;
      case Slot::reference:
        out.reference = value;
        break;
      case Slot::answer:
        out.answer = value;
        break;
    }
  }
  for (const auto& rule : kRules) {
    const bool required = rule.slot != Slot::contact_no &&
                          !(rule.slot == Slot::user_id && user_from_server) &&
                          (!rule.verify_only || action == Action::verify_token_answer);
    const auto index = static_cast<std::size_t>(&rule - kRules.data());
    if (required && !seen[index])
      return error(rule.name, "missing field '" + std::string(rule.name) + "'");
  }
  return std::nullopt;
}

}  // namespace pvgate
