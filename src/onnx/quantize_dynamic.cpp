#include "onnx/quantize_dynamic.h"

#include <algorithm>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "onnx/model_io.h"
#include "onnx/passes.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif

namespace medquant::onnx {

std::set<std::string> default_op_types() { return {"MatMul"}; }
std::set<std::string> supported_op_types() { return {"MatMul", "Conv", "Gather", "Transpose"}; }

size_t QuantizeReport::quantized_count() const {
  return static_cast<size_t>(
      std::count_if(entries.begin(), entries.end(), [](const Entry& e) { return e.quantized; }));
}

// ---- arithmetic (quant_utils.py) ----

void quant_range(QuantType type, bool reduce_range, bool symmetric, int32_t& qmin, int32_t& qmax) {
  const bool u8 = type == QuantType::QUInt8;
  if (reduce_range) {
    qmin = u8 ? 0 : -64;
    qmax = u8 ? 127 : 64;
  } else if (symmetric && !u8) {
    qmin = -127;
    qmax = 127;
  } else {
    qmin = u8 ? 0 : -128;
    qmax = u8 ? 255 : 127;
  }
}

namespace {

// numpy casts to the zero point's dtype (int8/uint8 0-d arrays) wrap around.
int32_t wrap(int32_t v, bool u8) {
  return u8 ? static_cast<int32_t>(static_cast<uint8_t>(v)) : static_cast<int32_t>(static_cast<int8_t>(v));
}

}  // namespace

QuantParams compute_scale_zp(float rmin, float rmax, int32_t qmin, int32_t qmax, bool symmetric) {
  const bool u8 = qmin >= 0;
  rmin = std::min(rmin, 0.0f);
  rmax = std::max(rmax, 0.0f);
  if (symmetric) {
    const float absmax = std::max(std::fabs(rmin), std::fabs(rmax));
    rmin = -absmax;
    rmax = absmax;
  }
  // ORT promotes to float64 before subtracting, then stores the scale as float32.
  const double dr = static_cast<double>(rmax) - static_cast<double>(rmin);
  const double dq = static_cast<double>(qmax) - static_cast<double>(qmin);
  const double scale = dr / dq;
  if (scale < static_cast<double>(FLT_MIN)) return {1.0f, 0};
  QuantParams p;
  if (symmetric) {
    // (qmin + qmax) is computed in the zero point's integer type by numpy.
    const int32_t sum = wrap(qmin + qmax, u8);
    p.zero_point = wrap(static_cast<int32_t>(std::nearbyint(static_cast<double>(sum) / 2.0)), u8);
  } else {
    p.zero_point = wrap(
        static_cast<int32_t>(std::nearbyint(static_cast<double>(qmin) - static_cast<double>(rmin) / scale)),
        u8);
  }
  p.scale = static_cast<float>(scale);
  return p;
}

namespace {

// min, max, and whether every value is finite (x - x is 0 only for finite x).
struct Range {
  float lo, hi;
  bool finite;
};

Range value_range(const float* x, size_t n) {
  Range r{x[0], x[0], true};
  size_t i = 0;
#if defined(__SSE2__)
  // SSE2 is part of x86-64 itself: no target flags needed. Four lanes of
  // min/max are exact in any order, unlike a float sum.
  if (n >= 4) {
    __m128 lo = _mm_loadu_ps(x), hi = lo, probe = _mm_setzero_ps();
    for (; i + 4 <= n; i += 4) {
      const __m128 v = _mm_loadu_ps(x + i);
      lo = _mm_min_ps(v, lo);  // a NaN in v keeps lo; the probe reports it
      hi = _mm_max_ps(v, hi);
      probe = _mm_add_ps(probe, _mm_sub_ps(v, v));
    }
    alignas(16) float l[4], h[4], p[4];
    _mm_store_ps(l, lo);
    _mm_store_ps(h, hi);
    _mm_store_ps(p, probe);
    for (int k = 0; k < 4; ++k) {
      r.lo = std::min(r.lo, l[k]);
      r.hi = std::max(r.hi, h[k]);
      r.finite = r.finite && p[k] == 0.0f;
    }
  }
#endif
  for (; i < n; ++i) {
    r.lo = std::min(r.lo, x[i]);
    r.hi = std::max(r.hi, x[i]);
    r.finite = r.finite && (x[i] - x[i]) == 0.0f;
  }
  r.finite = r.finite && (x[0] - x[0]) == 0.0f;
  return r;
}

}  // namespace

namespace {

// q[i] = clip(round_half_even(x[i] / scale[i * step]) + zp[i * step]) where
// step is 0 (one scale for all) or 1 (a scale per element: a row of a
// per-column quantized matrix).
template <bool kPerElement>
void quantize_kernel(const float* x, size_t n, const float* scale, const float* zp, QuantType type,
                     uint8_t* out) {
  const bool u8 = type == QuantType::QUInt8;
  const float lo = u8 ? 0.0f : -128.0f, hi = u8 ? 255.0f : 127.0f;
  size_t i = 0;
#if defined(__SSE2__)
  // Round half to even without SSE4.1's roundps: adding and subtracting
  // 1.5 * 2^23 leaves the nearest integer (ties to even) for |v| < 2^22;
  // larger floats are integers already. Same result as numpy.round.
  const __m128 magic = _mm_set1_ps(12582912.0f), limit = _mm_set1_ps(4194304.0f),
               abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)), vlo = _mm_set1_ps(lo),
               vhi = _mm_set1_ps(hi);
  const __m128 scale1 = _mm_set1_ps(scale[0]), zp1 = _mm_set1_ps(zp[0]);
  auto one = [&](size_t k) {
    const __m128 sc = kPerElement ? _mm_loadu_ps(scale + k) : scale1;
    const __m128 z = kPerElement ? _mm_loadu_ps(zp + k) : zp1;
    __m128 v = _mm_div_ps(_mm_loadu_ps(x + k), sc);
    const __m128 rounded = _mm_sub_ps(_mm_add_ps(v, magic), magic);
    const __m128 small = _mm_cmplt_ps(_mm_and_ps(v, abs_mask), limit);
    v = _mm_or_ps(_mm_and_ps(small, rounded), _mm_andnot_ps(small, v));
    v = _mm_min_ps(_mm_max_ps(_mm_add_ps(v, z), vlo), vhi);
    return _mm_cvttps_epi32(v);  // exact: v is integral
  };
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_packs_epi32(one(i), one(i + 4));
    const __m128i b = _mm_packs_epi32(one(i + 8), one(i + 12));
    const __m128i bytes = u8 ? _mm_packus_epi16(a, b) : _mm_packs_epi16(a, b);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), bytes);
  }
#endif
  for (; i < n; ++i) {
    const size_t k = kPerElement ? i : 0;
    float q = std::nearbyint(x[i] / scale[k]) + zp[k];
    q = std::min(std::max(q, lo), hi);
    out[i] = u8 ? static_cast<uint8_t>(static_cast<int32_t>(q))
                : static_cast<uint8_t>(static_cast<int8_t>(static_cast<int32_t>(q)));
  }
}

}  // namespace

void quantize_with_params(const float* x, size_t n, QuantParams p, QuantType type, uint8_t* out) {
  const float zp = static_cast<float>(p.zero_point);
  quantize_kernel<false>(x, n, &p.scale, &zp, type, out);
}

QuantParams quantize_values(const float* values, size_t count, QuantType type, bool symmetric,
                            bool reduce_range, uint8_t* out) {
  if (count == 0) return {1.0f, 0};
  const Range r = value_range(values, count);
  int32_t qmin, qmax;
  quant_range(type, reduce_range, symmetric, qmin, qmax);
  QuantParams p = compute_scale_zp(r.lo, r.hi, qmin, qmax, symmetric);
  quantize_with_params(values, count, p, type, out);
  return p;
}

// ---- weight quantization, shared with the static (QDQ) quantizer ----

namespace {

// The weight as float32: its own bytes when they already are (no copy).
struct Floats {
  std::vector<float> owned;
  const float* data = nullptr;
  size_t size = 0;
};

Floats float_view(const Tensor& t) {
  Floats f;
  f.size = static_cast<size_t>(t.element_count());
  const auto b = t.bytes();
  if (t.type == kFloat && b.size() == f.size * 4 && reinterpret_cast<uintptr_t>(b.data()) % 4 == 0) {
    f.data = reinterpret_cast<const float*>(b.data());
  } else {
    f.owned = t.to_floats();
    f.data = f.owned.data();
  }
  return f;
}

[[noreturn]] void non_finite(const std::string& where, const std::string& name) {
  fail("{}: initializer '{}' holds NaN or infinity; cannot quantize it", where, name);
}

// Per-tensor quantization of a big array: min/max and rounding in chunks.
QuantParams parallel_quantize(const std::string& where, const std::string& name, const float* x, size_t n,
                              QuantType type, bool symmetric, bool reduce, uint8_t* out) {
    if (n == 0) return {1.0f, 0};
    auto& pool = core::default_pool();
    const bool small = n < (size_t{1} << 16);  // not worth waking the pool
    std::vector<Range> ranges(pool.size(), Range{x[0], x[0], true});
    std::atomic<size_t> slot{0};
    if (small) ranges[0] = value_range(x, n);
    else pool.parallel_chunks(0, n, [&](size_t b, size_t e) { ranges[slot++] = value_range(x + b, e - b); });
    Range r = ranges[0];
    for (const auto& c : ranges) {
      r.lo = std::min(r.lo, c.lo);
      r.hi = std::max(r.hi, c.hi);
      r.finite = r.finite && c.finite;
    }
    if (!r.finite) non_finite(where, name);
    int32_t qmin, qmax;
    quant_range(type, reduce, symmetric, qmin, qmax);
    QuantParams p = compute_scale_zp(r.lo, r.hi, qmin, qmax, symmetric);
    if (small) quantize_with_params(x, n, p, type, out);
    else pool.parallel_chunks(0, n, [&](size_t b, size_t e) { quantize_with_params(x + b, e - b, p, type, out + b); });
    return p;
}

std::string float_bytes(const std::vector<float>& v) {
  std::string b(v.size() * 4, '\0');
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

QuantizedWeight quantize_weight(const Tensor& w, QuantType type, bool symmetric, bool reduce,
                                std::optional<int64_t> axis, const std::string& where) {
  const std::string name = w.name;
  QuantizedWeight out;
  if (!axis) {
    const Floats data = float_view(w);
    out.bytes.assign(data.size, '\0');
    QuantParams p = parallel_quantize(where, name, data.data, data.size, type, symmetric, reduce,
                                      reinterpret_cast<uint8_t*>(out.bytes.data()));
    out.scales = {p.scale};
    out.zero_points = {p.zero_point};
    return out;
  }
  const int64_t rank = static_cast<int64_t>(w.dims.size());
  const int64_t ax = *axis < 0 ? *axis + rank : *axis;
  if (ax < 0 || ax >= rank)
    fail("{}: weight '{}' has a per-channel axis {} that is out of bounds for rank {}", where, name,
         *axis, rank);
  const Floats floats = float_view(w);
  const float* data = floats.data;
  const size_t channels = static_cast<size_t>(w.dims[static_cast<size_t>(ax)]);
  size_t inner = 1, outer = 1;
  for (int64_t i = ax + 1; i < rank; ++i) inner *= static_cast<size_t>(w.dims[static_cast<size_t>(i)]);
  for (int64_t i = 0; i < ax; ++i) outer *= static_cast<size_t>(w.dims[static_cast<size_t>(i)]);
  std::string q(floats.size, '\0');
  auto* qp = reinterpret_cast<uint8_t*>(q.data());
  std::atomic<bool> finite{true};
  std::vector<float> scales(channels);
  std::vector<int32_t> zps(channels);
  if (inner == 1 && outer > 0) {
    // The channel is the last axis (MatMul's output columns): walk rows,
    // keeping per-column ranges, instead of gathering strided columns.
    int32_t qmin, qmax;
    quant_range(type, reduce, symmetric, qmin, qmax);
    std::vector<float> zp_f(channels);
    core::default_pool().parallel_chunks(0, channels, [&](size_t cb, size_t ce) {
      const size_t w = ce - cb;
      std::vector<float> lo(data + cb, data + ce), hi(lo), probe(w, 0.0f);
      for (size_t r = 0; r < outer; ++r) {
        const float* row = data + r * channels + cb;
        for (size_t j = 0; j < w; ++j) {
          const float v = row[j];
          lo[j] = v < lo[j] ? v : lo[j];
          hi[j] = v > hi[j] ? v : hi[j];
          probe[j] += v - v;  // per column, in row order: no reassociation
        }
      }
      for (size_t j = 0; j < w; ++j) {
        if (probe[j] != 0.0f || (data[cb + j] - data[cb + j]) != 0.0f) finite = false;
        const QuantParams p = compute_scale_zp(lo[j], hi[j], qmin, qmax, symmetric);
        scales[cb + j] = p.scale;
        zps[cb + j] = p.zero_point;
        zp_f[cb + j] = static_cast<float>(p.zero_point);
      }
      for (size_t r = 0; r < outer; ++r)
        quantize_kernel<true>(data + r * channels + cb, w, scales.data() + cb, zp_f.data() + cb, type,
                              qp + r * channels + cb);
    });
  } else {
    core::default_pool().parallel_chunks(0, channels, [&](size_t cb, size_t ce) {
      std::vector<float> buf(outer * inner);
      std::vector<uint8_t> qbuf(outer * inner);
      for (size_t c = cb; c < ce; ++c) {
        // weights.take(c, axis): gather the channel, quantize, scatter back.
        for (size_t o = 0; o < outer; ++o)
          std::memcpy(&buf[o * inner], &data[(o * channels + c) * inner], inner * sizeof(float));
        if (!buf.empty() && !value_range(buf.data(), buf.size()).finite) finite = false;
        QuantParams p = quantize_values(buf.data(), buf.size(), type, symmetric, reduce, qbuf.data());
        for (size_t o = 0; o < outer; ++o)
          std::memcpy(qp + (o * channels + c) * inner, &qbuf[o * inner], inner);
        scales[c] = p.scale;
        zps[c] = p.zero_point;
      }
    });
  }
  if (!finite) non_finite(where, name);
  out.bytes = std::move(q);
  out.scales = std::move(scales);
  out.zero_points = std::move(zps);
  return out;
}

QuantizedNames add_quantized_weight(Graph& g, const Tensor& w, int32_t qtype, QuantizedWeight qw,
                                    bool per_channel, const std::string& quantized_name) {
  QuantizedNames n{quantized_name, w.name + "_scale", w.name + "_zero_point"};
  const int32_t wtype = w.type;
  const std::vector<int64_t> dims = w.dims;  // `w` may move when initializers grow
  std::vector<int64_t> pdims;
  if (per_channel) pdims = {static_cast<int64_t>(qw.scales.size())};
  std::string zp_bytes(qw.zero_points.size(), '\0');
  for (size_t c = 0; c < qw.zero_points.size(); ++c) zp_bytes[c] = static_cast<char>(qw.zero_points[c]);
  g.add_initializer(Tensor(n.scale, wtype, pdims, float_bytes(qw.scales), Tensor::Storage::Typed));
  g.add_initializer(Tensor(n.zero_point, qtype, pdims, std::move(zp_bytes), Tensor::Storage::Typed));
  g.add_initializer(Tensor(n.quantized, qtype, dims, std::move(qw.bytes)));
  return n;
}

// onnx_model.py clean_initializers: drop what nothing reads (or what a
// node now produces, e.g. a shared weight dequantized back to float).
void remove_unused_initializers(Graph& g, const std::string& where) {
  auto users = g.consumers();
  std::unordered_set<std::string> requested;
  for (const auto& [name, _] : users) requested.insert(name);
  for (const auto& o : g.outputs)
    if (!o.name().empty()) requested.insert(o.name());
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) requested.erase(o);
  std::unordered_set<std::string> dropped;
  for (const auto& t : g.initializers()) {
    if (requested.count(t.name)) requested.erase(t.name);
    else dropped.insert(t.name);
  }
  auto& inits = g.mutable_initializers();
  std::erase_if(inits, [&](const Tensor& t) { return dropped.count(t.name) > 0; });
  g.reindex_initializers();
  std::erase_if(g.inputs, [&](const ::onnx::ValueInfoProto& v) { return dropped.count(v.name()) > 0; });
  for (const auto& i : g.inputs) requested.erase(i.name());
  if (!requested.empty())
    fail("{}: after quantization the graph reads '{}', which nothing defines", where, *requested.begin());
}

namespace {

constexpr const char* kQuantSuffix = "_quantized";

struct QuantizedValue {
  std::string q_name, scale_name, zp_name;
  std::optional<int64_t> axis;
};

class DynamicQuantizer {
 public:
  DynamicQuantizer(Model& model, const QuantizeOptions& options)
      : model_(model), g_(model.graph), opt_(options),
        weight_type_(options.weight_type == QuantType::QInt8 ? kInt8 : kUint8) {
    op_types_ = opt_.op_types.empty() ? default_op_types() : opt_.op_types;
  }

  QuantizeReport run() {
    where_ = model_.path.empty() ? std::string("model") : model_.path;
    if (model_.opset() < 11)
      fail("{}: ai.onnx opset {}: dynamic quantization needs opset 11 or newer "
           "(DynamicQuantizeLinear); convert the model first",
           where_, model_.opset());
    for (const auto& t : g_.initializers()) report_.weight_bytes_before += t.bytes().size();
    for (const auto& n : g_.nodes)
      if (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear" ||
          n.op_type == "DynamicQuantizeLinear" || n.op_type == "MatMulInteger") {
        core::log_warning("{}: the model already holds {} nodes; is it quantized already?", where_,
                          n.op_type);
        break;
      }

    if (replace_gemm_with_matmul()) infer_shapes(model_);  // ORT re-infers here too

    for (const auto& o : g_.outputs) tensor_names_.insert(o.name());
    for (const auto& i : g_.inputs) tensor_names_.insert(i.name());
    for (const auto& n : g_.nodes)
      for (const auto& o : n.outputs) tensor_names_.insert(o);
    for (const auto& i : g_.inputs)
      if (!g_.find_initializer(i.name())) generated_.insert(i.name());

    original_nodes_ = std::move(g_.nodes);
    g_.nodes.clear();
    for (const auto& n : original_nodes_)
      if (!n.name.empty()) original_node_names_.emplace(n.name, &n);

    core::Progress progress("quantize", original_nodes_.size());
    for (size_t i = 0; i < original_nodes_.size(); ++i) {
      const size_t before = new_nodes_.size();
      quantize_node(original_nodes_[i], i);
      for (size_t k = before; k < new_nodes_.size(); ++k)
        for (const auto& o : new_nodes_[k].outputs) generated_.insert(o);
      progress.add(1);
    }
    progress.finish();
    for (const auto& out : g_.outputs)
      if (auto dq = dequantize_value(out.name())) push(std::move(*dq));

    g_.nodes = std::move(new_nodes_);
    clean_initializers();
    g_.sort_topologically();
    for (const auto& t : g_.initializers()) report_.weight_bytes_after += t.bytes().size();
    return std::move(report_);
  }

 private:
  void push(Node n) {
    if (!n.name.empty()) new_node_names_.emplace(n.name, new_nodes_.size());
    new_nodes_.push_back(std::move(n));
  }

  // find_node_by_name: the original graph's nodes, then the new ones.
  const Node* find_node(const std::string& name, const std::vector<Node>* pending = nullptr) const {
    if (auto it = original_node_names_.find(name); it != original_node_names_.end()) return it->second;
    if (auto it = new_node_names_.find(name); it != new_node_names_.end()) return &new_nodes_[it->second];
    if (pending)
      for (const auto& n : *pending)
        if (n.name == name) return &n;
    return nullptr;
  }

  // ---- Gemm -> MatMul (+ Add), onnx_model.py replace_gemm_with_matmul ----
  bool replace_gemm_with_matmul() {
    bool changed = false;
    auto names = g_.all_names();
    std::unordered_map<std::string, std::string> transposed;
    std::vector<Node> out;
    out.reserve(g_.nodes.size());
    for (size_t idx = 0; idx < g_.nodes.size(); ++idx) {
      Node& node = g_.nodes[idx];
      if (node.op_type != "Gemm" || !(node.domain.empty() || node.domain == "ai.onnx")) {
        out.push_back(std::move(node));
        continue;
      }
      const float alpha = node.attribute_float("alpha", 1.0f);
      const float beta = node.attribute_float("beta", 1.0f);
      const int64_t trans_a = node.attribute_int("transA", 0);
      const int64_t trans_b = node.attribute_int("transB", 0);
      if (!(alpha == 1.0f && beta == 1.0f && trans_a == 0)) {
        report_.entries.push_back({node.describe(idx), "Gemm", false,
                                   "alpha/beta not 1 or transA set: kept as float Gemm"});
        out.push_back(std::move(node));
        continue;
      }
      changed = true;
      std::string input_b = node.inputs[1];
      if (trans_b == 1) {
        const Tensor* b = g_.find_initializer(input_b);
        if (b) {
          if (!transposed.count(input_b)) {
            std::string tname = input_b + "_Transposed";
            static const char* kSuffixes[] = {"", "_quantized", "_scale", "_zero_point"};
            auto taken = [&](const std::string& base) {
              for (const char* s : kSuffixes)
                if (names.count(base + s)) return true;
              return false;
            };
            for (int suffix = 1; taken(tname); ++suffix)
              tname = input_b + "_Transposed_" + std::to_string(suffix);
            for (const char* s : kSuffixes) names[tname + s] = 1;
            if (b->dims.size() != 2 || b->opaque())
              fail("{}: Gemm {}: B '{}' is not a 2-D tensor", where_, node.describe(idx), input_b);
            const size_t rows = static_cast<size_t>(b->dims[0]), cols = static_cast<size_t>(b->dims[1]);
            const size_t es = elem_size(b->type);
            std::string bytes(b->bytes().size(), '\0');
            const uint8_t* src = b->bytes().data();
            for (size_t r = 0; r < rows; ++r)
              for (size_t c = 0; c < cols; ++c)
                std::memcpy(bytes.data() + (c * rows + r) * es, src + (r * cols + c) * es, es);
            g_.add_initializer(Tensor(tname, b->type, {b->dims[1], b->dims[0]}, std::move(bytes)));
            transposed[input_b] = tname;
          }
          input_b = transposed[input_b];
        } else {
          input_b += "_Transposed";
          out.push_back(make_node("Transpose", {node.inputs[1]}, {input_b},
                                  node.name.empty() ? "" : node.name + "_Transpose"));
        }
      }
      const bool has_c = node.inputs.size() > 2 && !node.inputs[2].empty();
      out.push_back(make_node("MatMul", {node.inputs[0], input_b},
                              {node.outputs[0] + (has_c ? "_MatMul" : "")},
                              node.name.empty() ? "" : node.name + "_MatMul"));
      if (has_c)
        out.push_back(make_node("Add", {node.outputs[0] + "_MatMul", node.inputs[2]}, node.outputs,
                                node.name.empty() ? "" : node.name + "_Add"));
    }
    g_.nodes = std::move(out);
    return changed;
  }

  // ---- node dispatch (registry.py CreateOpQuantizer) ----
  void quantize_node(const Node& node, size_t index) {
    const std::string label = node.describe(index);
    bool handled = false;
    if (node.op_type == "MatMul" && plain(node)) handled = try_matmul(node, label);
    else if (node.op_type == "Conv" && plain(node)) handled = try_conv(node, label);
    else if (node.op_type == "Gather" && plain(node)) handled = try_gather(node, label);
    else if (node.op_type == "Transpose" && plain(node)) handled = try_transpose(node);
    if (!handled) keep_float(node);
  }

  static bool plain(const Node& n) { return n.domain.empty() || n.domain == "ai.onnx"; }

  void note(const std::string& label, const std::string& op, bool quantized, std::string reason) {
    report_.entries.push_back({label, op, quantized, std::move(reason)});
  }

  // should_quantize_node; `why` says why not.
  bool selected(const Node& n, std::string& why) const {
    if (!opt_.nodes_to_quantize.empty() && !opt_.nodes_to_quantize.count(n.name)) {
      why = "not in --include";
      return false;
    }
    if (!op_types_.count(n.op_type)) {
      why = "op type not selected (--op-types)";
      return false;
    }
    if (opt_.nodes_to_exclude.count(n.name)) {
      why = "excluded (--exclude)";
      return false;
    }
    return true;
  }

  bool is_float_tensor(const std::string& name) const {
    if (const Tensor* t = g_.find_initializer(name)) return t->type == kFloat || t->type == kFloat16;
    const auto* vi = g_.find_value_info(name);
    if (vi) {
      return vi->type().has_tensor_type() &&
             (vi->type().tensor_type().elem_type() == kFloat ||
              vi->type().tensor_type().elem_type() == kFloat16);
    }
    return false;
  }

  bool contains_tensor(const std::string& name) const {
    return g_.find_value_info(name) || tensor_names_.count(name) || generated_.count(name);
  }

  int32_t output_type(const Node& node, const std::string& label) const {
    const std::string& out = node.outputs[0];
    if (const Tensor* t = g_.find_initializer(out)) return t->type;
    const auto* vi = g_.find_value_info(out);
    if (vi && vi->type().has_tensor_type() && vi->type().tensor_type().elem_type() != 0)
      return vi->type().tensor_type().elem_type();
    fail("{}: {}: shape inference found no element type for output '{}' (is an operator "
         "from an unknown domain upstream?)",
         where_, label, out);
  }

  // A weight medquant cannot quantize the way ORT would: say so and skip.
  std::string unsupported_weight(const std::string& name) const {
    const Tensor* t = g_.find_initializer(name);
    if (t && t->type == kFloat16) return "float16 weight (not supported yet)";
    return {};
  }

  // ---- MatMul (operators/matmul.py MatMulInteger) ----
  bool try_matmul(const Node& node, const std::string& label) {
    std::string why;
    if (!selected(node, why)) return note(label, "MatMul", false, why), false;
    if (!is_float_tensor(node.inputs[1]) && !is_float_tensor(node.inputs[0]))
      return note(label, "MatMul", false, "inputs are not float"), false;
    if (opt_.matmul_const_b_only && !g_.find_initializer(node.inputs[1]))
      return note(label, "MatMul", false, "B is not a constant (activation x activation)"), false;
    if (auto u = unsupported_weight(node.inputs[1]); !u.empty())
      return note(label, "MatMul", false, u), false;
    if (auto u = unsupported_weight(node.inputs[0]); !u.empty())
      return note(label, "MatMul", false, u), false;

    std::vector<Node> nodes;
    auto a = quantize_input(node, 0, false, false, false, -1, nodes);
    auto b = quantize_input(node, 1, true, true, true, -1, nodes);
    const std::string mmi_out = node.outputs[0] + "_output_quantized";
    const std::string mmi_name = node.name.empty() ? "" : node.name + "_quant";
    nodes.push_back(make_node("MatMulInteger", {a.q_name, b.q_name, a.zp_name, b.zp_name}, {mmi_out},
                              mmi_name));
    append_scaled_output(node, label, mmi_out, mmi_name, a, b, node.outputs[0], nodes);
    for (auto& n : nodes) push(std::move(n));
    note(label, "MatMul", true,
         std::string("MatMulInteger") + (opt_.per_channel && g_.find_initializer(node.inputs[1])
                                             ? " (per-channel)"
                                             : ""));
    return true;
  }

  // Cast + Mul(scales) + Mul, shared by MatMulInteger and ConvInteger.
  void append_scaled_output(const Node& node, const std::string& label, const std::string& int_out,
                            const std::string& int_name, const QuantizedValue& a,
                            const QuantizedValue& b, const std::string& result,
                            std::vector<Node>& nodes) {
    const std::string cast_out = int_out + "_cast_output";
    Node cast = make_node("Cast", {int_out}, {cast_out}, int_out + "_cast");
    cast.set_attribute_int("to", output_type(node, label));
    nodes.push_back(std::move(cast));
    const std::string scales_mul =
        int_name.empty() ? a.scale_name + "_" + b.scale_name + "_mul" : int_name + "_scales_mul";
    // An unnamed pair with the same scales shares one Mul (find_by_name in new_nodes).
    std::string scales_out;
    if (auto it = new_node_names_.find(scales_mul); it != new_node_names_.end()) {
      scales_out = new_nodes_[it->second].outputs[0];
    } else {
      scales_out = scales_mul + ":0";
      nodes.push_back(make_node("Mul", {a.scale_name, b.scale_name}, {scales_out}, scales_mul));
    }
    nodes.push_back(make_node("Mul", {cast_out, scales_out}, {result},
                              int_name.empty() ? "" : int_name + "_output_scale_mul"));
  }

  // ---- Conv (operators/conv.py ConvInteger) ----
  bool try_conv(const Node& node, const std::string& label) {
    std::string why;
    if (!selected(node, why)) return note(label, "Conv", false, why), false;
    if (!is_float_tensor(node.inputs[0])) return note(label, "Conv", false, "input is not float"), false;
    const Tensor* w = node.inputs.size() > 1 ? g_.find_initializer(node.inputs[1]) : nullptr;
    if (!w) return note(label, "Conv", false, "weight is not a constant"), false;
    if (auto u = unsupported_weight(node.inputs[1]); !u.empty()) return note(label, "Conv", false, u), false;
    const size_t weight_rank = w->dims.size();

    std::vector<Node> nodes;
    auto a = quantize_input(node, 0, false, false, false, -1, nodes);
    auto b = quantize_input(node, 1, true, opt_.reduce_range, false, -1, nodes);
    const std::string ci_out = node.outputs[0] + "_output_quantized";
    const std::string ci_name = node.name.empty() ? "" : node.name + "_quant";
    Node ci = make_node("ConvInteger", {a.q_name, b.q_name, a.zp_name, b.zp_name}, {ci_out}, ci_name);
    ci.attributes = node.attributes;
    std::sort(ci.attributes.begin(), ci.attributes.end(),
              [](const auto& x, const auto& y) { return x.name() < y.name(); });
    nodes.push_back(std::move(ci));
    const bool has_bias = node.inputs.size() == 3 && !node.inputs[2].empty();
    const std::string& out = node.outputs[0];
    const std::string scaled = has_bias ? out + "quant_scaled_output" : out;
    append_scaled_output(node, label, ci_out, ci_name, a, b, scaled, nodes);
    if (has_bias) {
      const std::string shape_name = out + "_bias_reshape_shape";
      std::vector<int64_t> shape(weight_rank, 1);
      shape[1] = -1;
      std::string bytes(shape.size() * 8, '\0');
      std::memcpy(bytes.data(), shape.data(), bytes.size());
      g_.add_initializer(Tensor(shape_name, kInt64, {static_cast<int64_t>(weight_rank)},
                                std::move(bytes), Tensor::Storage::Typed));
      const std::string reshaped = out + "_bias_reshape_output";
      nodes.push_back(make_node("Reshape", {node.inputs[2], shape_name}, {reshaped}, ""));
      nodes.push_back(make_node("Add", {scaled, reshaped}, {out}, out + "_bias_add"));
    }
    for (auto& n : nodes) push(std::move(n));
    note(label, "Conv", true, "ConvInteger");
    return true;
  }

  // ---- Gather (operators/gather.py GatherQuant) ----
  bool try_gather(const Node& node, const std::string& label) {
    std::string why;
    if (!selected(node, why)) return note(label, "Gather", false, why), false;
    const Tensor* t = g_.find_initializer(node.inputs[0]);
    if (!t || !(t->type == kFloat || t->type == kFloat16))
      return note(label, "Gather", false, "data is not a float constant"), false;
    if (auto u = unsupported_weight(node.inputs[0]); !u.empty()) return note(label, "Gather", false, u), false;
    std::vector<Node> nodes;
    auto q = quantize_input(node, 0, false, false, false, -1, nodes);
    const std::string q_out = node.outputs[0] + kQuantSuffix;
    qmap_[node.outputs[0]] = {q_out, q.scale_name, q.zp_name, std::nullopt};
    Node copy = node;
    copy.outputs[0] = q_out;
    copy.inputs[0] = q.q_name;
    nodes.push_back(std::move(copy));
    for (auto& n : nodes) push(std::move(n));
    note(label, "Gather", true, "uint8 table");
    return true;
  }

  // ---- Transpose (operators/direct_q8.py Direct8BitOp) ----
  bool try_transpose(const Node& node) {
    std::string why;
    if (!selected(node, why) || !is_float_tensor(node.inputs[0])) return false;
    auto it = qmap_.find(node.inputs[0]);
    Node copy = node;
    if (it != qmap_.end()) {
      const QuantizedValue in = it->second;
      const std::string q_out = node.outputs[0] + kQuantSuffix;
      qmap_[node.outputs[0]] = {q_out, in.scale_name, in.zp_name, std::nullopt};
      copy.inputs[0] = in.q_name;
      copy.outputs[0] = q_out;
    }
    push(std::move(copy));
    return true;
  }

  // QuantOperatorBase.quantize: dequantize quantized inputs, keep the node.
  void keep_float(const Node& node) {
    for (const auto& in : node.inputs)
      if (auto dq = dequantize_value(in)) push(std::move(*dq));
    push(node);
  }

  std::optional<Node> dequantize_value(const std::string& name) {
    auto it = qmap_.find(name);
    if (it == qmap_.end() || generated_.count(name)) return std::nullopt;
    const std::string dq_name = name + "_DequantizeLinear";
    if (find_node(dq_name)) return std::nullopt;
    Node dq = make_node("DequantizeLinear", {it->second.q_name, it->second.scale_name, it->second.zp_name},
                        {name}, dq_name);
    if (it->second.axis) dq.set_attribute_int("axis", *it->second.axis);
    return dq;
  }

  // ---- inputs (onnx_quantizer.py __quantize_inputs) ----
  QuantizedValue quantize_input(const Node& node, size_t index, bool use_weight_type, bool reduce_range,
                                bool op_level_per_channel, int64_t axis, std::vector<Node>& nodes) {
    const std::string& name = node.inputs[index];
    if (auto it = qmap_.find(name); it != qmap_.end()) return it->second;
    if (name.empty()) return {};
    if (const Tensor* init = g_.find_initializer(name)) {
      const int32_t qtype = use_weight_type ? weight_type_ : kUint8;
      if (opt_.per_channel && op_level_per_channel)
        return quantize_weight_per_channel(*init, qtype, axis, reduce_range);
      return quantize_initializer(*init, qtype, reduce_range);
    }
    if (!contains_tensor(name))
      fail("{}: invalid tensor name to quantize: '{}'", where_, name);
    const Node* dql = find_node(name + "_QuantizeLinear", &nodes);
    if (!dql) {
      // Activations are always uint8 and opset > 10 here: one fused node.
      nodes.push_back(make_node("DynamicQuantizeLinear", {name},
                                {name + kQuantSuffix, name + "_scale", name + "_zero_point"},
                                name + "_QuantizeLinear"));
      qmap_[name] = {name + kQuantSuffix, name + "_scale", name + "_zero_point", std::nullopt};
      dql = &nodes.back();
    }
    if (dql->op_type == "QuantizeLinear") return {dql->outputs[0], dql->inputs[1], dql->inputs[2], {}};
    return {dql->outputs[0], dql->outputs[1], dql->outputs[2], std::nullopt};
  }

  bool symmetric_for(int32_t qtype) const {
    // is_weight_symmetric: signed weight types are symmetric; activations are not.
    return qtype == weight_type_ ? qtype == kInt8 : false;
  }

  static QuantType to_quant_type(int32_t t) { return t == kInt8 ? QuantType::QInt8 : QuantType::QUInt8; }

  QuantizedValue quantize_initializer(const Tensor& w, int32_t qtype, bool reduce_range) {
    QuantizedWeight qw = quantize_weight(w, to_quant_type(qtype), symmetric_for(qtype),
                                         opt_.reduce_range && reduce_range, std::nullopt, where_);
    return add_quantized(w, qtype, std::move(qw), std::nullopt);
  }

  QuantizedValue quantize_weight_per_channel(const Tensor& w, int32_t qtype, int64_t axis, bool reduce_range) {
    QuantizedWeight qw = quantize_weight(w, to_quant_type(qtype), symmetric_for(qtype),
                                         opt_.reduce_range && reduce_range, axis, where_);
    // ORT records the axis as passed (-1 for MatMul), not normalized.
    return add_quantized(w, qtype, std::move(qw), axis);
  }

  QuantizedValue add_quantized(const Tensor& w, int32_t qtype, QuantizedWeight qw, std::optional<int64_t> axis) {
    const std::string name = w.name;
    const std::string q_name = name + kQuantSuffix;
    QuantizedNames n = add_quantized_weight(g_, w, qtype, std::move(qw), axis.has_value(), q_name);
    QuantizedValue v{n.quantized, n.scale, n.zero_point, axis};
    qmap_[name] = v;
    return v;
  }

  void clean_initializers() { remove_unused_initializers(g_, where_); }

  Model& model_;
  Graph& g_;
  const QuantizeOptions& opt_;
  const int32_t weight_type_;
  std::string where_;
  std::set<std::string> op_types_;
  std::vector<Node> original_nodes_;
  std::unordered_map<std::string, const Node*> original_node_names_;
  std::vector<Node> new_nodes_;
  std::unordered_map<std::string, size_t> new_node_names_;
  std::unordered_map<std::string, QuantizedValue> qmap_;
  std::unordered_set<std::string> generated_;
  std::unordered_set<std::string> tensor_names_;
  QuantizeReport report_;
};

}  // namespace

QuantizeReport quantize_dynamic(Model& model, const QuantizeOptions& options) {
  for (const auto& op : options.op_types)
    if (!supported_op_types().count(op))
      fail("--op-types: {} is not supported (medquant quantizes MatMul, Conv, Gather, Transpose; "
           "Gemm is always rewritten to MatMul + Add first)",
           op);
  return DynamicQuantizer(model, options).run();
}

QuantizeFileResult quantize_dynamic_file(const std::string& input, const std::string& output,
                                         const QuantizeFileOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(output, ec) && fs::exists(input, ec) && fs::equivalent(input, output, ec))
    fail("{}: output would overwrite the input", output);
  const auto start = std::chrono::steady_clock::now();
  auto lap = [last = start](const char* what) mutable {
    const auto now = std::chrono::steady_clock::now();
    core::log_verbose("{}: {:.3f} s", what, std::chrono::duration<double>(now - last).count());
    last = now;
  };
  const QuantizeOptions& q = options.quantize;
  if (q.weight_type == QuantType::QInt8 && q.op_types.count("Conv"))
    core::log_warning(
        "Conv with qint8 weights becomes ConvInteger(uint8, int8), which ONNX Runtime before 1.24 "
        "cannot load; use --weight-type quint8 for such runtimes (docs/onnx.md)");

  QuantizeFileResult result;
  Model model = load_model(input);
  lap("load");
  check_model(model);  // also refuses opsets newer than libonnx knows
  lap("check input");
  if (options.preprocess) {
    const PassStats pre = simplify(model.graph);
    result.constants_folded = pre.constants_folded;
    result.nodes_removed = pre.nodes_removed;
    result.initializers_removed = pre.initializers_removed;
  }
  lap("pre-process");
  infer_shapes(model);
  lap("shape inference");
  core::log_verbose("pre-processing: {} constants folded, {} nodes and {} initializers removed",
                    result.constants_folded, result.nodes_removed, result.initializers_removed);

  result.report = options.quantizer ? options.quantizer(model) : quantize_dynamic(model, q);
  lap("quantize");
  model.header.set_producer_name("medquant");
  model.header.set_producer_version(MEDQUANT_VERSION);
  with_context(output + ": the quantized graph failed its check (a medquant bug)",
               [&] { check_model(model); });
  lap("check output");

  SaveOptions save;
  if (options.external_data) save.external_data = SaveOptions::ExternalData::Always;
  save_model(model, output, save);
  lap("save");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace medquant::onnx
