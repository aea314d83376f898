// Unicode facts the BERT tokenizer needs, generated from Python's
// unicodedata by gen_unicode_tables.py (unicode_tables.cc). Ranges are
// sorted and disjoint; mappings are sorted by code point.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ftd::training::unicode_tables {

struct CodepointRange {
  uint32_t first;
  uint32_t last;
};
struct MappingEntry {
  uint32_t codepoint;
  uint8_t length;
  uint32_t to[3];
};
struct LongMappingEntry {
  uint32_t codepoint;
  uint8_t length;
  uint32_t to[8];
};

// General category C* (Cc, Cf, Cn, Co, Cs).
extern const CodepointRange kOther[];
extern const size_t kOtherSize;
// Zs.
extern const CodepointRange kSpaceSeparator[];
extern const size_t kSpaceSeparatorSize;
// P*.
extern const CodepointRange kPunctuation[];
extern const size_t kPunctuationSize;
// Mn.
extern const CodepointRange kNonspacingMark[];
extern const size_t kNonspacingMarkSize;
// Full lower-case mappings (str.lower()), for code points that change.
extern const MappingEntry kLowercase[];
extern const size_t kLowercaseSize;
// Canonical decompositions (NFD) of up to 3 code points; Hangul syllables
// are left to the formula.
extern const MappingEntry kDecomposition[];
extern const size_t kDecompositionSize;
extern const LongMappingEntry kLongDecomposition[];
extern const size_t kLongDecompositionSize;

}  // namespace ftd::training::unicode_tables
