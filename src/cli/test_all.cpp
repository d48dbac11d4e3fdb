// medquant test-all <edge_deployment/>: validates every build of a deployment
// folder against its reference and prints one line per build, then
// ALL TESTS PASSED or the failures (validate/test_all.h).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/validate_options.h"
#include "core/error.h"
#include "validate/report.h"
#include "validate/test_all.h"

namespace medquant::cli {
namespace {

struct Args {
  std::string root;
  GgufValidationArgs v;
};

int run(Args& a) {
  finish_gguf_validation_options(a.v);
  validate::TestAllOptions o;
  o.root = a.root;
  o.gguf = a.v.options;
  validate::Report report = validate::run_test_all(o, [&](const std::string& line) {
    if (!a.v.json) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
  });
  report.command = "medquant test-all " + a.root;
  report.created = validate::utc_now_iso8601();
  if (!a.v.report_dir.empty()) validate::write_report(report, a.v.report_dir);

  if (a.v.json) {
    fmt::print("{}\n", validate::to_json(report).dump(2));
  } else {
    fmt::print("\n{}", validate::format_summary(report));
    if (!a.v.report_dir.empty()) fmt::print("report: {}/report.html\n", a.v.report_dir);
  }
  return validate::all_passed(report) ? 0 : 1;
}

}  // namespace

void add_test_all_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "test-all",
      "Validate every build of a deployment folder (models/biomedclip, models/medgemma) against "
      "its reference; one PASS/FAIL/SKIP line each; exit 1 if any fails or none ran");
  auto a = std::make_shared<Args>();
  app->add_option("deployment", a->root, "The edge_deployment/ folder")->required();
  add_gguf_validation_options(app, a->v);
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
