#include "common/quote.h"

#include "absl/strings/str_cat.h"

namespace ftd {

namespace {

std::string Escaped(absl::string_view text, size_t max_bytes, bool quoted) {
  const absl::string_view shown = text.substr(0, max_bytes);
  std::string out = quoted ? "\"" : "";
  for (const char c : shown) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    }
  }
  if (quoted) out += '"';
  if (shown.size() < text.size()) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

}  // namespace

std::string QuoteUserText(absl::string_view text, size_t max_bytes) {
  return Escaped(text, max_bytes, /*quoted=*/true);
}

std::string UserTextPrefix(absl::string_view text, size_t max_bytes) {
  return Escaped(text, max_bytes, /*quoted=*/false);
}

}  // namespace ftd
