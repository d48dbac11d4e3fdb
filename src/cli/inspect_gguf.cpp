// medquant inspect for GGUF: metadata (long arrays summarised), the tensor
// table, totals per type and bits per weight.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <map>

#include "cli/inspect.h"
#include "core/log.h"
#include "gguf/gguf.h"

namespace medquant::cli {
namespace {

using gguf::ValueType;
using Json = nlohmann::ordered_json;

constexpr size_t kShownElements = 8;   // array elements in the text table
constexpr size_t kJsonElements = 64;   // arrays longer than this are summarised in JSON

std::string type_text(const gguf::Value& v) {
  if (!v.is_array()) return std::string(gguf::value_type_name(v.type()));
  return fmt::format("arr[{},{}]", gguf::value_type_name(v.type()), v.count());
}

Json element_json(const gguf::Value& v, size_t i) {
  switch (v.type()) {
    case ValueType::F32: return v.get<float>(i);
    case ValueType::F64: return v.get<double>(i);
    case ValueType::Bool: return v.get<bool>(i);
    case ValueType::String: return v.str(i);
    case ValueType::U64: return v.get<uint64_t>(i);
    default: return *v.as_int(i);
  }
}

Json value_json(const gguf::Value& v) {
  Json j;
  j["type"] = v.is_array() ? "arr" : std::string(gguf::value_type_name(v.type()));
  if (!v.is_array()) {
    j["value"] = element_json(v, 0);
    return j;
  }
  j["element_type"] = std::string(gguf::value_type_name(v.type()));
  j["count"] = v.count();
  const size_t n = std::min(v.count(), kJsonElements);
  Json values = Json::array();
  for (size_t i = 0; i < n; ++i) values.push_back(element_json(v, i));
  j[v.count() > kJsonElements ? "head" : "value"] = std::move(values);
  return j;
}

}  // namespace

bool is_gguf(const InspectProbe& probe) {
  return !probe.is_directory && probe.head.size() >= 4 &&
         std::memcmp(probe.head.data(), "GGUF", 4) == 0;
}

int inspect_gguf(const InspectOptions& options) {
  const gguf::Reader r(options.path);
  const gguf::Header& h = r.header();
  std::vector<std::string> hashes;
  TypeTotals totals;
  for (const auto& t : h.tensors)
    totals.add(quant::type_name(t.type), static_cast<uint64_t>(t.n_elements()), t.n_bytes());
  const auto& all = totals.all;
  if (options.hash)
    hashes = hash_tensors(
        h.tensors.size(), all.bytes, [&](size_t i, auto&) { return r.tensor_data(h.tensors[i]); },
        [&](size_t i, uint64_t off, uint64_t n) { r.release(h.tensors[i], off, off + n); });
  const double bpw = all.parameters ? 8.0 * static_cast<double>(all.bytes) /
                                          static_cast<double>(all.parameters)
                                    : 0.0;

  if (options.json) {
    Json out;
    out["format"] = "gguf";
    out["path"] = options.path;
    out["version"] = h.version;
    out["file_size"] = r.file_size();
    out["alignment"] = h.alignment;
    out["data_offset"] = h.data_offset;
    out["metadata"] = Json::object();
    for (const auto& kv : h.kvs) out["metadata"][kv.key] = value_json(kv.value);
    out["tensors"] = Json::array();
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      const auto& t = h.tensors[i];
      Json j = {{"name", t.name},
                {"type", std::string(quant::type_name(t.type))},
                {"shape", std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims)},
                {"offset", h.data_offset + t.offset},
                {"nbytes", t.n_bytes()}};
      if (options.hash) j["sha256"] = hashes[i];
      out["tensors"].push_back(std::move(j));
    }
    out["totals"] = totals.all_json();
    out["totals"]["bits_per_weight"] = bpw;
    out["totals"]["by_type"] = totals.by_type_json();
    fmt::print("{}\n", out.dump());
    return 0;
  }

  fmt::print("{}: GGUF v{}, {} key-values, {} tensors, alignment {}, data at offset {}, {}\n",
             options.path, h.version, h.kvs.size(), h.tensors.size(), h.alignment, h.data_offset,
             core::human_bytes(r.file_size()));
  size_t w_key = 3, w_type = 4;
  for (const auto& kv : h.kvs) {
    w_key = std::max(w_key, kv.key.size());
    w_type = std::max(w_type, type_text(kv.value).size());
  }
  fmt::print("metadata:\n");
  for (const auto& kv : h.kvs)
    fmt::print("  {:<{}}  {:<{}}  {}\n", kv.key, w_key, type_text(kv.value), w_type,
               kv.value.to_string(kShownElements));

  std::vector<std::string> shapes;
  size_t w_name = 4, w_ttype = 4, w_shape = 5, w_bytes = 5;
  for (const auto& t : h.tensors) {
    shapes.push_back(t.shape_string());
    w_name = std::max(w_name, t.name.size());
    w_ttype = std::max(w_ttype, quant::type_name(t.type).size());
    w_shape = std::max(w_shape, shapes.back().size());
    w_bytes = std::max(w_bytes, grouped(t.n_bytes()).size());
  }
  fmt::print("tensors ({}, in file order):\n", h.tensors.size());
  std::string header = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>12}", "name", w_name,
                                   "type", w_ttype, "shape", w_shape, "bytes", w_bytes, "offset");
  if (options.hash) header += "  sha256";
  fmt::print("{}\n", header);
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    const auto& t = h.tensors[i];
    std::string line = fmt::format("  {:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>12}", t.name, w_name,
                                   quant::type_name(t.type), w_ttype, shapes[i], w_shape,
                                   grouped(t.n_bytes()), w_bytes, h.data_offset + t.offset);
    if (options.hash) line += "  " + hashes[i];
    fmt::print("{}\n", line);
  }
  fmt::print("totals: {} tensors, {} parameters, {} bytes ({}), {:.2f} bits per weight\n",
             all.tensors, grouped(all.parameters), grouped(all.bytes),
             core::human_bytes(all.bytes), bpw);
  totals.print_by_type(w_ttype);
  return 0;
}

}  // namespace medquant::cli
