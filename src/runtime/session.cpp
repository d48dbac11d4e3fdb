#include "runtime/session.h"

#include <google/protobuf/io/coded_stream.h>

#include <climits>
#include <new>

#include "onnx/model_io.h"
#include "runtime/kernels/kernels.h"
#include "runtime/parallel.h"

namespace medquant::runtime {

struct Session::Impl {
  SessionOptions options;
  LoadedGraph graph;
  std::unique_ptr<Parallel> pool;
  std::unique_ptr<Plan> plan;
  std::mutex mutex;
  SessionStats stats;

  void plan_for(const std::vector<TensorDesc>& descs) {
    if (!options.fuse) graph.fused = true;  // no fusion to wait for: fold everything now
    plan = std::make_unique<Plan>(make_plan(graph, descs, *pool));
    ++stats.plans;
    if (options.fuse && !graph.fused) {
      // Plan again when the graph changed, or to fold what the plan deferred.
      if (fuse_graph(graph, *plan) > 0 || plan->deferred) plan = std::make_unique<Plan>(make_plan(graph, descs, *pool));
    }
    stats.nodes = plan->steps.size();
    stats.folded = plan->folded;
    stats.fusions = graph.fusions;
    stats.arena_bytes = plan->arena_bytes;
  }
};

namespace {

// Catches what must never escape as a crash: allocation failures.
template <typename Fn>
auto guarded(const std::string& where, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    fail("{}: out of memory", where);
  } catch (const std::length_error& e) {
    fail("{}: {}", where, e.what());
  }
}

// A serialized ModelProto in memory -> the graph IR (inline tensors only).
onnx::Model model_from_memory(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty()) fail("{}: empty buffer, not an ONNX model", name);
  if (bytes.size() >= INT_MAX) fail("{}: {} bytes is past protobuf's 2 GiB limit", name, bytes.size());
  ::onnx::ModelProto proto;
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  in.SetTotalBytesLimit(INT_MAX);
  if (!proto.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage())
    fail("{}: not an ONNX model (truncated or not a protobuf ModelProto)", name);
  if (!proto.has_graph() || proto.ir_version() <= 0) fail("{}: not an ONNX model (no ir_version or graph)", name);
  onnx::Model model;
  ::onnx::GraphProto gp;
  gp.Swap(proto.mutable_graph());
  proto.clear_graph();
  model.header = std::move(proto);
  onnx::Graph& g = model.graph;
  g.name = gp.name();
  for (auto& v : *gp.mutable_input()) g.inputs.push_back(std::move(v));
  for (auto& v : *gp.mutable_output()) g.outputs.push_back(std::move(v));
  for (auto& v : *gp.mutable_value_info()) g.value_info.push_back(std::move(v));
  for (auto& p : *gp.mutable_node()) {
    onnx::Node n;
    n.name = p.name();
    n.op_type = p.op_type();
    n.domain = p.domain();
    n.inputs.assign(p.input().begin(), p.input().end());
    n.outputs.assign(p.output().begin(), p.output().end());
    for (auto& a : *p.mutable_attribute()) n.attributes.push_back(std::move(a));
    g.nodes.push_back(std::move(n));
  }
  for (auto& tp : *gp.mutable_initializer()) {
    if (tp.data_location() == ::onnx::TensorProto::EXTERNAL)
      fail("{}: initializer '{}' has external data, which a model loaded from memory cannot resolve", name, tp.name());
    g.mutable_initializers().push_back(onnx::tensor_from_proto(tp, name));
  }
  g.reindex_initializers();
  if (gp.sparse_initializer_size() > 0) fail("{}: sparse initializers are not supported", name);
  return model;
}

bool static_shapes(const std::vector<IoInfo>& inputs) {
  for (const auto& i : inputs) {
    if (!i.has_shape) return false;
    for (int64_t d : i.shape)
      if (d < 0) return false;
  }
  return true;
}

}  // namespace

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

Session Session::load(const std::string& path, SessionOptions options) {
  const auto start = std::chrono::steady_clock::now();
  auto model = guarded(path, [&] { return std::make_shared<const onnx::Model>(onnx::load_model(path)); });
  return build(std::move(model), options, start);
}

Session Session::load_from_memory(std::span<const uint8_t> bytes, SessionOptions options, const std::string& name) {
  const auto start = std::chrono::steady_clock::now();
  auto model = guarded(name, [&] {
    auto m = std::make_shared<onnx::Model>(model_from_memory(bytes, name));
    m->path = name;
    return std::shared_ptr<const onnx::Model>(m);
  });
  return build(std::move(model), options, start);
}

Session Session::from_model(std::shared_ptr<const onnx::Model> model, SessionOptions options) {
  return build(std::move(model), options, std::chrono::steady_clock::now());
}

Session Session::build(std::shared_ptr<const onnx::Model> model, SessionOptions options,
                       std::chrono::steady_clock::time_point start) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  guarded(model->path.empty() ? "model" : model->path, [&] {
    impl->graph = build_graph(model);
    impl->pool = std::make_unique<Parallel>(options.threads);
    if (static_shapes(impl->graph.input_info)) {
      std::vector<TensorDesc> descs;
      for (const auto& i : impl->graph.input_info) descs.push_back({i.type, i.shape});
      impl->plan_for(descs);
    }
  });
  impl->stats.kernels = kernels::best().name;
  impl->stats.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return Session(std::move(impl));
}

const std::vector<IoInfo>& Session::inputs() const { return impl_->graph.input_info; }
const std::vector<IoInfo>& Session::outputs() const { return impl_->graph.output_info; }
const onnx::Model& Session::model() const { return *impl_->graph.model; }

std::vector<Tensor> Session::run(const std::vector<std::pair<std::string, Tensor>>& named) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.mutex);
  const LoadedGraph& g = m.graph;
  const std::string& src = g.source;
  std::vector<const Tensor*> inputs(g.inputs.size(), nullptr);
  for (const auto& [name, t] : named) {
    size_t i = 0;
    while (i < g.input_info.size() && g.input_info[i].name != name) ++i;
    if (i == g.input_info.size()) fail("{}: the model has no input named '{}'", src, name);
    if (inputs[i]) fail("{}: input '{}' given twice", src, name);
    inputs[i] = &t;
  }
  std::vector<TensorDesc> descs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const IoInfo& info = g.input_info[i];
    if (!inputs[i]) fail("{}: input '{}' is missing", src, info.name);
    const Tensor& t = *inputs[i];
    if (t.type() != info.type)
      fail("{}: input '{}' must be {}, got {}", src, info.name, onnx::elem_type_name(info.type), onnx::elem_type_name(t.type()));
    if (info.has_shape) {
      if (t.rank() != info.shape.size())
        fail("{}: input '{}' must have rank {} ({}), got {}", src, info.name, info.shape.size(), shape_string(info.shape), shape_string(t.shape()));
      for (size_t d = 0; d < t.rank(); ++d)
        if (info.shape[d] >= 0 && info.shape[d] != t.dim(d))
          fail("{}: input '{}' dim {} must be {}, got shape {}", src, info.name, d, info.shape[d], shape_string(t.shape()));
    }
    if (t.size() > 0 && !t.raw()) fail("{}: input '{}' has no data", src, info.name);
    descs.push_back({t.type(), t.shape()});
  }
  return guarded(src, [&] {
    bool same = m.plan && m.plan->input_shapes.size() == descs.size();
    for (size_t i = 0; same && i < descs.size(); ++i) same = m.plan->input_shapes[i] == descs[i].shape;
    if (!same) m.plan_for(descs);
    return execute(m.graph, *m.plan, inputs, *m.pool);
  });
}

std::map<std::string, Tensor> Session::run_named(const std::map<std::string, Tensor>& inputs) {
  std::vector<std::pair<std::string, Tensor>> v(inputs.begin(), inputs.end());
  std::vector<Tensor> out = run(v);
  std::map<std::string, Tensor> r;
  for (size_t i = 0; i < out.size(); ++i) r[impl_->graph.output_info[i].name] = std::move(out[i]);
  return r;
}

SessionStats Session::stats() const { return impl_->stats; }

std::vector<std::string> supported_ops() { return OpRegistry::instance().op_names(); }

}  // namespace medquant::runtime
