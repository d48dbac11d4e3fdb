// medquant demo [-o DIR]: both pipelines on the bundled tiny fixtures
// (offline), then test-all on the result; prints the HTML report's path.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "pipeline/pipelines.h"
#include "validate/test_all.h"

namespace medquant::cli {
namespace {

namespace fs = std::filesystem;

constexpr int kDemoCtx = 64;  // the tiny models' sample text is short

struct Args {
  std::string out;
  bool force = false;
};

int run(const Args& a) {
  const fs::path fixtures = pipeline::find_fixtures_dir();
  std::string out = a.out;
  if (out.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "medquant-demo-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) fail("{}: cannot create a temporary folder", tmpl);
    out = tmpl;
  }
  core::log_info("demo: {} -> {}", fixtures.string(), out);

  pipeline::BiomedClipOptions clip;
  clip.from = (fixtures / "tiny-biomedclip").string();
  clip.images = (fixtures / "tiny-biomedclip" / "images").string();
  clip.out = out;
  clip.force = a.force;
  const auto clip_result = pipeline::run_biomedclip(clip);

  pipeline::MedGemmaOptions gemma;
  gemma.from = (fixtures / "tiny-gemma3").string();
  gemma.out = out;
  gemma.force = a.force;
  gemma.validation.eval.n_ctx = kDemoCtx;
  const auto gemma_result = pipeline::run_medgemma(gemma);

  validate::TestAllOptions t;
  t.root = out;
  t.gguf.eval.n_ctx = kDemoCtx;
  t.gguf.eval.threads = t.gguf.speed.threads = std::max(1, static_cast<int>(core::default_threads()));
  validate::Report report = validate::run_test_all(t, [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  });
  report.command = fmt::format("medquant test-all {} --ctx {}", out, kDemoCtx);
  report.created = validate::utc_now_iso8601();
  const std::string report_dir = (fs::path(out) / "report").string();
  validate::write_report(report, report_dir);
  fmt::print("\n{}report: {}/report.html\n", validate::format_summary(report), report_dir);
  return clip_result.pass && gemma_result.pass && validate::all_passed(report) ? 0 : 1;
}

}  // namespace

void add_demo_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "demo",
      "Both pipelines (biomedclip, medgemma) on the bundled tiny models, offline, then test-all on the "
      "result; prints the path of the HTML report; exit 1 if anything FAILs");
  auto a = std::make_shared<Args>();
  app->add_option("-o,--output", a->out, "Deployment folder (default: a new temporary folder)");
  app->add_flag("--force", a->force, "Redo every step, even those whose outputs are up to date");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
