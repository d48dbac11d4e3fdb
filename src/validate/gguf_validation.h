// `medquant validate gguf`: a GGUF build (the candidate) against its
// unquantized reference, through the pinned llama.cpp.
//
// Accuracy is llama-perplexity's: the reference scores the text and stores
// its log-probabilities (llm::perplexity_base), the candidate is scored
// against them (llm::kl_divergence); PPL, KLD mean / percentiles / max and
// top-1 agreement equal what `llama-perplexity --kl-divergence-base` then
// `--kl-divergence` print for the same files, text and context size.
// Speed (load time, prompt and generation tokens/s from repeated runs after a
// warm-up) and peak memory are measured per model in a child process of its
// own (llm/isolate.h). Sizes and bits per weight come from the GGUF headers,
// the per-tensor error from decoding both files (validate/tensor_error.h).
//
// Thresholds (defaults suit 4-bit k-quants and up): KLD mean <= 0.1, top-1
// agreement >= 0.85, PPL(build)/PPL(reference) <= 1.1, and optionally the
// 99th percentile of the per-token KLD.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "llm/bench.h"
#include "llm/perplexity.h"
#include "validate/report.h"
#include "validate/tensor_error.h"

namespace medquant::validate {

struct GgufThresholds {
  double max_kld_mean = 0.1;
  double min_top1 = 0.85;
  double max_ppl_ratio = 1.1;
  std::optional<double> max_kld_p99;
};

struct GgufOptions {
  std::string reference;   // F32/F16/BF16 GGUF, or a Hugging Face Gemma 3 folder (converted first)
  std::string candidate;   // the quantized GGUF
  std::string name;        // display name; default from the candidate's file name
  std::string text_path;   // empty: the built-in sample
  llm::EvalOptions eval;
  llm::SpeedOptions speed;
  bool skip_speed = false;
  GgufThresholds thresholds;
  std::string save_base_logits;  // keep the reference's logits file here (llama-perplexity format)
};

// What the GGUF header says about a file.
struct GgufFacts {
  std::string path;
  uint64_t file_size = 0;
  uint64_t tensor_bytes = 0;
  uint64_t elements = 0;
  double bits_per_weight = 0;  // 8 * tensor bytes / elements
  std::string file_type;       // "Q4_K_S", "F16", ... (general.file_type)
  std::string architecture;
  std::string model_name;      // general.name
  size_t n_tensors = 0;
};
GgufFacts read_gguf_facts(const std::string& path);

struct ModelRun {
  std::string description;  // llama_model_desc
  uint64_t n_params = 0;
  bool has_speed = false;
  llm::SpeedResult speed;
  uint64_t peak_rss_bytes = 0;  // of the speed run's process
};

struct GgufResult {
  GgufOptions options;      // as given, with reference = the GGUF actually used
  std::string reference_note;  // how the reference was made, if medquant converted it
  std::string text_source;
  size_t text_bytes = 0;
  std::string system_info;
  int threads = 1;
  GgufFacts ref, cand;
  ModelRun ref_run, cand_run;
  llm::BaseResult base;
  llm::KldResult kld;
  llm::KldFigures figures;
  TensorErrors tensors;
  std::vector<Check> checks;
  double seconds = 0;
  bool pass() const;
};

GgufResult validate_gguf(const GgufOptions& options);

// The report entry, with plots (latency, size, tensor_error, kld_distribution).
Validation to_validation(const GgufResult& result);

// The human-readable result the CLI prints.
std::string format_text(const GgufResult& result);

// "9.3 tok/s, KLD 0.012, PPL +1.2%" (speed left out when not measured).
std::string headline(const GgufResult& result);

}  // namespace medquant::validate
