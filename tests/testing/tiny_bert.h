// A tiny BERT checkpoint and a learnable dataset, written by tests.
#pragma once

#include <string>

namespace ftd::testing {

// A `layers`-layer, 32-wide BERT folder (config.json, vocab.txt, and a
// model.safetensors with no tensors, so every weight is initialised as
// transformers initialises missing weights).
void WriteTinyBert(const std::string& dir, int layers = 2);

// `rows` rows of "text,label": sentences whose label ("pos" or "neg") is
// given by the one sentiment word each holds, among filler words. Seeded,
// so the same call writes the same file.
void WriteSentimentCsv(const std::string& path, int rows, unsigned seed);

}  // namespace ftd::testing
