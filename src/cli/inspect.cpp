// medquant inspect <file>: what a model file holds, by format.
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"

namespace medquant::cli {

void add_inspect_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "inspect", "Print what a model file holds: .safetensors (or a sharded index .json)");
  auto path = std::make_shared<std::string>();
  app->add_option("file", *path, "Model file")->required();
  commands.push_back({app, [path]() -> int {
                        fail("{}: unsupported file type (expected .safetensors)", *path);
                      }});
}

}  // namespace medquant::cli
