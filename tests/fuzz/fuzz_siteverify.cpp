// A CAPTCHA provider's siteverify answer, as the request stage reads it:
// parse_siteverify_reply -> read_siteverify. Input: one byte choosing
// min_score (0 when even, else (byte >> 1) / 127), then the answer's body.
// Invariants: the verdict is the one the contract gives, decided again here
// from nlohmann's DOM (fault unless a JSON object with a boolean success;
// success false refused; with a min_score, a numeric score below it refused
// and a score that is not a number a fault); the same body under HTTP 500 is
// a fault; `detail` is 1-120 bytes of printable ASCII whose error codes are
// each "?" or shaped like a documented one (lower case, digits, '-', <= 40).
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "siteverify.h"

using namespace pvgate;
using nlohmann::json;
using pvgate_fuzz::as_text;

namespace {

SiteverifyVerdict expected(std::string_view body, double min_score) {
  if (body.find('\0') != std::string_view::npos) return SiteverifyVerdict::fault;
  const json doc = json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return SiteverifyVerdict::fault;
  const auto success = doc.find("success");
  if (success == doc.end() || !success->is_boolean()) return SiteverifyVerdict::fault;
  if (!success->get<bool>()) return SiteverifyVerdict::refused;
  const auto score = doc.find("score");
  if (min_score > 0 && score != doc.end()) {
    if (!score->is_number()) return SiteverifyVerdict::fault;
    if (score->get<double>() < min_score) return SiteverifyVerdict::refused;
  }
  return SiteverifyVerdict::passed;
}

void check_detail(const std::string& detail) {
  FUZZ_CHECK(!detail.empty() && detail.size() <= kMaxSiteverifyDetailBytes, detail);
  for (const char c : detail) FUZZ_CHECK(c >= 0x20 && c < 0x7F, detail);
  const std::string_view head = "error-codes: ";
  if (detail.compare(0, head.size(), head) != 0) return;
  std::string_view codes = std::string_view(detail).substr(head.size());
  while (!codes.empty()) {
    const std::size_t comma = codes.find(',');
    const std::string_view code = codes.substr(0, comma);
    // The last one may be cut at the limit: shorter, never other bytes.
    bool shaped = !code.empty() && code.size() <= 40;
    for (const char c : code) {
      shaped = shaped && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
    }
    FUZZ_CHECK(code == "?" || shaped, detail);
    if (comma == std::string_view::npos) break;
    codes.remove_prefix(comma + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const double min_score = (data[0] & 1) != 0 ? (data[0] >> 1) / 127.0 : 0.0;
  UpstreamResult r;
  r.http_status = 200;
  r.body = std::string(as_text(data + 1, size - 1));

  std::string detail;
  const SiteverifyVerdict verdict = read_siteverify(r, min_score, detail);
  FUZZ_CHECK(verdict == expected(r.body, min_score), r.body);
  check_detail(detail);

  r.http_status = 500;
  FUZZ_CHECK(read_siteverify(r, min_score, detail) == SiteverifyVerdict::fault, r.body);
  check_detail(detail);
  return 0;
}
