// medquant validate gguf --ref ref.gguf --cand q.gguf [...]: a GGUF build
// against its unquantized reference through the pinned llama.cpp (PPL, KL
// divergence, top-1 agreement as llama-perplexity computes them; speed,
// memory, sizes, per-tensor error), PASS/FAIL by thresholds, optional report.
// A vision projector (mmproj) as --ref goes to validate/mmproj_validation.h:
// image embeddings through libmtmd instead of text.
// `validate onnx` plugs into the same verb and report (validate/report.h).
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "cli/command.h"
#include "cli/validate_options.h"
#include "core/error.h"
#include "validate/gguf_validation.h"
#include "validate/mmproj_validation.h"
#include "validate/report.h"

namespace medquant::cli {
namespace {

struct Args {
  GgufValidationArgs v;
  std::string save_base_logits;
  validate::MmprojOptions mm;
  std::optional<double> min_cosine_mean, min_cosine_min;
};

// Report, text or JSON, exit code: the same for both kinds.
template <class Result>
int finish(const Args& a, const Result& r, const std::string& command) {
  validate::Report report;
  const auto& o = r.options;
  report.title = "medquant validate gguf: " + (o.name.empty() ? o.candidate : o.name);
  report.command = command;
  report.created = validate::utc_now_iso8601();
  report.validations.push_back(validate::to_validation(r));
  if (!a.v.report_dir.empty()) validate::write_report(report, a.v.report_dir);

  if (a.v.json) {
    fmt::print("{}\n", validate::to_json(report).dump(2));
  } else {
    fmt::print("{}", validate::format_text(r));
    fmt::print("{}\n", r.pass() ? "PASS" : "FAIL: " + report.validations[0].failed_metrics());
    if (!a.v.report_dir.empty()) fmt::print("report: {}/report.html\n", a.v.report_dir);
  }
  if (!r.pass()) {
    fmt::print(stderr, "validation failed: {}\n", report.validations[0].failed_metrics());
    return 1;
  }
  return 0;
}

bool is_projector_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  return validate::is_mmproj(validate::read_gguf_facts(path));
}

int run(Args& a) {
  finish_gguf_validation_options(a.v);
  if (is_projector_file(a.v.options.reference)) {
    validate::MmprojOptions o = a.mm;
    o.reference = a.v.options.reference;
    o.candidate = a.v.options.candidate;
    o.name = a.v.options.name;
    o.threads = a.v.options.eval.threads;
    o.skip_speed = a.v.options.skip_speed;
    o.thresholds.min_cosine_mean = a.min_cosine_mean;
    o.thresholds.min_cosine_min = a.min_cosine_min;
    const auto r = validate::validate_mmproj(o);
    return finish(a, r,
                  fmt::format("medquant validate gguf --ref {} --cand {} --model {}{}", o.reference,
                              o.candidate, o.text_model,
                              o.images_dir.empty() ? "" : " --images " + o.images_dir));
  }
  validate::GgufOptions o = a.v.options;
  o.save_base_logits = a.save_base_logits;
  const validate::GgufResult r = validate::validate_gguf(o);
  return finish(a, r,
                fmt::format("medquant validate gguf --ref {} --cand {} --ctx {}", o.reference,
                            o.candidate, o.eval.n_ctx));
}

}  // namespace

void add_validate_gguf_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "validate", "Validate a build against its reference (onnx, gguf)");
  auto* app = group->add_subcommand(
      "gguf",
      "A GGUF build against its F16/BF16/F32 reference through llama.cpp: PPL, KL divergence and "
      "top-1 agreement (as llama-perplexity computes them), speed, memory, sizes; for vision "
      "projectors (mmproj) the cosine of the image embeddings (libmtmd); exit 1 on FAIL");
  auto a = std::make_shared<Args>();
  app->add_option("--ref", a->v.options.reference, "Reference GGUF (F16, BF16 or F32)")->required();
  app->add_option("--cand", a->v.options.candidate, "The build to validate (quantized GGUF)")
      ->required();
  app->add_option("--name", a->v.options.name, "Name of the build in the output and report");
  add_gguf_validation_options(app, a->v);
  app->add_option("--save-base-logits", a->save_base_logits,
                  "Keep the reference's log-probabilities in this file (llama-perplexity's "
                  "--kl-divergence-base format)");
  // Vision projectors (--ref and --cand are mmproj files).
  app->add_option("--model", a->mm.text_model,
                  "mmproj: the text model GGUF the projector belongs to (its vocabulary and "
                  "width; the weights are not loaded)")
      ->check(CLI::ExistingFile);
  app->add_option("--images", a->mm.images_dir,
                  "mmproj: a folder of PNG/JPEG images (default: synthetic images)")
      ->check(CLI::ExistingDirectory);
  app->add_option("--synthetic-images", a->mm.synthetic_images,
                  "mmproj: how many synthetic images without --images")
      ->default_val(validate::kSyntheticImages)
      ->check(CLI::Range(1, 1000));
  app->add_option("--warmup", a->mm.warmup, "mmproj: warm-up encodes before timing")
      ->default_val(1)
      ->check(CLI::Range(0, 100));
  app->add_option("--min-cosine-mean", a->min_cosine_mean,
                  "mmproj: FAIL below this mean row cosine (default 0.999 for a float build, "
                  "0.99 for a quantized one)");
  app->add_option("--min-cosine-min", a->min_cosine_min,
                  "mmproj: FAIL below this smallest row cosine (default 0.99 float, 0.95 "
                  "quantized)");
  app->add_option("--dump-embeddings", a->mm.dump_dir,
                  "mmproj: write reference.npy and candidate.npy [images, tokens, width] here");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
