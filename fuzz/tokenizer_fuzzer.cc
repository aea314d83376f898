// Fuzzes the tokenizer a job builds from a model folder's vocab.txt and
// tokenizer_config.json, and its encoding of dataset text (rows are any
// bytes a user uploads): the input is split into a vocabulary, an optional
// config and a text. Any bytes give a tokenizer or INVALID_ARGUMENT, never
// a crash; an encoding starts with [CLS], ends with [SEP], stays within the
// length asked for, and holds only ids in the vocabulary.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "server/training/tokenizer/wordpiece_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const std::string vocab = input.ConsumeRandomLengthString(4096);
  std::optional<std::string> config;
  if (input.ConsumeBool()) config = input.ConsumeRandomLengthString(1024);
  const int max_length = input.ConsumeIntegralInRange<int>(0, 128);
  const std::string text = input.ConsumeRemainingBytesAsString();
  auto tokenizer = ftd::training::WordPieceTokenizer::FromText(vocab, config, "vocab.txt",
                                                                "tokenizer_config.json");
  if (!tokenizer.ok()) {
    if (tokenizer.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  const std::vector<int32_t> ids = tokenizer->Encode(text, max_length);
  if (ids.size() < 2 || ids.front() != tokenizer->cls_id() || ids.back() != tokenizer->sep_id()) {
    __builtin_trap();
  }
  if (max_length >= 2 && static_cast<int>(ids.size()) > max_length) __builtin_trap();
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= tokenizer->vocab_size()) __builtin_trap();
  }
  return 0;
}
