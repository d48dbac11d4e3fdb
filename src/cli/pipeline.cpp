// medquant pipeline biomedclip|medgemma --from <repo-id|dir> -o <edge_deployment/>:
// every step from the published checkpoint to the validated deployment
// layout, skipping steps whose outputs are up to date (pipeline/pipelines.h).
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "pipeline/pipelines.h"

namespace medquant::cli {
namespace {

int finish(const pipeline::PipelineResult& r) {
  fmt::print("{}: {}\nreport: {}/report.html\n", r.pass ? "PASS" : "FAIL",
             r.ran.empty() ? "every step up to date" : fmt::format("ran {}", fmt::join(r.ran, ", ")), r.report_dir);
  return r.pass ? 0 : 1;
}

void add_common(CLI::App* app, pipeline::CommonOptions& o) {
  app->add_option("--from", o.from, "Hub repo id (org/name, fetched into the hub cache) or a local checkpoint folder")
      ->required();
  app->add_option("-o,--output", o.out, "Deployment folder (edge_deployment/); created if missing")->required();
  app->add_flag("--force", o.force, "Redo every step, even those whose outputs are up to date");
}

}  // namespace

void add_pipeline_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "pipeline", "Checkpoint to validated deployment in one command (biomedclip, medgemma)");

  auto* clip = group->add_subcommand(
      "biomedclip",
      "BiomedCLIP: fetch -> verify -> export FP32 -> quantize INT8 -> embed labels -> validate; writes "
      "models/biomedclip/{biomedclip_vision_int8,biomedclip_vision,biomedclip_text}.onnx, labels.json and "
      "report/biomedclip/; exit 1 when validation FAILs");
  auto c = std::make_shared<pipeline::BiomedClipOptions>();
  add_common(clip, *c);
  clip->add_option("--labels", c->labels, "Label file, one per line (default: the 30 built-in medical labels)");
  clip->add_option("--images", c->images, "Image folder for validation (default: 16 synthetic images)");
  commands.push_back({clip, [c]() -> int { return finish(pipeline::run_biomedclip(*c)); }});

  auto* gemma = group->add_subcommand(
      "medgemma",
      "MedGemma (Gemma 3): fetch -> verify -> convert to the mix + mmproj F16 in one pass -> unquantized "
      "reference (in .medquant/work/) -> validate (PPL/KLD on the medical sample, speed); writes "
      "models/medgemma/medgemma-4b-<type>.gguf, mmproj-medgemma-4b-f16.gguf and report/medgemma/; exit 1 "
      "when validation FAILs");
  auto g = std::make_shared<pipeline::MedGemmaOptions>();
  add_common(gemma, *g);
  gemma->add_option("--type", g->type, "Quantized mix, as llama-quantize names it")->default_val("Q4_K_S");
  gemma->add_option("--imatrix", g->imatrix, "Importance matrix from llama-imatrix (GGUF or .dat) for the mix");
  gemma->add_option("--imatrix-text", g->imatrix_text,
                    "Compute an importance matrix from this text on the unquantized reference, as llama-imatrix");
  gemma->add_option("--imatrix-ctx", g->imatrix_ctx, "Tokens per chunk for --imatrix-text, as llama-imatrix -c")
      ->default_val(512)
      ->check(CLI::Range(16, 1 << 20));
  gemma->add_option("--text", g->validation.text_path, "Evaluation text (default: the built-in medical sample)");
  gemma->add_option("--ctx", g->validation.eval.n_ctx, "Tokens per chunk for validation, as llama-perplexity -c")
      ->default_val(512)
      ->check(CLI::Range(4, 1 << 20));
  gemma->add_flag("--skip-speed", g->validation.skip_speed, "Validate accuracy only (no speed/memory runs)");
  commands.push_back({gemma, [g]() -> int { return finish(pipeline::run_medgemma(*g)); }});
}

}  // namespace medquant::cli
