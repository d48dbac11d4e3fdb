// medquant imatrix: an importance matrix from a text, computed through
// libllama as llama-imatrix does (llm/imatrix.h), written in the GGUF imatrix
// format that quantize gguf --imatrix and llama-quantize read.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <string>

#include "cli/command.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "llm/imatrix.h"

namespace medquant::cli {

void add_imatrix_command(CLI::App& root, Commands& commands) {
  struct Args {
    std::string model, text, output;
    llm::ImatrixOptions options;
  };
  auto a = std::make_shared<Args>();
  CLI::App* app = root.add_subcommand(
      "imatrix", "Importance matrix of a GGUF model from a text, as llama-imatrix (GGUF output)");
  app->add_option("model", a->model, "Unquantized GGUF model (F32/F16/BF16)")->required()->check(CLI::ExistingFile);
  app->add_option("-f,--file", a->text, "Text to evaluate (needs at least 2 x ctx tokens)")->required();
  app->add_option("-o,--output", a->output, "Output imatrix GGUF")->required();
  app->add_option("-c,--ctx", a->options.n_ctx, "Tokens per chunk, as llama-imatrix -c")
      ->default_val(512)
      ->check(CLI::Range(16, 1 << 20));
  app->add_option("--chunks", a->options.n_chunks, "At most this many chunks (default: all)")->default_val(-1);
  app->add_option("-b,--batch", a->options.n_batch, "Logical batch, as -b")->default_val(2048)->check(CLI::PositiveNumber);
  app->add_option("--ubatch", a->options.n_ubatch, "Physical batch, as -ub")->default_val(512)->check(CLI::PositiveNumber);
  commands.push_back({app, [a]() -> int {
                        a->options.threads = std::max(1, static_cast<int>(core::default_threads()));
                        const auto r = llm::compute_imatrix(a->model, a->text, a->output, a->options);
                        core::log_info("imatrix: {} tokens, {} chunks of {}, {} entries, {:.2f} s -> {}",
                                       r.n_tokens, r.n_chunks, a->options.n_ctx, r.n_entries, r.seconds,
                                       a->output);
                        return 0;
                      }});
}

}  // namespace medquant::cli
