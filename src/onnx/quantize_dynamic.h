// Dynamic INT8 quantization of an ONNX graph with the semantics of
// onnxruntime.quantization.quantize_dynamic (the version pinned in
// tests/peer/requirements.txt): same decisions, same node and initializer
// names, bit-equal weights, scales and zero points, so that ONNX Runtime's
// load-time fusions (MatMulIntegerToFloat, DynamicQuantizeMatMul) fire.
//
// Rewrites, per node (QOperator format, "IntegerOps" mode):
//   Gemm(alpha=beta=1, transA=0)  -> MatMul [+ Add], first, for every Gemm;
//                                    a transB initializer B becomes B_Transposed
//   MatMul(A, B const)            -> A_QuantizeLinear = DynamicQuantizeLinear(A)
//                                    -> <n>_quant = MatMulInteger(A_q, B_quantized, A_zp, B_zero_point)
//                                    -> Cast(float) -> Mul(by <n>_quant_scales_mul = A_scale * B_scale)
//   Conv(X, W const [, bias])     -> ConvInteger + Cast + Mul [+ Reshape(bias) + Add]
//   Gather(table const, idx)      -> Gather on the uint8 table, DequantizeLinear
//                                    where a float consumer needs the value
//   Transpose of a quantized value stays in uint8.
// Weights: qint8 is symmetric ([-127,127], or [-64,64] with reduce_range,
// zero point 0); quint8 is asymmetric ([0,255], or [0,127]). MatMul
// per-channel quantizes along B's last axis (output columns); Conv is always
// per-tensor (as in ORT). Activations are uint8, computed at run time.
//
// Static QDQ (calibrated activations, quantize_static.h) uses the same weight
// quantizer (quantize_weight) and naming.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "onnx/graph.h"

namespace medquant::onnx {

enum class QuantType { QInt8, QUInt8 };

struct QuantizeOptions {
  QuantType weight_type = QuantType::QInt8;
  bool per_channel = false;
  bool reduce_range = false;
  // Empty = medquant's default: MatMul only (see docs/onnx.md for why not
  // Conv and Gather). ORT's defaults are {Conv, MatMul, Attention, LSTM,
  // Gather, Transpose, EmbedLayerNormalization}.
  std::set<std::string> op_types;
  std::set<std::string> nodes_to_quantize;  // empty = all
  std::set<std::string> nodes_to_exclude;
  bool matmul_const_b_only = true;
};

// The op types medquant quantizes when QuantizeOptions::op_types is empty.
std::set<std::string> default_op_types();
// The op types this implementation can rewrite ("MatMul", "Conv", "Gather", "Transpose").
std::set<std::string> supported_op_types();

struct QuantizeReport {
  struct Entry {
    std::string node;     // node name (or "<op> #index")
    std::string op_type;
    bool quantized = false;
    std::string reason;   // why skipped, or what it became
  };
  std::vector<Entry> entries;
  uint64_t weight_bytes_before = 0;
  uint64_t weight_bytes_after = 0;
  size_t quantized_count() const;
};

// Quantizes `model` in place. The model must already have value_info from
// shape inference (element types decide what is float). Throws Error naming
// the node or tensor on anything it cannot do correctly.
QuantizeReport quantize_dynamic(Model& model, const QuantizeOptions& options);

// A whole file, as `medquant quantize onnx` does it: load, check, the
// clean-ups (passes.h simplify) unless told not to, shape inference,
// quantize_dynamic, check the result, save (atomically). Refuses an output
// that would overwrite the input. Verbose log lines time each stage.
struct QuantizeFileOptions {
  QuantizeOptions quantize;
  bool preprocess = true;
  bool external_data = false;  // always write <output>.data (automatic past 2 GiB)
  // Replaces quantize_dynamic (static QDQ: calibrate, then quantize_static).
  std::function<QuantizeReport(Model&)> quantizer;
};

struct QuantizeFileResult {
  QuantizeReport report;
  size_t constants_folded = 0, nodes_removed = 0, initializers_removed = 0;  // pre-processing
  double seconds = 0;
};

QuantizeFileResult quantize_dynamic_file(const std::string& input, const std::string& output,
                                         const QuantizeFileOptions& options);

// ---- The arithmetic, exposed for tests (mirrors quant_utils.py) ----

struct QuantParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// [qmin, qmax] for a weight type (get_qmin_qmax_for_qType).
void quant_range(QuantType type, bool reduce_range, bool symmetric, int32_t& qmin, int32_t& qmax);
// compute_scale_zp on float32 rmin/rmax: range made to include 0, float64
// scale (rmax - rmin) / (qmax - qmin) stored as float32, zero point rounded
// half to even; scale < FLT_MIN gives scale 1, zero point 0.
QuantParams compute_scale_zp(float rmin, float rmax, int32_t qmin, int32_t qmax, bool symmetric);
// quantize_data: min/max of `values`, then compute_scale_zp, then
// q = clip(round_half_even(x / scale) + zp) in float32, stored as int8/uint8.
// q = clip(round_half_even(x / scale) + zp) in float32 (quantize_nparray),
// saturating to the full int8/uint8 range.
void quantize_with_params(const float* values, size_t count, QuantParams params, QuantType type,
                          uint8_t* out);
QuantParams quantize_values(const float* values, size_t count, QuantType type, bool symmetric,
                            bool reduce_range, uint8_t* out);

// ---- Weights, shared with the static (QDQ) quantizer ----

// A weight quantized per tensor (one scale) or per channel (one per channel).
struct QuantizedWeight {
  std::string bytes;  // int8/uint8 elements, the weight's shape
  std::vector<float> scales;
  std::vector<int32_t> zero_points;
};
// quantize_data (per tensor, axis unset) or per channel along `axis`
// (negative counts from the end). Throws Error naming `where` and the tensor
// on NaN/infinity or an axis out of range.
QuantizedWeight quantize_weight(const Tensor& w, QuantType type, bool symmetric, bool reduce_range,
                                std::optional<int64_t> axis, const std::string& where);
struct QuantizedNames {
  std::string quantized, scale, zero_point;
};
// Adds `<w>_scale`, `<w>_zero_point` (scalars, or [channels] when
// per_channel) and the quantized tensor `quantized_name` to `g`.
QuantizedNames add_quantized_weight(Graph& g, const Tensor& w, int32_t qtype, QuantizedWeight qw,
                                    bool per_channel, const std::string& quantized_name);
// onnx_model.py clean_initializers: drops initializers (and their graph
// inputs) that nothing reads; Error if a node reads a value nothing defines.
void remove_unused_initializers(Graph& g, const std::string& where);

}  // namespace medquant::onnx
