#include "sanitize.h"

#include "text.h"

namespace pvgate {

std::string clean_message(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(text.size() < max_bytes ? text.size() : max_bytes);
  // Runs between control characters, each in one append.
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t j = i;
    while (j < text.size()) {
      const auto u = static_cast<unsigned char>(text[j]);
      if (u < 0x20 || u == 0x7F) break;
      ++j;
    }
    out.append(text.data() + i, j - i);
    i = j + 1;  // past the control character
  }
  out.resize(utf8_cut(out, max_bytes));  // no UTF-8 sequence split
  return out;
}

bool contains_any(std::string_view text, const std::vector<std::string_view>& secrets) {
  for (const auto s : secrets) {
    if (!s.empty() && text.find(s) != std::string_view::npos) return true;
  }
  return false;
}

std::string mask_phone(std::string_view digits) {
  if (digits.size() <= 4) return std::string(digits.size(), '*');
  std::string out(digits.size() - 2, '*');
  out.append(digits.substr(digits.size() - 2));
  return out;
}

}  // namespace pvgate
