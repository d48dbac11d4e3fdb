// The x86 kernels by name, for the tables in x86_tables.cpp and the tests.
#pragma once

#if defined(__x86_64__)
#include <cstddef>
#include <cstdint>

#include "runtime/kernels/kernels.h"

namespace medquant::runtime::kernels {

// f32_gemm_12x32__avx512.cpp
void f32_gemm_12x32__avx512(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                            const float* w, float* c, size_t c_stride, const float* bias);
void softmax__avx512(const float* x, float* y, size_t n);
void scale__avx512(const float* x, float* y, size_t n, float s, bool divide);
void attention_softmax__avx512(float* x, size_t ld, size_t rows, size_t n, float s, bool divide,
                               const float* mask);
void pack_f32_transposed__avx512(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d);
void layernorm__avx512(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps);
void gelu__avx512(const float* x, float* y, size_t n);
void erf__avx512(const float* x, float* y, size_t n);
void exp__avx512(const float* x, float* y, size_t n);
void minmax__avx512(const float* x, size_t n, float* mn, float* mx);
void quantize_u8__avx512(const float* x, uint8_t* y, size_t n, float scale, int32_t zp);
void q8_dequantize__avx512(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                           const Q8Dequant& d, float* out, size_t ldo);

// f32_gemm_6x16__avx2.cpp
void f32_gemm_6x16__avx2(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                         const float* w, float* c, size_t c_stride, const float* bias);
void softmax__avx2(const float* x, float* y, size_t n);
void scale__avx2(const float* x, float* y, size_t n, float s, bool divide);
void attention_softmax__avx2(float* x, size_t ld, size_t rows, size_t n, float s, bool divide, const float* mask);
void pack_f32_transposed__avx2(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d);
void layernorm__avx2(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps);
void gelu__avx2(const float* x, float* y, size_t n);
void erf__avx2(const float* x, float* y, size_t n);
void exp__avx2(const float* x, float* y, size_t n);
void minmax__avx2(const float* x, size_t n, float* mn, float* mx);
void quantize_u8__avx2(const float* x, uint8_t* y, size_t n, float scale, int32_t zp);
void q8_dequantize__avx2(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                         const Q8Dequant& d, float* out, size_t ldo);

// q8 GEMMs: u8 x s8 -> s32, exact (no 16-bit saturation).
void q8_gemm_12x32__avx512vnni(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                               const int8_t* w, int32_t* c, size_t c_stride);
void q8_gemm_12x32__avx512bw(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                             const int8_t* w, int32_t* c, size_t c_stride);
void q8_gemm_6x16__avxvnni(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                           const int8_t* w, int32_t* c, size_t c_stride);
void q8_gemm_6x16__avx2(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                        const int8_t* w, int32_t* c, size_t c_stride);

}  // namespace medquant::runtime::kernels
#endif
