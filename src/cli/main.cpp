// medquant: git-style subcommands (see DESIGN.md "Command line").
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif
#ifndef MEDQUANT_LLAMA_VERSION
#define MEDQUANT_LLAMA_VERSION "unknown"
#endif

namespace medquant::cli {

CLI::App* verb_group(CLI::App& parent, const std::string& name, const std::string& description) {
  for (CLI::App* sub : parent.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() == name) return sub;
  CLI::App* group = parent.add_subcommand(name, description);
  group->require_subcommand(1);
  return group;
}

}  // namespace medquant::cli

int main(int argc, char** argv) {
  using namespace medquant;
  CLI::App app{
      "medquant: medical foundation models from published checkpoints to validated edge "
      "builds (ONNX INT8, GGUF k-quants) in one native binary."};
  app.name("medquant");
  app.set_version_flag("--version",
                       fmt::format("medquant {} (llama.cpp {})", MEDQUANT_VERSION,
                                   MEDQUANT_LLAMA_VERSION));
  bool verbose = false, quiet = false;
  size_t threads = 0;
  app.add_flag("-v,--verbose", verbose, "More detail on stderr");
  app.add_flag("-q,--quiet", quiet, "No progress bars or log lines, only results and errors");
  app.add_option("--threads", threads, "Worker threads (default: all cores)")
      ->check(CLI::Range(0, 1024));
  app.require_subcommand(1);

  cli::Commands commands;
  cli::add_inspect_command(app, commands);
  cli::add_tokenize_command(app, commands);
  cli::add_fetch_command(app, commands);
  cli::add_verify_command(app, commands);
  cli::add_quantize_gguf_command(app, commands);
  cli::add_convert_gguf_command(app, commands);
  cli::add_quantize_onnx_command(app, commands);
  cli::add_run_command(app, commands);
  cli::add_bench_command(app, commands);
  cli::add_export_command(app, commands);
  cli::add_embed_labels_command(app, commands);
  cli::add_classify_command(app, commands);
  cli::add_validate_gguf_command(app, commands);
  cli::add_validate_onnx_command(app, commands);
  cli::add_test_all_command(app, commands);
  cli::add_pipeline_command(app, commands);
  cli::add_imatrix_command(app, commands);
  cli::add_demo_command(app, commands);
  // Global flags are accepted after the subcommand too ("medquant inspect f -q").
  for (auto& c : commands)
    for (CLI::App* a = c.app; a && a != &app; a = a->get_parent()) a->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  core::set_verbosity(quiet     ? core::Verbosity::Quiet
                      : verbose ? core::Verbosity::Verbose
                                : core::Verbosity::Normal);
  core::set_default_threads(threads);

  for (auto& c : commands) {
    if (!c.app->parsed()) continue;
    try {
      return c.run();
    } catch (const Error& e) {
      fmt::print(stderr, "error: {}\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      fmt::print(stderr, "error: internal: {}\n", e.what());
      return 2;
    }
  }
  return 1;
}
