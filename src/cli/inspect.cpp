// medquant inspect <file>: what a model file holds, by format.
#include "cli/inspect.h"

#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "cli/command.h"
#include "core/error.h"

namespace medquant::cli {
namespace {

struct InspectFormat {
  std::string_view expected;  // for the "not a recognised model file" message
  bool (*matches)(const InspectProbe&);
  int (*run)(const InspectOptions&);
};

// One line per format; the first that matches wins.
constexpr InspectFormat kFormats[] = {
    {".safetensors, *.safetensors.index.json or a folder of them", is_safetensors,
     inspect_safetensors},
    {".gguf", is_gguf, inspect_gguf},
    {".onnx", is_onnx, inspect_onnx},
    {".bin, .pt, .pth or .ckpt (torch.save zip)", is_torch, inspect_torch},
};

int run_inspect(const InspectOptions& options) {
  namespace fs = std::filesystem;
  const std::string& path = options.path;
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) fail("{}: no such file or directory", path);
  const bool is_dir = fs::is_directory(status);
  std::array<uint8_t, 64> head{};
  size_t head_size = 0;
  if (!is_dir) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open", path);
    in.read(reinterpret_cast<char*>(head.data()), head.size());
    head_size = static_cast<size_t>(in.gcount());
  }
  const InspectProbe probe{path, is_dir, std::span<const uint8_t>(head.data(), head_size)};
  std::string expected;
  for (const InspectFormat& f : kFormats) {
    if (f.matches(probe)) return f.run(options);
    expected += fmt::format("{}{}", expected.empty() ? "" : "; ", f.expected);
  }
  fail("{}: not a recognised model file (expected {})", path, expected);
}

}  // namespace

void add_inspect_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "inspect",
      "Print what a model file holds: .safetensors (file, sharded index or folder), .gguf, "
      ".onnx, or a torch.save .bin/.pt/.pth (tensors, metadata, totals)");
  auto options = std::make_shared<InspectOptions>();
  app->add_option("file", options->path, "Model file or folder")->required();
  app->add_flag("--json", options->json, "Print one JSON object instead of tables");
  app->add_flag("--hash", options->hash, "Add the sha256 of every tensor's bytes");
  commands.push_back({app, [options]() -> int { return run_inspect(*options); }});
}

}  // namespace medquant::cli
