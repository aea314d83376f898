#include "server/training/tokenizer/wordpiece_tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"
#include "common/json_limits.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "google/protobuf/struct.pb.h"
#include "server/training/tokenizer/unicode_tables.h"

namespace ftd::training {
namespace {

namespace ut = unicode_tables;

bool InRanges(const ut::CodepointRange* ranges, size_t n, char32_t cp) {
  const ut::CodepointRange* end = ranges + n;
  const ut::CodepointRange* it = std::upper_bound(
      ranges, end, cp, [](char32_t c, const ut::CodepointRange& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

template <typename Entry>
const Entry* Find(const Entry* table, size_t n, char32_t cp) {
  const Entry* end = table + n;
  const Entry* it =
      std::lower_bound(table, end, cp, [](const Entry& e, char32_t c) { return e.codepoint < c; });
  return it != end && it->codepoint == cp ? it : nullptr;
}

bool IsWhitespace(char32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
         InRanges(ut::kSpaceSeparator, ut::kSpaceSeparatorSize, cp);
}

bool IsControl(char32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  return InRanges(ut::kOther, ut::kOtherSize, cp);
}

// What str.split() still splits on after cleaning turned Zs into spaces:
// the line and paragraph separators.
bool IsSplitSpace(char32_t cp) { return cp == ' ' || cp == 0x2028 || cp == 0x2029; }

bool IsPunctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126)) {
    return true;
  }
  return InRanges(ut::kPunctuation, ut::kPunctuationSize, cp);
}

bool IsChineseChar(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

void AppendLower(char32_t cp, std::u32string* out) {
  if (cp < 0x80) {
    out->push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  if (const ut::MappingEntry* e = Find(ut::kLowercase, ut::kLowercaseSize, cp)) {
    out->append(e->to, e->to + e->length);
  } else {
    out->push_back(cp);
  }
}

// Canonical decomposition, recursively (table entries are already full
// decompositions, but Hangul needs the formula).
void AppendDecomposed(char32_t cp, std::u32string* out) {
  if (cp < 0xC0) {
    out->push_back(cp);
    return;
  }
  constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
  constexpr int kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = 11172;
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const int s = static_cast<int>(cp - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  if (const ut::MappingEntry* e = Find(ut::kDecomposition, ut::kDecompositionSize, cp)) {
    out->append(e->to, e->to + e->length);
  } else if (const ut::LongMappingEntry* l =
                 Find(ut::kLongDecomposition, ut::kLongDecompositionSize, cp)) {
    out->append(l->to, l->to + l->length);
  } else {
    out->push_back(cp);
  }
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ToUtf8(const std::u32string& s, size_t begin, size_t end) {
  std::string out;
  for (size_t i = begin; i < end; ++i) AppendUtf8(s[i], &out);
  return out;
}

// The normalised words of `text`: cleaned, CJK-separated, lower-cased,
// accent-stripped, split on whitespace and punctuation.
std::vector<std::u32string> BasicTokenize(std::string_view text,
                                          const WordPieceTokenizer::Options& options) {
  std::u32string normalized;
  for (char32_t cp : DecodeUtf8(text)) {
    if (cp == 0 || cp == 0xFFFD || IsControl(cp)) continue;
    if (IsWhitespace(cp)) {
      normalized.push_back(' ');
      continue;
    }
    const bool chinese = options.tokenize_chinese_chars && IsChineseChar(cp);
    if (chinese) normalized.push_back(' ');
    std::u32string lowered;
    if (options.lower_case) {
      AppendLower(cp, &lowered);
    } else {
      lowered.push_back(cp);
    }
    for (char32_t c : lowered) {
      if (!options.strip_accents) {
        normalized.push_back(c);
        continue;
      }
      std::u32string decomposed;
      AppendDecomposed(c, &decomposed);
      for (char32_t d : decomposed) {
        if (!InRanges(ut::kNonspacingMark, ut::kNonspacingMarkSize, d)) normalized.push_back(d);
      }
    }
    if (chinese) normalized.push_back(' ');
  }
  std::vector<std::u32string> words;
  std::u32string current;
  auto flush = [&] {
    if (!current.empty()) words.push_back(std::move(current));
    current.clear();
  };
  for (char32_t cp : normalized) {
    if (IsSplitSpace(cp)) {
      flush();
    } else if (IsPunctuation(cp)) {
      flush();
      words.push_back(std::u32string(1, cp));
    } else {
      current.push_back(cp);
    }
  }
  flush();
  return words;
}

}  // namespace

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::Create(std::vector<std::string> vocab,
                                                              Options options) {
  WordPieceTokenizer t;
  t.options_ = options;
  t.vocab_ = std::move(vocab);
  for (size_t i = 0; i < t.vocab_.size(); ++i) {
    t.ids_.emplace(t.vocab_[i], static_cast<int32_t>(i));  // the first wins, as in HF
  }
  for (auto [name, id] : {std::pair<const char*, int32_t*>{"[PAD]", &t.pad_id_},
                          {"[CLS]", &t.cls_id_},
                          {"[SEP]", &t.sep_id_},
                          {"[UNK]", &t.unk_id_}}) {
    auto it = t.ids_.find(name);
    if (it == t.ids_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("vocab.txt has no ", name, " token"));
    }
    *id = it->second;
  }
  for (const char* name : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) {
    auto it = t.ids_.find(name);
    if (it != t.ids_.end()) t.special_tokens_.emplace_back(name, it->second);
  }
  return t;
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromModelFolder(const std::string& dir) {
  const std::string vocab_path = (std::filesystem::path(dir) / "vocab.txt").string();
  absl::StatusOr<std::string> text = ReadFileNoFollow(vocab_path, kMaxVocabularyBytes);
  if (!text.ok()) return text.status();
  const std::string config_path = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  std::optional<std::string> json;
  if (std::filesystem::exists(config_path)) {
    ASSIGN_OR_RETURN(json, ReadFileNoFollow(config_path, kMaxJsonFileBytes));
  }
  return FromText(*text, json, vocab_path, config_path);
}

absl::StatusOr<WordPieceTokenizer> WordPieceTokenizer::FromText(
    std::string_view vocab_text, const std::optional<std::string>& config_json,
    const std::string& vocab_name, const std::string& config_name) {
  std::vector<std::string> vocab;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(vocab_text.data(), vocab_text.size()), '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    vocab.emplace_back(line);
  }
  while (!vocab.empty() && vocab.back().empty()) vocab.pop_back();

  Options options;
  if (config_json.has_value()) {
    google::protobuf::Struct config;
    if (absl::Status parsed = ParseJson(*config_json, &config); !parsed.ok()) {
      return absl::InvalidArgumentError(IsJsonTooDeep(parsed)
                                            ? absl::StrCat(config_name, ": ", parsed.message())
                                            : absl::StrCat(config_name, " is not a JSON object"));
    }
    auto flag = [&](const char* key, bool fallback) {
      auto it = config.fields().find(key);
      return it != config.fields().end() && it->second.has_bool_value() ? it->second.bool_value()
                                                                        : fallback;
    };
    options.lower_case = flag("do_lower_case", true);
    options.strip_accents = flag("strip_accents", options.lower_case);
    options.tokenize_chinese_chars = flag("tokenize_chinese_chars", true);
  }
  absl::StatusOr<WordPieceTokenizer> t = Create(std::move(vocab), options);
  if (!t.ok())
    return absl::InvalidArgumentError(absl::StrCat(vocab_name, ": ", t.status().message()));
  return t;
}

void WordPieceTokenizer::WordPiece(const std::u32string& word, std::vector<int32_t>* ids) const {
  if (static_cast<int>(word.size()) > options_.max_input_chars_per_word) {
    ids->push_back(unk_id_);
    return;
  }
  const size_t mark = ids->size();
  size_t start = 0;
  while (start < word.size()) {
    size_t end = word.size();
    int32_t found = -1;
    while (start < end) {
      std::string piece = start > 0 ? "##" : "";
      piece += ToUtf8(word, start, end);
      auto it = ids_.find(piece);
      if (it != ids_.end()) {
        found = it->second;
        break;
      }
      --end;
    }
    if (found < 0) {
      ids->resize(mark);
      ids->push_back(unk_id_);
      return;
    }
    ids->push_back(found);
    start = end;
  }
}

void WordPieceTokenizer::AppendIds(std::string_view text, std::vector<int32_t>* ids) const {
  // Special tokens written in the text are matched first, case-sensitively
  // and before normalisation, as Hugging Face does with its added tokens.
  size_t plain = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '[') continue;
    for (const auto& [token, id] : special_tokens_) {
      if (text.compare(i, token.size(), token) != 0) continue;
      for (const std::u32string& word : BasicTokenize(text.substr(plain, i - plain), options_)) {
        WordPiece(word, ids);
      }
      ids->push_back(id);
      i += token.size() - 1;
      plain = i + 1;
      break;
    }
  }
  for (const std::u32string& word : BasicTokenize(text.substr(plain), options_)) {
    WordPiece(word, ids);
  }
}

std::vector<int32_t> WordPieceTokenizer::Encode(std::string_view text, int max_length) const {
  std::vector<int32_t> ids = {cls_id_};
  AppendIds(text, &ids);
  if (max_length > 0 && static_cast<int>(ids.size()) + 1 > max_length) {
    ids.resize(std::max(1, max_length - 1));
  }
  ids.push_back(sep_id_);
  return ids;
}

std::vector<std::string> WordPieceTokenizer::Tokenize(std::string_view text) const {
  std::vector<int32_t> ids;
  AppendIds(text, &ids);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(vocab_[id]);
  return pieces;
}

}  // namespace ftd::training
