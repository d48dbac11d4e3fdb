// medquant inspect for .onnx: opsets, inputs/outputs with shapes, op
// histogram, initializer bytes by element type.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <map>

#include "cli/inspect.h"
#include "core/log.h"
#include "core/sha256.h"
#include "onnx/model_io.h"

namespace medquant::cli {
namespace {

std::string dim_text(const ::onnx::TensorShapeProto::Dimension& d) {
  if (d.has_dim_value()) return std::to_string(d.dim_value());
  if (d.has_dim_param()) return d.dim_param();
  return "?";
}

struct ValueText {
  std::string type, shape;
};

ValueText value_text(const ::onnx::ValueInfoProto& v) {
  if (!v.type().has_tensor_type()) return {"non-tensor", ""};
  const auto& tt = v.type().tensor_type();
  ValueText out{onnx::elem_type_name(tt.elem_type()), "unknown rank"};
  if (tt.has_shape()) {
    std::vector<std::string> dims;
    for (const auto& d : tt.shape().dim()) dims.push_back(dim_text(d));
    out.shape = fmt::format("[{}]", fmt::join(dims, ", "));
  }
  return out;
}

std::string opset_domain(const std::string& d) { return d.empty() ? "ai.onnx" : d; }

}  // namespace

bool is_onnx(const InspectProbe& probe) {
  return !probe.is_directory && probe.path.size() > 5 &&
         probe.path.compare(probe.path.size() - 5, 5, ".onnx") == 0;
}

int inspect_onnx(const InspectOptions& options) {
  const onnx::Model model = onnx::load_model(options.path);
  const auto& g = model.graph;
  std::map<std::string, size_t> ops;
  for (const auto& n : g.nodes)
    ops[n.domain.empty() || n.domain == "ai.onnx" ? n.op_type : n.domain + "." + n.op_type]++;
  struct Total {
    uint64_t tensors = 0, elements = 0, bytes = 0;
  };
  std::map<std::string, Total> by_type;
  uint64_t external = 0;
  for (const auto& t : g.initializers()) {
    auto& tot = by_type[onnx::elem_type_name(t.type)];
    tot.tensors++;
    tot.elements += static_cast<uint64_t>(t.element_count());
    tot.bytes += t.bytes().size();
    if (t.is_external()) external++;
  }

  if (options.json) {
    using Json = nlohmann::ordered_json;
    Json out;
    out["file"] = options.path;
    out["format"] = "onnx";
    out["ir_version"] = model.header.ir_version();
    out["producer"] = model.header.producer_name();
    out["producer_version"] = model.header.producer_version();
    Json opsets = Json::object();
    for (const auto& o : model.header.opset_import()) opsets[opset_domain(o.domain())] = o.version();
    out["opsets"] = opsets;
    auto values = [](const std::vector<::onnx::ValueInfoProto>& list, const onnx::Graph* skip) {
      Json arr = Json::array();
      for (const auto& v : list) {
        if (skip && skip->find_initializer(v.name())) continue;
        auto t = value_text(v);
        arr.push_back({{"name", v.name()}, {"type", t.type}, {"shape", t.shape}});
      }
      return arr;
    };
    out["inputs"] = values(g.inputs, &g);
    out["outputs"] = values(g.outputs, nullptr);
    out["nodes"] = g.nodes.size();
    out["ops"] = ops;
    Json inits = Json::object();
    for (const auto& [k, t] : by_type)
      inits[k] = {{"tensors", t.tensors}, {"elements", t.elements}, {"bytes", t.bytes}};
    out["initializers"] = inits;
    out["external_initializers"] = external;
    Json meta = Json::object();
    for (const auto& p : model.header.metadata_props()) meta[p.key()] = p.value();
    out["metadata"] = meta;
    if (options.hash) {
      Json hashes = Json::object();
      for (const auto& t : g.initializers())
        hashes[t.name] = core::sha256_hex(std::string_view(
            reinterpret_cast<const char*>(t.bytes().data()), t.bytes().size()));
      out["initializer_sha256"] = hashes;
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }

  fmt::print("{}: ONNX, ir_version {}, producer {} {}\n", options.path, model.header.ir_version(),
             model.header.producer_name().empty() ? "(none)" : model.header.producer_name(),
             model.header.producer_version());
  std::vector<std::string> opsets;
  for (const auto& o : model.header.opset_import())
    opsets.push_back(fmt::format("{} {}", opset_domain(o.domain()), o.version()));
  fmt::print("opsets: {}\n", fmt::join(opsets, ", "));
  auto print_values = [&](const char* title, const std::vector<::onnx::ValueInfoProto>& list, bool inputs) {
    fmt::print("{}:\n", title);
    for (const auto& v : list) {
      if (inputs && g.find_initializer(v.name())) continue;  // old-style initializer inputs
      auto t = value_text(v);
      fmt::print("  {}  {} {}\n", v.name(), t.type, t.shape);
    }
  };
  print_values("inputs", g.inputs, true);
  print_values("outputs", g.outputs, false);
  std::vector<std::pair<std::string, size_t>> hist(ops.begin(), ops.end());
  std::stable_sort(hist.begin(), hist.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  fmt::print("nodes: {} ({} op types)\n", g.nodes.size(), hist.size());
  for (const auto& [op, n] : hist) fmt::print("  {:<28} {}\n", op, n);
  Total all;
  for (const auto& [k, t] : by_type) {
    all.tensors += t.tensors;
    all.elements += t.elements;
    all.bytes += t.bytes;
  }
  fmt::print("initializers: {} tensors, {} elements, {} ({} external)\n", all.tensors, all.elements,
             core::human_bytes(all.bytes), external);
  for (const auto& [k, t] : by_type)
    fmt::print("  {:<10} {} tensors, {} elements, {} bytes ({})\n", k, t.tensors, t.elements, t.bytes,
               core::human_bytes(t.bytes));
  if (options.hash) {
    fmt::print("initializer sha256:\n");
    for (const auto& t : g.initializers())
      fmt::print("  {}  {}\n", core::sha256_hex(std::string_view(
                                   reinterpret_cast<const char*>(t.bytes().data()), t.bytes().size())),
                 t.name);
  }
  if (model.header.metadata_props_size()) {
    fmt::print("metadata:\n");
    for (const auto& p : model.header.metadata_props()) fmt::print("  {}: {}\n", p.key(), p.value());
  }
  return 0;
}

}  // namespace medquant::cli
