// medquant inspect for safetensors: a file, a sharded index, or a folder.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>

#include "checkpoint/safetensors.h"
#include "cli/inspect.h"
#include "core/log.h"

namespace medquant::cli {
namespace {

namespace fs = std::filesystem;
using checkpoint::Checkpoint;

}  // namespace

bool is_safetensors(const InspectProbe& probe) {
  if (probe.is_directory) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(probe.path, ec)) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with(".") &&
          (std::string_view(name).ends_with(".safetensors") || std::string_view(name).ends_with(".safetensors.index.json")))
        return true;
    }
    return false;
  }
  if (std::string_view(probe.path).ends_with(".safetensors") || std::string_view(probe.path).ends_with(".safetensors.index.json"))
    return true;
  // No telling extension: an 8-byte little-endian length then '{'.
  if (probe.head.size() < 9 || probe.head[8] != '{') return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | probe.head[static_cast<size_t>(i)];
  return n >= 2 && n <= checkpoint::kSafetensorsMaxHeader;
}

int inspect_safetensors(const InspectOptions& options) {
  const Checkpoint ck = Checkpoint::open(options.path);
  const auto& tensors = ck.tensors();
  std::vector<std::string> hashes;
  TypeTotals totals;
  for (const auto& t : tensors)
    totals.add(checkpoint::safetensors_dtype_name(t.info->dtype), t.info->num_elements(),
               t.info->nbytes());
  if (options.hash)
    hashes = hash_tensors(
        tensors.size(), totals.all.bytes, [&](size_t i, auto&) { return tensors[i].bytes(); },
        [&](size_t i, uint64_t off, uint64_t n) {
          tensors[i].file->mapped().release(tensors[i].info->offset() + off, n);
        });

  if (options.json) {
    using Json = nlohmann::ordered_json;
    Json out;
    out["format"] = "safetensors";
    out["path"] = options.path;
    if (ck.sharded()) out["index"] = ck.index_path();
    out["metadata"] = Json::object();
    for (const auto& [k, v] : ck.metadata()) out["metadata"][k] = v;
    out["files"] = Json::array();
    for (const auto& f : ck.files())
      out["files"].push_back({{"path", f->path()},
                              {"size", f->file_size()},
                              {"header_size", f->header_size()},
                              {"tensors", f->tensors().size()}});
    out["tensors"] = Json::array();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = *tensors[i].info;
      Json j = {{"name", t.name},
                {"dtype", checkpoint::safetensors_dtype_name(t.dtype)},
                {"shape", t.shape},
                {"offset", t.offset()},
                {"nbytes", t.nbytes()},
                {"data_offsets", {t.begin, t.end}},
                {"file", tensors[i].file->path()}};
      if (options.hash) j["sha256"] = hashes[i];
      out["tensors"].push_back(std::move(j));
    }
    out["totals"] = totals.all_json();
    out["totals"]["by_dtype"] = totals.by_type_json();
    fmt::print("{}\n", out.dump());
    return 0;
  }

  uint64_t file_bytes = 0;
  for (const auto& f : ck.files()) file_bytes += f->file_size();
  fmt::print("{}: safetensors, {} file{}, {}\n", options.path, ck.files().size(),
             ck.files().size() == 1 ? "" : "s", core::human_bytes(file_bytes));
  if (ck.sharded()) fmt::print("index: {}\n", ck.index_path());
  if (!ck.metadata().empty()) {
    fmt::print("metadata:\n");
    for (const auto& [k, v] : ck.metadata()) fmt::print("  {}: {}\n", k, v);
  }

  // Tensor table, columns sized to their contents.
  const bool show_file = ck.files().size() > 1;
  std::vector<std::string> shapes;
  size_t w_name = 4, w_dtype = 5, w_shape = 5, w_bytes = 5, w_file = 4;
  for (const auto& t : tensors) {
    shapes.push_back(dims_text(t.info->shape));
    w_name = std::max(w_name, t.info->name.size());
    w_dtype = std::max(w_dtype, checkpoint::safetensors_dtype_name(t.info->dtype).size());
    w_shape = std::max(w_shape, shapes.back().size());
    w_bytes = std::max(w_bytes, grouped(t.info->nbytes()).size());
    w_file = std::max(w_file, fs::path(t.file->path()).filename().string().size());
  }
  fmt::print("tensors ({}, in file order):\n", tensors.size());
  std::string header = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}", "name", w_name, "dtype",
                                   w_dtype, "shape", w_shape, "bytes", w_bytes);
  if (show_file) header += fmt::format("  {:<{}}", "file", w_file);
  if (options.hash) header += "  sha256";
  fmt::print("{}\n", header);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = *tensors[i].info;
    std::string line = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}", t.name, w_name,
                                   checkpoint::safetensors_dtype_name(t.dtype), w_dtype, shapes[i],
                                   w_shape, grouped(t.nbytes()), w_bytes);
    if (show_file)
      line += fmt::format("  {:<{}}", fs::path(tensors[i].file->path()).filename().string(), w_file);
    if (options.hash) line += "  " + hashes[i];
    fmt::print("{}\n", line);
  }
  const auto& all = totals.all;
  fmt::print("totals: {} tensors, {} parameters, {} bytes ({})\n", all.tensors,
             grouped(all.parameters), grouped(all.bytes), core::human_bytes(all.bytes));
  totals.print_by_type(w_dtype);
  return 0;
}

}  // namespace medquant::cli
