#include "common/utf8.h"

namespace ftd {
namespace {

// Decodes the sequence at `pos`; false (and `*length` 1) when malformed.
bool DecodeAt(std::string_view s, size_t pos, char32_t* cp, size_t* length) {
  const unsigned char c = s[pos];
  const size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  *length = 1;
  if (len == 0 || pos + len > s.size()) return false;
  char32_t value = len == 1 ? c : c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) {
    const unsigned char cc = s[pos + k];
    if ((cc >> 6) != 2) return false;
    value = (value << 6) | (cc & 0x3F);
  }
  if (value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
  *cp = value;
  *length = len;
  return true;
}

}  // namespace

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    size_t length;
    out.push_back(DecodeAt(s, i, &cp, &length) ? cp : 0xFFFD);
    i += length;
  }
  return out;
}

size_t FirstInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    size_t length;
    if (!DecodeAt(s, i, &cp, &length)) return i;
    i += length;
  }
  return std::string_view::npos;
}

bool Printable(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace ftd
