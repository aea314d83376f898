// UTF-8 decoding, shared by the tokenizer and the dataset readers, and a
// check of names for control characters.
#pragma once

#include <string>
#include <string_view>

namespace ftd {

// Code points of `s`; each malformed byte (bad lead or continuation byte,
// truncated sequence, surrogate, beyond U+10FFFF) becomes U+FFFD.
std::u32string DecodeUtf8(std::string_view s);

// The offset of the first malformed byte, or std::string_view::npos.
size_t FirstInvalidUtf8(std::string_view s);

// True when `s` has no ASCII control character (below 0x20, or DEL): a name
// or label that prints on one line.
bool Printable(std::string_view s);

}  // namespace ftd
