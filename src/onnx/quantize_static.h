// Static INT8 quantization in QDQ format with the semantics of
// onnxruntime.quantization.quantize_static(quant_format=QDQ) (the version
// pinned in tests/peer/requirements.txt): the same tensors get the same
// QuantizeLinear/DequantizeLinear pairs, names, scales and zero points, so
// ONNX Runtime's QDQ fusions (QLinearMatMul, QLinearConv, MatMulIntegerToFloat,
// QLinearAdd, ...) fire and NPU execution providers see the layout they expect.
//
// What a quantized node gets (qdq_quantizer.py, operators/*.py):
//   MatMul      every input and the output; an initializer input is a weight
//               (per-channel along axis 1 with --per-channel)
//   Conv        input 0 and the output; the weight (per-channel axis 0); the
//               bias as int32 with scale input_scale * weight_scale, zero 0
//   Gemm        as Conv; weight axis 0 if transB else 1; bias times beta,
//               beta set to 1
//   Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Slice, pooling, TopK
//               (QDQDirect8BitOp) the output, with the input's own scale and
//               zero point, if the input is quantized already; Split: every
//               output so; Where: the output when both value inputs are quantized
//   Gather      a float table (quantized with the activation type), the
//               output sharing its parameters
//   Layer/Batch/InstanceNormalization  input, scale as a weight (axis 1), bias as Conv's
//   Relu, Clip  removed when the input is quantized and read by nothing else
//               (its producer writes the output; the Q/DQ pair clips), else
//               input and output (QDQRemovableActivation)
//   other ops   (QDQOperatorBase) every float input and output, initializers
//               quantized with the activation type; Softmax's output range
//               is [0, 1]
// Activation X:  X -> X_QuantizeLinear -> X_QuantizeLinear_Output ->
//                X_DequantizeLinear -> X_DequantizeLinear_Output -> consumers
//                (a graph output keeps its name: the producer writes
//                X_QuantizeLinear_Input), scale/zero point X_scale, X_zero_point.
// Weight W:      W_quantized -> W_DequantizeLinear -> W_DequantizeLinear_Output;
//                the float W is dropped.
// Bias B:        B_quantized (int32) -> B_DequantizeLinear -> B, with
//                B_quantized_scale / B_quantized_zero_point.
// Activations: asymmetric unless activation_symmetric; weights: symmetric
// for qint8 (range [-127, 127]) and always when per-channel; reduce_range
// applies to weights only. A bias whose int32 would overflow enlarges the
// weight's scale first (_adjust_weight_scale_for_int32_bias).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "onnx/calibrate.h"
#include "onnx/graph.h"
#include "onnx/quantize_dynamic.h"

namespace medquant::onnx {

struct StaticQuantizeOptions {
  QuantType activation_type = QuantType::QInt8;  // ORT 1.32's default
  QuantType weight_type = QuantType::QInt8;
  bool per_channel = false;
  bool reduce_range = false;
  bool activation_symmetric = false;  // ActivationSymmetric
  int weight_symmetric = -1;          // WeightSymmetric; -1 = by type (qint8 symmetric)
  std::set<std::string> op_types;     // empty = static_default_op_types()
  std::set<std::string> nodes_to_quantize;  // empty = all
  std::set<std::string> nodes_to_exclude;
};

// ORT's default op list (QLinearOps + QDQ registries) minus the ops whose QDQ
// rules medquant does not implement (see static_unsupported_op_types).
std::set<std::string> static_default_op_types();
// Ops with their own QDQ rules in ORT that medquant does not reproduce yet
// (Pad, Resize, ConvTranspose): refused
// in op_types rather than quantized differently.
std::set<std::string> static_unsupported_op_types();

// calibrate.py select_tensors_to_calibrate: the float inputs and outputs of
// every node of `op_types` that have a type from shape inference and are not
// initializers, sorted.
std::vector<std::string> tensors_to_calibrate(const Graph& graph, const std::set<std::string>& op_types);

// Quantizes `model` in place (it must carry value_info from shape inference)
// with activation ranges from calibration. Throws Error naming the node or
// tensor on what it cannot do correctly.
QuantizeReport quantize_static(Model& model, const std::map<std::string, TensorRange>& ranges,
                               const StaticQuantizeOptions& options);

}  // namespace medquant::onnx
