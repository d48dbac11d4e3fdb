#include "onnx/quantize_static.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/log.h"
#include "onnx/model_io.h"

namespace medquant::onnx {

std::set<std::string> static_default_op_types() {
  return {"ArgMax",  "Add",       "AveragePool", "BatchNormalization", "Clip",    "Concat",   "Conv",
          "CumSum",  "EmbedLayerNormalization",    "Flatten", "Gather",  "GatherElements",     "Gemm",
          "GlobalAveragePool", "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "MaxPool",
          "Mul",     "Relu",      "Reshape",     "Sigmoid", "Slice",   "Softmax",  "Split",   "Squeeze",
          "TopK",    "Transpose", "Unsqueeze",   "Where"};
}

std::set<std::string> static_unsupported_op_types() {
  return {"ConvTranspose", "Pad", "Resize"};
}

namespace {

bool is_float_type(int32_t t) { return t == kFloat || t == kFloat16; }

// The element type shape inference gave a value (value_info, graph io), 0 if none.
int32_t value_info_type(const Graph& g, const std::string& name) {
  const auto* vi = g.find_value_info(name);
  if (!vi || !vi->type().has_tensor_type()) return 0;
  return vi->type().tensor_type().elem_type();
}

}  // namespace

std::vector<std::string> tensors_to_calibrate(const Graph& graph, const std::set<std::string>& op_types) {
  std::set<std::string> out;
  for (const auto& n : graph.nodes) {
    if (!op_types.count(n.op_type)) continue;
    auto consider = [&](const std::string& name) {
      if (name.empty() || graph.find_initializer(name)) return;
      if (is_float_type(value_info_type(graph, name))) out.insert(name);
    };
    for (const auto& i : n.inputs) consider(i);
    for (const auto& o : n.outputs) consider(o);
  }
  return {out.begin(), out.end()};
}

namespace {

std::string raw_bytes(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

int32_t onnx_type(QuantType t) { return t == QuantType::QInt8 ? kInt8 : kUint8; }

// operators/direct_q8.py QDQDirect8BitOp (and QDQMaxPool).
const std::set<std::string> kDirect8Bit = {"AveragePool", "Flatten", "MaxPool", "Reshape", "Slice",
                                           "Squeeze",     "TopK",    "Transpose", "Unsqueeze"};

class StaticQuantizer {
 public:
  StaticQuantizer(Model& model, const std::map<std::string, TensorRange>& ranges,
                  const StaticQuantizeOptions& options)
      : model_(model), g_(model.graph), ranges_(ranges), opt_(options) {
    op_types_ = opt_.op_types.empty() ? static_default_op_types() : opt_.op_types;
    unsupported_ = static_unsupported_op_types();
  }

  QuantizeReport run() {
    where_ = model_.path.empty() ? std::string("model") : model_.path;
    const int64_t opset = model_.opset();
    if (opset < 10)
      fail("{}: ai.onnx opset {}: QDQ quantization needs opset 10 or newer (QuantizeLinear); convert the "
           "model first", where_, opset);
    if (opt_.per_channel && opset < 13)
      fail("{}: ai.onnx opset {}: per-channel QDQ needs opset 13 or newer (DequantizeLinear axis)", where_,
           opset);
    if (opt_.activation_type == QuantType::QInt8 && opt_.weight_type == QuantType::QUInt8)
      fail("activation type qint8 with weight type quint8 is not supported (as in ONNX Runtime)");
    for (const auto& t : g_.initializers()) report_.weight_bytes_before += t.bytes().size();
    for (const auto& n : g_.nodes)
      if (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
        core::log_warning("{}: the model already holds {} nodes; is it quantized already?", where_, n.op_type);
        break;
      }

    adjust_ranges();
    // quantize_model: let each selected node mark its tensors.
    for (size_t i = 0; i < g_.nodes.size(); ++i) mark_node(i);
    for (size_t i = g_.nodes.size(); i-- > 0;)  // remove_nodes: folded Relu/Clip
      if (removed_.count(i)) g_.nodes.erase(g_.nodes.begin() + static_cast<ptrdiff_t>(i));
    compute_weight_params();
    adjust_weight_scales_for_bias();
    emit_tensors();
    emit_biases();
    remove_unused_initializers(g_, where_);
    g_.sort_topologically();
    for (const auto& t : g_.initializers()) report_.weight_bytes_after += t.bytes().size();
    return std::move(report_);
  }

 private:
  enum class Kind { Activation, Weight };
  struct Marked {
    std::string name;
    Kind kind;
    std::optional<int64_t> axis;  // per-channel weights
    std::string provider = {};    // shares this tensor's scale and zero point (Direct8Bit ops)
  };
  struct Bias {
    std::string name, node, input, weight;
    float beta = 1.0f;
  };
  struct WeightParams {
    QuantType type;
    bool symmetric, reduce;
    std::optional<int64_t> axis;
    QuantizedWeight q;
  };

  // ---- marking (quantize_activation_tensor / quantize_weight_tensor*) ----

  bool quantizable(const std::string& name) const {
    if (name.empty()) return false;
    if (const Tensor* t = g_.find_initializer(name)) return is_float_type(t->type);
    return is_float_type(value_info_type(g_, name));
  }

  void mark(const std::string& name, Kind kind, std::optional<int64_t> axis = std::nullopt) {
    if (!quantizable(name)) return;
    if (axis) {  // quantize_weight_tensor_per_channel overwrites an earlier mark
      if (auto it = marked_index_.find(name); it != marked_index_.end()) {
        marked_[it->second] = {name, kind, axis};
        return;
      }
    } else if (marked_index_.count(name)) {
      return;
    }
    marked_index_[name] = marked_.size();
    marked_.push_back({name, kind, axis});
  }

  // quantize_output_same_as_input: replaces any earlier mark.
  void mark_shared(const std::string& output, const std::string& input) {
    if (!quantizable(output)) return;
    Marked m{output, Kind::Activation, std::nullopt, input};
    if (auto it = marked_index_.find(output); it != marked_index_.end()) {
      marked_[it->second] = m;
      return;
    }
    marked_index_[output] = marked_.size();
    marked_.push_back(m);
  }

  bool is_marked(const std::string& name) const { return marked_index_.count(name) || bias_index_.count(name); }

  // is_tensor_per_channel: initializers only, when --per-channel, axis in range.
  std::optional<int64_t> per_channel_axis(const std::string& name, int64_t axis) const {
    const Tensor* t = g_.find_initializer(name);
    if (!t || !opt_.per_channel) return std::nullopt;
    const int64_t rank = static_cast<int64_t>(t->dims.size());
    const int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
      core::log_verbose("{}: axis {} is out of range for weight '{}' of rank {}; quantized per tensor", where_,
                        axis, name, rank);
      return std::nullopt;
    }
    return a;
  }

  void mark_weight(const std::string& name, int64_t default_axis) {
    if (auto axis = per_channel_axis(name, default_axis)) mark(name, Kind::Weight, axis);
    else mark(name, Kind::Weight);
  }

  bool selected(const Node& n, std::string& why) const {
    if (!opt_.nodes_to_quantize.empty() && !opt_.nodes_to_quantize.count(n.name)) {
      why = "not in --include";
      return false;
    }
    if (!op_types_.count(n.op_type)) {
      why = "op type not selected (--op-types)";
      return false;
    }
    if (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear") {
      why = "already a quantization node";
      return false;
    }
    if (opt_.nodes_to_exclude.count(n.name)) {
      why = "excluded (--exclude)";
      return false;
    }
    return true;
  }

  void mark_node(size_t index) {
    const Node& n = g_.nodes[index];
    const std::string label = n.describe(index);
    std::string why;
    if (!selected(n, why)) {
      if (op_types_.count(n.op_type)) report_.entries.push_back({label, n.op_type, false, why});
      else if (opt_.op_types.empty() && unsupported_.count(n.op_type))
        report_.entries.push_back({label, n.op_type, false, "in ORT's default list, no QDQ rule in medquant yet"});
      return;
    }
    for (const auto& in : n.inputs)
      if (const Tensor* t = g_.find_initializer(in); t && t->type == kFloat16)
        return report_.entries.push_back({label, n.op_type, false, "float16 initializer (not supported yet)"});
    if (n.op_type == "MatMul") {
      for (const auto& name : n.inputs) {
        if (g_.find_initializer(name)) mark_weight(name, 1);
        else mark(name, Kind::Activation);
      }
      for (const auto& name : n.outputs) mark(name, Kind::Activation);
    } else if (n.op_type == "Conv" || n.op_type == "Gemm") {
      const bool gemm = n.op_type == "Gemm";
      mark(n.inputs[0], Kind::Activation);
      mark(n.outputs[0], Kind::Activation);
      mark_weight(n.inputs[1], gemm && n.attribute_int("transB", 0) > 0 ? 0 : (gemm ? 1 : 0));
      if (n.inputs.size() == 3 && !n.inputs[2].empty()) {
        if (!gemm || g_.find_initializer(n.inputs[2])) add_bias(index, n.inputs[2]);
        else core::log_warning("{}: bias of Gemm {} is not constant; kept in float", where_, label);
      }
    } else if (n.op_type == "LayerNormalization" || n.op_type == "BatchNormalization" ||
               n.op_type == "InstanceNormalization") {
      // QDQNormalization: input, scale as a weight (per-channel axis 1 when it
      // has one), the bias as int32 like Conv's, every output.
      mark(n.inputs[0], Kind::Activation);
      if (n.inputs.size() > 1) {
        if (g_.find_initializer(n.inputs[1])) mark_weight(n.inputs[1], 1);
        else mark(n.inputs[1], Kind::Activation);
      }
      if (n.inputs.size() > 2 && !n.inputs[2].empty()) add_bias(index, n.inputs[2]);
      for (const auto& name : n.outputs) mark(name, Kind::Activation);
    } else if (n.op_type == "Gather" || n.op_type == "GatherElements") {
      // QDQGather: a float table is quantized with the activation type and the
      // output shares its parameters; else the output shares those of a quantized input.
      const Tensor* table = g_.find_initializer(n.inputs[0]);
      if (table && is_float_type(table->type)) {
        mark(n.inputs[0], Kind::Activation);
        mark_shared(n.outputs[0], n.inputs[0]);
      } else if (is_marked(n.inputs[0])) {
        mark_shared(n.outputs[0], n.inputs[0]);
      } else {
        return report_.entries.push_back({label, n.op_type, false, "input not quantized"});
      }
    } else if (n.op_type == "Relu" || n.op_type == "Clip") {
      // QDQRemovableActivation: with asymmetric activations the producer's
      // Q/DQ pair does the clipping, so the node goes when it can.
      if (!is_marked(n.inputs[0]))
        return report_.entries.push_back({label, n.op_type, false, "input not quantized"});
      const std::string up = n.inputs[0], out = n.outputs[0];
      if (!opt_.activation_symmetric && try_replacing_upstream_output(up, out)) {
        removed_.insert(index);
        mark(out, Kind::Activation);
        return report_.entries.push_back({label, n.op_type, true, "removed: the producer's Q/DQ clips"});
      }
      mark(up, Kind::Activation);
      mark(out, Kind::Activation);
    } else if (n.op_type == "Where") {
      // QDQWhere: the output, when both value inputs are quantized.
      if (n.inputs.size() < 3 || !is_marked(n.inputs[1]) || !is_marked(n.inputs[2]))
        return report_.entries.push_back({label, n.op_type, false, "value inputs not quantized"});
      for (const auto& name : n.outputs) mark(name, Kind::Activation);
    } else if (n.op_type == "Split") {
      // QDQSplit: the input, and every output with the input's parameters.
      if (!is_marked(n.inputs[0])) mark(n.inputs[0], Kind::Activation);
      for (const auto& name : n.outputs) mark_shared(name, n.inputs[0]);
    } else if (kDirect8Bit.count(n.op_type)) {
      // QDQDirect8BitOp: the output shares the input's parameters, when the
      // input is quantized already (MaxPool from opset 12).
      if (n.op_type == "MaxPool" && model_.opset() < 12)
        return report_.entries.push_back({label, n.op_type, false, "MaxPool before opset 12"});
      if (!is_marked(n.inputs[0]))
        return report_.entries.push_back({label, n.op_type, false, "input not quantized"});
      mark_shared(n.outputs[0], n.inputs[0]);
    } else {
      // QDQOperatorBase: every input and output.
      for (const auto& name : n.inputs) mark(name, Kind::Activation);
      for (const auto& name : n.outputs) mark(name, Kind::Activation);
      if (n.op_type == "Softmax") softmax_outputs_.insert(n.outputs[0]);  // adjust_tensor_ranges
    }
    report_.entries.push_back({label, n.op_type, true, "QDQ"});
  }

  // try_replacing_upstream_output: the producer of `up` writes `out` directly.
  bool try_replacing_upstream_output(const std::string& up, const std::string& out) {
    if (!ranges_.count(out) || !ranges_.count(up)) return false;
    const auto users = g_.consumers();
    auto it = users.find(up);
    if (it == users.end() || it->second.size() != 1 || g_.is_graph_output(up) || g_.is_graph_input(up))
      return false;
    for (auto& node : g_.nodes)
      for (auto& o : node.outputs)
        if (o == up) o = out;
    if (auto m = marked_index_.find(up); m != marked_index_.end()) {
      marked_.erase(marked_.begin() + static_cast<ptrdiff_t>(m->second));
      marked_index_.clear();
      for (size_t i = 0; i < marked_.size(); ++i) marked_index_[marked_[i].name] = i;
    }
    return true;
  }

  // adjust_tensor_ranges: a Relu/Clip input with no other reader takes the output's range.
  void adjust_ranges() {
    const auto users = g_.consumers();
    for (const auto& n : g_.nodes) {
      if (n.op_type != "Relu" && n.op_type != "Clip") continue;
      std::string why;
      if (!selected(n, why)) continue;
      auto it = users.find(n.inputs[0]);
      if (it == users.end() || it->second.size() != 1) continue;
      if (!ranges_.count(n.inputs[0]) || !ranges_.count(n.outputs[0])) continue;
      range_override_[n.inputs[0]] = ranges_.at(n.outputs[0]);
    }
  }

  void add_bias(size_t index, const std::string& bias) {
    Node& n = g_.nodes[index];
    const Tensor* b = g_.find_initializer(bias);
    if (!b) {
      core::log_warning("{}: expected bias '{}' of {} to be an initializer; kept in float", where_, bias,
                        n.describe(index));
      return;
    }
    if (b->type != kFloat) return;
    if (bias_index_.count(bias))
      fail("{}: bias '{}' is shared by several nodes; medquant does not duplicate shared biases yet "
           "(exclude one of the nodes with --exclude)", where_, bias);
    float beta = 1.0f;
    if (n.op_type == "Gemm") {
      beta = n.attribute_float("beta", 1.0f);
      if (n.attribute("beta")) {  // set_default_beta: the bias now carries beta
        for (auto& a : n.attributes)
          if (a.name() == "beta") a.set_f(1.0f);
      }
    }
    bias_index_[bias] = biases_.size();
    biases_.push_back({bias, n.name, n.inputs[0], n.inputs[1], beta});
  }

  // ---- parameters ----

  bool weight_symmetric(QuantType t) const {
    return opt_.weight_symmetric >= 0 ? opt_.weight_symmetric != 0 : t == QuantType::QInt8;
  }

  // calc_quant_params for an activation (reduce_range never applies here).
  std::optional<QuantParams> activation_params(const std::string& name) const {
    TensorRange r;
    if (softmax_outputs_.count(name)) {
      r = {0.0f, 1.0f};
    } else if (auto o = range_override_.find(name); o != range_override_.end()) {
      r = o->second;
    } else {
      auto it = ranges_.find(name);
      if (it == ranges_.end()) return std::nullopt;
      r = it->second;
    }
    int32_t qmin, qmax;
    quant_range(opt_.activation_type, false, opt_.activation_symmetric, qmin, qmax);
    return compute_scale_zp(r.lo, r.hi, qmin, qmax, opt_.activation_symmetric);
  }

  // _calc_initializer_quant_params
  void compute_weight_params() {
    for (const auto& m : marked_) {
      const Tensor* t = g_.find_initializer(m.name);
      if (!t) continue;
      const bool is_weight = m.kind == Kind::Weight;
      WeightParams p;
      p.type = is_weight ? opt_.weight_type : opt_.activation_type;
      // Per-channel initializers are always symmetric (one zero point for all channels).
      p.symmetric = m.axis.has_value() || (is_weight ? weight_symmetric(p.type) : opt_.activation_symmetric);
      p.reduce = opt_.reduce_range;
      p.axis = m.axis;
      p.q = quantize_weight(*t, p.type, p.symmetric, p.reduce, p.axis, where_);
      weights_.emplace(m.name, std::move(p));
    }
  }

  // _adjust_weight_quant_params_for_bias_tensors: a bias scale so small that
  // the int32 bias would overflow enlarges the weight's scale.
  void adjust_weight_scales_for_bias() {
    for (const auto& b : biases_) {
      if (!marked_index_.count(b.input) || g_.find_initializer(b.input)) continue;
      const auto in = activation_params(b.input);
      auto wit = weights_.find(b.weight);
      if (!in || wit == weights_.end()) continue;
      WeightParams& w = wit->second;
      if (w.type != QuantType::QInt8) continue;
      if (std::any_of(w.q.zero_points.begin(), w.q.zero_points.end(), [](int32_t z) { return z != 0; }))
        continue;
      const std::vector<float> bias = g_.find_initializer(b.name)->to_floats();
      constexpr double kEpsilon = 1.0001;
      const double qrange = static_cast<double>(std::numeric_limits<int32_t>::max()) -
                            static_cast<double>(std::numeric_limits<int32_t>::min() + 1);
      const double in_scale = in->scale;
      bool changed = false;
      auto adjust = [&](float& scale, double absmax) {
        const double smallest = kEpsilon * (2.0 * absmax) / qrange;
        const double candidate = in_scale * static_cast<double>(scale);
        if (candidate < smallest && candidate > 0.0) {
          scale = static_cast<float>(static_cast<double>(scale) * (smallest / candidate));
          changed = true;
        }
      };
      if (!w.axis) {
        float lo = 0, hi = 0;
        for (float v : bias) lo = std::min(lo, v), hi = std::max(hi, v);
        adjust(w.q.scales[0], std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi))));
      } else {
        for (size_t c = 0; c < w.q.scales.size() && c < bias.size(); ++c)
          adjust(w.q.scales[c], std::fabs(static_cast<double>(bias[c])));
      }
      if (changed) {
        core::log_verbose("{}: scale of weight '{}' enlarged so that bias '{}' fits int32", where_, b.weight, b.name);
        requantize(b.weight, w);
      }
    }
  }

  // Quantizes a weight again with the scales and zero points in `w`.
  void requantize(const std::string& name, WeightParams& w) {
    const Tensor* t = g_.find_initializer(name);
    const std::vector<float> data = t->to_floats();
    size_t channels = 1, inner = data.size(), outer = 1;
    if (w.axis) {
      const size_t ax = static_cast<size_t>(*w.axis);
      channels = static_cast<size_t>(t->dims[ax]);
      inner = 1;
      for (size_t i = ax + 1; i < t->dims.size(); ++i) inner *= static_cast<size_t>(t->dims[i]);
      outer = data.size() / std::max<size_t>(1, channels * inner);
    }
    auto* out = reinterpret_cast<uint8_t*>(w.q.bytes.data());
    for (size_t o = 0; o < outer; ++o)
      for (size_t c = 0; c < channels; ++c) {
        const size_t at = (o * channels + c) * inner;
        quantize_with_params(data.data() + at, inner, {w.q.scales[c], w.q.zero_points[c]}, w.type, out + at);
      }
  }

  // ---- graph edits ----

  void replace_input_everywhere(const std::string& from, const std::string& to) {
    for (auto& n : g_.nodes)
      for (auto& i : n.inputs)
        if (i == from) i = to;
  }

  void add_scale_zp(const std::string& base, int32_t scale_type, const std::vector<float>& scales,
                    int32_t zp_type, const std::vector<int32_t>& zps, bool per_channel) {
    std::vector<int64_t> dims;
    if (per_channel) dims = {static_cast<int64_t>(scales.size())};
    std::string zp_bytes(zps.size(), '\0');
    for (size_t i = 0; i < zps.size(); ++i) zp_bytes[i] = static_cast<char>(zps[i]);
    g_.add_initializer(Tensor(base + "_zero_point", zp_type, dims, std::move(zp_bytes), Tensor::Storage::Typed));
    g_.add_initializer(Tensor(base + "_scale", scale_type, dims, raw_bytes(scales.data(), scales.size() * 4),
                              Tensor::Storage::Typed));
  }

  // _quantize_normal_tensors, in marking order.
  void emit_tensors() {
    for (const auto& m : marked_) {
      if (const Tensor* t = g_.find_initializer(m.name)) {
        WeightParams& w = weights_.at(m.name);
        const Tensor weight = *t;  // `t` moves when initializers grow
        const std::string dq_out = m.name + "_DequantizeLinear_Output";
        replace_input_everywhere(m.name, dq_out);
        add_quantized_weight(g_, weight, onnx_type(w.type), std::move(w.q), w.axis.has_value(),
                             m.name + "_quantized");
        Node dq = make_node("DequantizeLinear",
                            {m.name + "_quantized", m.name + "_scale", m.name + "_zero_point"}, {dq_out},
                            m.name + "_DequantizeLinear");
        if (w.axis) dq.set_attribute_int("axis", *w.axis);
        g_.nodes.push_back(std::move(dq));
        params_of_[m.name] = {m.name + "_scale", m.name + "_zero_point"};
        continue;
      }
      if (!m.provider.empty()) continue;  // _quantize_sharing_param_tensors, below
      const auto p = activation_params(m.name);
      if (!p)
        fail("{}: no calibrated range for '{}'; in static mode the inputs and outputs of quantized nodes "
             "need one (a medquant bug if it was calibrated)", where_, m.name);
      add_scale_zp(m.name, kFloat, {p->scale}, onnx_type(opt_.activation_type), {p->zero_point}, false);
      add_qdq_pair(m.name, m.name + "_scale", m.name + "_zero_point");
    }
    // Shared parameters, in rounds: a chain (Reshape -> Transpose) resolves one link per round.
    std::vector<const Marked*> pending;
    for (const auto& m : marked_)
      if (!m.provider.empty()) pending.push_back(&m);
    while (!pending.empty()) {
      std::vector<const Marked*> next;
      for (const Marked* m : pending) {
        auto it = params_of_.find(m->provider);
        if (it == params_of_.end()) {
          next.push_back(m);
          continue;
        }
        const auto [scale, zp] = it->second;
        add_qdq_pair(m->name, scale, zp);
      }
      if (next.size() == pending.size())
        fail("{}: '{}' shares the quantization parameters of '{}', which is never quantized", where_,
             next.front()->name, next.front()->provider);
      pending = std::move(next);
    }
  }

  // _add_qdq_pair_for_activation
  void add_qdq_pair(const std::string& name, const std::string& scale, const std::string& zp) {
    std::string q_in = name, dq_out = name + "_DequantizeLinear_Output";
    if (g_.is_graph_output(name)) {
      q_in = name + "_QuantizeLinear_Input";
      dq_out = name;
      for (auto& n : g_.nodes)
        for (auto& o : n.outputs)
          if (o == name) o = q_in;
    } else {
      replace_input_everywhere(name, dq_out);
    }
    const std::string q_out = name + "_QuantizeLinear_Output";
    g_.nodes.push_back(make_node("QuantizeLinear", {q_in, scale, zp}, {q_out}, name + "_QuantizeLinear"));
    g_.nodes.push_back(make_node("DequantizeLinear", {q_out, scale, zp}, {dq_out}, name + "_DequantizeLinear"));
    params_of_[name] = {scale, zp};
  }

  // _quantize_bias_tensors: int32, zero point 0, scale input_scale * weight_scale * beta.
  void emit_biases() {
    for (const auto& b : biases_) {
      // _get_tensor_quantization_scale: the scales the Q/DQ pairs use (an input
      // sharing its producer's parameters has the producer's scale).
      auto in = params_of_.find(b.input);
      auto wq = params_of_.find(b.weight);
      if (in == params_of_.end() || wq == params_of_.end())
        fail("{}: cannot quantize bias '{}': its input '{}' or weight '{}' has no quantization scale", where_,
             b.name, b.input, b.weight);
      const std::vector<float> in_scale = g_.find_initializer(in->second.first)->to_floats();
      const std::vector<float> wscales = g_.find_initializer(wq->second.first)->to_floats();
      const Tensor* bt = g_.find_initializer(b.name);
      std::vector<float> data = bt->to_floats();
      const std::vector<int64_t> dims = bt->dims;
      float beta = b.beta;
      if (beta == 0.0f) {
        std::fill(data.begin(), data.end(), 0.0f);
        beta = 1.0f;
      }
      std::vector<float> scales(wscales.size());
      for (size_t i = 0; i < scales.size(); ++i) scales[i] = in_scale[0] * wscales[i] * beta;  // float32, as numpy
      std::vector<int32_t> q(data.size());
      bool clipped = false;
      for (size_t i = 0; i < data.size(); ++i) {
        const float s = scales.size() == 1 ? scales[0] : scales[std::min(i, scales.size() - 1)];
        double v = std::nearbyint(static_cast<double>(data[i]) / static_cast<double>(s));
        if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) clipped = true;
        v = std::clamp(v, static_cast<double>(std::numeric_limits<int32_t>::min()),
                       static_cast<double>(std::numeric_limits<int32_t>::max()));
        q[i] = static_cast<int32_t>(v);
      }
      if (clipped) core::log_warning("{}: quantized bias '{}' exceeds the int32 range", where_, b.name);
      const std::string qn = b.name + "_quantized";
      g_.remove_initializer(b.name);
      g_.add_initializer(Tensor(qn, kInt32, dims, raw_bytes(q.data(), q.size() * 4)));
      // numpy_helper.from_array(bias_scale.reshape(-1)): raw, shape [n] even for one scale.
      g_.add_initializer(Tensor(qn + "_scale", kFloat, {static_cast<int64_t>(scales.size())},
                                raw_bytes(scales.data(), scales.size() * 4)));
      const bool per_channel = scales.size() > 1;
      if (per_channel) {
        std::vector<int32_t> zeros(scales.size(), 0);
        g_.add_initializer(Tensor(qn + "_zero_point", kInt32, {static_cast<int64_t>(zeros.size())},
                                  raw_bytes(zeros.data(), zeros.size() * 4)));
      } else {
        const int32_t zero = 0;
        g_.add_initializer(Tensor(qn + "_zero_point", kInt32, {}, raw_bytes(&zero, 4), Tensor::Storage::Typed));
      }
      Node dq = make_node("DequantizeLinear", {qn, qn + "_scale", qn + "_zero_point"}, {b.name},
                          b.name + "_DequantizeLinear");
      if (per_channel) dq.set_attribute_int("axis", 0);
      g_.nodes.push_back(std::move(dq));
    }
  }

  Model& model_;
  Graph& g_;
  const std::map<std::string, TensorRange>& ranges_;
  const StaticQuantizeOptions& opt_;
  std::set<std::string> op_types_, unsupported_;
  std::string where_;
  std::vector<Marked> marked_;
  std::unordered_map<std::string, size_t> marked_index_;
  std::vector<Bias> biases_;
  std::unordered_map<std::string, size_t> bias_index_;
  std::unordered_set<std::string> softmax_outputs_;
  std::unordered_map<std::string, TensorRange> range_override_;
  std::set<size_t> removed_;  // node indices of folded Relu/Clip
  std::unordered_map<std::string, WeightParams> weights_;
  // quantized_value_map: the scale and zero point names of every quantized tensor.
  std::unordered_map<std::string, std::pair<std::string, std::string>> params_of_;
  QuantizeReport report_;
};

}  // namespace

QuantizeReport quantize_static(Model& model, const std::map<std::string, TensorRange>& ranges,
                               const StaticQuantizeOptions& options) {
  const auto unsupported = static_unsupported_op_types();
  for (const auto& op : options.op_types)
    if (unsupported.count(op))
      fail("--op-types: {} has its own QDQ rules in ONNX Runtime that medquant does not reproduce yet "
           "(supported: MatMul, Conv, Gemm and ops quantized on every input and output such as Add, Mul, "
           "Softmax)", op);
  return StaticQuantizer(model, ranges, options).run();
}

}  // namespace medquant::onnx
