// Internal to quant/: the block structs (byte-for-byte ggml-common.h) and the
// scalar building blocks every codec shares. The float arithmetic here and in
// the codecs follows ggml-quants.c operation by operation: the library is
// compiled with -ffp-contract=off so that no a*b+c becomes an FMA, because
// ggml-base is built for the x86-64 baseline where it has none.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/half.h"

namespace medquant::quant::detail {

inline constexpr int kQK = 256;        // QK_K: values per k-quant super-block
inline constexpr int kQK32 = 32;       // QK4_0 == QK4_1 == QK5_0 == QK5_1 == QK8_0
inline constexpr int kScaleSize = 12;  // K_SCALE_SIZE

struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ2K {
  uint8_t scales[kQK / 16];
  uint8_t qs[kQK / 4];
  uint16_t d, dmin;
};
struct BlockQ3K {
  uint8_t hmask[kQK / 8];
  uint8_t qs[kQK / 4];
  uint8_t scales[12];
  uint16_t d;
};
struct BlockQ4K {
  uint16_t d, dmin;
  uint8_t scales[kScaleSize];
  uint8_t qs[kQK / 2];
};
struct BlockQ5K {
  uint16_t d, dmin;
  uint8_t scales[kScaleSize];
  uint8_t qh[kQK / 8];
  uint8_t qs[kQK / 2];
};
struct BlockQ6K {
  uint8_t ql[kQK / 2];
  uint8_t qh[kQK / 4];
  int8_t scales[kQK / 16];
  uint16_t d;
};
struct BlockQ8K {
  float d;
  int8_t qs[kQK];
  int16_t bsums[kQK / 16];
};
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2K) == 84 && sizeof(BlockQ3K) == 110 && sizeof(BlockQ4K) == 144);
static_assert(sizeof(BlockQ5K) == 176 && sizeof(BlockQ6K) == 210 && sizeof(BlockQ8K) == 292);

// ggml's MIN/MAX macros, including what they do with NaN (the second operand
// wins when the comparison is false).
template <typename T>
inline T qmin(T a, T b) {
  return a < b ? a : b;
}
template <typename T>
inline T qmax(T a, T b) {
  return a > b ? a : b;
}

// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 and
// reading the mantissa (valid for |x| <= 2^22; the same bits for any input).
inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

inline uint16_t to_half(float f) {
  return core::fp32_to_fp16(f);
}
inline float from_half(uint16_t h) {
  return core::fp16_to_fp32(h);
}

inline constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS

// The scalar search helpers of ggml-quants.c (same names, same arguments).
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// Per-thread scratch for one row of n values: n weights, n quants and a few
// floats per sub-block of `sub` values. Reused across rows.
struct RowScratch {
  std::vector<float> weights;
  std::vector<uint8_t> L;
  std::vector<float> scales, mins, sw;
};
RowScratch& row_scratch(int64_t n, int sub);

// Row codecs. n is a multiple of the block
// size; imatrix may be null. Each quantizes one row.
void quantize_row_q4_0(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q4_1(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q5_0(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q5_1(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q8_0(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q2_K(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q3_K(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q4_K(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q5_K(const float* x, void* y, int64_t n, const float* imatrix);
void quantize_row_q6_K(const float* x, void* y, int64_t n, const float* imatrix);

void dequantize_row_q4_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_1(const void* x, float* y, int64_t n);
void dequantize_row_q5_0(const void* x, float* y, int64_t n);
void dequantize_row_q5_1(const void* x, float* y, int64_t n);
void dequantize_row_q8_0(const void* x, float* y, int64_t n);
void dequantize_row_q2_K(const void* x, float* y, int64_t n);
void dequantize_row_q3_K(const void* x, float* y, int64_t n);
void dequantize_row_q4_K(const void* x, float* y, int64_t n);
void dequantize_row_q5_K(const void* x, float* y, int64_t n);
void dequantize_row_q6_K(const void* x, float* y, int64_t n);
void dequantize_row_q8_K(const void* x, float* y, int64_t n);

}  // namespace medquant::quant::detail
