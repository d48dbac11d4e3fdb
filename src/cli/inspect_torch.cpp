// medquant inspect for PyTorch checkpoints (torch.save zip: .bin, .pt, .pth, .ckpt).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "checkpoint/torch_zip.h"
#include "cli/inspect.h"
#include "core/log.h"

namespace medquant::cli {
namespace {

using checkpoint::TorchTensorInfo;
using checkpoint::TorchZipFile;

}  // namespace

bool is_torch(const InspectProbe& probe) {
  if (probe.is_directory) return false;
  for (std::string_view ext : {".bin", ".pt", ".pth", ".ckpt"})
    if (std::string_view(probe.path).ends_with(ext)) return true;
  return checkpoint::looks_like_torch_zip(probe.head);
}

int inspect_torch(const InspectOptions& options) {
  const TorchZipFile f(options.path);
  const auto& tensors = f.tensors();
  std::vector<std::string> hashes;
  TypeTotals totals;
  for (const auto& t : tensors) totals.add(core::dtype_name(t.dtype), t.num_elements(), t.nbytes());
  // A tensor's elements in row-major order: a non-contiguous view is gathered
  // first (its storage's pages dropped once copied).
  auto bytes = [&](size_t i, std::vector<uint8_t>& scratch) -> std::span<const uint8_t> {
    const TorchTensorInfo& t = tensors[i];
    if (t.contiguous()) return f.data(t);
    scratch = f.materialize(t);
    f.release(t);
    return scratch;
  };
  auto release = [&](size_t i, uint64_t off, uint64_t n) {
    if (tensors[i].contiguous()) f.mapped().release(tensors[i].offset() + off, n);
  };
  if (options.hash) hashes = hash_tensors(tensors.size(), totals.all.bytes, bytes, release);
  uint64_t storage_bytes = 0;
  for (const auto& s : f.storages()) storage_bytes += s.nbytes;
  size_t views = 0;
  for (const auto& t : tensors) views += t.contiguous() ? 0 : 1;

  if (options.json) {
    using Json = nlohmann::ordered_json;
    Json out;
    out["format"] = "torch";
    out["path"] = options.path;
    out["size"] = f.file_size();
    out["archive"] = f.archive_name();
    out["version"] = f.version();
    out["metadata"] = Json::object();
    for (const auto& [k, v] : f.metadata()) out["metadata"][k] = v;
    out["storages"] = Json::array();
    for (const auto& s : f.storages())
      out["storages"].push_back({{"key", s.key},
                                 {"type", s.type_name},
                                 {"location", s.location},
                                 {"numel", s.numel},
                                 {"offset", s.offset},
                                 {"nbytes", s.nbytes}});
    out["tensors"] = Json::array();
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      Json j = {{"name", t.name},
                {"dtype", core::dtype_name(t.dtype)},
                {"shape", t.shape},
                {"stride", t.stride},
                {"storage", f.storages()[t.storage].key},
                {"storage_offset", t.storage_offset},
                {"offset", t.offset()},
                {"nbytes", t.nbytes()},
                {"contiguous", t.contiguous()},
                {"parameter", t.is_parameter},
                {"requires_grad", t.requires_grad}};
      if (options.hash) j["sha256"] = hashes[i];
      out["tensors"].push_back(std::move(j));
    }
    out["totals"] = totals.all_json();
    out["totals"]["storages"] = f.storages().size();
    out["totals"]["storage_bytes"] = storage_bytes;
    out["totals"]["by_dtype"] = totals.by_type_json();
    fmt::print("{}\n", out.dump());
    return 0;
  }

  fmt::print("{}: torch.save zip (archive '{}', version {}), {}\n", options.path, f.archive_name(),
             f.version(), core::human_bytes(f.file_size()));
  if (!f.metadata().empty()) {
    fmt::print("other entries:\n");
    for (const auto& [k, v] : f.metadata()) fmt::print("  {}: {}\n", k, v);
  }
  std::vector<std::string> shapes, notes;
  std::map<size_t, size_t> users;  // storage -> tensors on it
  for (const auto& t : tensors) ++users[t.storage];
  size_t w_name = 4, w_dtype = 5, w_shape = 5, w_bytes = 5, w_note = 4;
  for (const auto& t : tensors) {
    shapes.push_back(dims_text(t.shape));
    std::string note;
    if (!t.contiguous()) note = "view, stride " + dims_text(t.stride);
    if (users[t.storage] > 1)
      note += fmt::format("{}shares storage '{}'", note.empty() ? "" : "; ", f.storages()[t.storage].key);
    notes.push_back(std::move(note));
    w_name = std::max(w_name, t.name.size());
    w_dtype = std::max(w_dtype, core::dtype_name(t.dtype).size());
    w_shape = std::max(w_shape, shapes.back().size());
    w_bytes = std::max(w_bytes, grouped(t.nbytes()).size());
    w_note = std::max(w_note, notes.back().size());
  }
  const bool show_notes = std::any_of(notes.begin(), notes.end(), [](auto& n) { return !n.empty(); });
  fmt::print("tensors ({}, in pickle order):\n", tensors.size());
  std::string header = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}", "name", w_name, "dtype",
                                   w_dtype, "shape", w_shape, "bytes", w_bytes);
  if (show_notes) header += options.hash ? fmt::format("  {:<{}}", "note", w_note) : "  note";
  if (options.hash) header += "  sha256";
  fmt::print("{}\n", header);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    std::string line = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}", t.name, w_name,
                                   core::dtype_name(t.dtype), w_dtype, shapes[i], w_shape,
                                   grouped(t.nbytes()), w_bytes);
    if (show_notes) line += options.hash ? fmt::format("  {:<{}}", notes[i], w_note) : "  " + notes[i];
    if (options.hash) line += "  " + hashes[i];
    fmt::print("{}\n", line);
  }
  const auto& all = totals.all;
  fmt::print("totals: {} tensors ({} non-contiguous views), {} parameters, {} bytes ({}); {} "
             "storages, {} bytes\n",
             all.tensors, views, grouped(all.parameters), grouped(all.bytes),
             core::human_bytes(all.bytes), f.storages().size(), grouped(storage_bytes));
  totals.print_by_type(w_dtype);
  return 0;
}

}  // namespace medquant::cli
