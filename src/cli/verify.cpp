// medquant verify <dir|file|repo-id>: is a model folder or file whole and
// self-consistent? Prints a status table; exits 1 on any problem.
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "hub/verify.h"

namespace medquant::cli {

void add_verify_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "verify",
      "Check a model folder or file: recorded sha256 / git blob hashes (hub snapshots and "
      "--local-dir copies), required files and shards, config <-> tensor names/shapes/dtypes "
      "(BiomedCLIP, Gemma 3 / MedGemma, BERT), ONNX checker, GGUF structure and data. "
      "Exits 1 on any problem.");
  struct Args {
    std::string target, cache_dir;
    bool json = false, no_hashes = false, no_data = false;
  };
  auto a = std::make_shared<Args>();
  app->add_option("target", a->target,
                  "Folder, file (.gguf .onnx .safetensors .bin), or a cached repo id org/name[@rev]")
      ->required();
  app->add_flag("--json", a->json, "Print the report as JSON");
  app->add_flag("--no-hashes", a->no_hashes, "Skip hashing the files (fast structural checks only)");
  app->add_flag("--no-data", a->no_data, "Skip scanning GGUF tensor data for NaN/inf");
  app->add_option("--cache-dir", a->cache_dir, "Hub cache for a repo id (default: $HF_HUB_CACHE or $HF_HOME/hub)");
  commands.push_back({app, [a]() -> int {
                        hub::VerifyOptions o;
                        o.hashes = !a->no_hashes;
                        o.gguf_data = !a->no_data;
                        o.cache_dir = a->cache_dir;
                        hub::VerifyReport r = hub::verify(a->target, o);
                        if (a->json)
                          fmt::print("{}\n", hub::report_json(r).dump(2));
                        else
                          fmt::print("{}", hub::format_report(r));
                        return r.ok() ? 0 : 1;
                      }});
}

}  // namespace medquant::cli
