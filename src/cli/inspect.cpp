// medquant inspect <file>: what a model file holds, by format.
#include "cli/inspect.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/thread_pool.h"

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

std::string grouped(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

std::string dims_text(const std::vector<int64_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

std::vector<std::string> hash_tensors(size_t count, uint64_t total_bytes, const TensorBytes& bytes,
                                      const ReleaseBytes& release) {
  std::vector<std::string> hashes(count);
  core::Progress progress("hashing tensors", total_bytes, core::ProgressUnit::Bytes);
  core::default_pool().parallel_for(0, count, [&](size_t i) {
    std::vector<uint8_t> scratch;
    const auto b = bytes(i, scratch);
    core::Sha256 h;
    constexpr size_t kChunk = 16 << 20;
    for (size_t off = 0; off < b.size(); off += kChunk) {
      const size_t n = std::min(kChunk, b.size() - off);
      h.update(b.data() + off, n);
      release(i, off, n);
      progress.add(n);
    }
    hashes[i] = h.hex_digest();
  });
  return hashes;
}

void TypeTotals::add(std::string_view type, uint64_t parameters, uint64_t bytes) {
  auto it = by_type.find(type);
  if (it == by_type.end()) it = by_type.emplace(std::string(type), Row{}).first;
  for (Row* r : {&it->second, &all}) {
    r->tensors += 1;
    r->parameters += parameters;
    r->bytes += bytes;
  }
}

nlohmann::ordered_json TypeTotals::all_json() const {
  return {{"tensors", all.tensors}, {"parameters", all.parameters}, {"bytes", all.bytes}};
}

nlohmann::ordered_json TypeTotals::by_type_json() const {
  auto j = nlohmann::ordered_json::object();
  for (const auto& [name, r] : by_type)
    j[name] = {{"tensors", r.tensors}, {"parameters", r.parameters}, {"bytes", r.bytes}};
  return j;
}

void TypeTotals::print_by_type(size_t type_width) const {
  for (const auto& [name, r] : by_type)
    fmt::print("  {:<{}}  {} tensors, {} parameters, {} bytes ({})\n", name, type_width, r.tensors,
               grouped(r.parameters), grouped(r.bytes), core::human_bytes(r.bytes));
}

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
