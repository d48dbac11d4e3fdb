#include "runtime/op.h"

#include <onnx/defs/schema.h>

#include <algorithm>
#include <climits>

namespace medquant::runtime {

const TensorDesc& InferContext::desc(size_t i) const {
  if (!has(i)) fail("{}: input {} is missing", where_, i);
  return *descs_[i];
}

const ::onnx::AttributeProto* Attributes::get(std::string_view name,
                                              ::onnx::AttributeProto::AttributeType type) {
  const auto* a = node_.attribute(name);
  if (!a) return nullptr;
  used_.insert(std::string(name));
  // Files written by old exporters may leave `type` unset; trust the field then.
  if (a->type() != ::onnx::AttributeProto::UNDEFINED && a->type() != type)
    fail("{}: attribute '{}' has type {}, expected {}", where_, name,
         ::onnx::AttributeProto::AttributeType_Name(a->type()),
         ::onnx::AttributeProto::AttributeType_Name(type));
  if (a->has_ref_attr_name() && !a->ref_attr_name().empty())
    fail("{}: attribute '{}' refers to a function attribute (not supported)", where_, name);
  return a;
}

int64_t Attributes::i(std::string_view name, int64_t fallback) {
  const auto* a = get(name, ::onnx::AttributeProto::INT);
  return a ? a->i() : fallback;
}

int64_t Attributes::required_i(std::string_view name) {
  const auto* a = get(name, ::onnx::AttributeProto::INT);
  if (!a) fail("{}: required attribute '{}' is missing", where_, name);
  return a->i();
}

float Attributes::f(std::string_view name, float fallback) {
  const auto* a = get(name, ::onnx::AttributeProto::FLOAT);
  return a ? a->f() : fallback;
}

std::string Attributes::s(std::string_view name, std::string fallback) {
  const auto* a = get(name, ::onnx::AttributeProto::STRING);
  return a ? a->s() : fallback;
}

std::vector<int64_t> Attributes::ints(std::string_view name, std::vector<int64_t> fallback) {
  const auto* a = get(name, ::onnx::AttributeProto::INTS);
  if (!a) return fallback;
  return {a->ints().begin(), a->ints().end()};
}

std::vector<float> Attributes::floats(std::string_view name) {
  const auto* a = get(name, ::onnx::AttributeProto::FLOATS);
  if (!a) return {};
  return {a->floats().begin(), a->floats().end()};
}

const ::onnx::TensorProto* Attributes::tensor(std::string_view name) {
  const auto* a = get(name, ::onnx::AttributeProto::TENSOR);
  return a ? &a->t() : nullptr;
}

void Attributes::finish() const {
  for (const auto& a : node_.attributes)
    if (!used_.count(a.name()))
      fail("{}: attribute '{}' is not supported by medquant's runtime", where_, a.name());
}

const OpRegistry& OpRegistry::instance() {
  static const OpRegistry registry = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_reduce_ops(r);
    register_matmul_ops(r);
    register_conv_ops(r);
    register_shape_ops(r);
    register_quant_ops(r);
    register_normalization_ops(r);
    register_contrib_ops(r);
    return r;
  }();
  return registry;
}

namespace {
std::string key(const std::string& domain, const std::string& op_type) {
  const std::string d = domain == "ai.onnx" ? "" : domain;
  return d + "::" + op_type;
}
}  // namespace

void OpRegistry::add(std::string domain, std::string op_type, int64_t since, int64_t until,
                     OpFactory factory) {
  entries_[key(domain, op_type)].push_back({since, until, std::move(factory)});
}

bool OpRegistry::supports(const std::string& domain, const std::string& op_type) const {
  return entries_.count(key(domain, op_type)) > 0;
}

std::vector<std::string> OpRegistry::op_names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : entries_) out.push_back(k.rfind("::", 0) == 0 ? k.substr(2) : k);
  return out;
}

namespace {
// The node's input and output counts against ONNX's schema of the op at this
// opset (ops of other domains have none here and check their own inputs):
// every op may then index the inputs its schema requires.
void check_arity(const onnx::Node& node, int64_t opset, const std::string& where) {
  const auto* schema = ::onnx::OpSchemaRegistry::Schema(node.op_type, static_cast<int>(opset), node.domain);
  if (!schema) return;
  const auto count = [&](const char* what, size_t n, int lo, int hi) {
    if (static_cast<int64_t>(n) < lo || static_cast<int64_t>(n) > hi)
      fail("{}: has {} {}, {} takes {}", where, n, what, node.op_type,
           lo == hi ? std::to_string(lo) : fmt::format("{} to {}", lo, hi == INT_MAX ? std::string("any") : std::to_string(hi)));
  };
  count("inputs", node.inputs.size(), schema->min_input(), schema->max_input());
  count("outputs", node.outputs.size(), schema->min_output(), schema->max_output());
  const auto& formal = schema->inputs();
  for (size_t i = 0; i < node.inputs.size() && !formal.empty(); ++i) {
    const auto& f = formal[std::min(i, formal.size() - 1)];
    if (node.inputs[i].empty() && f.GetOption() != ::onnx::OpSchema::Optional)
      fail("{}: required input {} ('{}') is missing", where, i, f.GetName());
  }
}
}  // namespace

std::unique_ptr<Op> OpRegistry::create(const onnx::Node& node, int64_t opset,
                                       const std::string& where) const {
  auto it = entries_.find(key(node.domain, node.op_type));
  if (it == entries_.end())
    fail("{}: operator {}{} is not supported by medquant's runtime", where,
         node.domain.empty() ? "" : node.domain + ".", node.op_type);
  if (node.has_subgraph()) fail("{}: operators with subgraphs are not supported", where);
  for (const auto& e : it->second) {
    if (opset < e.since || opset > e.until) continue;
    check_arity(node, opset, where);
    Attributes attrs(node, where);
    OpArgs args{node, opset, attrs, where};
    std::unique_ptr<Op> op = e.factory(args);
    attrs.finish();
    op->where = where;
    return op;
  }
  std::string ranges;
  for (const auto& e : it->second) ranges += fmt::format("{}{}-{}", ranges.empty() ? "" : ", ", e.since, e.until);
  fail("{}: {} at opset {} is not supported (medquant implements opsets {})", where, node.op_type,
       opset, ranges);
}

int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view where) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1) || (rank == 0 && axis != 0 && axis != -1))
    fail("{}: axis {} is out of range for rank {}", where, axis, rank);
  return axis < 0 ? axis + rank : axis;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view where) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (da == db || db == 1) out[i] = da;
    else if (da == 1) out[i] = db;
    else fail("{}: shapes {} and {} cannot be broadcast together", where, shape_string(a), shape_string(b));
  }
  return out;
}

std::vector<int64_t> strides_of(const Shape& shape) {
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> s(out.size(), 0);
  const auto own = strides_of(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[off + i] = in[i] == 1 ? 0 : own[i];
  return s;
}

}  // namespace medquant::runtime
