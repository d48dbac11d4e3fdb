// Small helpers shared by the integer operators (quant_ops.cpp, conv.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "runtime/op.h"
#include "runtime/tensor.h"

namespace medquant::runtime {

// Element i of an int8 or uint8 tensor.
inline int32_t load_q(const Tensor& t, int64_t i) {
  return t.type() == onnx::kInt8 ? t.data<int8_t>()[i] : t.data<uint8_t>()[i];
}

// int8 <-> uint8 with the zero point moved by 128 (x ^ 0x80), in place: the
// uint8 kernels then serve int8 tensors too.
void flip_sign_bits(uint8_t* y, size_t n);

// QuantizeLinear then DequantizeLinear with the same per-tensor parameters, in
// one pass (fusion.cpp): input x (float); outputs the quantized values (type
// `type`, uint8 or int8; may be unread) and their dequantized floats, both
// exactly what the two operators give.
std::unique_ptr<Op> make_quantize_dequantize_op(float scale, int32_t zero_point, int32_t type);

}  // namespace medquant::runtime
