// The portable kernels by name (SIMD tables borrow some of them).
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/kernels/kernels.h"

namespace medquant::runtime::kernels {

void f32_gemm_4x16__portable(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                             const float* w, float* c, size_t c_stride, const float* bias);
void q8_gemm_4x16__portable(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                            const int8_t* w, int32_t* c, size_t c_stride);
void softmax__portable(const float* x, float* y, size_t n);
void scale__portable(const float* x, float* y, size_t n, float s, bool divide);
void layernorm__portable(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps);
void gelu__portable(const float* x, float* y, size_t n);
void erf__portable(const float* x, float* y, size_t n);
void exp__portable(const float* x, float* y, size_t n);
void minmax__portable(const float* x, size_t n, float* mn, float* mx);
void quantize_u8__portable(const float* x, uint8_t* y, size_t n, float scale, int32_t zp);
void q8_dequantize__portable(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                             const Q8Dequant& d, float* out, size_t ldo);
void pack_f32_transposed__portable(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d);

// Table::attention_softmax made of a table's own scale and softmax (a table
// with no fused one: its results are those of the chain by construction).
template <void (*Scale)(const float*, float*, size_t, float, bool), void (*Softmax)(const float*, float*, size_t)>
void attention_softmax_chain(float* x, size_t ld, size_t rows, size_t n, float s, bool divide, const float* mask) {
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    Scale(row, row, n, s, divide);
    if (mask)
      for (size_t j = 0; j < n; ++j) row[j] += mask[j];
    Softmax(row, row, n);
  }
}

}  // namespace medquant::runtime::kernels
