// The k-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K on 256-value super-blocks:
// reference quantizers (quantize_row_*_ref), importance-matrix quantizers
// (quantize_row_*_impl) and decoders, as in ggml-quants.c.
//
// Each row is done in two phases: the per-sub-block scale search for the
// whole row (kernels().qkx / qx / q3, vectorised across sub-blocks), then
// per super-block the scales are quantized, the values requantized with the
// stored fp16 scales and packed. The split changes no arithmetic: ggml's
// sub-block searches don't depend on each other.
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/kernels.h"

namespace medquant::quant::detail {

namespace {

void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6);
    }
  }
}

// Q2_K tail shared by both paths: requantize with the stored scales, pack.
void requantize_pack_q2_K(const float* x, BlockQ2K* y, uint8_t* L) {
  float d[kQK / 16], dm[kQK / 16];
  for (int j = 0; j < kQK / 16; ++j) {
    d[j] = from_half(y->d) * (y->scales[j] & 0xF);
    dm[j] = from_half(y->dmin) * (y->scales[j] >> 4);
  }
  kernels().requant(16, kQK / 16, x, d, dm, 0, 3, 0, L);
  pack_2bit(L, y->qs);
}

void set_scale_q3_K(uint8_t* scales, int j, int l) {
  if (j < 8) {
    scales[j] = l & 0xF;
  } else {
    scales[j - 8] |= ((l & 0xF) << 4);
  }
  l >>= 4;
  scales[j % 4 + 8] |= (l << (2 * (j / 4)));
}

// Q3_K tail shared by both paths. L holds values 0..7 (signed quant + 4).
void requantize_pack_q3_K(const float* x, BlockQ3K* y, uint8_t* L) {
  float d[kQK / 16];
  for (int j = 0; j < kQK / 16; ++j) {
    int8_t sc = j < 8 ? y->scales[j] & 0xF : y->scales[j - 8] >> 4;
    sc = (sc | (((y->scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
    d[j] = from_half(y->d) * sc;
  }
  kernels().requant(16, kQK / 16, x, d, nullptr, -4, 3, 4, L);
  // The high bit of values 0..31 goes to bit 0 of hmask[0..31], of 32..63 to
  // bit 1, and so on.
  std::memset(y->hmask, 0, kQK / 8);
  for (int k = 0; k < 8; ++k) {
    for (int m = 0; m < 32; ++m) {
      const uint8_t high = L[32 * k + m] > 3;
      y->hmask[m] |= high << k;
      L[32 * k + m] -= 4 * high;
    }
  }
  pack_2bit(L, y->qs);
}

void set_scale_min_k4(uint8_t* scales, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
    scales[j - 4] |= ((ls >> 4) << 6);
    scales[j - 0] |= ((lm >> 4) << 6);
  }
}

// Q4_K / Q5_K: requantize each 32-value sub-block with its stored scale/min.
void requantize_k4(const float* x, uint16_t d16, uint16_t dmin16, const uint8_t* scales, int nmax,
                   uint8_t* L) {
  float d[kQK / 32], dm[kQK / 32];
  uint8_t sc, m;
  for (int j = 0; j < kQK / 32; ++j) {
    get_scale_min_k4(j, scales, &sc, &m);
    d[j] = from_half(d16) * sc;
    dm[j] = from_half(dmin16) * m;
  }
  kernels().requant(32, kQK / 32, x, d, dm, 0, nmax, 0, L);
}

// Reference tail of Q4_K / Q5_K: the 8 (scale, min) pairs to 6 bits each.
void scales_k4_ref(const float* scales, const float* mins, uint16_t* d, uint16_t* dmin,
                   uint8_t* packed) {
  float max_scale = 0;  // as the min is deducted, scales are never negative
  float max_min = 0;
  for (int j = 0; j < kQK / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  for (int j = 0; j < kQK / 32; ++j) {
    uint8_t ls = nearest_int(inv_scale * scales[j]);
    uint8_t lm = nearest_int(inv_min * mins[j]);
    ls = qmin<uint8_t>(63, ls);
    lm = qmin<uint8_t>(63, lm);
    set_scale_min_k4(packed, j, ls, lm);
  }
  *d = to_half(max_scale / 63.f);
  *dmin = to_half(max_min / 63.f);
}

// Importance-matrix tail of Q4_K / Q5_K: scales and mins via make_qp_quants.
void scales_k4_impl(const float* scales, const float* mins, const float* sw, uint16_t* d,
                    uint16_t* dmin, uint8_t* packed) {
  uint8_t Ls[kQK / 32], Lm[kQK / 32];
  float d_block = make_qp_quants(kQK / 32, 63, scales, Ls, sw);
  float m_block = make_qp_quants(kQK / 32, 63, mins, Lm, sw);
  for (int j = 0; j < kQK / 32; ++j) {
    // ggml's Q5_K clamps to 63 here and Q4_K doesn't; make_qp_quants never
    // goes above nmax, so the two agree.
    set_scale_min_k4(packed, j, qmin<uint8_t>(63, Ls[j]), qmin<uint8_t>(63, Lm[j]));
  }
  *d = to_half(d_block);
  *dmin = to_half(m_block);
}

void pack_q4_K(BlockQ4K* y, const uint8_t* L) {
  uint8_t* q = y->qs;
  for (int j = 0; j < kQK; j += 64) {
    for (int l = 0; l < 32; ++l) q[l] = L[j + l] | (L[j + l + 32] << 4);
    q += 32;
  }
}

void pack_q5_K(BlockQ5K* y, const uint8_t* L) {
  uint8_t* qh = y->qh;
  uint8_t* ql = y->qs;
  std::memset(qh, 0, kQK / 8);
  for (int n = 0; n < kQK / 64; ++n) {
    for (int j = 0; j < 32; ++j) {
      const int l1 = L[64 * n + j];
      const int l2 = L[64 * n + j + 32];
      qh[j] |= ((l1 > 15) << (2 * n)) | ((l2 > 15) << (2 * n + 1));
      ql[32 * n + j] = (l1 & 15) | ((l2 & 15) << 4);
    }
  }
}

// Weights of the reference Q4_K / Q5_K search for one 32-value sub-block.
void k4_ref_weights(const float* x, float* weights) {
  float sum_x2 = 0;
  for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
  float av_x = std::sqrt(sum_x2 / 32);
  for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[l]);
}

// Weights (and per-sub-block sums) of the imatrix Q4_K / Q5_K search for one
// super-block.
void k4_impl_weights(const float* x, const float* qw, float* weights, float* sw) {
  float sum_x2 = 0;
  for (int l = 0; l < kQK; ++l) sum_x2 += x[l] * x[l];
  float sigma2 = 2 * sum_x2 / kQK;
  for (int j = 0; j < kQK / 32; ++j) {
    float* w = weights + 32 * j;
    for (int l = 0; l < 32; ++l)
      w[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
    float sumw = 0;
    for (int l = 0; l < 32; ++l) sumw += w[l];
    sw[j] = sumw;
  }
}

template <typename Block, int kNmax>
void quantize_row_k4(const float* x, Block* y, int64_t n, const float* qw) {
  const int64_t nb = n / kQK;
  RowScratch& s = row_scratch(n, 32);
  if (!qw) {
    for (int64_t j = 0; j < n / 32; ++j) k4_ref_weights(x + 32 * j, s.weights.data() + 32 * j);
    // Q4_K searches 21 scales from -1 in steps of 0.1, Q5_K 16 from -0.5.
    kernels().qkx(32, n / 32, kNmax, x, s.weights.data(), s.L.data(), s.scales.data(),
                  s.mins.data(), kNmax == 15 ? -1.f : -0.5f, 0.1f, kNmax == 15 ? 20 : 15, false,
                  false);
  } else {
    for (int64_t i = 0; i < nb; ++i) {
      k4_impl_weights(x + kQK * i, qw + kQK * i, s.weights.data() + kQK * i, s.sw.data() + 8 * i);
    }
    kernels().qkx(32, n / 32, kNmax, x, s.weights.data(), s.L.data(), s.scales.data(),
                  s.mins.data(), -0.9f, 0.05f, 36, false, true);
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + kQK * i;
    uint8_t* L = s.L.data() + kQK * i;
    if (!qw) {
      scales_k4_ref(s.scales.data() + 8 * i, s.mins.data() + 8 * i, &y[i].d, &y[i].dmin,
                    y[i].scales);
    } else {
      scales_k4_impl(s.scales.data() + 8 * i, s.mins.data() + 8 * i, s.sw.data() + 8 * i, &y[i].d,
                     &y[i].dmin, y[i].scales);
    }
    requantize_k4(xb, y[i].d, y[i].dmin, y[i].scales, kNmax, L);
    if constexpr (kNmax == 15) {
      pack_q4_K(&y[i], L);
    } else {
      pack_q5_K(&y[i], L);
    }
  }
}

}  // namespace

RowScratch& row_scratch(int64_t n, int sub) {
  thread_local RowScratch s;
  if (static_cast<int64_t>(s.weights.size()) < n) {
    s.weights.resize(n);
    s.L.resize(n);
  }
  if (static_cast<int64_t>(s.scales.size()) < n / sub) {
    s.scales.resize(n / sub);
    s.mins.resize(n / sub);
    s.sw.resize(n / sub);
  }
  return s;
}

// ---- Q2_K

void quantize_row_q2_K(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ2K*>(vy);
  const int64_t nb = n / kQK;
  RowScratch& s = row_scratch(n, 16);
  float* weights = s.weights.data();
  if (!qw) {
    for (int64_t j = 0; j < n; ++j) weights[j] = std::fabs(x[j]);
    kernels().qkx(16, n / 16, 3, x, weights, s.L.data(), s.scales.data(), s.mins.data(), -0.5f,
                  0.1f, 15, true, false);
  } else {
    for (int64_t i = 0; i < nb; ++i) {
      const float* xb = x + kQK * i;
      float sumx2 = 0;
      for (int j = 0; j < kQK; ++j) sumx2 += xb[j] * xb[j];
      float sigma2 = sumx2 / kQK;
      for (int j = 0; j < kQK / 16; ++j) {
        float* w = weights + kQK * i + 16 * j;
        const float* q = qw + kQK * i + 16 * j;
        for (int l = 0; l < 16; ++l)
          w[l] = q[l] * std::sqrt(sigma2 + xb[16 * j + l] * xb[16 * j + l]);
        float sum = 0;
        for (int l = 0; l < 16; ++l) sum += w[l];
        s.sw[16 * i + j] = sum;
      }
    }
    kernels().qkx(16, n / 16, 3, x, weights, s.L.data(), s.scales.data(), s.mins.data(), -0.9f,
                  0.05f, 36, false, true);
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + kQK * i;
    const float* scales = s.scales.data() + 16 * i;
    const float* mins = s.mins.data() + 16 * i;
    uint8_t* L = s.L.data() + kQK * i;
    if (!qw) {
      const float q4scale = 15.f;
      float max_scale = 0;  // as the min is deducted, scales are never negative
      float max_min = 0;
      for (int j = 0; j < kQK / 16; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      if (max_scale > 0) {
        float iscale = q4scale / max_scale;
        for (int j = 0; j < kQK / 16; ++j) y[i].scales[j] = nearest_int(iscale * scales[j]);
        y[i].d = to_half(max_scale / q4scale);
      } else {
        for (int j = 0; j < kQK / 16; ++j) y[i].scales[j] = 0;
        y[i].d = to_half(0.f);
      }
      if (max_min > 0) {
        float iscale = q4scale / max_min;
        for (int j = 0; j < kQK / 16; ++j) {
          int l = nearest_int(iscale * mins[j]);
          y[i].scales[j] |= (l << 4);
        }
        y[i].dmin = to_half(max_min / q4scale);
      } else {
        y[i].dmin = to_half(0.f);
      }
    } else {
      uint8_t Ls[kQK / 16], Lm[kQK / 16];
      float dm = make_qp_quants(kQK / 16, 15, scales, Ls, s.sw.data() + 16 * i);
      float mm = make_qp_quants(kQK / 16, 15, mins, Lm, s.sw.data() + 16 * i);
      y[i].d = to_half(dm);
      y[i].dmin = to_half(mm);
      for (int j = 0; j < kQK / 16; ++j) y[i].scales[j] = Ls[j] | (Lm[j] << 4);
    }
    requantize_pack_q2_K(xb, &y[i], L);
  }
}

// ---- Q3_K

void quantize_row_q3_K(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ3K*>(vy);
  const int64_t nb = n / kQK;
  RowScratch& s = row_scratch(n, 16);
  auto* L_all = reinterpret_cast<int8_t*>(s.L.data());
  if (!qw) {
    kernels().q3(16, n / 16, 4, x, L_all, s.scales.data());
  } else {
    float* weights = s.weights.data();
    for (int64_t i = 0; i < nb; ++i) {
      const float* xb = x + kQK * i;
      float sumx2 = 0;
      for (int j = 0; j < kQK; ++j) sumx2 += xb[j] * xb[j];
      float sigma2 = 2 * sumx2 / kQK;
      for (int j = 0; j < kQK / 16; ++j) {
        float* w = weights + kQK * i + 16 * j;
        const float* q = qw + kQK * i + 16 * j;
        for (int l = 0; l < 16; ++l)
          w[l] = q[l] * std::sqrt(sigma2 + xb[16 * j + l] * xb[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += w[l];
        s.sw[16 * i + j] = sumw;
      }
    }
    kernels().qx(16, n / 16, 4, x, weights, L_all, s.scales.data());
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + kQK * i;
    const float* scales = s.scales.data() + 16 * i;
    int8_t* L = L_all + kQK * i;
    std::memset(y[i].scales, 0, 12);
    if (!qw) {
      float max_scale = 0;
      float amax = 0;
      for (int j = 0; j < kQK / 16; ++j) {
        float scale = std::fabs(scales[j]);
        if (scale > amax) {
          amax = scale;
          max_scale = scales[j];
        }
      }
      if (max_scale) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < kQK / 16; ++j) {
          int8_t l = nearest_int(iscale * scales[j]);
          l = qmax(-32, qmin(31, static_cast<int>(l))) + 32;
          set_scale_q3_K(y[i].scales, j, l);
        }
        y[i].d = to_half(1 / iscale);
      } else {
        y[i].d = to_half(0.f);
      }
    } else {
      int8_t Ls[kQK / 16];
      float d_block = make_qx_quants(kQK / 16, 32, scales, Ls, 1, s.sw.data() + 16 * i);
      for (int j = 0; j < kQK / 16; ++j) set_scale_q3_K(y[i].scales, j, Ls[j]);
      y[i].d = to_half(d_block);
    }
    requantize_pack_q3_K(xb, &y[i], reinterpret_cast<uint8_t*>(L));
  }
}

// ---- Q4_K, Q5_K

void quantize_row_q4_K(const float* x, void* y, int64_t n, const float* qw) {
  quantize_row_k4<BlockQ4K, 15>(x, static_cast<BlockQ4K*>(y), n, qw);
}

void quantize_row_q5_K(const float* x, void* y, int64_t n, const float* qw) {
  quantize_row_k4<BlockQ5K, 31>(x, static_cast<BlockQ5K*>(y), n, qw);
}

// ---- Q6_K (the imatrix path uses the importance weights as they are)

void quantize_row_q6_K(const float* x, void* vy, int64_t n, const float* qw) {
  auto* y = static_cast<BlockQ6K*>(vy);
  const int64_t nb = n / kQK;
  RowScratch& s = row_scratch(n, 16);
  auto* L_all = reinterpret_cast<int8_t*>(s.L.data());
  kernels().qx(16, n / 16, 32, x, qw, L_all, s.scales.data());
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + kQK * i;
    const float* scales = s.scales.data() + 16 * i;
    int8_t* L = L_all + kQK * i;
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQK / 16; ++ib) {
      const float abs_scale = std::fabs(scales[ib]);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scales[ib];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6K));
      y[i].d = to_half(0.f);
      continue;
    }
    float iscale = -128.f / max_scale;
    y[i].d = to_half(1 / iscale);
    for (int ib = 0; ib < kQK / 16; ++ib)
      y[i].scales[ib] = qmin(127, nearest_int(iscale * scales[ib]));
    float d[kQK / 16];
    for (int j = 0; j < kQK / 16; ++j) d[j] = from_half(y[i].d) * y[i].scales[j];
    kernels().requant(16, kQK / 16, xb, d, nullptr, -32, 31, 32, reinterpret_cast<uint8_t*>(L));
    uint8_t* ql = y[i].ql;
    uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQK; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l + 0] & 0xF;
        const uint8_t q2 = L[j + l + 32] & 0xF;
        const uint8_t q3 = L[j + l + 64] & 0xF;
        const uint8_t q4 = L[j + l + 96] & 0xF;
        ql[l + 0] = q1 | (q3 << 4);
        ql[l + 32] = q2 | (q4 << 4);
        qh[l] = (L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                ((L[j + l + 96] >> 4) << 6);
      }
      ql += 64;
      qh += 32;
    }
  }
}

// ---- decoders

void dequantize_row_q2_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ2K*>(vx);
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    const float min = from_half(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    float dl, ml;
    for (int n = 0; n < kQK; n += 128) {
      int shift = 0;
      for (int j = 0; j < 4; ++j) {
        uint8_t sc = x[i].scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l] >> shift) & 3) - ml;
        sc = x[i].scales[is++];
        dl = d * (sc & 0xF);
        ml = min * (sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l + 16] >> shift) & 3) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}

// Decoders: ggml's loops, rearranged so the compiler can vectorise them
// (first the integer quants of a block, then one float product per value);
// every value gets the same float operations as in ggml.
void dequantize_row_q3_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ3K*>(vx);
  const int64_t nb = k / kQK;
  const uint32_t kmask1 = 0x03030303;
  const uint32_t kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  for (int64_t i = 0; i < nb; i++) {
    const float d_all = from_half(x[i].d);
    std::memcpy(aux, x[i].scales, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    int8_t scales[16];
    std::memcpy(scales, aux, 16);
    // Value v = 128h + 32s + l (s = shift step): bits 2s of qs[32h + l],
    // high bit s + 4h of hmask[l]; scale v / 16.
    int8_t q[kQK];
    for (int h = 0; h < 2; ++h) {
      for (int s = 0; s < 4; ++s) {
        for (int l = 0; l < 32; ++l) {
          const int low = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
          const int high = x[i].hmask[l] & (1 << (4 * h + s));
          q[128 * h + 32 * s + l] = static_cast<int8_t>(low - (high ? 0 : 4));
        }
      }
    }
    float dl[16];
    for (int j = 0; j < 16; ++j) dl[j] = d_all * (scales[j] - 32);
    for (int v = 0; v < kQK; ++v) y[v] = dl[v / 16] * q[v];
    y += kQK;
  }
}

void dequantize_row_q4_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ4K*>(vx);
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t* q = x[i].qs;
    const float d = from_half(x[i].d);
    const float min = from_half(x[i].dmin);
    int is = 0;
    uint8_t sc, m;
    for (int j = 0; j < kQK; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void dequantize_row_q5_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ5K*>(vx);
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    const float d = from_half(x[i].d);
    const float min = from_half(x[i].dmin);
    int is = 0;
    uint8_t sc, m;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < kQK; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

void dequantize_row_q6_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ6K*>(vx);
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; i++) {
    const float d = from_half(x[i].d);
    // Value v = 128h + 32s + l: low nibble of ql[64h + l + 32(s & 1)] (high
    // nibble for s >= 2), bits 2s of qh[32h + l]; scale v / 16.
    int8_t q[kQK];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const uint8_t* qh = x[i].qh + 32 * h;
      for (int l = 0; l < 32; ++l) {
        q[128 * h + l + 0] =
            static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        q[128 * h + l + 32] =
            static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        q[128 * h + l + 64] =
            static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        q[128 * h + l + 96] =
            static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      }
    }
    float ds[16];
    for (int j = 0; j < 16; ++j) ds[j] = d * x[i].scales[j];
    for (int v = 0; v < kQK; ++v) y[v] = ds[v / 16] * q[v];
    y += kQK;
  }
}

void dequantize_row_q8_K(const void* vx, float* y, int64_t k) {
  const auto* x = static_cast<const BlockQ8K*>(vx);
  const int64_t nb = k / kQK;
  for (int64_t i = 0; i < nb; i++) {
    for (int j = 0; j < kQK; ++j) *y++ = x[i].d * x[i].qs[j];
  }
}

}  // namespace medquant::quant::detail
