// medquant validate onnx --ref fp32.onnx --cand int8.onnx [...]: an ONNX
// encoder build against its FP32 reference on medquant's executor (cosine of
// the embeddings, zero-shot agreement with labels.json, latency, load time,
// peak RSS, sizes), PASS/FAIL by thresholds, optional report
// (validate/onnx_validation.h).
#include <fmt/format.h>

#include <memory>
#include <optional>

#include "cli/command.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "validate/onnx_validation.h"
#include "validate/report.h"

namespace medquant::cli {
namespace {

struct Args {
  validate::OnnxOptions o;
  std::optional<double> min_top5, max_kld_mean;
  std::string report_dir;
  bool json = false;
};

int run(Args& a) {
  validate::OnnxOptions o = a.o;
  o.threads = core::default_threads();
  if (a.min_top5) o.thresholds.min_top5 = *a.min_top5;
  if (a.max_kld_mean) o.thresholds.max_kld_mean = *a.max_kld_mean;
  const validate::OnnxResult r = validate::validate_onnx(o);

  validate::Report report;
  report.title = "medquant validate onnx: " + r.options.name;
  report.command = fmt::format("medquant validate onnx --ref {} --cand {}", o.reference, o.candidate);
  report.created = validate::utc_now_iso8601();
  report.validations.push_back(validate::to_validation(r));
  if (!a.report_dir.empty()) validate::write_report(report, a.report_dir);

  if (a.json) {
    fmt::print("{}\n", validate::to_json(report).dump(2));
  } else {
    fmt::print("{}", validate::format_text(r));
    fmt::print("{}\n", r.pass() ? "PASS" : "FAIL: " + report.validations[0].failed_metrics());
    if (!a.report_dir.empty()) fmt::print("report: {}/report.html\n", a.report_dir);
  }
  if (!r.pass()) {
    fmt::print(stderr, "validation failed: {}\n", report.validations[0].failed_metrics());
    return 1;
  }
  return 0;
}

}  // namespace

void add_validate_onnx_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "validate", "Validate a build against its reference (onnx, gguf)");
  auto* app = group->add_subcommand(
      "onnx",
      "An ONNX encoder build (INT8) against its FP32 reference on medquant's executor: cosine of the "
      "embeddings, zero-shot agreement, latency, load time, peak RSS, sizes; exit 1 on FAIL");
  auto a = std::make_shared<Args>();
  auto& o = a->o;
  app->add_option("--ref", o.reference, "Reference model (FP32 .onnx)")->required()->check(CLI::ExistingFile);
  app->add_option("--cand", o.candidate, "The build to validate (.onnx)")->required()->check(CLI::ExistingFile);
  app->add_option("--name", o.name, "Name of the build in the output and report");
  app->add_option("--images", o.images_dir,
                  "Folder of PNG/JPEG images (default: deterministic synthetic images)")
      ->check(CLI::ExistingDirectory);
  app->add_option("--synthetic-images", o.synthetic_images, "How many synthetic images without --images")
      ->default_val(validate::kSyntheticImages)
      ->check(CLI::Range(1, 100000));
  app->add_option("--labels", o.labels_path, "labels.json: zero-shot top-1/top-5 agreement and KLD")
      ->check(CLI::ExistingFile);
  app->add_option("--vocab", o.vocab_path, "vocab.txt for text models (default: beside --ref)")
      ->check(CLI::ExistingFile);
  app->add_option("--runs", o.runs, "Timed runs per model")->default_val(20)->check(CLI::Range(1, 100000));
  app->add_option("--warmup", o.warmup, "Warm-up runs before timing")->default_val(2)->check(CLI::Range(0, 1000));
  app->add_flag("--skip-speed", o.skip_speed, "No load/latency/memory runs (accuracy only)");
  app->add_option("--min-cosine-mean", o.thresholds.min_cosine_mean, "FAIL below this mean cosine")
      ->default_val(0.999);
  app->add_option("--min-cosine-min", o.thresholds.min_cosine_min, "FAIL below this smallest cosine")
      ->default_val(0.99);
  app->add_option("--min-top1", o.thresholds.min_top1, "FAIL below this zero-shot top-1 agreement (fraction)")
      ->default_val(0.98);
  app->add_option("--min-top5", a->min_top5,
                  "FAIL below this top-5 agreement (fraction; default: not checked)");
  app->add_option("--max-kld-mean", a->max_kld_mean,
                  "FAIL above this mean KL divergence of the label probabilities (default: not checked)");
  app->add_option("--dump-embeddings", o.dump_dir,
                  "Write the preprocessed inputs and both models' outputs here as .npy");
  app->add_option("--report", a->report_dir, "Write report.md, report.json and report.html into this folder");
  app->add_flag("--json", a->json, "Print the report as JSON on stdout (instead of text)");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
