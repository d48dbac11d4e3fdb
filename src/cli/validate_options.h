// Options shared by `medquant validate gguf` and `medquant test-all`: the
// evaluation text and context, the speed runs, the thresholds and the report.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "core/thread_pool.h"
#include "validate/gguf_validation.h"

namespace medquant::cli {

struct GgufValidationArgs {
  validate::GgufOptions options;
  std::optional<double> max_kld_p99;
  std::string report_dir;
  bool json = false;
};

inline void add_gguf_validation_options(CLI::App* app, GgufValidationArgs& a) {
  auto& o = a.options;
  app->add_option("--text", o.text_path,
                  "Evaluation text (UTF-8); default: the built-in medical sample")
      ->check(CLI::ExistingFile);
  app->add_option("--ctx", o.eval.n_ctx, "Tokens per chunk, as llama-perplexity -c")
      ->default_val(512)
      ->check(CLI::Range(4, 1 << 20));
  app->add_option("--batch", o.eval.n_batch, "Logical batch, as llama-perplexity -b")
      ->default_val(2048)
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--ubatch", o.eval.n_ubatch, "Physical batch, as llama-perplexity -ub")
      ->default_val(512)
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--chunks", o.eval.n_chunks, "Use at most this many chunks (-1: all)")
      ->default_val(-1);
  app->add_option("--max-kld-mean", o.thresholds.max_kld_mean, "FAIL above this mean KLD")
      ->default_val(0.1);
  app->add_option("--min-top1", o.thresholds.min_top1,
                  "FAIL below this top-1 token agreement (fraction)")
      ->default_val(0.85);
  app->add_option("--max-ppl-ratio", o.thresholds.max_ppl_ratio,
                  "FAIL above this PPL(build)/PPL(reference)")
      ->default_val(1.1);
  app->add_option("--max-kld-p99", a.max_kld_p99,
                  "FAIL above this 99th percentile of the per-token KLD (default: not checked)");
  app->add_flag("--skip-speed", o.skip_speed, "No load/speed/memory runs (accuracy only)");
  app->add_option("--bench-prompt", o.speed.prompt_tokens, "Prompt tokens per speed run")
      ->default_val(128)
      ->check(CLI::Range(1, 1 << 20));
  app->add_option("--bench-gen", o.speed.gen_tokens, "Generated tokens per speed run")
      ->default_val(32)
      ->check(CLI::Range(0, 1 << 20));
  app->add_option("--bench-reps", o.speed.repetitions, "Measured speed runs per model")
      ->default_val(3)
      ->check(CLI::Range(1, 1000));
  app->add_option("--bench-warmup", o.speed.warmup, "Warm-up runs before measuring")
      ->default_val(1)
      ->check(CLI::Range(0, 100));
  app->add_option("--report", a.report_dir,
                  "Write report.md, report.json and report.html into this folder");
  app->add_flag("--json", a.json, "Print the report as JSON on stdout (instead of text)");
}

// Values that are known only after parsing (global --threads).
inline void finish_gguf_validation_options(GgufValidationArgs& a) {
  if (a.max_kld_p99) a.options.thresholds.max_kld_p99 = *a.max_kld_p99;
  const int threads = static_cast<int>(core::default_threads());
  a.options.eval.threads = threads > 0 ? threads : 1;
  a.options.speed.threads = a.options.eval.threads;
}

}  // namespace medquant::cli
