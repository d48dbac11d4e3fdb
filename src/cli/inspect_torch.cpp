// medquant inspect for PyTorch checkpoints (torch.save zip: .bin, .pt, .pth, .ckpt).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "checkpoint/torch_zip.h"
#include "cli/inspect.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/thread_pool.h"

namespace medquant::cli {
namespace {

using checkpoint::TorchTensorInfo;
using checkpoint::TorchZipFile;


std::string dims_text(const std::vector<int64_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

// sha256 of every tensor's elements in row-major order (a non-contiguous
// view is gathered first), tensors spread over the thread pool.
std::vector<std::string> hash_tensors(const TorchZipFile& f) {
  const auto& tensors = f.tensors();
  uint64_t total = 0;
  for (const auto& t : tensors) total += t.nbytes();
  std::vector<std::string> hashes(tensors.size());
  core::Progress progress("hashing tensors", total, core::ProgressUnit::Bytes);
  core::default_pool().parallel_for(0, tensors.size(), [&](size_t i) {
    const TorchTensorInfo& t = tensors[i];
    core::Sha256 h;
    if (t.contiguous()) {
      auto bytes = f.data(t);
      constexpr size_t kChunk = 16 << 20;
      for (size_t off = 0; off < bytes.size(); off += kChunk) {
        const size_t n = std::min(kChunk, bytes.size() - off);
        h.update(bytes.data() + off, n);
        progress.add(n);
      }
    } else {
      const std::vector<uint8_t> bytes = f.materialize(t);
      h.update(bytes.data(), bytes.size());
      progress.add(bytes.size());
    }
    f.release(t);  // keeps resident memory low on big checkpoints
    hashes[i] = h.hex_digest();
  });
  return hashes;
}

std::string grouped(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

struct DTypeTotal {
  uint64_t tensors = 0, parameters = 0, bytes = 0;
};

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
  if (options.hash) hashes = hash_tensors(f);

  std::map<std::string_view, DTypeTotal> by_dtype;
  DTypeTotal all;
  for (const auto& t : tensors) {
    auto& d = by_dtype[core::dtype_name(t.dtype)];
    for (DTypeTotal* x : {&d, &all}) {
      x->tensors += 1;
      x->parameters += t.num_elements();
      x->bytes += t.nbytes();
    }
  }
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
    Json totals = {{"tensors", all.tensors},
                   {"parameters", all.parameters},
                   {"bytes", all.bytes},
                   {"storages", f.storages().size()},
                   {"storage_bytes", storage_bytes}};
    totals["by_dtype"] = Json::object();
    for (const auto& [name, d] : by_dtype)
      totals["by_dtype"][std::string(name)] = {
          {"tensors", d.tensors}, {"parameters", d.parameters}, {"bytes", d.bytes}};
    out["totals"] = std::move(totals);
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
  fmt::print("totals: {} tensors ({} non-contiguous views), {} parameters, {} bytes ({}); {} "
             "storages, {} bytes\n",
             all.tensors, views, grouped(all.parameters), grouped(all.bytes),
             core::human_bytes(all.bytes), f.storages().size(), grouped(storage_bytes));
  for (const auto& [name, d] : by_dtype)
    fmt::print("  {:<{}}  {} tensors, {} parameters, {} bytes ({})\n", name, w_dtype, d.tensors,
               grouped(d.parameters), grouped(d.bytes), core::human_bytes(d.bytes));
  return 0;
}

}  // namespace medquant::cli
