// Speed of a GGUF model through llama.cpp: load time, prompt processing and
// token generation, from repeated runs after warm-up runs (like llama-bench's
// pp / tg tests, with real text as the prompt and greedy generation after it).
//
// One repetition: clear the KV cache, decode the prompt (prompt_tokens tokens
// from the start of the text, BOS first) as one batch and wait for it (one
// prompt latency), then generate gen_tokens tokens one at a time, each the
// arg-max of the previous logits (one latency per token, at context depth
// prompt_tokens + i). The first `warmup` repetitions are run and dropped.
#pragma once

#include <string>
#include <vector>

#include "llm/llm.h"

namespace medquant::llm {

struct SpeedOptions {
  int prompt_tokens = 128;
  int gen_tokens = 32;
  int repetitions = 3;
  int warmup = 1;
  int threads = 1;
};

struct SpeedResult {
  double load_ms = 0;     // llama_model_load_from_file
  double context_ms = 0;  // llama_init_from_model
  int prompt_tokens = 0;
  int gen_tokens = 0;
  int threads = 0;
  std::vector<double> prompt_ms;  // one per measured repetition
  std::vector<double> token_ms;   // each generated token of each measured repetition
  std::vector<double> gen_ms;     // total generation time per measured repetition
  double prompt_tokens_per_second() const;  // prompt_tokens / median(prompt_ms)
  double gen_tokens_per_second() const;     // gen_tokens / median(gen_ms)
};

// Loads `path`, tokenizes `text` (as tokenize()) for the prompt and runs the
// repetitions. Throws Error if the text is shorter than prompt_tokens tokens.
SpeedResult benchmark(const std::string& path, const std::string& text,
                      const SpeedOptions& options);

double median(std::vector<double> values);

}  // namespace medquant::llm
