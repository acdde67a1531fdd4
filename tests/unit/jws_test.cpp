// The verification token's JWS (src/jws.h). Signatures are checked here with
// OpenSSL's verifier against a public key built from the published JWK (as a
// shop's server would), not with the signing key; tests/interop checks the
// same tokens with PyJWT.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "jws.h"
#include "temp_dir.h"

using pvgate::base64url_decode;
using pvgate::base64url_encode;
using pvgate::SigningKey;

namespace {

// Test-only keys and the values an independent implementation gives for
// them. The P-256 key was generated with python3-cryptography 38 (Debian
// bookworm); its JWK x/y come from PyJWT 2.6's ECAlgorithm.to_jwk and its
// thumbprint from hashlib.sha256 over the RFC 7638 canonical JSON
// {"crv","kty","x","y"} (json.dumps, sort_keys, no spaces). RFC 7638's own
// example (section 3.1) is an RSA key, which pvgate refuses, so it cannot
// serve here.
constexpr const char* kP256Pkcs8 = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/SFBW8u9kgEmOd4H
BBhyxLvJOtoa3nSnbOZATvmEJLuhRANCAAScJa7QlpFGm8oHWe3CWMzjCl0YbtNT
O40gBbEZCxml4z7x4TaAZu1d9l+/lGx4dwK/i6khFpKKeYn9lLzxcCVO
-----END PRIVATE KEY-----
)";
// The same key in SEC1 form (cryptography's PrivateFormat.TraditionalOpenSSL).
constexpr const char* kP256Sec1 = R"(-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIP0hQVvLvZIBJjneBwQYcsS7yTraGt50p2zmQE75hCS7oAoGCCqGSM49
AwEHoUQDQgAEnCWu0JaRRpvKB1ntwljM4wpdGG7TUzuNIAWxGQsZpeM+8eE2gGbt
XfZfv5RseHcCv4upIRaSinmJ/ZS88XAlTg==
-----END EC PRIVATE KEY-----
)";
constexpr const char* kP256X = "nCWu0JaRRpvKB1ntwljM4wpdGG7TUzuNIAWxGQsZpeM";
constexpr const char* kP256Y = "PvHhNoBm7V32X7-UbHh3Ar-LqSEWkop5if2UvPFwJU4";
constexpr const char* kP256Thumbprint = "aE1Q22S7AE7OivlbU6z-6FWN2HhuY_17QrY6mYvf7Zg";

// RFC 8037 appendix A.1's Ed25519 key (d = nWGxne_9...), written as PKCS#8 by
// python3-cryptography; its x and thumbprint are RFC 8037 A.2 and A.3's.
constexpr const char* kEd25519Pkcs8 = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
)";
constexpr const char* kEd25519X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
constexpr const char* kEd25519Thumbprint = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

SigningKey load(std::string_view pem) {
  std::string error;
  auto key = SigningKey::load_pem(pem, "test", error);
  INFO(error);
  REQUIRE(key);
  CHECK(error.empty());
  return std::move(*key);
}

std::string bytes_of(const std::string& b64u) {
  auto out = base64url_decode(b64u);
  REQUIRE(out);
  return *out;
}

// A public key built from a JWK's members, the way a verifier gets one.
Pkey public_key_from_jwk(const nlohmann::json& jwk) {
  if (jwk.at("kty") == "OKP") {
    const std::string x = bytes_of(jwk.at("x").get<std::string>());
    return Pkey(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x.data()), x.size()));
  }
  const std::string point =
      "\x04" + bytes_of(jwk.at("x").get<std::string>()) + bytes_of(jwk.at("y").get<std::string>());
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
  EVP_PKEY* key = nullptr;
  if (EVP_PKEY_fromdata_init(ctx) == 1) EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  return Pkey(key);
}

// JWS raw r||s back to the DER ECDSA-Sig-Value OpenSSL verifies.
std::string es256_raw_to_der(const std::string& raw) {
  REQUIRE(raw.size() == 64);
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  REQUIRE(len > 0);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

struct Parts {
  std::string header_b64, payload_b64, sig_b64;
};
Parts split(const std::string& token) {
  const auto a = token.find('.');
  const auto b = token.find('.', a + 1);
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(token.find('.', b + 1) == std::string::npos);
  return {token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1)};
}

// Verifies a compact JWS with OpenSSL against the key in `jwk_text`.
bool verifies(const std::string& token, const std::string& jwk_text) {
  const auto jwk = nlohmann::json::parse(jwk_text);
  const Pkey pub = public_key_from_jwk(jwk);
  REQUIRE(pub);
  const Parts parts = split(token);
  const std::string input = parts.header_b64 + "." + parts.payload_b64;
  const auto raw = base64url_decode(parts.sig_b64);
  if (!raw || raw->size() != 64) return false;
  const bool ec = jwk.at("kty") == "EC";
  const std::string sig = ec ? es256_raw_to_der(*raw) : *raw;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, ec ? EVP_sha256() : nullptr, nullptr, pub.get()) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string sha256_b64u(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr) == 1);
  return base64url_encode(std::string(reinterpret_cast<const char*>(md), len));
}

// A freshly generated key of `type` ("RSA", "EC", "ED448", ...) as PEM.
enum class Form { pkcs8, traditional, public_key, pkcs8_encrypted, traditional_encrypted };
std::string generated_pem(const char* type, const char* param, Form form) {
  EVP_PKEY* raw = nullptr;
  if (std::string_view(type) == "RSA") {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(1024));
  } else if (param != nullptr) {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, type, param);
  } else {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  }
  Pkey key(raw);
  REQUIRE(key);
  BIO* bio = BIO_new(BIO_s_mem());
  int ok = 0;
  unsigned char pass[] = "passphrase";
  switch (form) {
    case Form::pkcs8:
      ok = PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
      break;
    case Form::traditional:
      ok = PEM_write_bio_PrivateKey_traditional(bio, key.get(), nullptr, nullptr, 0, nullptr,
                                                nullptr);
      break;
    case Form::public_key:
      ok = PEM_write_bio_PUBKEY(bio, key.get());
      break;
    case Form::pkcs8_encrypted:
      ok = PEM_write_bio_PKCS8PrivateKey(bio, key.get(), EVP_aes_256_cbc(),
                                         reinterpret_cast<char*>(pass), 10, nullptr, nullptr);
      break;
    case Form::traditional_encrypted:
      ok = PEM_write_bio_PrivateKey_traditional(bio, key.get(), EVP_aes_256_cbc(), pass, 10,
                                                nullptr, nullptr);
      break;
  }
  REQUIRE(ok == 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return pem;
}

// No line of the PEM's body (and no armour) may show up in an error.
void check_error_has_no_key_text(const std::string& error, const std::string& pem) {
  INFO(error);
  CHECK(error.find("-----") == std::string::npos);
  std::size_t start = 0;
  while (start < pem.size()) {
    std::size_t end = pem.find('\n', start);
    if (end == std::string::npos) end = pem.size();
    const std::string line = pem.substr(start, end - start);
    if (line.size() >= 8 && line.find("-----") == std::string::npos) {
      // Any 8 consecutive characters of a body line would be a leak.
      for (std::size_t i = 0; i + 8 <= line.size(); i += 8)
        CHECK(error.find(line.substr(i, 8)) == std::string::npos);
    }
    start = end + 1;
  }
}

std::string refused(const std::string& pem, const std::string& source = "keys/test.pem") {
  std::string error;
  auto key = SigningKey::load_pem(pem, source, error);
  CHECK_FALSE(key);
  CHECK(error.find("signing key " + source + ": ") == 0);
  check_error_has_no_key_text(error, pem);
  return error;
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

}  // namespace

TEST_CASE("base64url encodes RFC 4648's test vectors without padding") {
  // RFC 4648 section 10, padding dropped (RFC 7515 section 2).
  CHECK(base64url_encode("") == "");
  CHECK(base64url_encode("f") == "Zg");
  CHECK(base64url_encode("fo") == "Zm8");
  CHECK(base64url_encode("foo") == "Zm9v");
  CHECK(base64url_encode("foob") == "Zm9vYg");
  CHECK(base64url_encode("fooba") == "Zm9vYmE");
  CHECK(base64url_encode("foobar") == "Zm9vYmFy");
  // The two characters that differ from base64: '-' for '+', '_' for '/'.
  CHECK(base64url_encode("\xfb\xff\xbf") == "-_-_");
  CHECK(base64url_encode(std::string("\x00\x00\x00", 3)) == "AAAA");
  CHECK(base64url_encode("\xff") == "_w");
  CHECK(base64url_encode("\xff\xff") == "__8");
}

TEST_CASE("base64url decodes the same vectors") {
  for (const std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xfb\xff\xbf"}) {
    INFO(s);
    const auto decoded = base64url_decode(base64url_encode(s));
    REQUIRE(decoded);
    CHECK(*decoded == s);
  }
  CHECK(base64url_decode("Zm9vYmFy") == std::optional<std::string>("foobar"));
  CHECK(base64url_decode("_w") == std::optional<std::string>("\xff"));
}

TEST_CASE("base64url round-trips every byte and every length up to 300") {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    bytes.push_back(static_cast<char>((i * 167 + 13) & 0xFF));
    const std::string enc = base64url_encode(bytes);
    INFO(bytes.size());
    CHECK(enc.size() == (bytes.size() * 4 + 2) / 3);
    CHECK(enc.find_first_of("+/=") == std::string::npos);
    CHECK(base64url_decode(enc) == std::optional<std::string>(bytes));
  }
}

TEST_CASE("base64url decoding is strict") {
  for (const std::string bad : {
           "Zg==",
           "Zg=",
           "Zm8=",
           "=",  // padding
           "Z",
           "Zm9vY",
           "Zm9vYmFyZ",  // a length of 1 mod 4
           "Zh",
           "Zm9",
           "Zm9vYmF",
           "_x",  // unused bits not zero
           "Zm+v",
           "Zm/v",
           "Zm9 v",
           "Zm9v\n",  // base64's alphabet, whitespace
           "Zm9v.",
           "Zm\x80v",
           "Zm*v",
       }) {
    INFO(bad);
    CHECK_FALSE(base64url_decode(bad));
  }
  CHECK_FALSE(base64url_decode(std::string("Zm\0v", 4)));
}

TEST_CASE("a P-256 key loads as ES256 with its RFC 7638 thumbprint as kid") {
  for (const char* pem : {kP256Pkcs8, kP256Sec1}) {
    const SigningKey key = load(pem);
    CHECK(key.alg() == "ES256");
    // Computed here from the canonical JSON, and by Python beforehand.
    const std::string canonical = std::string(R"({"crv":"P-256","kty":"EC","x":")") + kP256X +
                                  R"(","y":")" + kP256Y + R"("})";
    CHECK(key.kid() == sha256_b64u(canonical));
    CHECK(key.kid() == kP256Thumbprint);
    CHECK(key.jwk() == std::string(R"({"kty":"EC","crv":"P-256","x":")") + kP256X + R"(","y":")" +
                           kP256Y + R"(","kid":")" + kP256Thumbprint +
                           R"(","alg":"ES256","use":"sig"})");
  }
}

TEST_CASE("an Ed25519 key loads as EdDSA with RFC 8037's thumbprint as kid") {
  const SigningKey key = load(kEd25519Pkcs8);
  CHECK(key.alg() == "EdDSA");
  CHECK(key.kid() ==
        sha256_b64u(std::string(R"({"crv":"Ed25519","kty":"OKP","x":")") + kEd25519X + R"("})"));
  CHECK(key.kid() == kEd25519Thumbprint);
  CHECK(key.jwk() == std::string(R"({"kty":"OKP","crv":"Ed25519","x":")") + kEd25519X +
                         R"(","kid":")" + kEd25519Thumbprint + R"(","alg":"EdDSA","use":"sig"})");
}

TEST_CASE("a JWK holds exactly the public members, never d") {
  for (const char* pem : {kP256Pkcs8, kEd25519Pkcs8}) {
    const SigningKey key = load(pem);
    const auto jwk = nlohmann::json::parse(key.jwk());
    std::set<std::string> members;
    for (const auto& item : jwk.items()) members.insert(item.key());
    const bool ec = key.alg() == "ES256";
    CHECK(members == (ec ? std::set<std::string>{"kty", "crv", "x", "y", "kid", "alg", "use"}
                         : std::set<std::string>{"kty", "crv", "x", "kid", "alg", "use"}));
    CHECK(jwk.count("d") == 0);
    CHECK(key.jwk().find("\"d\"") == std::string::npos);
    CHECK(jwk.at("use") == "sig");
    CHECK(bytes_of(jwk.at("x").get<std::string>()).size() == 32);
    if (ec) CHECK(bytes_of(jwk.at("y").get<std::string>()).size() == 32);
  }
}

TEST_CASE("an ES256 token has the fixed header and a 64-byte r||s that OpenSSL verifies") {
  const SigningKey key = load(kP256Pkcs8);
  const std::string claims = R"({"sub":"demo-user","phone_number":"+60123456789"})";
  const std::string token = pvgate::sign_jwt(key, claims);
  const Parts parts = split(token);
  CHECK(bytes_of(parts.header_b64) ==
        std::string(R"({"alg":"ES256","kid":")") + kP256Thumbprint + R"(","typ":"JWT"})");
  CHECK(bytes_of(parts.payload_b64) == claims);
  CHECK(bytes_of(parts.sig_b64).size() == 64);  // raw r||s, not DER (70-72 bytes)
  CHECK(verifies(token, key.jwk()));
  // ECDSA is randomised: two tokens differ, both verify.
  const std::string again = pvgate::sign_jwt(key, claims);
  CHECK(again != token);
  CHECK(verifies(again, key.jwk()));
}

TEST_CASE("a tampered ES256 token does not verify") {
  const SigningKey key = load(kP256Sec1);
  const std::string token = pvgate::sign_jwt(key, R"({"phone_number":"+60123456789"})");
  const Parts parts = split(token);
  REQUIRE(verifies(token, key.jwk()));
  const std::string other_payload = base64url_encode(R"({"phone_number":"+60123456780"})");
  CHECK_FALSE(verifies(parts.header_b64 + "." + other_payload + "." + parts.sig_b64, key.jwk()));
  std::string sig = bytes_of(parts.sig_b64);
  sig[10] = static_cast<char>(sig[10] ^ 1);
  CHECK_FALSE(verifies(parts.header_b64 + "." + parts.payload_b64 + "." + base64url_encode(sig),
                       key.jwk()));
  // Another P-256 key's JWK does not verify it either.
  const SigningKey other = load(generated_pem("EC", "P-256", Form::pkcs8));
  CHECK(other.kid() != key.kid());
  CHECK_FALSE(verifies(token, other.jwk()));
}

TEST_CASE("an EdDSA token matches the one python3-cryptography computes, and verifies") {
  const SigningKey key = load(kEd25519Pkcs8);
  const std::string claims = R"({"sub":"demo-user","phone_number":"+60123456789"})";
  const std::string token = pvgate::sign_jwt(key, claims);
  // Ed25519 is deterministic: Ed25519PrivateKey.sign over the same header and
  // payload, in Python, gave this token.
  CHECK(token ==
        "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiL"
        "CJ0eXAiOiJKV1QifQ.eyJzdWIiOiJkZW1vLXVzZXIiLCJwaG9uZV9udW1iZXIiOiIrNjAxMjM0NTY3ODkifQ."
        "GWNf2QlN8RCLjfiZutZ4phV0fmXUmjeAW0Vv4_MZWWyyzN3muPhfo7AbDiXK1pp9MvApQuDcmoh2szO4qw2yBw");
  CHECK(verifies(token, key.jwk()));
  const Parts parts = split(token);
  CHECK_FALSE(
      verifies(parts.header_b64 + "." + base64url_encode(R"({"sub":"x"})") + "." + parts.sig_b64,
               key.jwk()));
}

TEST_CASE("many threads sign with one key at once") {
  const SigningKey es = load(kP256Pkcs8);
  const SigningKey ed = load(kEd25519Pkcs8);
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::vector<std::string>> tokens(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string claims = R"({"n":)" + std::to_string(t * kEach + i) + "}";
        tokens[t].push_back(pvgate::sign_jwt(t % 2 == 0 ? es : ed, claims));
      }
    });
  }
  for (auto& th : threads) th.join();
  int good = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (const auto& token : tokens[t]) good += verifies(token, (t % 2 == 0 ? es : ed).jwk());
  }
  CHECK(good == kThreads * kEach);
}

TEST_CASE("jwks lists every key's JWK in order") {
  std::vector<SigningKey> keys;
  keys.push_back(load(kP256Pkcs8));
  keys.push_back(load(kEd25519Pkcs8));
  const std::string text = pvgate::jwks(keys);
  CHECK(text == R"({"keys":[)" + keys[0].jwk() + "," + keys[1].jwk() + "]}");
  const auto parsed = nlohmann::json::parse(text);
  REQUIRE(parsed.at("keys").size() == 2);
  CHECK(parsed["keys"][0]["kid"] == kP256Thumbprint);
  CHECK(parsed["keys"][1]["kid"] == kEd25519Thumbprint);
  CHECK(pvgate::jwks({}) == R"({"keys":[]})");
  // A key moved out of the list still signs and keeps its kid.
  SigningKey moved = std::move(keys[0]);
  CHECK(moved.kid() == kP256Thumbprint);
  CHECK(verifies(pvgate::sign_jwt(moved, "{}"), moved.jwk()));
}

TEST_CASE("EC PARAMETERS before the key are skipped (openssl ecparam -genkey)") {
  const std::string pem =
      "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n"
      "-----END EC PARAMETERS-----\n" +
      std::string(kP256Sec1);
  CHECK(load(pem).kid() == kP256Thumbprint);
  const std::string error = refused(
      "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n"
      "-----END EC PARAMETERS-----\n");
  CHECK(error.find("EC parameters but no private key") != std::string::npos);
}

TEST_CASE("keys of other types and curves are refused, saying what they are") {
  CHECK(refused(generated_pem("RSA", nullptr, Form::pkcs8)).find("an RSA private key") !=
        std::string::npos);
  CHECK(refused(generated_pem("RSA", nullptr, Form::traditional)).find("an RSA private key") !=
        std::string::npos);
  CHECK(refused(generated_pem("EC", "P-384", Form::pkcs8)).find("curve secp384r1, not P-256") !=
        std::string::npos);
  CHECK(refused(generated_pem("EC", "P-384", Form::traditional)).find("curve secp384r1") !=
        std::string::npos);
  CHECK(refused(generated_pem("EC", "secp256k1", Form::pkcs8)).find("curve secp256k1") !=
        std::string::npos);
  CHECK(refused(generated_pem("ED448", nullptr, Form::pkcs8)).find("of type ED448") !=
        std::string::npos);
  CHECK(refused(generated_pem("X25519", nullptr, Form::pkcs8)).find("of type X25519") !=
        std::string::npos);
  // Every refusal says what is accepted.
  CHECK(refused(generated_pem("RSA", nullptr, Form::pkcs8))
            .find("EC P-256 (ES256) or Ed25519 (EdDSA) private keys") != std::string::npos);
}

TEST_CASE("public keys and encrypted keys are refused") {
  CHECK(refused(generated_pem("EC", "P-256", Form::public_key))
            .find("a public key (\"PUBLIC KEY\"), not a private key") != std::string::npos);
  CHECK(refused(generated_pem("ED25519", nullptr, Form::public_key)).find("a public key") !=
        std::string::npos);
  CHECK(refused(generated_pem("EC", "P-256", Form::pkcs8_encrypted))
            .find("an encrypted private key") != std::string::npos);
  // Legacy encryption: "EC PRIVATE KEY" with a Proc-Type: 4,ENCRYPTED header.
  const std::string legacy = generated_pem("EC", "P-256", Form::traditional_encrypted);
  REQUIRE(legacy.find("ENCRYPTED") != std::string::npos);
  CHECK(refused(legacy).find("an encrypted private key") != std::string::npos);
}

TEST_CASE("garbage, damaged PEM and other PEM blocks are refused") {
  CHECK(refused("").find("no PEM block") != std::string::npos);
  CHECK(refused("not a key at all\n").find("no PEM block") != std::string::npos);
  CHECK(refused("-----BEGIN PRIVATE KEY-----\n!!!notbase64!!!\n-----END PRIVATE KEY-----\n")
            .find("a damaged PEM block") != std::string::npos);
  // The first 60 characters of the P-256 key, cut before its END line.
  CHECK(refused(std::string(kP256Pkcs8).substr(0, 60)).find("a damaged PEM block") !=
        std::string::npos);
  // Valid base64 that is not DER of a key.
  CHECK(refused("-----BEGIN PRIVATE KEY-----\nAAAAAAAA\n-----END PRIVATE KEY-----\n")
            .find("cannot decode") != std::string::npos);
  CHECK(refused("-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n")
            .find("a certificate") != std::string::npos);
  CHECK(refused("-----BEGIN SOMETHING\x01 ELSE-----\nAAAAAAAA\n-----END SOMETHING\x01 ELSE-----\n")
            .find("a PEM block \"SOMETHING? ELSE\"") != std::string::npos);
}

TEST_CASE("an EC key whose public point is not its own is refused") {
  // SEC1 DER of P-256 ends with the 65-byte uncompressed public point; graft
  // another key's point onto this key's private scalar.
  const auto der_of = [](const std::string& pem) {
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    Pkey key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    REQUIRE(key);
    unsigned char* der = nullptr;
    const int len = i2d_PrivateKey(key.get(), &der);
    REQUIRE(len > 65);
    std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
    OPENSSL_free(der);
    return out;
  };
  const std::string mine = der_of(kP256Sec1);
  const std::string theirs = der_of(generated_pem("EC", "P-256", Form::traditional));
  REQUIRE(mine.size() == theirs.size());
  const std::string grafted = mine.substr(0, mine.size() - 65) + theirs.substr(theirs.size() - 65);
  BIO* bio = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio(bio, "EC PRIVATE KEY", "",
                        reinterpret_cast<const unsigned char*>(grafted.data()),
                        static_cast<long>(grafted.size())) > 0);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  CHECK(refused(pem).find("public part does not match") != std::string::npos);
}

TEST_CASE("load_pem_file: a good file, and missing, empty and oversized files") {
  pvgate_test::TempDir dir;
  const std::string good = dir.path() + "/es256.pem";
  write_file(good, kP256Pkcs8);
  std::string error = "stale";
  auto key = SigningKey::load_pem_file(good, error);
  REQUIRE(key);
  CHECK(error.empty());
  CHECK(key->kid() == kP256Thumbprint);

  const std::string missing = dir.path() + "/missing.pem";
  CHECK_FALSE(SigningKey::load_pem_file(missing, error));
  CHECK(error == "signing key " + missing + ": cannot open: No such file or directory");

  const std::string empty = dir.path() + "/empty.pem";
  write_file(empty, "");
  CHECK_FALSE(SigningKey::load_pem_file(empty, error));
  CHECK(error.find("signing key " + empty + ": empty file") == 0);

  const std::string rsa = dir.path() + "/rsa.pem";
  const std::string rsa_pem = generated_pem("RSA", nullptr, Form::pkcs8);
  write_file(rsa, rsa_pem);
  CHECK_FALSE(SigningKey::load_pem_file(rsa, error));
  CHECK(error.find("signing key " + rsa + ": an RSA private key") == 0);
  check_error_has_no_key_text(error, rsa_pem);

  // At the limit the file is parsed (the key after padding lines is found);
  // one byte past it, it is not.
  std::string padded(pvgate::kMaxKeyFileBytes - std::string(kP256Pkcs8).size(), '#');
  padded.back() = '\n';
  padded += kP256Pkcs8;
  REQUIRE(padded.size() == pvgate::kMaxKeyFileBytes);
  const std::string big = dir.path() + "/big.pem";
  write_file(big, padded);
  CHECK(SigningKey::load_pem_file(big, error));
  write_file(big, "#" + padded);
  CHECK_FALSE(SigningKey::load_pem_file(big, error));
  CHECK(error.find("signing key " + big + ": larger than 65536 bytes") == 0);

  CHECK_FALSE(SigningKey::load_pem_file(dir.path(), error));  // a directory
  CHECK(error.find("signing key " + dir.path() + ": cannot read") == 0);
}

TEST_CASE("claims_json writes every claim, escaped, as valid JSON") {
  pvgate::TokenClaims c;
  c.iss = "https://pvgate.example/";
  c.aud = "shop-a";
  c.sub = "user\"1\\\n\x01";
  c.phone_number = "+60123456789";
  c.iat = 1700000000;
  c.exp = 1700000600;
  c.jti = "abc";
  const std::string text = pvgate::claims_json(c);
  CHECK(text == R"({"iss":"https://pvgate.example/","aud":"shop-a","sub":"user\"1\\\n\u0001",)"
                R"("phone_number":"+60123456789","phone_number_verified":true,"iat":1700000000,)"
                R"("exp":1700000600,"jti":"abc"})");
  const auto parsed = nlohmann::json::parse(text);
  CHECK(parsed.at("sub") == c.sub);
  CHECK(parsed.at("phone_number_verified") == true);
  CHECK(parsed.at("exp") == 1700000600);
  // Invalid UTF-8 is replaced, so the payload is always JSON a verifier can read.
  c.sub = "bad\xff";
  CHECK(nlohmann::json::parse(pvgate::claims_json(c)).at("sub") == "bad\xef\xbf\xbd");
}

TEST_CASE("new_jti gives 128 random bits in 22 base64url characters") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string jti = pvgate::new_jti();
    REQUIRE(jti.size() == 22);
    const auto bytes = base64url_decode(jti);
    REQUIRE(bytes);
    CHECK(bytes->size() == 16);
    seen.insert(jti);
  }
  CHECK(seen.size() == 1000);
}
