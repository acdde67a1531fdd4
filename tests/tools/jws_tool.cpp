// pvgate_jws_tool: src/jws.h from the command line, for tests/interop (an
// independent JWT implementation checks what it prints). Never installed.
//
//   pvgate_jws_tool --key PEM [--key PEM...] --claims JSON
//   pvgate_jws_tool --key PEM [--key PEM...] --iss I --aud A --sub S --phone P --iat N --exp N
//
// The first key signs; all are published. Prints two lines: the JWKS, then
// the token. The second form builds the claims with claims_json and a fresh
// jti. A key that does not load: its error on stderr, exit 1; usage: exit 2.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "jws.h"

namespace {

int usage(const std::string& why) {
  std::cerr << "pvgate_jws_tool: " << why << "\n"
            << "usage: pvgate_jws_tool --key PEM [--key PEM...] (--claims JSON | --iss I --aud A "
               "--sub S --phone P --iat N --exp N)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> key_files;
  std::optional<std::string> claims;
  pvgate::TokenClaims built;
  bool any_built = false;
  const std::map<std::string, std::string*> text_claims = {{"--iss", &built.iss},
                                                           {"--aud", &built.aud},
                                                           {"--sub", &built.sub},
                                                           {"--phone", &built.phone_number}};
  const std::map<std::string, std::int64_t*> number_claims = {{"--iat", &built.iat},
                                                              {"--exp", &built.exp}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return usage(arg + " needs a value");
    const std::string value = argv[++i];
    if (arg == "--key") {
      key_files.push_back(value);
    } else if (arg == "--claims") {
      claims = value;
    } else if (text_claims.count(arg) != 0) {
      any_built = true;
      *text_claims.at(arg) = value;
    } else if (number_claims.count(arg) != 0) {
      any_built = true;
      char* end = nullptr;
      const long long n = std::strtoll(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0') return usage(arg + " takes an integer");
      *number_claims.at(arg) = n;
    } else {
      return usage("unknown option " + arg);
    }
  }
  if (key_files.empty()) return usage("no --key");
  if (claims.has_value() == any_built) return usage("give either --claims or the claim options");

  std::vector<pvgate::SigningKey> keys;
  for (const auto& path : key_files) {
    std::string error;
    auto key = pvgate::SigningKey::load_pem_file(path, error);
    if (!key) {
      std::cerr << "pvgate_jws_tool: " << error << "\n";
      return 1;
    }
    keys.push_back(std::move(*key));
  }
  if (!claims) {
    built.jti = pvgate::new_jti();
    claims = pvgate::claims_json(built);
  }
  const std::string token = pvgate::sign_jwt(keys.front(), *claims);
  if (token.empty()) {
    std::cerr << "pvgate_jws_tool: signing failed\n";
    return 1;
  }
  std::cout << pvgate::jwks(keys) << "\n" << token << "\n";
  return 0;
}
