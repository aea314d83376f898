// WordPieceTokenizer: Hugging Face's BertTokenizer, re-implemented.
//
// Normalisation as BasicTokenizer / BertNormalizer do it: drop NUL, U+FFFD
// and control characters, turn whitespace into spaces, put spaces around CJK
// ideographs, lower-case and strip accents (NFD, then drop non-spacing
// marks), split on whitespace and punctuation. Then greedy longest-match
// WordPiece with "##" continuations; a word of more than 100 characters, or
// one that cannot be split, becomes [UNK]. Special tokens written in the
// text ([SEP], [MASK], ...) stay whole. Encode adds [CLS] ... [SEP].
//
// Thread-safe after construction (Encode is const).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"

namespace ftd::training {

class WordPieceTokenizer {
 public:
  struct Options {
    bool lower_case = true;
    // Strip accents; Hugging Face's default is to follow lower_case.
    bool strip_accents = true;
    bool tokenize_chinese_chars = true;
    int max_input_chars_per_word = 100;
  };

  // From vocab.txt (one token a line; the id is the line number) and, when
  // present, tokenizer_config.json (do_lower_case, strip_accents,
  // tokenize_chinese_chars). Errors name the file: NOT_FOUND without
  // vocab.txt, INVALID_ARGUMENT when a special token is missing.
  // vocab.txt may have at most kMaxVocabularyBytes (bert-base's has 226 KiB).
  static constexpr int64_t kMaxVocabularyBytes = int64_t{64} << 20;
  static absl::StatusOr<WordPieceTokenizer> FromModelFolder(const std::string& dir);
  // The same from the files' contents (`config_json` absent: no
  // tokenizer_config.json); errors name the files by the names given. Bytes
  // a user supplies (fuzz/tokenizer_fuzzer.cc).
  static absl::StatusOr<WordPieceTokenizer> FromText(std::string_view vocab_text,
                                                     const std::optional<std::string>& config_json,
                                                     const std::string& vocab_name,
                                                     const std::string& config_name);
  static absl::StatusOr<WordPieceTokenizer> Create(std::vector<std::string> vocab, Options options);

  // [CLS] tokens [SEP], truncated to `max_length` ids when it is > 0 (the
  // [SEP] is kept).
  std::vector<int32_t> Encode(std::string_view text, int max_length) const;
  // The word pieces of `text`, without special tokens.
  std::vector<std::string> Tokenize(std::string_view text) const;

  int32_t pad_id() const { return pad_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t unk_id() const { return unk_id_; }
  const Options& options() const { return options_; }
  size_t vocab_size() const { return vocab_.size(); }
  const std::vector<std::string>& vocab() const { return vocab_; }

 private:
  WordPieceTokenizer() = default;
  // Appends the ids of one word.
  void WordPiece(const std::u32string& word, std::vector<int32_t>* ids) const;
  // Appends the ids of a text (no [CLS]/[SEP] added).
  void AppendIds(std::string_view text, std::vector<int32_t>* ids) const;

  Options options_;
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> ids_;
  // [PAD], [UNK], [CLS], [SEP], [MASK] as they appear in texts.
  std::vector<std::pair<std::string, int32_t>> special_tokens_;
  int32_t pad_id_ = 0, cls_id_ = 0, sep_id_ = 0, unk_id_ = 0;
};

}  // namespace ftd::training
