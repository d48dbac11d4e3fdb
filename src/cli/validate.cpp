// medquant validate gguf --ref ref.gguf --cand q.gguf [...]: a GGUF build
// against its unquantized reference through the pinned llama.cpp (PPL, KL
// divergence, top-1 agreement as llama-perplexity computes them; speed,
// memory, sizes, per-tensor error), PASS/FAIL by thresholds, optional report.
// `validate onnx` plugs into the same verb and report (validate/report.h).
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "cli/validate_options.h"
#include "core/error.h"
#include "validate/gguf_validation.h"
#include "validate/report.h"

namespace medquant::cli {
namespace {

struct Args {
  GgufValidationArgs v;
  std::string save_base_logits;
};

int run(Args& a) {
  finish_gguf_validation_options(a.v);
  validate::GgufOptions o = a.v.options;
  o.save_base_logits = a.save_base_logits;
  const validate::GgufResult r = validate::validate_gguf(o);

  validate::Report report;
  report.title = "medquant validate gguf: " + (o.name.empty() ? o.candidate : o.name);
  report.command = fmt::format("medquant validate gguf --ref {} --cand {} --ctx {}", o.reference,
                               o.candidate, o.eval.n_ctx);
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

}  // namespace

void add_validate_gguf_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "validate", "Validate a build against its reference (gguf)");
  auto* app = group->add_subcommand(
      "gguf",
      "A GGUF build against its F16/BF16/F32 reference through llama.cpp: PPL, KL divergence and "
      "top-1 agreement (as llama-perplexity computes them), speed, memory, sizes; exit 1 on FAIL");
  auto a = std::make_shared<Args>();
  app->add_option("--ref", a->v.options.reference, "Reference GGUF (F16, BF16 or F32)")->required();
  app->add_option("--cand", a->v.options.candidate, "The build to validate (quantized GGUF)")
      ->required();
  app->add_option("--name", a->v.options.name, "Name of the build in the output and report");
  add_gguf_validation_options(app, a->v);
  app->add_option("--save-base-logits", a->save_base_logits,
                  "Keep the reference's log-probabilities in this file (llama-perplexity's "
                  "--kl-divergence-base format)");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
