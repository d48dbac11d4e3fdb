#include "runtime/plan.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_set>

#include "core/error.h"

namespace medquant::runtime {

size_t max_allocation_bytes() {
  static const size_t limit = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    size_t ram = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : (size_t{8} << 30);
    return std::min(ram / 2, size_t{16} << 30);
  }();
  return limit;
}

namespace {

IoInfo io_info(const ::onnx::ValueInfoProto& v, const std::string& where) {
  IoInfo info;
  info.name = v.name();
  if (!v.type().has_tensor_type()) fail("{}: graph input/output '{}' is not a tensor (sequences, maps and optionals are not supported)", where, v.name());
  const auto& tt = v.type().tensor_type();
  info.type = tt.elem_type();
  if (tt.has_shape()) {
    info.has_shape = true;
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() >= 0) {
        info.shape.push_back(d.dim_value());
        info.dim_names.emplace_back();
      } else {
        info.shape.push_back(-1);
        info.dim_names.push_back(d.has_dim_param() ? d.dim_param() : "");
      }
    }
  }
  return info;
}

}  // namespace

LoadedGraph build_graph(std::shared_ptr<const onnx::Model> model) {
  LoadedGraph g;
  g.model = model;
  g.source = model->path.empty() ? "model" : model->path;
  const onnx::Graph& og = model->graph;
  std::unordered_map<std::string, int> ids;
  auto id_of = [&](const std::string& name) {
    auto it = ids.find(name);
    if (it != ids.end()) return it->second;
    const int id = static_cast<int>(g.names.size());
    g.names.push_back(name);
    ids.emplace(name, id);
    return id;
  };
  std::unordered_set<std::string> defined;
  for (const auto& t : og.initializers()) {
    const int id = id_of(t.name);
    // A view of the model's bytes (kept alive by g.model), no copy.
    if (t.opaque() || onnx::elem_size(t.type) == 0)
      fail("{}: initializer '{}': {} tensors are not supported by the runtime", g.source, t.name, onnx::elem_type_name(t.type));
    const Shape dims(t.dims.begin(), t.dims.end());
    const int64_t count = shape_size(dims, g.source + ": initializer '" + t.name + "'");
    if (t.bytes().size() != static_cast<size_t>(count) * onnx::elem_size(t.type))
      fail("{}: initializer '{}' holds {} bytes, its shape needs {}", g.source, t.name, t.bytes().size(),
           static_cast<size_t>(count) * onnx::elem_size(t.type));
    g.initializers[id] = Tensor::view(t.type, dims, const_cast<uint8_t*>(t.bytes().data()));
    defined.insert(t.name);
  }
  for (const auto& v : og.inputs) {
    if (v.name().empty()) fail("{}: a graph input has no name", g.source);
    if (og.find_initializer(v.name())) continue;  // an initializer with a default: treat as constant
    IoInfo info = io_info(v, g.source);
    if (onnx::elem_size(info.type) == 0)
      fail("{}: input '{}' has element type {}, which is not supported", g.source, v.name(), onnx::elem_type_name(info.type));
    if (defined.count(v.name())) fail("{}: input '{}' is declared twice", g.source, v.name());
    g.inputs.push_back(id_of(v.name()));
    g.input_info.push_back(info);
    defined.insert(v.name());
  }
  // Topological order (fails on cycles), then every read must be defined before.
  const std::vector<size_t> order = with_context(g.source, [&] { return og.topological_order(); });
  for (size_t idx : order) {
    const onnx::Node& n = og.nodes[idx];
    GraphNode node;
    node.op_type = n.op_type;
    node.domain = n.domain;
    node.source = &n;
    node.where = fmt::format("{}: node {}", g.source, n.describe(idx));
    for (const auto& name : n.inputs) {
      if (name.empty()) {
        node.in.push_back(-1);
        continue;
      }
      if (!defined.count(name)) fail("{}: reads '{}', which no initializer, graph input or node defines", node.where, name);
      node.in.push_back(id_of(name));
    }
    for (const auto& name : n.outputs) {
      if (name.empty()) {
        node.out.push_back(-1);
        continue;
      }
      if (defined.count(name)) fail("{}: output '{}' is already defined elsewhere", node.where, name);
      defined.insert(name);
      node.out.push_back(id_of(name));
    }
    const std::string& d = n.domain;
    const int64_t opset = model->opset(d);
    if (opset == 0 && !(d.empty() || d == "ai.onnx")) fail("{}: domain '{}' has no opset import", node.where, d);
    node.op = OpRegistry::instance().create(n, opset, node.where);
    g.nodes.push_back(std::move(node));
  }
  for (const auto& v : og.outputs) {
    if (!defined.count(v.name())) fail("{}: graph output '{}' is not produced by anything", g.source, v.name());
    IoInfo info;
    info.name = v.name();
    if (v.type().has_tensor_type()) info = io_info(v, g.source);
    g.outputs.push_back(id_of(v.name()));
    g.output_info.push_back(info);
  }
  if (g.outputs.empty()) fail("{}: the graph has no outputs", g.source);
  if (og.extra.sparse_initializer_size() > 0) fail("{}: sparse initializers are not supported", g.source);
  // Dead nodes (nothing reads their outputs) are dropped.
  std::vector<bool> live(g.names.size(), false);
  for (int o : g.outputs) live[o] = true;
  for (size_t i = g.nodes.size(); i-- > 0;) {
    GraphNode& n = g.nodes[i];
    bool used = false;
    for (int o : n.out) used = used || (o >= 0 && live[o]);
    if (!used) {
      n.removed = true;
      continue;
    }
    for (int v : n.in)
      if (v >= 0) live[v] = true;
  }
  std::erase_if(g.nodes, [](const GraphNode& n) { return n.removed; });
  return g;
}

namespace {

struct Interval {
  int value;
  size_t size;
  int first, last;
};

// Greedy by size: each buffer takes the lowest offset free for its whole lifetime.
size_t assign_offsets(std::vector<Interval>& items, std::vector<PlannedValue>& values) {
  std::sort(items.begin(), items.end(), [](const Interval& a, const Interval& b) {
    return a.size != b.size ? a.size > b.size : a.first < b.first;
  });
  struct Placed { size_t offset, size; int first, last; };
  std::vector<Placed> placed;
  size_t total = 0;
  for (const auto& it : items) {
    std::vector<std::pair<size_t, size_t>> busy;
    for (const auto& p : placed)
      if (!(p.last < it.first || it.last < p.first)) busy.emplace_back(p.offset, p.offset + p.size);
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (const auto& [b, e] : busy) {
      if (offset + it.size <= b) break;
      offset = std::max(offset, e);
    }
    placed.push_back({offset, it.size, it.first, it.last});
    values[it.value].offset = offset;
    total = std::max(total, offset + it.size);
  }
  return total;
}

size_t aligned_bytes(const TensorDesc& d) {
  const size_t n = static_cast<size_t>(shape_size(d.shape)) * onnx::elem_size(d.type);
  return (n + 63) / 64 * 64;
}

void check_bytes(size_t bytes, const std::string& where) {
  if (bytes > max_allocation_bytes())
    fail("{}: needs {} bytes, more than this machine allows one tensor ({})", where, bytes, max_allocation_bytes());
}

}  // namespace

Plan make_plan(LoadedGraph& g, const std::vector<TensorDesc>& inputs, Parallel& pool) {
  Plan p;
  p.values.resize(g.names.size());
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    auto& v = p.values[g.inputs[i]];
    v.desc = inputs[i];
    v.known = true;
    v.kind = ValueKind::Input;
    p.input_shapes.push_back(inputs[i].shape);
  }
  for (auto& [id, t] : g.initializers) {
    auto& v = p.values[id];
    v.desc = {t.type(), t.shape()};
    v.known = true;
    v.kind = ValueKind::Constant;
    v.constant = t;
  }
  std::vector<TensorDesc> outs;
  std::vector<const TensorDesc*> descs;
  std::vector<const Tensor*> vals;
  for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
    GraphNode& n = g.nodes[ni];
    PlanStep step;
    step.node = static_cast<int>(ni);
    step.view = n.op->is_view();
    bool inputs_known = true, all_const = true;
    descs.clear();
    vals.clear();
    for (int v : n.in) {
      if (v < 0) {
        descs.push_back(nullptr);
        vals.push_back(nullptr);
        continue;
      }
      const auto& pv = p.values[v];
      inputs_known = inputs_known && pv.known;
      all_const = all_const && pv.kind == ValueKind::Constant;
      descs.push_back(pv.known ? &pv.desc : nullptr);
      vals.push_back(pv.kind == ValueKind::Constant ? &pv.constant : nullptr);
    }
    outs.assign(n.out.size(), TensorDesc{});
    bool inferred = false;
    if (inputs_known) {
      InferContext ctx(n.where, descs, vals);
      inferred = n.op->infer(ctx, outs);
      if (inferred) {
        for (size_t i = 0; i < outs.size(); ++i)
          if (n.out[i] >= 0) {
            if (outs[i].type == onnx::kUndefined) fail("{}: output {} has no type", n.where, i);
            check_bytes(static_cast<size_t>(shape_size(outs[i].shape, n.where)) * onnx::elem_size(outs[i].type), n.where);
          }
        n.op->prepare(ctx);
      }
    }
    const bool shape_only = (n.op_type == "Shape" || n.op_type == "Size") && n.domain.empty() && inferred;
    const bool defer = !g.fused && all_const && n.op_type == "DequantizeLinear" && n.domain.empty();  // step 3 above
    p.deferred = p.deferred || (inferred && defer);
    if (inferred && (all_const || shape_only) && !defer) {
      // Constant folding: run now, outputs become constants.
      std::vector<Tensor> stand_ins;
      std::vector<const Tensor*> in_ptrs;
      stand_ins.reserve(n.in.size());
      for (size_t i = 0; i < n.in.size(); ++i) {
        const int v = n.in[i];
        if (v < 0) { in_ptrs.push_back(nullptr); continue; }
        if (p.values[v].kind == ValueKind::Constant) in_ptrs.push_back(&p.values[v].constant);
        else {
          stand_ins.push_back(Tensor::view(p.values[v].desc.type, p.values[v].desc.shape, nullptr));
          in_ptrs.push_back(&stand_ins.back());
        }
      }
      std::vector<Tensor> results(n.out.size());
      std::vector<Tensor*> out_ptrs(n.out.size(), nullptr);
      for (size_t i = 0; i < n.out.size(); ++i) {
        if (n.out[i] < 0) continue;
        if (step.view) results[i] = in_ptrs[0]->reshaped(outs[i].shape);
        else results[i] = Tensor(outs[i].type, outs[i].shape);
        out_ptrs[i] = &results[i];
      }
      if (!step.view) with_context(n.where, [&] { n.op->run(in_ptrs, out_ptrs, pool); });
      for (size_t i = 0; i < n.out.size(); ++i) {
        if (n.out[i] < 0) continue;
        auto& pv = p.values[n.out[i]];
        pv.desc = outs[i];
        pv.known = true;
        pv.kind = ValueKind::Constant;
        pv.constant = std::move(results[i]);
      }
      ++p.folded;
      continue;
    }
    step.dynamic = !inferred;
    for (size_t i = 0; i < n.out.size(); ++i) {
      if (n.out[i] < 0) continue;
      auto& pv = p.values[n.out[i]];
      pv.producer = static_cast<int>(p.steps.size());
      if (inferred) {
        pv.desc = outs[i];
        pv.known = true;
        pv.kind = step.view && i == 0 ? ValueKind::View : ValueKind::Arena;
      } else {
        pv.kind = step.view && i == 0 ? ValueKind::View : ValueKind::Dynamic;
      }
    }
    const int s = static_cast<int>(p.steps.size());
    for (int v : n.in)
      if (v >= 0) p.values[v].last_use = s;
    p.steps.push_back(std::move(step));
  }
  // Graph outputs are fresh tensors per run, never arena bytes.
  std::unordered_set<int> outputs(g.outputs.begin(), g.outputs.end());
  for (int o : g.outputs) {
    auto& pv = p.values[o];
    if (pv.kind == ValueKind::Arena) pv.kind = ValueKind::Output;
    pv.last_use = static_cast<int>(p.steps.size());
  }
  // Views extend the life of the value they alias (through chains of views).
  auto root_of = [&](int v) {
    while (p.values[v].kind == ValueKind::View) {
      const GraphNode& n = g.nodes[p.steps[p.values[v].producer].node];
      v = n.in[0];
    }
    return v;
  };
  for (int v = 0; v < static_cast<int>(p.values.size()); ++v) {
    if (p.values[v].kind != ValueKind::View) continue;
    const int r = root_of(v);
    p.values[r].last_use = std::max(p.values[r].last_use, p.values[v].last_use);
  }
  // Memory plan.
  std::vector<Interval> items;
  for (int v = 0; v < static_cast<int>(p.values.size()); ++v) {
    auto& pv = p.values[v];
    if (pv.kind == ValueKind::Arena) {
      const int last = pv.last_use < 0 ? pv.producer : pv.last_use;
      items.push_back({v, aligned_bytes(pv.desc), pv.producer, last});
    }
    if (pv.kind == ValueKind::Dynamic && pv.last_use >= 0 && !outputs.count(v))
      p.steps[pv.last_use].release.push_back(v);
  }
  p.arena_bytes = assign_offsets(items, p.values);
  check_bytes(p.arena_bytes, g.source + ": memory plan");
  p.arena = allocate_bytes(p.arena_bytes);
  return p;
}

namespace {
// MEDQUANT_PROFILE=1: time per op type, printed to stderr at exit.
struct Profile {
  std::mutex mutex;
  std::map<std::string, std::pair<double, size_t>> ms;
  ~Profile() {
    double total = 0;
    for (auto& [k, v] : ms) total += v.first;
    for (auto& [k, v] : ms) std::fprintf(stderr, "%-40s %10.2f ms %6zu calls %5.1f%%\n", k.c_str(), v.first, v.second, 100 * v.first / total);
  }
};
Profile* profile() {
  static Profile* p = std::getenv("MEDQUANT_PROFILE") ? new Profile : nullptr;
  static struct Printer { ~Printer() { delete profile(); } } printer;
  return p;
}
}  // namespace

std::vector<Tensor> execute(LoadedGraph& g, Plan& p, const std::vector<const Tensor*>& inputs, Parallel& pool) {
  Profile* prof = profile();
  std::vector<Tensor> values(p.values.size());
  for (size_t i = 0; i < g.inputs.size(); ++i)
    values[g.inputs[i]] = Tensor::view(inputs[i]->type(), inputs[i]->shape(), const_cast<void*>(inputs[i]->raw()));
  for (size_t v = 0; v < p.values.size(); ++v)
    if (p.values[v].kind == ValueKind::Constant) values[v] = p.values[v].constant;
  uint8_t* arena = p.arena.get();
  std::vector<const Tensor*> ins;
  std::vector<Tensor*> outs;
  std::vector<TensorDesc> descs_storage, out_descs;
  std::vector<const TensorDesc*> descs;
  for (PlanStep& step : p.steps) {
    GraphNode& n = g.nodes[step.node];
    ins.clear();
    for (int v : n.in) ins.push_back(v >= 0 ? &values[v] : nullptr);
    if (step.dynamic) {
      descs_storage.clear();
      descs_storage.reserve(n.in.size());
      descs.clear();
      for (const Tensor* t : ins) {
        if (t) descs_storage.push_back({t->type(), t->shape()});
        descs.push_back(t ? &descs_storage.back() : nullptr);
      }
      out_descs.assign(n.out.size(), TensorDesc{});
      InferContext ctx(n.where, descs, ins);
      if (!n.op->infer(ctx, out_descs)) fail("{}: output shape could not be determined", n.where);
      for (size_t i = 0; i < n.out.size(); ++i) {
        if (n.out[i] < 0) continue;
        check_bytes(static_cast<size_t>(shape_size(out_descs[i].shape, n.where)) * onnx::elem_size(out_descs[i].type), n.where);
        if (step.view && i == 0) values[n.out[i]] = ins[0]->reshaped(out_descs[i].shape);
        else values[n.out[i]] = Tensor(out_descs[i].type, out_descs[i].shape);
      }
      n.op->prepare(ctx);
    } else {
      for (size_t i = 0; i < n.out.size(); ++i) {
        const int v = n.out[i];
        if (v < 0) continue;
        const auto& pv = p.values[v];
        if (pv.kind == ValueKind::View) values[v] = ins[0]->reshaped(pv.desc.shape);
        else if (pv.kind == ValueKind::Output) values[v] = Tensor(pv.desc.type, pv.desc.shape);
        else values[v] = Tensor::view(pv.desc.type, pv.desc.shape, arena + pv.offset);
      }
    }
    if (!step.view) {
      outs.clear();
      for (int v : n.out) outs.push_back(v >= 0 ? &values[v] : nullptr);
      try {
        const auto t0 = prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        n.op->run(ins, outs, pool);
        if (prof) {
          const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          std::string key = n.op_type;
          if (n.op_type == "MatMul" || n.op_type == "MatMulInteger") key += " " + shape_string(values[n.out[0]].shape());
          std::lock_guard<std::mutex> lock(prof->mutex);
          auto& e = prof->ms[key];
          e.first += ms;
          e.second += 1;
        }
      } catch (const Error& e) {
        if (std::string_view(e.what()).find(n.where) != std::string_view::npos) throw;
        throw Error(n.where + ": " + e.what());
      }
    }
    for (int v : step.release) values[v] = Tensor();
  }
  std::vector<Tensor> result;
  for (int o : g.outputs) {
    Tensor& t = values[o];
    const auto kind = p.values[o].kind;
    if (kind == ValueKind::Output || (kind == ValueKind::Dynamic && t.owns())) result.push_back(std::move(t));
    else if (kind == ValueKind::View && t.owns() && p.values[o].kind != ValueKind::Constant) result.push_back(t.clone());
    else result.push_back(t.clone());
  }
  return result;
}

}  // namespace medquant::runtime
