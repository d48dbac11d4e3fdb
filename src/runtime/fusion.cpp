// Operator fusion, run once on the first plan (it needs the plan's shapes and
// constants) and kept for later plans:
//   MatMulInteger(A u8, W const) -> Cast(float) -> Mul(scale)   => one integer GEMM
//       whose epilogue dequantizes (ONNX Runtime's MatMulIntegerToFloat)
//   <GEMM> -> Add(bias const, per column)                       => bias in the epilogue
//   <GEMM> -> GELU (Gelu op, or the erf expression torch exports:
//       x * 0.5 * (1 + erf(x / sqrt 2)) in either multiplication order) => GELU in the epilogue
//   ConvInteger(x u8/s8, W const) -> Cast(float) -> Mul(scale)  => the same for convolutions
//   MatMul(DequantizeLinear(a_q), DequantizeLinear(W_q const))   => one integer GEMM on a_q
//   Conv(DequantizeLinear(x_q), DequantizeLinear(W_q const), b)      with the scale a_s * w_s
//       (QDQ models; ORT's MatMulIntegerToFloat; the QuantizeLinear making a_q stays;
//       B may be an activation too, per tensor: attention products, B packed when run)
//   DequantizeLinear -> Transpose/Reshape/... -> QuantizeLinear (same parameters)
//                                                               => the move on the quantized values
//   QuantizeLinear -> DequantizeLinear (same parameters)        => one pass making both
// where <GEMM> is a float MatMul or one of the integer GEMMs above, with a constant
// weight packed at load (bias and scale per output column: the last axis, or
// the channel axis of a convolution); and multi-head attention as exported by torch
// and by our BiomedCLIP exporter (see ops/attention.h):
//   Transpose(q) x Transpose(k) -> Mul/Div(scalar) [-> Add(mask [B,1,1,Tk])]
//       -> Softmax -> x Transpose(v) -> Transpose             => one Attention node
//   the LayerNorm torch exports below opset 17 (ReduceMean, Sub, Pow, ReduceMean,
//       Add eps, Sqrt, Div, Mul gamma, Add beta)               => LayerNormalization
// Fused-away values must have no other reader and must not be graph outputs.
#include <algorithm>
#include <climits>
#include <cmath>
#include <unordered_set>

#include "runtime/ops/attention.h"
#include "runtime/ops/fusable.h"
#include "runtime/ops/int8.h"
#include "runtime/plan.h"

namespace medquant::runtime {
namespace {

struct Matcher {
  LoadedGraph& g;
  const Plan& p;
  std::vector<std::vector<int>> consumers;  // value -> node indices
  std::vector<int> producers;               // value -> node index, -1 for inputs and initializers
  std::unordered_set<int> outputs;
  std::vector<int> released;  // nodes that lost a reader: removed at the end if none is left

  Matcher(LoadedGraph& graph, const Plan& plan) : g(graph), p(plan) {
    consumers.assign(g.names.size(), {});
    producers.assign(g.names.size(), -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (int v : g.nodes[i].in)
        if (v >= 0) consumers[v].push_back(static_cast<int>(i));
      for (int v : g.nodes[i].out)
        if (v >= 0) producers[v] = static_cast<int>(i);
    }
    outputs.insert(g.outputs.begin(), g.outputs.end());
  }

  // The live node that makes v, or -1.
  int producer_of(int v) const {
    if (v < 0) return -1;
    const int n = producers[v];
    return n >= 0 && !g.nodes[n].removed ? n : -1;
  }
  // A one-input Transpose node with exactly this perm.
  bool is_transpose(int t, std::initializer_list<int64_t> perm) const {
    if (t < 0 || !is(t, "Transpose") || !g.nodes[t].source || g.nodes[t].in.size() != 1) return false;
    const auto* a = g.nodes[t].source->attribute("perm");
    if (!a || a->ints_size() != static_cast<int>(perm.size())) return false;
    int i = 0;
    for (int64_t d : perm)
      if (a->ints(i++) != d) return false;
    return true;
  }
  // v made by such a Transpose and read only by `reader`: the Transpose's input, else -1.
  int transpose_input(int v, int reader, std::initializer_list<int64_t> perm) const {
    const int t = producer_of(v);
    return is_transpose(t, perm) && sole_consumer(v) == reader ? g.nodes[t].in[0] : -1;
  }
  bool float_4d(int v) const {
    return v >= 0 && p.values[v].known && p.values[v].desc.type == onnx::kFloat && p.values[v].desc.shape.size() == 4;
  }

  // The only reader of v (a live node), or -1.
  int sole_consumer(int v) const {
    if (v < 0 || outputs.count(v) || consumers[v].size() != 1) return -1;
    const int c = consumers[v][0];
    return g.nodes[c].removed ? -1 : c;
  }
  bool is(int node, const char* op_type) const {
    const GraphNode& n = g.nodes[node];
    return n.op_type == op_type && (n.domain.empty() || n.domain == "ai.onnx");
  }
  const Tensor* constant(int v) const {
    return v >= 0 && p.values[v].kind == ValueKind::Constant ? &p.values[v].constant : nullptr;
  }
  // The other input of a two-input node, given one.
  int other(int node, int v) const {
    const auto& in = g.nodes[node].in;
    if (in.size() != 2) return -1;
    if (in[0] == v) return in[1];
    if (in[1] == v) return in[0];
    return -1;
  }
  bool scalar_near(int v, double target) const {
    const Tensor* t = constant(v);
    if (!t || t->type() != onnx::kFloat || t->size() != 1) return false;
    return std::fabs(t->data<float>()[0] - target) <= 1e-6 * std::fabs(target);
  }
  const Shape& shape(int v) const { return p.values[v].desc.shape; }
};

// A shape that broadcasts against the output `out` as one value per output
// column of lin (numpy alignment from the right).
bool per_column(const Shape& s, const Shape& out, const FusableLinear& lin) {
  if (s.empty() || s.size() > out.size()) return false;
  const size_t axis = lin.channels_first() ? 1 : out.size() - 1, off = out.size() - s.size();
  if (axis < off) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i] != (i + off == axis ? static_cast<int64_t>(lin.output_columns()) : 1)) return false;
  return true;
}

bool is_integer_gemm(const GraphNode& n) { return n.op_type == "MatMulInteger" || n.op_type == "ConvInteger"; }
// An integer GEMM not (yet) given a dequantizing scale: its output is int32.
bool integer_output(const GraphNode& n) { return is_integer_gemm(n) && n.in.size() < 5; }

bool fuse_dequantize(Matcher& m, int ni, FusableLinear& lin) {
  GraphNode& n = m.g.nodes[ni];
  if (!integer_output(n)) return false;
  const int v = n.out[0];
  const int cast = m.sole_consumer(v);
  if (cast < 0 || !m.is(cast, "Cast") || m.p.values[m.g.nodes[cast].out[0]].desc.type != onnx::kFloat) return false;
  const int w = m.g.nodes[cast].out[0];
  const int mul = m.sole_consumer(w);
  if (mul < 0 || !m.is(mul, "Mul")) return false;
  const int s = m.other(mul, w);
  if (s < 0 || s == w) return false;
  const auto& sd = m.p.values[s];
  if (!sd.known || sd.desc.type != onnx::kFloat) return false;
  if (shape_size(sd.desc.shape) != 1 && !per_column(sd.desc.shape, m.shape(v), lin)) return false;
  if (m.shape(m.g.nodes[mul].out[0]) != m.shape(v)) return false;
  if (!lin.set_dequantize()) return false;
  n.in.resize(4, -1);
  n.in.push_back(s);
  n.out[0] = m.g.nodes[mul].out[0];
  m.g.nodes[cast].removed = m.g.nodes[mul].removed = true;
  return true;
}

bool fuse_bias(Matcher& m, int ni, FusableLinear& lin) {
  GraphNode& n = m.g.nodes[ni];
  if (lin.has_bias() || lin.activation() != kernels::Activation::None) return false;
  if (integer_output(n)) return false;  // no float bias on int32
  const int v = n.out[0];
  const int add = m.sole_consumer(v);
  if (add < 0 || !m.is(add, "Add")) return false;
  const int b = m.other(add, v);
  const Tensor* bt = m.constant(b);
  if (!bt || bt->type() != onnx::kFloat || !per_column(bt->shape(), m.shape(v), lin)) return false;
  if (m.shape(m.g.nodes[add].out[0]) != m.shape(v)) return false;
  lin.set_bias(std::vector<float>(bt->data<float>(), bt->data<float>() + bt->size()));
  n.out[0] = m.g.nodes[add].out[0];
  m.g.nodes[add].removed = true;
  return true;
}

bool fuse_gelu(Matcher& m, int ni, FusableLinear& lin) {
  GraphNode& n = m.g.nodes[ni];
  if (lin.activation() != kernels::Activation::None) return false;
  if (integer_output(n)) return false;
  const int v = n.out[0];
  if (m.outputs.count(v)) return false;
  const auto& cons = m.consumers[v];
  // A Gelu operator.
  if (cons.size() == 1) {
    const GraphNode& c = m.g.nodes[cons[0]];
    const bool onnx_gelu = m.is(cons[0], "Gelu") && c.source &&
                           (!c.source->attribute("approximate") || c.source->attribute("approximate")->s() == "none");
    const bool ms_gelu = c.op_type == "Gelu" && c.domain == "com.microsoft";
    if (onnx_gelu || ms_gelu) {
      lin.set_activation(kernels::Activation::Gelu);
      n.out[0] = c.out[0];
      m.g.nodes[cons[0]].removed = true;
      return true;
    }
  }
  // x * 0.5 * (1 + erf(x / sqrt 2)), torch's export of nn.GELU().
  if (cons.size() != 2) return false;
  int scale_node = -1, mul_node = -1;
  for (int c : cons) {
    if ((m.is(c, "Div") && m.g.nodes[c].in[0] == v && m.scalar_near(m.g.nodes[c].in[1], M_SQRT2)) ||
        (m.is(c, "Mul") && m.scalar_near(m.other(c, v), M_SQRT1_2)))
      scale_node = c;
    else if (m.is(c, "Mul"))
      mul_node = c;
  }
  if (scale_node < 0 || mul_node < 0) return false;
  const int erf = m.sole_consumer(m.g.nodes[scale_node].out[0]);
  if (erf < 0 || !m.is(erf, "Erf")) return false;
  const int add = m.sole_consumer(m.g.nodes[erf].out[0]);
  if (add < 0 || !m.is(add, "Add") || !m.scalar_near(m.other(add, m.g.nodes[erf].out[0]), 1.0)) return false;
  const int a = m.g.nodes[add].out[0];
  std::vector<int> removed{scale_node, erf, add, mul_node};
  int final_out;
  const int half_first = m.other(mul_node, v);
  if (m.scalar_near(half_first, 0.5)) {
    // (x * 0.5) * (1 + erf(...))
    const int h = m.g.nodes[mul_node].out[0];
    const int prod = m.sole_consumer(h);
    if (prod < 0 || !m.is(prod, "Mul") || m.other(prod, h) != a || m.sole_consumer(a) != prod) return false;
    removed.push_back(prod);
    final_out = m.g.nodes[prod].out[0];
  } else {
    // (x * (1 + erf(...))) * 0.5
    if (half_first != a || m.sole_consumer(a) != mul_node) return false;
    const int h = m.g.nodes[mul_node].out[0];
    const int half = m.sole_consumer(h);
    if (half < 0 || !m.is(half, "Mul") || !m.scalar_near(m.other(half, h), 0.5)) return false;
    removed.push_back(half);
    final_out = m.g.nodes[half].out[0];
  }
  if (m.shape(final_out) != m.shape(v)) return false;
  lin.set_activation(kernels::Activation::Gelu);
  n.out[0] = final_out;
  for (int r : removed) m.g.nodes[r].removed = true;
  return true;
}

// A DequantizeLinear making v from 8-bit values with constant parameters.
struct Dequantized {
  int node = -1, q = -1, zp = -1;  // zp -1 when absent (zero)
  const Tensor* scale = nullptr;
  const Tensor* zero = nullptr;
  int64_t axis = 1;
};

Dequantized dequantized(const Matcher& m, int v) {
  const int d = m.producer_of(v);
  if (d < 0 || !m.is(d, "DequantizeLinear") || !m.g.nodes[d].source) return {};
  const auto& in = m.g.nodes[d].in;
  Dequantized r;
  r.node = d;
  r.q = in[0];
  r.zp = in.size() > 2 ? in[2] : -1;
  r.scale = m.constant(in[1]);
  r.zero = r.zp >= 0 ? m.constant(r.zp) : nullptr;
  const int32_t t = m.p.values[r.q].desc.type;
  if (!r.scale || r.scale->type() != onnx::kFloat || (r.zp >= 0 && !r.zero) || (t != onnx::kUint8 && t != onnx::kInt8))
    return {};
  if (r.zero && r.zero->size() != r.scale->size()) return {};
  r.axis = m.g.nodes[d].source->attribute_int("axis", 1);
  return r;
}

// DequantizeLinear -> Transpose | Reshape | Squeeze | Unsqueeze | Flatten ->
// QuantizeLinear with the same per-tensor parameters (QDQ models wrap every
// data movement so): the move runs on the quantized values and the pair goes.
// Exact: Q(DQ(q)) == q, as |q - zp| <= 255 keeps (q - zp) * s / s within
// 1e-4 of an integer.
bool fuse_quantized_move(Matcher& m, int qi) {
  GraphNode& q = m.g.nodes[qi];
  if (!m.is(qi, "QuantizeLinear") || q.in.size() < 2 || q.out.size() != 1 || q.out[0] < 0) return false;
  const int mv = m.producer_of(q.in[0]);
  if (mv < 0 || m.sole_consumer(q.in[0]) != qi || m.g.nodes[mv].out.size() != 1 || m.g.nodes[mv].in.empty()) return false;
  bool movable = false;
  for (const char* t : {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"}) movable = movable || m.is(mv, t);
  if (!movable) return false;
  const Dequantized d = dequantized(m, m.g.nodes[mv].in[0]);
  if (d.node < 0 || d.scale->size() != 1 || m.p.values[q.out[0]].desc.type != m.p.values[d.q].desc.type) return false;
  const Tensor* s = m.constant(q.in[1]);
  const int qz = q.in.size() > 2 ? q.in[2] : -1;
  const Tensor* z = qz >= 0 ? m.constant(qz) : nullptr;
  if (!s || s->type() != onnx::kFloat || s->size() != 1 || (qz >= 0 && !z) || (z && z->size() != 1)) return false;
  if (s->data<float>()[0] != d.scale->data<float>()[0]) return false;
  auto zero = [](const Tensor* t) { return t ? load_q(*t, 0) : 0; };
  if (zero(z) != zero(d.zero)) return false;
  GraphNode& move = m.g.nodes[mv];
  move.in[0] = d.q;
  move.out[0] = q.out[0];
  q.removed = true;
  m.consumers[d.q].push_back(mv);
  m.producers[q.out[0]] = mv;
  m.released.push_back(d.node);
  return true;
}

// QuantizeLinear whose output a DequantizeLinear with the same per-tensor
// parameters reads: one QuantizeDequantize pass (ops/int8.h) makes both the
// DQ's floats and, when something else still reads them, the quantized values.
bool fuse_quantize_dequantize(Matcher& m, int qi) {
  GraphNode& q = m.g.nodes[qi];
  if (!m.is(qi, "QuantizeLinear") || q.in.size() < 2 || q.out.size() != 1 || q.out[0] < 0) return false;
  const int v = q.out[0];
  const Tensor* s = m.constant(q.in[1]);
  const int qz = q.in.size() > 2 ? q.in[2] : -1;
  const Tensor* z = qz >= 0 ? m.constant(qz) : nullptr;
  const int32_t type = m.p.values[v].desc.type;
  if (!s || s->type() != onnx::kFloat || s->size() != 1 || (qz >= 0 && (!z || z->size() != 1))) return false;
  if ((type != onnx::kUint8 && type != onnx::kInt8) || m.p.values[q.in[0]].desc.type != onnx::kFloat) return false;
  const int32_t zp = z ? load_q(*z, 0) : 0;
  int dq = -1;
  bool other_readers = m.outputs.count(v) > 0;
  for (int c : m.consumers[v]) {
    const GraphNode& cn = m.g.nodes[c];
    if (cn.removed || c == dq || std::find(cn.in.begin(), cn.in.end(), v) == cn.in.end()) continue;
    if (dq < 0 && m.is(c, "DequantizeLinear") && cn.in[0] == v && cn.out.size() == 1 && cn.out[0] >= 0) {
      const Dequantized d = dequantized(m, cn.out[0]);
      if (d.node == c && d.scale->size() == 1 && d.scale->data<float>()[0] == s->data<float>()[0] &&
          (d.zero ? load_q(*d.zero, 0) : 0) == zp) {
        dq = c;
        continue;
      }
    }
    other_readers = true;
  }
  if (dq < 0) return false;
  q.op = make_quantize_dequantize_op(s->data<float>()[0], zp, type);
  q.op->where = q.where + " (fused with its DequantizeLinear)";
  q.op_type = "QuantizeDequantize";
  q.domain = "medquant";
  q.source = nullptr;
  q.in = {q.in[0]};
  q.out = {other_readers ? v : -1, m.g.nodes[dq].out[0]};
  m.g.nodes[dq].removed = true;
  return true;
}

// The float values of v: a constant, or (before the plan folds it) a
// DequantizeLinear of constants, computed as DequantizeLinear does (QDQ
// biases: int32 with scale x_s * w_s, per tensor or per element).
bool constant_values(const Matcher& m, int v, std::vector<float>& out, int& dq) {
  if (const Tensor* t = m.constant(v)) {
    if (t->type() != onnx::kFloat) return false;
    out.assign(t->data<float>(), t->data<float>() + t->size());
    return true;
  }
  dq = m.producer_of(v);
  if (dq < 0 || !m.is(dq, "DequantizeLinear")) return false;
  const auto& in = m.g.nodes[dq].in;
  const Tensor* x = m.constant(in[0]);
  const Tensor* s = m.constant(in[1]);
  const Tensor* z = in.size() > 2 && in[2] >= 0 ? m.constant(in[2]) : nullptr;
  if (!x || !s || s->type() != onnx::kFloat || (in.size() > 2 && in[2] >= 0 && !z) || x->rank() > 1) return false;
  if ((s->size() != 1 && s->size() != x->size()) || (z && z->size() != s->size())) return false;
  auto at = [](const Tensor& t, int64_t i) -> int64_t {
    switch (t.type()) {
      case onnx::kInt32: return t.data<int32_t>()[i];
      case onnx::kInt8: return t.data<int8_t>()[i];
      case onnx::kUint8: return t.data<uint8_t>()[i];
      default: return INT64_MIN;
    }
  };
  out.resize(static_cast<size_t>(x->size()));
  for (int64_t i = 0; i < x->size(); ++i) {
    const int64_t c = s->size() == 1 ? 0 : i;
    const int64_t q = at(*x, i), zp = z ? at(*z, c) : 0;
    if (q == INT64_MIN || zp == INT64_MIN) return false;
    out[i] = static_cast<float>(static_cast<int32_t>(q - zp)) * s->data<float>()[c];
  }
  return true;
}

// The op of a fused node, prepared now (fuse_bias and fuse_gelu need it
// packed): the plan's descs and constants for the node's old inputs, `extra`
// for the new constant (the last input).
bool prepare_fused(Matcher& m, Op& op, const std::vector<int>& in, const Tensor& extra) {
  std::vector<TensorDesc> extra_desc{{extra.type(), extra.shape()}};
  std::vector<const TensorDesc*> descs;
  std::vector<const Tensor*> vals;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i + 1 == in.size()) {
      descs.push_back(&extra_desc[0]);
      vals.push_back(&extra);
    } else if (in[i] < 0) {
      descs.push_back(nullptr);
      vals.push_back(nullptr);
    } else {
      if (!m.p.values[in[i]].known) return false;
      descs.push_back(&m.p.values[in[i]].desc);
      vals.push_back(m.constant(in[i]));
    }
  }
  InferContext ctx(op.where, descs, vals);
  std::vector<TensorDesc> outs(1);
  if (!op.infer(ctx, outs)) return false;
  op.prepare(ctx);
  return true;
}

// MatMul(DQ(a_q), DQ(W_q const)) and Conv(DQ(x_q), DQ(W_q const)[, bias
// const]) become MatMulInteger / ConvInteger on the quantized values with a
// dequantizing epilogue: acc * (a_scale * w_scale[column]) (+ bias).
bool fuse_qdq(Matcher& m, int ni) {
  GraphNode& n = m.g.nodes[ni];
  const bool conv = m.is(ni, "Conv");
  if ((!conv && !m.is(ni, "MatMul")) || n.in.size() < 2 || n.out.size() != 1 || n.out[0] < 0) return false;
  const int v = n.out[0];
  if (!m.p.values[v].known || m.p.values[v].kind == ValueKind::Constant || m.p.values[v].desc.type != onnx::kFloat)
    return false;
  const Dequantized a = dequantized(m, n.in[0]), w = dequantized(m, n.in[1]);
  if (a.node < 0 || w.node < 0 || a.scale->size() != 1) return false;
  const Tensor* wq = m.constant(w.q);
  // B an activation too (attention products): per-tensor parameters, B packed when run.
  const bool activations = !wq && !conv;
  if (activations && (w.scale->size() != 1 || !m.p.values[w.q].known || m.shape(w.q).size() < 2 ||
                      m.shape(n.in[0]).size() < 2))
    return false;
  if (!activations && (!wq || wq->rank() != (conv ? m.shape(n.in[0]).size() : 2))) return false;
  std::vector<float> bias;
  int bias_dq = -1;
  if (conv && n.in.size() > 2 && n.in[2] >= 0 && !constant_values(m, n.in[2], bias, bias_dq)) return false;
  // Per-column weight parameters must run along the output columns.
  const int64_t columns = activations ? m.shape(w.q).back() : conv ? wq->dim(0) : wq->dim(1);
  const int64_t ws = w.scale->size();
  if (ws != 1) {
    const int64_t axis = w.axis < 0 ? w.axis + static_cast<int64_t>(wq->rank()) : w.axis;
    if (ws != columns || w.scale->rank() != 1 || axis != (conv ? 0 : 1)) return false;
  }
  const float sa = a.scale->data<float>()[0];
  std::vector<float> scale(static_cast<size_t>(ws));
  for (int64_t j = 0; j < ws; ++j) scale[j] = sa * w.scale->data<float>()[j];
  Tensor scale_t = Tensor::from<float>(ws == 1 ? Shape{} : Shape{ws}, std::span<const float>(scale));

  if (conv && !n.source) return false;
  onnx::Node spec = conv ? *n.source : onnx::Node{};
  spec.op_type = conv ? "ConvInteger" : "MatMulInteger";
  spec.domain.clear();
  spec.inputs = {"x", "w", "x_zero_point", "w_zero_point"};
  spec.outputs = {"y"};
  const std::string where = n.where + " (fused QDQ " + spec.op_type + ")";
  std::unique_ptr<Op> op = OpRegistry::instance().create(spec, 13, where);
  auto* lin = dynamic_cast<FusableLinear*>(op.get());
  const std::vector<int> in{a.q, w.q, a.zp, w.zp, -2};
  if (!lin || !prepare_fused(m, *op, in, scale_t) || (!activations && !lin->packed()) || !lin->set_dequantize())
    return false;
  if (!bias.empty()) {
    if (static_cast<int64_t>(bias.size()) != columns) return false;
    lin->set_bias(std::move(bias));
    if (bias_dq >= 0 && m.sole_consumer(n.in[2]) == ni) m.g.nodes[bias_dq].removed = true;
  }
  // The scale is a new constant of the graph.
  const int scale_id = static_cast<int>(m.g.names.size());
  m.g.names.push_back(m.g.names[v] + "_qdq_scale");
  m.g.initializers[scale_id] = std::move(scale_t);
  if (!activations && m.sole_consumer(n.in[1]) == ni) m.g.nodes[w.node].removed = true;
  m.released.push_back(a.node);
  if (activations) m.released.push_back(w.node);
  m.consumers[a.q].push_back(ni);
  m.consumers[w.q].push_back(ni);
  n.op = std::move(op);
  n.op_type = spec.op_type;
  n.domain.clear();
  n.where = where;
  n.source = nullptr;
  n.in = {a.q, w.q, a.zp, w.zp, scale_id};
  return true;
}

// The LayerNorm that torch exports below opset 17 (over the last axis):
//   mean = ReduceMean(x); d = x - mean; var = ReduceMean(d ^ 2);
//   y = d / Sqrt(var + eps) * gamma + beta    (gamma, beta constant, per column)
// => one LayerNormalization node. The kernel sums in another order, so the
// result differs from the chain by rounding (tests hold both to ORT).
bool fuse_layernorm(Matcher& m, int ri) {
  GraphNode& r1 = m.g.nodes[ri];
  if (!m.is(ri, "ReduceMean") || r1.in.empty() || r1.out.size() != 1) return false;
  const int x = r1.in[0], mean = r1.out[0];
  if (!m.p.values[x].known || m.p.values[x].desc.type != onnx::kFloat) return false;
  // Reduced over the last axis only, dims kept: [..., n] -> [..., 1].
  const Shape& xs = m.shape(x);
  Shape kept = xs;
  if (xs.empty() || xs.back() <= 1) return false;
  kept.back() = 1;
  if (m.shape(mean) != kept) return false;
  const int sub = m.sole_consumer(mean);
  if (sub < 0 || !m.is(sub, "Sub") || m.g.nodes[sub].in != std::vector<int>{x, mean}) return false;
  const int d = m.g.nodes[sub].out[0];
  if (m.outputs.count(d) || m.consumers[d].size() != 2) return false;
  int pow = -1, div = -1;
  for (int c : m.consumers[d]) {
    if (m.is(c, "Pow") && m.g.nodes[c].in.size() == 2 && m.g.nodes[c].in[0] == d && m.scalar_near(m.g.nodes[c].in[1], 2.0)) pow = c;
    if (m.is(c, "Div") && m.g.nodes[c].in.size() == 2 && m.g.nodes[c].in[0] == d) div = c;
  }
  if (pow < 0 || div < 0) return false;
  const int r2 = m.sole_consumer(m.g.nodes[pow].out[0]);
  if (r2 < 0 || !m.is(r2, "ReduceMean") || m.shape(m.g.nodes[r2].out[0]) != kept) return false;
  const int add_eps = m.sole_consumer(m.g.nodes[r2].out[0]);
  if (add_eps < 0 || !m.is(add_eps, "Add")) return false;
  const Tensor* eps = m.constant(m.other(add_eps, m.g.nodes[r2].out[0]));
  if (!eps || eps->type() != onnx::kFloat || eps->size() != 1) return false;
  const int sqrt = m.sole_consumer(m.g.nodes[add_eps].out[0]);
  if (sqrt < 0 || !m.is(sqrt, "Sqrt") || m.sole_consumer(m.g.nodes[sqrt].out[0]) != div ||
      m.g.nodes[div].in[1] != m.g.nodes[sqrt].out[0])
    return false;
  // * gamma + beta, each an n-element constant along the last axis (either operand order).
  const int n = static_cast<int>(xs.back());
  auto along_last_axis = [&](int v) {
    const Tensor* t = m.constant(v);
    if (!t || t->type() != onnx::kFloat || t->size() != n || t->rank() == 0 || t->rank() > xs.size() || t->shape().back() != n)
      return static_cast<const Tensor*>(nullptr);
    return t;
  };
  const int mul = m.sole_consumer(m.g.nodes[div].out[0]);
  if (mul < 0 || !m.is(mul, "Mul")) return false;
  const Tensor* gamma = along_last_axis(m.other(mul, m.g.nodes[div].out[0]));
  const int add = m.sole_consumer(m.g.nodes[mul].out[0]);
  if (!gamma || add < 0 || !m.is(add, "Add")) return false;
  const int beta_v = m.other(add, m.g.nodes[mul].out[0]);
  const Tensor* beta = along_last_axis(beta_v);
  const int y = m.g.nodes[add].out[0];
  if (!beta || m.shape(y) != xs) return false;

  onnx::Node spec;
  spec.op_type = "LayerNormalization";
  spec.inputs = {"x", "scale", "bias"};
  spec.outputs = {"y"};
  ::onnx::AttributeProto e;
  e.set_name("epsilon");
  e.set_type(::onnx::AttributeProto::FLOAT);
  e.set_f(eps->data<float>()[0]);
  spec.attributes.push_back(e);
  const std::string where = r1.where + " (fused LayerNorm)";
  for (int gone : {sub, pow, r2, add_eps, sqrt, div, mul, add}) m.g.nodes[gone].removed = true;
  r1.op = OpRegistry::instance().create(spec, 17, where);
  r1.op_type = "LayerNormalization";
  r1.domain.clear();
  r1.where = where;
  r1.source = nullptr;
  r1.in = {x, m.other(mul, m.g.nodes[div].out[0]), beta_v};
  r1.out = {y};
  return true;
}

bool fuse_attention(Matcher& m, int si) {
  GraphNode& sm = m.g.nodes[si];
  if (!m.is(si, "Softmax") || sm.in.size() != 1 || sm.out.size() != 1 || !sm.source) return false;
  const auto* axis_attr = sm.source->attribute("axis");
  const int64_t axis = axis_attr ? axis_attr->i() : (m.g.model->opset("") >= 13 ? -1 : 1);
  if (axis != -1 && axis != 3) return false;
  // An additive mask [1 or B, 1, 1, Tk] (text towers), then the scaling.
  int scaled = sm.in[0], mask = -1, mask_add = -1;
  const int pre = m.producer_of(scaled);
  if (pre >= 0 && m.is(pre, "Add") && m.g.nodes[pre].in.size() == 2 && m.sole_consumer(scaled) == si) {
    for (int i = 0; i < 2 && mask < 0; ++i) {
      const int s = m.g.nodes[pre].in[i];
      const int sp = m.producer_of(s);
      if (sp >= 0 && (m.is(sp, "Mul") || m.is(sp, "Div")) && m.sole_consumer(s) == pre) {
        mask = m.g.nodes[pre].in[1 - i];
        mask_add = pre;
        scaled = s;
      }
    }
    if (mask < 0 || mask == scaled || !m.float_4d(mask) || m.shape(scaled) != m.shape(sm.in[0])) return false;
  }
  const int sc = m.producer_of(scaled);
  if (sc < 0 || m.sole_consumer(scaled) != (mask_add >= 0 ? mask_add : si) || !m.float_4d(scaled)) return false;
  const GraphNode& scn = m.g.nodes[sc];
  if (scn.in.size() != 2) return false;
  int scores = -1, scale_value = -1;
  bool divide = false;
  if (m.is(sc, "Mul")) {
    for (int i = 0; i < 2; ++i) {
      const Tensor* c = m.constant(scn.in[i]);
      if (c && c->type() == onnx::kFloat && c->size() == 1) {
        scale_value = scn.in[i];
        scores = scn.in[1 - i];
      }
    }
  } else if (m.is(sc, "Div")) {
    const Tensor* c = m.constant(scn.in[1]);
    if (c && c->type() == onnx::kFloat && c->size() == 1) {
      scale_value = scn.in[1];
      scores = scn.in[0];
      divide = true;
    }
  }
  if (scores < 0 || scores == scale_value || m.shape(scores) != m.shape(scaled)) return false;
  // q x k, both made by head transposes.
  const int qk = m.producer_of(scores);
  if (qk < 0 || !m.is(qk, "MatMul") || m.sole_consumer(scores) != sc || m.g.nodes[qk].in.size() != 2) return false;
  const int xq = m.transpose_input(m.g.nodes[qk].in[0], qk, {0, 2, 1, 3});
  const int xk = m.transpose_input(m.g.nodes[qk].in[1], qk, {0, 2, 3, 1});
  // probabilities x v, then the heads transposed back.
  const int probs = sm.out[0];
  const int av = m.sole_consumer(probs);
  if (av < 0 || !m.is(av, "MatMul") || m.g.nodes[av].in.size() != 2 || m.g.nodes[av].in[0] != probs) return false;
  const int xv = m.transpose_input(m.g.nodes[av].in[1], av, {0, 2, 1, 3});
  const int context = m.g.nodes[av].out[0];
  const int ot = m.sole_consumer(context);
  if (xq < 0 || xk < 0 || xv < 0 || !m.is_transpose(ot, {0, 2, 1, 3})) return false;
  const int result = m.g.nodes[ot].out[0];
  for (int v : {xq, xk, xv, result})
    if (!m.float_4d(v)) return false;
  // q [B,T,H,D], k [B,Tk,H,D], v [B,Tk,H,Dv] (what AttentionOp::infer accepts).
  const Shape &q = m.shape(xq), &k = m.shape(xk), &v = m.shape(xv);
  if (k[0] != q[0] || v[0] != q[0] || k[2] != q[2] || v[2] != q[2] || k[3] != q[3] || v[1] != k[1]) return false;
  if (m.shape(result) != Shape{q[0], q[1], q[2], v[3]}) return false;
  if (mask >= 0) {
    const Shape& ms = m.shape(mask);
    if ((ms[0] != 1 && ms[0] != q[0]) || ms[1] != 1 || ms[2] != 1 || ms[3] != k[1]) return false;
  }
  const float scale = m.constant(scale_value)->data<float>()[0];
  const std::vector<int> gone{m.producers[m.g.nodes[qk].in[0]], m.producers[m.g.nodes[qk].in[1]],
                              m.producers[m.g.nodes[av].in[1]], qk, sc, av, ot};
  for (int r : gone) m.g.nodes[r].removed = true;
  if (mask_add >= 0) m.g.nodes[mask_add].removed = true;
  sm.op = make_attention_op(scale, divide);
  sm.op->where = sm.where + " (fused attention)";
  sm.op_type = "Attention";
  sm.domain = "medquant";
  sm.source = nullptr;
  sm.in = {xq, xk, xv};
  if (mask >= 0) sm.in.push_back(mask);
  sm.out = {result};
  return true;
}

// Kahn's algorithm over value ids, stable on the current order.
void resort(LoadedGraph& g) {
  std::vector<int> producer(g.names.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].out)
      if (v >= 0) producer[v] = static_cast<int>(i);
  std::vector<bool> done(g.nodes.size(), false);
  std::vector<GraphNode> sorted;
  sorted.reserve(g.nodes.size());
  bool progress = true;
  while (sorted.size() < g.nodes.size() && progress) {
    progress = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (done[i]) continue;
      bool ready = true;
      for (int v : g.nodes[i].in)
        if (v >= 0 && producer[v] >= 0 && !done[producer[v]]) ready = false;
      if (!ready) continue;
      done[i] = true;
      progress = true;
      sorted.push_back(std::move(g.nodes[i]));
    }
  }
  if (sorted.size() != g.nodes.size()) fail("{}: fusion produced a cycle (a medquant bug)", g.source);
  g.nodes = std::move(sorted);
}

}  // namespace

size_t fuse_graph(LoadedGraph& g, const Plan& p) {
  Matcher m(g, p);
  size_t count = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!g.nodes[i].removed && fuse_attention(m, static_cast<int>(i))) ++count;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!g.nodes[i].removed && fuse_layernorm(m, static_cast<int>(i))) ++count;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!g.nodes[i].removed && fuse_quantized_move(m, static_cast<int>(i))) ++count;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!g.nodes[i].removed && fuse_qdq(m, static_cast<int>(i))) ++count;
  // QDQ: activation DequantizeLinears left without readers go too.
  for (int dq : m.released) {
    if (g.nodes[dq].removed || m.outputs.count(g.nodes[dq].out[0])) continue;
    bool read = false;
    for (int c : m.consumers[g.nodes[dq].out[0]])
      read = read || (!g.nodes[c].removed && std::count(g.nodes[c].in.begin(), g.nodes[c].in.end(), g.nodes[dq].out[0]));
    if (!read) g.nodes[dq].removed = true;
  }
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!g.nodes[i].removed && fuse_quantize_dequantize(m, static_cast<int>(i))) ++count;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    GraphNode& n = g.nodes[i];
    if (n.removed) continue;
    auto* lin = dynamic_cast<FusableLinear*>(n.op.get());
    if (!lin || !lin->packed() || n.out.empty() || n.out[0] < 0) continue;
    // Only nodes whose plan step is static (known shapes) are fused.
    if (!p.values[n.out[0]].known || p.values[n.out[0]].kind == ValueKind::Constant) continue;
    const int ii = static_cast<int>(i);
    if (fuse_dequantize(m, ii, *lin)) ++count;
    if (fuse_bias(m, ii, *lin)) ++count;
    if (fuse_gelu(m, ii, *lin)) ++count;
  }
  std::erase_if(g.nodes, [](const GraphNode& n) { return n.removed; });
  if (count) resort(g);
  g.fused = true;
  g.fusions += count;
  return count;
}

}  // namespace medquant::runtime
