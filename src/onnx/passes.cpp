#include "onnx/passes.h"

#include <cstring>
#include <numeric>
#include <optional>
#include <unordered_set>

#include "core/error.h"

namespace medquant::onnx {
namespace {

std::optional<Tensor> constant_value(const Node& n) {
  for (const auto& a : n.attributes) {
    if (a.name() == "value" && a.has_t()) {
      ::onnx::TensorProto tp = a.t();
      if (tp.data_location() == ::onnx::TensorProto::EXTERNAL) return std::nullopt;
      Tensor t = tensor_from_proto(tp, "Constant " + n.name);
      t.name = n.outputs[0];
      return t;
    }
    if (a.name() == "value_float") {
      std::string b(4, '\0');
      float f = a.f();
      std::memcpy(b.data(), &f, 4);
      return Tensor(n.outputs[0], kFloat, {}, std::move(b));
    }
    if (a.name() == "value_floats") {
      std::string b(static_cast<size_t>(a.floats_size()) * 4, '\0');
      if (a.floats_size()) std::memcpy(b.data(), a.floats().data(), b.size());
      return Tensor(n.outputs[0], kFloat, {a.floats_size()}, std::move(b));
    }
    if (a.name() == "value_int") {
      std::string b(8, '\0');
      int64_t v = a.i();
      std::memcpy(b.data(), &v, 8);
      return Tensor(n.outputs[0], kInt64, {}, std::move(b));
    }
    if (a.name() == "value_ints") {
      std::string b(static_cast<size_t>(a.ints_size()) * 8, '\0');
      if (a.ints_size()) std::memcpy(b.data(), a.ints().data(), b.size());
      return Tensor(n.outputs[0], kInt64, {a.ints_size()}, std::move(b));
    }
  }
  return std::nullopt;
}

std::vector<int64_t> int64_values(const Tensor& t) {
  std::vector<int64_t> v(static_cast<size_t>(t.element_count()));
  if (t.type == kInt64 && t.bytes().size() == v.size() * 8)
    std::memcpy(v.data(), t.bytes().data(), v.size() * 8);
  else
    v.clear();
  return v;
}

Tensor transpose(const Tensor& in, std::vector<int64_t> perm, std::string name) {
  const size_t rank = in.dims.size();
  if (perm.empty()) {
    perm.resize(rank);
    std::iota(perm.rbegin(), perm.rend(), 0);
  }
  std::vector<int64_t> out_dims(rank);
  for (size_t i = 0; i < rank; ++i) out_dims[i] = in.dims[static_cast<size_t>(perm[i])];
  const size_t es = elem_size(in.type);
  std::vector<size_t> in_strides(rank, 1);
  for (size_t i = rank; i-- > 1;) in_strides[i - 1] = in_strides[i] * static_cast<size_t>(in.dims[i]);
  std::string out(in.bytes().size(), '\0');
  const size_t total = static_cast<size_t>(in.element_count());
  std::vector<size_t> idx(rank, 0);
  const uint8_t* src = in.bytes().data();
  for (size_t o = 0; o < total; ++o) {
    size_t off = 0;
    for (size_t i = 0; i < rank; ++i) off += idx[i] * in_strides[static_cast<size_t>(perm[i])];
    std::memcpy(out.data() + o * es, src + off * es, es);
    for (size_t i = rank; i-- > 0;) {
      if (++idx[i] < static_cast<size_t>(out_dims[i])) break;
      idx[i] = 0;
    }
  }
  return Tensor(std::move(name), in.type, std::move(out_dims), std::move(out));
}

// One folded result, or nullopt when the node is not foldable.
std::optional<Tensor> fold_node(const Graph& g, const Node& n) {
  if (!n.domain.empty() && n.domain != "ai.onnx") return std::nullopt;
  if (n.outputs.size() != 1 || n.outputs[0].empty()) return std::nullopt;
  if (n.op_type == "Constant") return constant_value(n);
  if (n.inputs.empty() || n.inputs[0].empty()) return std::nullopt;
  const Tensor* x = g.find_initializer(n.inputs[0]);
  if (!x || x->opaque() || g.is_graph_input(n.inputs[0])) return std::nullopt;
  auto second = [&]() -> const Tensor* {
    if (n.inputs.size() < 2 || n.inputs[1].empty()) return nullptr;
    if (g.is_graph_input(n.inputs[1])) return nullptr;
    return g.find_initializer(n.inputs[1]);
  };
  if (n.op_type == "Identity") {
    Tensor t = *x;
    t.name = n.outputs[0];
    return t;
  }
  if (n.op_type == "Transpose") {
    std::vector<int64_t> perm;
    if (const auto* a = n.attribute("perm")) perm.assign(a->ints().begin(), a->ints().end());
    if (!perm.empty() && perm.size() != x->dims.size()) return std::nullopt;
    for (int64_t p : perm)
      if (p < 0 || p >= static_cast<int64_t>(x->dims.size())) return std::nullopt;
    return transpose(*x, perm, n.outputs[0]);
  }
  if (n.op_type == "Reshape" || n.op_type == "Squeeze" || n.op_type == "Unsqueeze") {
    std::vector<int64_t> dims;
    const int64_t rank = static_cast<int64_t>(x->dims.size());
    std::vector<int64_t> axes;
    if (n.op_type != "Reshape") {
      if (const auto* a = n.attribute("axes")) axes.assign(a->ints().begin(), a->ints().end());
      else if (const Tensor* t = second()) axes = int64_values(*t);
      else if (n.inputs.size() >= 2 && !n.inputs[1].empty()) return std::nullopt;
    }
    if (n.op_type == "Reshape") {
      const Tensor* s = second();
      if (!s || n.attribute_int("allowzero", 0) != 0) return std::nullopt;
      dims = int64_values(*s);
      int64_t known = 1, infer = -1;
      for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] == 0) {
          if (static_cast<int64_t>(i) >= rank) return std::nullopt;
          dims[i] = x->dims[i];
        }
        if (dims[i] == -1) {
          if (infer >= 0) return std::nullopt;
          infer = static_cast<int64_t>(i);
        } else if (dims[i] < 0) {
          return std::nullopt;
        } else {
          known *= dims[i];
        }
      }
      if (infer >= 0) {
        if (known == 0 || x->element_count() % known) return std::nullopt;
        dims[static_cast<size_t>(infer)] = x->element_count() / known;
      }
    } else if (n.op_type == "Squeeze") {
      for (auto& a : axes) a = a < 0 ? a + rank : a;
      for (int64_t i = 0; i < rank; ++i) {
        const bool listed = std::find(axes.begin(), axes.end(), i) != axes.end();
        if ((axes.empty() && x->dims[static_cast<size_t>(i)] == 1) || listed) {
          if (x->dims[static_cast<size_t>(i)] != 1) return std::nullopt;
          continue;
        }
        dims.push_back(x->dims[static_cast<size_t>(i)]);
      }
    } else {
      const int64_t out_rank = rank + static_cast<int64_t>(axes.size());
      for (auto& a : axes) a = a < 0 ? a + out_rank : a;
      size_t src = 0;
      for (int64_t i = 0; i < out_rank; ++i) {
        if (std::find(axes.begin(), axes.end(), i) != axes.end()) dims.push_back(1);
        else if (src < x->dims.size()) dims.push_back(x->dims[src++]);
        else return std::nullopt;
      }
    }
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    if (count != x->element_count()) return std::nullopt;
    Tensor t = *x;
    t.name = n.outputs[0];
    t.dims = std::move(dims);
    return t;
  }
  return std::nullopt;
}

}  // namespace

PassStats fold_constants(Graph& g) {
  PassStats stats;
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    auto folded = fold_node(g, g.nodes[i]);
    if (folded) {
      g.add_initializer(std::move(*folded));
      ++stats.constants_folded;
    } else {
      kept.push_back(std::move(g.nodes[i]));
    }
  }
  g.nodes = std::move(kept);
  return stats;
}

PassStats remove_pass_through(Graph& g) {
  PassStats stats;
  // Subgraphs may read a bypassed value by name from the outer scope; such
  // graphs (rare in encoders) keep their Identity nodes.
  for (const auto& n : g.nodes)
    if (n.has_subgraph()) return stats;
  std::unordered_map<std::string, std::string> alias;
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  auto resolve = [&](const std::string& s) {
    auto it = alias.find(s);
    return it == alias.end() ? s : it->second;
  };
  for (auto& n : g.nodes) {
    for (auto& in : n.inputs)
      if (!in.empty()) in = resolve(in);
    const bool plain_domain = n.domain.empty() || n.domain == "ai.onnx";
    bool bypass = false;
    if (plain_domain && !n.inputs.empty() && !n.inputs[0].empty() && !n.outputs.empty() &&
        !g.is_graph_output(n.outputs[0])) {
      if (n.op_type == "Identity") bypass = true;
      // Dropout in inference: output = input, when the mask output is unused.
      if (n.op_type == "Dropout" && (n.outputs.size() == 1 || n.outputs[1].empty()) &&
          (n.inputs.size() < 3 || n.inputs[2].empty()))
        bypass = true;
    }
    if (bypass) {
      alias[n.outputs[0]] = n.inputs[0];
      ++stats.nodes_removed;
    } else {
      kept.push_back(std::move(n));
    }
  }
  g.nodes = std::move(kept);
  return stats;
}

PassStats remove_dead_nodes(Graph& g) {
  PassStats stats;
  for (;;) {
    auto users = g.consumers();
    std::vector<Node> kept;
    size_t removed = 0;
    for (auto& n : g.nodes) {
      bool used = false;
      for (const auto& o : n.outputs)
        if (!o.empty() && (users.count(o) || g.is_graph_output(o))) used = true;
      if (used) kept.push_back(std::move(n));
      else ++removed;
    }
    g.nodes = std::move(kept);
    stats.nodes_removed += removed;
    if (removed == 0) break;
  }
  auto users = g.consumers();
  auto& inits = g.mutable_initializers();
  std::unordered_set<std::string> dropped;
  for (const auto& t : inits)
    if (!users.count(t.name) && !g.is_graph_output(t.name)) dropped.insert(t.name);
  if (!dropped.empty()) {
    std::erase_if(inits, [&](const Tensor& t) { return dropped.count(t.name) > 0; });
    g.reindex_initializers();
    // An initializer also listed as a graph input (IR < 4 style) goes with it.
    std::erase_if(g.inputs, [&](const ::onnx::ValueInfoProto& v) { return dropped.count(v.name()) > 0; });
  }
  stats.initializers_removed = dropped.size();
  return stats;
}

PassStats simplify(Graph& g) {
  PassStats total;
  for (;;) {
    PassStats a = fold_constants(g);
    PassStats b = remove_pass_through(g);
    PassStats c = remove_dead_nodes(g);
    total.constants_folded += a.constants_folded;
    total.nodes_removed += b.nodes_removed + c.nodes_removed;
    total.initializers_removed += c.initializers_removed;
    if (a.constants_folded + b.nodes_removed + c.nodes_removed == 0) break;
  }
  return total;
}

}  // namespace medquant::onnx
