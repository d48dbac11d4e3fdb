// Importance matrices computed in-process, as the pinned llama.cpp's
// llama-imatrix computes them (tools/imatrix/imatrix.cpp of b11312), so that
// `medquant` and `llama-imatrix -m M -f TEXT -c N --output-format gguf` give
// the same sums on the same files:
//   - the text is read as -f reads it (one trailing '\n' dropped) and
//     tokenized with BOS (add_special = true, parse_special = false);
//   - it needs at least 2 * n_ctx tokens and is cut into tokens / n_ctx
//     chunks (the rest is ignored); n_seq = max(1, n_batch / n_ctx) chunks
//     go into one batch as separate sequences, each from an empty KV cache
//     with its first token replaced by BOS, every position an output;
//   - the eval callback keeps, for each MUL_MAT whose weight is named
//     "blk.*" (not output.weight: no --process-output) and whose activations
//     are F32 with at least 16 rows, the per-column sum of squared
//     activations over all tokens of the chunk, and the number of rows; for
//     each MUL_MAT_ID, the same per routed expert;
//   - chunk_count is the largest count / n_ctx, chunk_size is n_ctx.
#pragma once

#include <string>
#include <vector>

#include "gguf/imatrix.h"
#include "llm/llm.h"

namespace medquant::llm {

struct ImatrixOptions {
  int n_ctx = 512;     // tokens per chunk (-c)
  int n_batch = 2048;  // logical batch (-b)
  int n_ubatch = 512;  // physical batch (-ub)
  int n_chunks = -1;   // at most this many chunks (--chunks), -1 for all
  int threads = 1;
};

// The sums over the tokens (the text already tokenized); throws Error when
// the text is too short or an activation is not finite.
gguf::ImatrixSums collect_imatrix(const Model& model, const std::vector<Token>& tokens,
                                  const ImatrixOptions& options);

struct ImatrixRun {
  size_t n_tokens = 0;
  uint32_t n_chunks = 0;
  size_t n_entries = 0;
  double seconds = 0;
};

// Reads text_file, loads model_gguf and writes the imatrix GGUF to output
// (atomically), with llama.cpp in a child process (llm/isolate.h). The
// dataset name stored is text_file as given, as llama-imatrix stores its -f.
ImatrixRun compute_imatrix(const std::string& model_gguf, const std::string& text_file,
                           const std::string& output, const ImatrixOptions& options);

}  // namespace medquant::llm
