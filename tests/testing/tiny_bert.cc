#include "tests/testing/tiny_bert.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/testing/temp_dir.h"

namespace ftd::testing {
namespace {

const std::vector<std::string> kPositive = {"good", "great", "fine", "lovely", "superb"};
const std::vector<std::string> kNegative = {"bad", "awful", "poor", "dreadful", "boring"};
const std::vector<std::string> kFiller = {"the",  "movie",  "film", "was",   "plot",   "a",
                                          "very", "actors", "and",  "story", "really", "it"};

}  // namespace

void WriteTinyBert(const std::string& dir, int layers) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "."};
  for (const auto* words : {&kPositive, &kNegative, &kFiller}) {
    vocab.insert(vocab.end(), words->begin(), words->end());
  }
  WriteFile(dir + "/vocab.txt", absl::StrJoin(vocab, "\n") + "\n");
  WriteFile(dir + "/config.json",
            absl::StrCat(
                R"({"model_type": "bert", "architectures": ["BertForMaskedLM"],)",
                R"( "vocab_size": )", vocab.size(), R"(, "hidden_size": 32, "num_hidden_layers": )",
                layers, ",", R"( "num_attention_heads": 2, "intermediate_size": 64,)",
                R"( "max_position_embeddings": 32, "type_vocab_size": 2,)",
                R"( "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,)",
                R"( "initializer_range": 0.2, "layer_norm_eps": 1e-12, "pad_token_id": 0})"));
  WriteFile(dir + "/tokenizer_config.json", R"({"do_lower_case": true})");
  // A safetensors file with an empty header: 8-byte length, then "{}" padded.
  WriteFile(dir + "/model.safetensors", std::string("\x08\0\0\0\0\0\0\0", 8) + "{}      ");
}

void WriteSentimentCsv(const std::string& path, int rows, unsigned seed) {
  unsigned state = seed * 2654435761u + 1;
  auto next = [&](size_t n) {
    state = state * 1664525u + 1013904223u;
    return static_cast<size_t>((state >> 8) % n);
  };
  std::string csv = "text,label\n";
  for (int i = 0; i < rows; ++i) {
    const bool positive = next(2) == 0;
    std::vector<std::string> words;
    const size_t length = 3 + next(5);
    for (size_t w = 0; w < length; ++w) words.push_back(kFiller[next(kFiller.size())]);
    const auto& sentiment = positive ? kPositive : kNegative;
    words.insert(words.begin() + static_cast<long>(next(words.size() + 1)),
                 sentiment[next(sentiment.size())]);
    absl::StrAppend(&csv, "\"", absl::StrJoin(words, " "), ".\",", positive ? "pos" : "neg", "\n");
  }
  WriteFile(path, csv);
}

}  // namespace ftd::testing
