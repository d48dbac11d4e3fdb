// Perplexity and KL divergence exactly as the pinned llama.cpp's
// llama-perplexity computes them (tools/perplexity/perplexity.cpp of b11312:
// perplexity() with --kl-divergence-base, then kl_divergence() with
// --kl-divergence), so that the figures medquant reports equal that tool's on
// the same files, text and context size.
//
// The procedure, as that tool does it:
//   - The text is tokenized with BOS (common_tokenize, add_special = true,
//     parse_special = false); one trailing newline of a text file is dropped
//     first (its -f does that; callers do it, see read_eval_text()).
//   - It needs at least 2 * n_ctx tokens; it is cut into n_chunk =
//     tokens / n_ctx chunks of n_ctx tokens (the rest is ignored).
//   - Each chunk is evaluated from an empty KV cache with its first token
//     replaced by BOS (when the vocabulary adds BOS). n_seq = max(1, n_batch /
//     n_ctx) chunks go into one batch as separate sequences; the context has
//     n_seq * n_ctx cells and n_batch = min(n_batch, n_seq * n_ctx).
//   - Only the second half of each chunk is scored: logits are requested for
//     positions >= n_ctx / 2 and the token after each, n_ctx - 1 - n_ctx / 2
//     tokens per chunk, are scored.
//   - Per scored token: max logit and sum of expf(logit - max) in double;
//     log(sum) rounded to float; the NLL is max + log_sum_exp - logit[tok] in
//     float; sums of NLL and NLL^2 in double.
//   - The reference's log-probabilities are stored quantized to uint16 (the
//     logits file below); the KL divergence reads them back, so KLD, top-1
//     agreement and PPL(base) of the second run are computed from that
//     quantized form, as llama-perplexity's are.
//
// The logits file (llama-perplexity's --kl-divergence-base format, native
// little-endian; medquant writes and reads the same bytes):
//   "_logits_" (8 bytes), u32 n_ctx, i32 n_vocab, i32 n_chunk,
//   i32 tokens[n_chunk * n_ctx] (the evaluation tokens, before BOS is put in),
//   then for each chunk in order, for each of its n_ctx - 1 - n_ctx/2 scored
//   positions, one row of nv = 2 * ((n_vocab + 1) / 2) + 4 u16:
//     f32 scale, f32 min_log_prob (the first 4 u16), then n_vocab u16 q where
//     log_prob = scale * q + min_log_prob; logits more than 16 below the
//     maximum are stored as q = 0 (padding u16 unused).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "llm/llm.h"

namespace medquant::llm {

struct EvalOptions {
  int n_ctx = 512;     // tokens per chunk (llama-perplexity -c)
  int n_batch = 2048;  // logical batch (-b)
  int n_ubatch = 512;  // physical batch (-ub)
  int n_chunks = -1;   // at most this many chunks (--chunks), -1 for all
  int threads = 1;     // decode threads and threads for the per-token arithmetic
};

// The text as llama-perplexity's -f reads it: the file's bytes with one
// trailing '\n' removed.
std::string eval_text(std::string text);

// Scoring with the reference model and writing its logits file
// (llama-perplexity -f TEXT -c N --kl-divergence-base FILE).
struct BaseResult {
  int n_ctx = 0;
  int n_chunk = 0;
  int n_vocab = 0;
  size_t n_text_tokens = 0;  // tokens of the whole text (BOS included)
  size_t count = 0;          // scored tokens
  double sum_nll = 0;        // sums over scored tokens, as accumulated by the tool
  double sum_nll2 = 0;
  double ppl = 0;            // "Final estimate: PPL = <ppl> +/- <ppl_uncertainty>"
  double ppl_uncertainty = 0;
  std::vector<double> chunk_ppl;  // running PPL after each chunk ("[1]3114.0938,...")
};
BaseResult perplexity_base(const Model& model, const std::vector<Token>& tokens,
                           const EvalOptions& options, const std::string& logits_path);

// Sums and per-token values of the KL divergence run, as the tool keeps them.
struct KldResult {
  int n_ctx = 0;
  int n_chunk = 0;
  int n_vocab = 0;
  double sum_nll = 0, sum_nll2 = 0;
  double sum_nll_base = 0, sum_nll_base2 = 0;
  double sum_nll_nll_base = 0;
  double sum_kld = 0, sum_kld2 = 0;
  double sum_p_diff = 0, sum_p_diff2 = 0, sum_p_diff4 = 0;
  float max_p_diff = 0;
  size_t n_same_top = 0;
  size_t count = 0;
  std::vector<float> kld_values;     // per scored token, in text order
  std::vector<float> p_diff_values;  // p(candidate) - p(base) of the right token
};
// llama-perplexity -c N --kl-divergence-base FILE --kl-divergence (the tokens
// come from the file). Throws Error if the file is not a logits file or does
// not match the model's vocabulary size.
KldResult kl_divergence(const Model& model, const std::string& logits_path,
                        const EvalOptions& options);

struct ValueUncertainty {
  double value = 0;
  double uncertainty = 0;
};

// The figures llama-perplexity prints at the end of a KL divergence run, with
// its arithmetic (float percentiles, double means). Percentiles are of the
// per-token KLD / delta-p values.
struct KldFigures {
  size_t count = 0;
  ValueUncertainty ppl;            // "Mean PPL(Q)"
  ValueUncertainty ppl_base;       // "Mean PPL(base)" (from the stored log-probs)
  double ln_ppl_correlation = 0;   // "Cor(ln(PPL(Q)), ln(PPL(base)))" as a fraction
  ValueUncertainty ln_ppl_ratio;   // "Mean ln(PPL(Q)/PPL(base))"
  ValueUncertainty ppl_ratio;      // "Mean PPL(Q)/PPL(base)"
  ValueUncertainty ppl_diff;       // "Mean PPL(Q)-PPL(base)"
  ValueUncertainty kld_mean;       // "Mean    KLD"
  float kld_max = 0, kld_p99_9 = 0, kld_p99 = 0, kld_p95 = 0, kld_p90 = 0, kld_median = 0,
        kld_p10 = 0, kld_p5 = 0, kld_p1 = 0, kld_p0_1 = 0, kld_min = 0;
  ValueUncertainty p_diff_mean;    // as fractions (the tool prints percent)
  float p_diff_max = 0, p_diff_p99 = 0, p_diff_median = 0, p_diff_p1 = 0, p_diff_min = 0;
  ValueUncertainty p_diff_rms;     // "RMS Δp"
  ValueUncertainty same_top;       // "Same top p", as a fraction
};
KldFigures kld_figures(const KldResult& result);

// The tool's percentile of sorted values (float interpolation).
float percentile(const std::vector<float>& sorted, float fraction);

}  // namespace medquant::llm
