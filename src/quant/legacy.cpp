// The 32-value block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: reference
// quantizers (quantize_row_*_ref), the importance-matrix quantizers
// (quantize_row_*_impl) and the decoders, as in ggml-quants.c.
#include <xmmintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/kernels.h"

namespace medquant::quant::detail {

namespace {

// ggml writes (int8_t)(float) and (uint8_t)(float); on x86 that is a
// truncating conversion to int32 (cvttss2si: INT_MIN for NaN, inf and out of
// range) and keeping the low byte. Spelled as the instruction, since the C++
// cast is undefined for those values (UBSan stops there).
inline int trunc_i32(float f) {
  return _mm_cvtt_ss2si(_mm_set_ss(f));
}
inline int8_t trunc_i8(float f) {
  return static_cast<int8_t>(trunc_i32(f));
}
inline uint8_t trunc_u8(float f) {
  return static_cast<uint8_t>(trunc_i32(f));
}

void q4_0_ref(const float* x, BlockQ4_0* y, int64_t k) {
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < qk; j++) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + 0 + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const uint8_t xi0 = qmin<int>(15, trunc_i8(x0 + 8.5f));
      const uint8_t xi1 = qmin<int>(15, trunc_i8(x1 + 8.5f));
      y[i].qs[j] = xi0;
      y[i].qs[j] |= xi1 << 4;
    }
  }
}

void q4_1_ref(const float* x, BlockQ4_1* y, int64_t k) {
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < qk; j++) {
      const float v = x[i * qk + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 4) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    y[i].m = to_half(min);
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = (x[i * qk + 0 + j] - min) * id;
      const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
      const uint8_t xi0 = qmin<int>(15, trunc_i8(x0 + 0.5f));
      const uint8_t xi1 = qmin<int>(15, trunc_i8(x1 + 0.5f));
      y[i].qs[j] = xi0;
      y[i].qs[j] |= xi1 << 4;
    }
  }
}

void q5_0_ref(const float* x, BlockQ5_0* y, int64_t k) {
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < qk; j++) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + 0 + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const uint8_t xi0 = qmin<int>(31, trunc_i8(x0 + 16.5f));
      const uint8_t xi1 = qmin<int>(31, trunc_i8(x1 + 16.5f));
      y[i].qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    std::memcpy(&y[i].qh, &qh, sizeof(qh));
  }
}

void q5_1_ref(const float* x, BlockQ5_1* y, int64_t k) {
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < qk; j++) {
      const float v = x[i * qk + j];
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const float d = (max - min) / ((1 << 5) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    y[i].m = to_half(min);
    uint32_t qh = 0;
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = (x[i * qk + 0 + j] - min) * id;
      const float x1 = (x[i * qk + qk / 2 + j] - min) * id;
      const uint8_t xi0 = trunc_u8(x0 + 0.5f);
      const uint8_t xi1 = trunc_u8(x1 + 0.5f);
      y[i].qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
      qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
      qh |= ((xi1 & 0x10u) >> 4) << (j + qk / 2);
    }
    std::memcpy(&y[i].qh, &qh, sizeof(qh));
  }
}

void q8_0_ref(const float* x, BlockQ8_0* y, int64_t k) {
  const int64_t nb = k / kQK32;
  for (int64_t i = 0; i < nb; i++) {
    float amax = 0.0f;
    for (int j = 0; j < kQK32; j++) {
      const float v = x[i * kQK32 + j];
      amax = qmax(amax, std::fabs(v));
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    for (int j = 0; j < kQK32; ++j) {
      const float x0 = x[i * kQK32 + j] * id;
      y[i].qs[j] = trunc_i8(std::round(x0));
    }
  }
}

// Importance weights of the imatrix paths; sigma2 is the mean square of the
// whole row.
void legacy_weights(const float* x, const float* qw, int64_t n, float* w) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / n;
  for (int64_t j = 0; j < n; ++j) w[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
}

// 32 five-bit quants (0..31) into 16 bytes of low nibbles and 32 high bits.
void pack_5bit(const uint8_t* L, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const uint8_t xi0 = L[j];
    const uint8_t xi1 = L[j + 16];
    qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
    qh |= ((xi0 & 0x10u) >> 4) << (j + 0);
    qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, sizeof(qh));
}

}  // namespace

void legacy_ref_portable(Legacy kind, const float* x, void* y, int64_t nb) {
  const int64_t n = nb * kQK32;
  switch (kind) {
    case Legacy::Q4_0:
      return q4_0_ref(x, static_cast<BlockQ4_0*>(y), n);
    case Legacy::Q4_1:
      return q4_1_ref(x, static_cast<BlockQ4_1*>(y), n);
    case Legacy::Q5_0:
      return q5_0_ref(x, static_cast<BlockQ5_0*>(y), n);
    case Legacy::Q5_1:
      return q5_1_ref(x, static_cast<BlockQ5_1*>(y), n);
    case Legacy::Q8_0:
      return q8_0_ref(x, static_cast<BlockQ8_0*>(y), n);
  }
}

// The imatrix paths weigh value j by qw[j] * sqrt(sigma2 + x[j]^2), then
// search each block's scale; the searches run batched over the whole row.
void quantize_row_q4_0(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ4_0*>(vy);
  if (!qw) return kernels().legacy_ref(Legacy::Q4_0, x, y, n / kQK32);
  RowScratch& s = row_scratch(n, kQK32);
  auto* L = reinterpret_cast<int8_t*>(s.L.data());
  legacy_weights(x, qw, n, s.weights.data());
  kernels().qx(kQK32, n / kQK32, 8, x, s.weights.data(), L, s.scales.data());
  for (int64_t ib = 0; ib < n / kQK32; ++ib) {
    y[ib].d = to_half(s.scales[ib]);
    const int8_t* Lb = L + kQK32 * ib;
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = Lb[j] | (Lb[j + 16] << 4);
  }
}

void quantize_row_q4_1(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ4_1*>(vy);
  if (!qw) return kernels().legacy_ref(Legacy::Q4_1, x, y, n / kQK32);
  RowScratch& s = row_scratch(n, kQK32);
  legacy_weights(x, qw, n, s.weights.data());
  kernels().qkx(kQK32, n / kQK32, 15, x, s.weights.data(), s.L.data(), s.scales.data(),
                s.mins.data(), -0.9f, 0.05f, 36, false, true);
  for (int64_t ib = 0; ib < n / kQK32; ++ib) {
    y[ib].d = to_half(s.scales[ib]);
    y[ib].m = to_half(-s.mins[ib]);
    const uint8_t* Lb = s.L.data() + kQK32 * ib;
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = Lb[j] | (Lb[j + 16] << 4);
  }
}

void quantize_row_q5_0(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ5_0*>(vy);
  if (!qw) return kernels().legacy_ref(Legacy::Q5_0, x, y, n / kQK32);
  RowScratch& s = row_scratch(n, kQK32);
  auto* L = reinterpret_cast<int8_t*>(s.L.data());
  legacy_weights(x, qw, n, s.weights.data());
  kernels().qx(kQK32, n / kQK32, 16, x, s.weights.data(), L, s.scales.data());
  for (int64_t ib = 0; ib < n / kQK32; ++ib) {
    y[ib].d = to_half(s.scales[ib]);
    pack_5bit(reinterpret_cast<const uint8_t*>(L) + kQK32 * ib, y[ib].qs, y[ib].qh);
  }
}

void quantize_row_q5_1(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ5_1*>(vy);
  if (!qw) return kernels().legacy_ref(Legacy::Q5_1, x, y, n / kQK32);
  RowScratch& s = row_scratch(n, kQK32);
  legacy_weights(x, qw, n, s.weights.data());
  kernels().qkx(kQK32, n / kQK32, 31, x, s.weights.data(), s.L.data(), s.scales.data(),
                s.mins.data(), -0.9f, 0.05f, 36, false, true);
  for (int64_t ib = 0; ib < n / kQK32; ++ib) {
    y[ib].d = to_half(s.scales[ib]);
    y[ib].m = to_half(-s.mins[ib]);
    pack_5bit(s.L.data() + kQK32 * ib, y[ib].qs, y[ib].qh);
  }
}

// Q8_0 has no importance-weighted variant in ggml.
void quantize_row_q8_0(const float* x, void* vy, int64_t n, const float* /*imatrix*/) {
  kernels().legacy_ref(Legacy::Q8_0, x, vy, n / kQK32);
}

void dequantize_row_q4_0(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ4_0*>(vx);
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    for (int j = 0; j < qk / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * qk + j + 0] = x0 * d;
      y[i * qk + j + qk / 2] = x1 * d;
    }
  }
}

void dequantize_row_q4_1(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ4_1*>(vx);
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    const float m = from_half(x[i].m);
    for (int j = 0; j < qk / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F);
      const int x1 = (x[i].qs[j] >> 4);
      y[i * qk + j + 0] = x0 * d + m;
      y[i * qk + j + qk / 2] = x1 * d + m;
    }
  }
}

void dequantize_row_q5_0(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ5_0*>(vx);
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, sizeof(qh));
    for (int j = 0; j < qk / 2; ++j) {
      const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
      const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
      const int32_t x0 = ((x[i].qs[j] & 0x0F) | xh_0) - 16;
      const int32_t x1 = ((x[i].qs[j] >> 4) | xh_1) - 16;
      y[i * qk + j + 0] = x0 * d;
      y[i * qk + j + qk / 2] = x1 * d;
    }
  }
}

void dequantize_row_q5_1(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ5_1*>(vx);
  const int qk = kQK32;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    const float m = from_half(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, sizeof(qh));
    for (int j = 0; j < qk / 2; ++j) {
      const uint8_t xh_0 = ((qh >> (j + 0)) << 4) & 0x10;
      const uint8_t xh_1 = ((qh >> (j + 12))) & 0x10;
      const int x0 = (x[i].qs[j] & 0x0F) | xh_0;
      const int x1 = (x[i].qs[j] >> 4) | xh_1;
      y[i * qk + j + 0] = x0 * d + m;
      y[i * qk + j + qk / 2] = x1 * d + m;
    }
  }
}

void dequantize_row_q8_0(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ8_0*>(vx);
  const int64_t nb = k / kQK32;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    for (int j = 0; j < kQK32; ++j) y[i * kQK32 + j] = x[i].qs[j] * d;
  }
}

}  // namespace medquant::quant::detail
