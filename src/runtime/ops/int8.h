// Small helpers shared by the integer operators (quant_ops.cpp, conv.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/tensor.h"

namespace medquant::runtime {

// Element i of an int8 or uint8 tensor.
inline int32_t load_q(const Tensor& t, int64_t i) {
  return t.type() == onnx::kInt8 ? t.data<int8_t>()[i] : t.data<uint8_t>()[i];
}

// int8 <-> uint8 with the zero point moved by 128 (x ^ 0x80), in place: the
// uint8 kernels then serve int8 tensors too.
void flip_sign_bits(uint8_t* y, size_t n);

}  // namespace medquant::runtime
