// Portable micro-kernels: plain C++ that any target compiles (the ARM build
// runs these), and the reference the SIMD kernels are tested against.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/kernels/kernels.h"
#include "runtime/kernels/portable.h"

namespace medquant::runtime::kernels {

namespace {
constexpr size_t kF32Mr = 4, kF32Nr = 16, kQ8Mr = 4, kQ8Nr = 16;
}

void f32_gemm_4x16__portable(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                             const float* w, float* c, size_t c_stride, const float* bias) {
  float acc[kF32Mr][kF32Nr];
  for (size_t i = 0; i < kF32Mr; ++i)
    for (size_t j = 0; j < kF32Nr; ++j) acc[i][j] = bias && j < nc ? bias[j] : 0.f;
  for (size_t k = 0; k < kc; ++k) {
    const float* wk = w + k * kF32Nr;
    for (size_t i = 0; i < mr; ++i) {
      const float av = a[i * a_stride + k];
      for (size_t j = 0; j < kF32Nr; ++j) acc[i][j] += av * wk[j];
    }
  }
  for (size_t i = 0; i < mr; ++i)
    for (size_t j = 0; j < nc; ++j) c[i * c_stride + j] = acc[i][j];
}

void q8_gemm_4x16__portable(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                            const int8_t* w, int32_t* c, size_t c_stride) {
  int32_t acc[kQ8Mr][kQ8Nr] = {};
  for (size_t g = 0; g < kc / 4; ++g) {
    const int8_t* wg = w + g * kQ8Nr * 4;
    for (size_t i = 0; i < mr; ++i) {
      const uint8_t* ai = a + i * a_stride + g * 4;
      for (size_t j = 0; j < kQ8Nr; ++j)
        acc[i][j] += ai[0] * wg[j * 4] + ai[1] * wg[j * 4 + 1] + ai[2] * wg[j * 4 + 2] + ai[3] * wg[j * 4 + 3];
    }
  }
  for (size_t i = 0; i < mr; ++i)
    for (size_t j = 0; j < nc; ++j) c[i * c_stride + j] = acc[i][j];
}

void softmax__portable(const float* x, float* y, size_t n) {
  float mx = -INFINITY;
  for (size_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0;
  for (size_t i = 0; i < n; ++i) {
    y[i] = std::exp(x[i] - mx);
    sum += y[i];
  }
  const float inv = 1.f / sum;
  for (size_t i = 0; i < n; ++i) y[i] *= inv;
}

void scale__portable(const float* x, float* y, size_t n, float s, bool divide) {
  if (divide)
    for (size_t i = 0; i < n; ++i) y[i] = x[i] / s;
  else
    for (size_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

void layernorm__portable(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps) {
  float sum = 0;
  for (size_t i = 0; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  float var = 0;
  for (size_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<float>(n);
  const float inv = 1.f / std::sqrt(var + eps);
  for (size_t i = 0; i < n; ++i) {
    const float v = (x[i] - mean) * inv * scale[i];
    y[i] = bias ? v + bias[i] : v;
  }
}

void gelu__portable(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * static_cast<float>(M_SQRT1_2)));
}

void erf__portable(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
}

void exp__portable(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void minmax__portable(const float* x, size_t n, float* mn, float* mx) {
  float lo = n ? x[0] : 0.f, hi = lo;
  for (size_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  *mn = lo;
  *mx = hi;
}

void quantize_u8__portable(const float* x, uint8_t* y, size_t n, float scale, int32_t zp) {
  const float lo = 0.f - static_cast<float>(zp), hi = 255.f - static_cast<float>(zp);
  for (size_t i = 0; i < n; ++i) {
    float v = x[i] / scale;
    v = v > lo ? v : lo;  // NaN becomes lo
    v = v < hi ? v : hi;
    y[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(v)) + zp);
  }
}

void q8_dequantize__portable(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                             const Q8Dequant& d, float* out, size_t ldo) {
  for (size_t r = 0; r < rows; ++r) {
    const uint32_t rs = row ? static_cast<uint32_t>(row[r]) : 0u;
    const int32_t* ar = acc + r * acc_stride;
    float* o = out + r * ldo;
    for (size_t j = 0; j < nc; ++j) {
      const int32_t v = static_cast<int32_t>(static_cast<uint32_t>(ar[j]) + static_cast<uint32_t>(d.dcol[j]) * rs -
                                             static_cast<uint32_t>(d.ccol[j]));
      const float f = static_cast<float>(v) * d.scale[j];
      o[j] = d.bias ? f + d.bias[j] : f;
    }
    if (d.act == Activation::Gelu) gelu__portable(o, o, nc);
  }
}

// The plain walk: each source row (a column of B) read once, in order.
void pack_f32_transposed__portable(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d) {
  const size_t panels = (n + nr - 1) / nr;
  for (size_t p = 0; p < panels; ++p) {
    float* dp = d + p * k * nr;
    for (size_t j = 0; j < nr; ++j) {
      const size_t col = p * nr + j;
      for (size_t kk = 0; kk < k; ++kk) dp[kk * nr + j] = col < n ? src[col * ld + kk] : 0.f;
    }
  }
}

const Table& portable_table() {
  static const Table t{
      "portable", kF32Mr, kF32Nr, f32_gemm_4x16__portable, "f32_gemm_4x16__portable",
      kQ8Mr, kQ8Nr, q8_gemm_4x16__portable, "q8_gemm_4x16__portable",
      softmax__portable, scale__portable, attention_softmax_chain<scale__portable, softmax__portable>,
      pack_f32_transposed__portable, layernorm__portable, gelu__portable, erf__portable, exp__portable,
      minmax__portable, quantize_u8__portable, q8_dequantize__portable};
  return t;
}

}  // namespace medquant::runtime::kernels
