// src/crypto.h against published known answers: FIPS 180 (SHA-1, SHA-256),
// RFC 4231 (HMAC-SHA256), RFC 8032 (Ed25519). The key loader's refusals are
// tested through jws_test, whose error texts are built from them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <string_view>

#include "crypto.h"
#include "text.h"

using pvgate::PrivateKey;

namespace {

std::string hex(std::string_view bytes) {
  std::string out;
  pvgate::append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

// RFC 8032 section 7.1, TEST 1: its secret key as PKCS#8 (what
// python3-cryptography writes for Ed25519PrivateKey.from_private_bytes).
constexpr const char* kRfc8032Test1 = R"(-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
)";

// jws_test's P-256 key (kP256Pkcs8) and its public point.
constexpr const char* kP256 = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/SFBW8u9kgEmOd4H
BBhyxLvJOtoa3nSnbOZATvmEJLuhRANCAAScJa7QlpFGm8oHWe3CWMzjCl0YbtNT
O40gBbEZCxml4z7x4TaAZu1d9l+/lGx4dwK/i6khFpKKeYn9lLzxcCVO
-----END PRIVATE KEY-----
)";

}  // namespace

TEST_CASE("crypto: sha1_hex matches the FIPS 180 test vectors") {
  CHECK(pvgate::sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(pvgate::sha1_hex("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(pvgate::sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

TEST_CASE("crypto: sha256 gives FIPS 180's raw 32 bytes") {
  CHECK(pvgate::sha256("").size() == pvgate::kSha256Bytes);
  CHECK(hex(pvgate::sha256("")) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(pvgate::sha256("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Two blocks: the padding spills into a second one.
  CHECK(hex(pvgate::sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST_CASE("crypto: hmac_sha256 matches RFC 4231's test cases") {
  SECTION("case 1: a 20-byte key") {
    CHECK(hex(pvgate::hmac_sha256(std::string(20, '\x0b'), "Hi There")) ==
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  }
  SECTION("case 2: a key shorter than the output") {
    CHECK(hex(pvgate::hmac_sha256("Jefe", "what do ya want for nothing?")) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  }
  SECTION("case 3: 50 bytes of data") {
    CHECK(hex(pvgate::hmac_sha256(std::string(20, '\xaa'), std::string(50, '\xdd'))) ==
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  }
  SECTION("case 6: a key larger than the block, hashed first") {
    CHECK(hex(pvgate::hmac_sha256(std::string(131, '\xaa'),
                                  "Test Using Larger Than Block-Size Key - Hash Key First")) ==
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  }
  SECTION("the empty key and empty data (Python's hmac module gives the same)") {
    CHECK(hex(pvgate::hmac_sha256(std::string_view(), std::string_view())) ==
          "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
  }
}

TEST_CASE("crypto: wipe leaves zeros in every byte it owned, and an empty string") {
  std::string s(48, 'K');
  const char* before = s.data();
  pvgate::wipe(s);
  CHECK(s.empty());
  REQUIRE(s.data() == before);  // the same buffer, capacity kept
  CHECK(std::all_of(s.data(), s.data() + 48, [](char c) { return c == '\0'; }));
  std::string empty;
  pvgate::wipe(empty);
  CHECK(empty.empty());
}

TEST_CASE("crypto: equal_constant_time compares bytes and lengths") {
  using pvgate::equal_constant_time;
  CHECK(equal_constant_time("", ""));
  CHECK(equal_constant_time("abc", "abc"));
  CHECK(equal_constant_time(std::string("a\0b", 3), std::string("a\0b", 3)));
  CHECK_FALSE(equal_constant_time("abc", "abd"));
  CHECK_FALSE(equal_constant_time("abc", "xbc"));
  CHECK_FALSE(equal_constant_time(std::string("a\0b", 3), std::string("a\0c", 3)));
  CHECK_FALSE(equal_constant_time("abc", "ab"));  // a prefix is not equal
  CHECK_FALSE(equal_constant_time("", "a"));
  CHECK_FALSE(equal_constant_time(std::string(64, 'a'), std::string(63, 'a') + 'b'));
}

TEST_CASE("crypto: random_bytes fills the buffer, differently each time") {
  unsigned char a[16] = {}, b[16] = {};
  REQUIRE(pvgate::random_bytes(a, sizeof a));
  REQUIRE(pvgate::random_bytes(b, sizeof b));
  // 2^-128 chance of a false failure each.
  CHECK_FALSE(std::equal(std::begin(a), std::end(a), std::begin(b)));
  CHECK_FALSE(std::all_of(std::begin(a), std::end(a), [](unsigned char c) { return c == 0; }));
  CHECK(pvgate::random_bytes(nullptr, 0));
}

TEST_CASE("crypto: an Ed25519 key signs RFC 8032's test 1 exactly") {
  std::string what = "stale";
  auto key = PrivateKey::from_pem(kRfc8032Test1, what);
  REQUIRE(key);
  CHECK(what.empty());
  CHECK(key->kind() == PrivateKey::Kind::ed25519);
  CHECK(hex(key->public_x()) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  CHECK(key->public_y().empty());
  CHECK(hex(key->sign("")) ==
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39"
        "701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

TEST_CASE("crypto: a P-256 key gives its public point and 64-byte r||s signatures") {
  std::string what;
  auto key = PrivateKey::from_pem(kP256, what);
  REQUIRE(key);
  CHECK(key->kind() == PrivateKey::Kind::p256);
  CHECK(hex(key->public_x()) == "9c25aed09691469bca0759edc258cce30a5d186ed3533b8d2005b1190b19a5e3");
  CHECK(hex(key->public_y()) == "3ef1e1368066ed5df65fbf946c787702bf8ba92116928a7989fd94bcf170254e");
  // r or s with a leading zero byte must still come out padded to 32 bytes:
  // about 1 signature in 128 has one, so 200 meet it about 1.6 times.
  for (int i = 0; i < 200; ++i) REQUIRE(key->sign("payload " + std::to_string(i)).size() == 64);
  PrivateKey moved = std::move(*key);
  CHECK(moved.sign("after a move").size() == 64);
}

TEST_CASE("crypto: a refused key says what was found, without any caller's prefix") {
  std::string what;
  CHECK_FALSE(PrivateKey::from_pem("not a key", what));
  CHECK(what == "no PEM block (no BEGIN line)");
  CHECK_FALSE(
      PrivateKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", what));
  CHECK(what == "a certificate, not a private key");
}
