// AVX-512 float kernels: the 12x32 GEMM micro-kernel (24 zmm accumulators,
// B panel rows of 32 floats, A broadcast per row) and the row functions.
#if defined(__x86_64__)
#include <immintrin.h>

#include "runtime/kernels/x86.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define VEC __m512
#define VSET _mm512_set1_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
#define VMIN _mm512_min_ps
#define VMAX _mm512_max_ps
#define VFMADD _mm512_fmadd_ps
#define VFNMADD _mm512_fnmadd_ps
#define VROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2N(p, n) _mm512_scalef_ps((p), (n))
#define VABS(x) _mm512_abs_ps(x)
#define VCOPYSIGN(mag, sgn) \
  _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(sgn), _mm512_set1_epi32(0x7fffffff), 0xe4))
#define VBLEND_LT(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ), (y), (x))

namespace medquant::runtime::kernels {
namespace {
#include "runtime/kernels/x86_math.inc"

inline __mmask16 TARGET tail_mask(size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Deep products (weights: K of hundreds and more) read their panel from
// memory, where the hardware prefetcher stops at each 4 KiB page: PREFETCH
// asks for the panel rows 6 KiB ahead (+3-6 % on ViT-B weights not in cache;
// short attention products skip it).
constexpr size_t kPrefetchMinK = 256, kPrefetchRows = 48;

template <int MR, bool PREFETCH>
void TARGET gemm_tile(size_t kc, const float* a, size_t a_stride, const float* w, float* c, size_t c_stride,
                      const float* bias) {
  __m512 acc0[MR], acc1[MR];
  const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    acc0[i] = b0;
    acc1[i] = b1;
  }
  const float* ar[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) ar[i] = a + i * a_stride;
  for (size_t k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_loadu_ps(w);
    const __m512 w1 = _mm512_loadu_ps(w + 16);
    if constexpr (PREFETCH) {  // never faults, also past the panel's end
      _mm_prefetch(reinterpret_cast<const char*>(w + 32 * kPrefetchRows), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w + 32 * kPrefetchRows + 16), _MM_HINT_T0);
    }
    w += 32;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(ar[i][k]);
      acc0[i] = _mm512_fmadd_ps(av, w0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, w1, acc1[i]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_ps(c + i * c_stride, acc0[i]);
    _mm512_storeu_ps(c + i * c_stride + 16, acc1[i]);
  }
}

// The left 16 columns of a panel only (a tile of nc <= 16 columns: half the
// FMAs; every column it computes is the same sum as gemm_tile's).
template <int MR>
void TARGET gemm_tile_half(size_t kc, const float* a, size_t a_stride, const float* w, float* c, size_t c_stride,
                           const float* bias) {
  __m512 acc[MR];
  const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i] = b0;
  const float* ar[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) ar[i] = a + i * a_stride;
  for (size_t k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_loadu_ps(w);
    w += 32;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ar[i][k]), w0, acc[i]);
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) _mm512_storeu_ps(c + i * c_stride, acc[i]);
}

template <int MR>
void TARGET tile(bool half, size_t kc, const float* a, size_t a_stride, const float* w, float* c, size_t c_stride,
                 const float* bias) {
  if (half) gemm_tile_half<MR>(kc, a, a_stride, w, c, c_stride, bias);
  else if (kc >= kPrefetchMinK) gemm_tile<MR, true>(kc, a, a_stride, w, c, c_stride, bias);
  else gemm_tile<MR, false>(kc, a, a_stride, w, c, c_stride, bias);
}

}  // namespace

void TARGET f32_gemm_12x32__avx512(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                                   const float* w, float* c, size_t c_stride, const float* bias) {
  // A tile of at most 16 columns (the last panel of attention's q K^T) takes
  // the half-width kernel; wider ones compute all 32 columns.
  switch (mr) {
    case 1: return tile<1>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 2: return tile<2>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 3: return tile<3>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 4: return tile<4>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 5: return tile<5>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 6: return tile<6>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 7: return tile<7>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 8: return tile<8>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 9: return tile<9>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 10: return tile<10>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    case 11: return tile<11>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
    default: return tile<12>(nc <= 16, kc, a, a_stride, w, c, c_stride, bias);
  }
}

void TARGET exp__avx512(const float* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, vexp(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, vexp(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void TARGET erf__avx512(const float* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, verf(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, verf(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void TARGET gelu__avx512(const float* x, float* y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, vgelu(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, vgelu(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void TARGET scale__avx512(const float* x, float* y, size_t n, float s, bool divide) {
  const __m512 vs = _mm512_set1_ps(s);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, divide ? _mm512_div_ps(v, vs) : _mm512_mul_ps(v, vs));
  }
}

namespace {
// Softmax's passes after the row maximum: y = exp(x - max) and their sum
// (returned), then y * (1 / sum).
float TARGET softmax_exp(const float* x, float* y, size_t n, float max) {
  const __m512 mx = _mm512_set1_ps(max);
  __m512 vsum = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = vexp(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
    _mm512_storeu_ps(y + i, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
    _mm512_mask_storeu_ps(y + i, m, e);
    vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
  }
  return _mm512_reduce_add_ps(vsum);
}
void TARGET softmax_normalize(float* y, size_t n, float sum) {
  const __m512 inv = _mm512_set1_ps(1.f / sum);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
  }
}
}  // namespace

void TARGET softmax__avx512(const float* x, float* y, size_t n) {
  if (n == 0) return;
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  size_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  if (i < n) vmax = _mm512_mask_max_ps(vmax, tail_mask(n - i), vmax, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  softmax_normalize(y, n, softmax_exp(x, y, n, _mm512_reduce_max_ps(vmax)));
}

namespace {
// R rows side by side through each pass, so their dependency chains (the
// running max and sum, the horizontal reductions) overlap; each row's own
// operations are those of softmax__avx512 in the same order. The scaled (and
// masked) values are stored as the Mul/Div and Add operators would store them,
// their maximum taken in the same pass; the empty asm keeps the compiler from
// contracting the product and the mask add into an FMA.
template <int R>
void TARGET attention_softmax_rows(float* x, size_t ld, size_t n, __m512 vs, bool divide, const float* mask) {
  float* row[R];
  __m512 acc[R], mx[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    row[r] = x + r * ld;
    acc[r] = _mm512_set1_ps(-__builtin_inff());
  }
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 mv = mask ? _mm512_maskz_loadu_ps(m, mask + i) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512 v = _mm512_maskz_loadu_ps(m, row[r] + i);
      v = divide ? _mm512_div_ps(v, vs) : _mm512_mul_ps(v, vs);
      if (mask) {
        __asm__("" : "+v"(v));
        v = _mm512_add_ps(v, mv);
      }
      _mm512_mask_storeu_ps(row[r] + i, m, v);
      acc[r] = _mm512_mask_max_ps(acc[r], m, acc[r], v);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    mx[r] = _mm512_set1_ps(_mm512_reduce_max_ps(acc[r]));
    acc[r] = _mm512_setzero_ps();
  }
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 e = vexp(_mm512_sub_ps(_mm512_loadu_ps(row[r] + i), mx[r]));
      _mm512_storeu_ps(row[r] + i, e);
      acc[r] = _mm512_add_ps(acc[r], e);
    }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 e = vexp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row[r] + i), mx[r]));
      _mm512_mask_storeu_ps(row[r] + i, m, e);
      acc[r] = _mm512_mask_add_ps(acc[r], m, acc[r], e);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) softmax_normalize(row[r], n, _mm512_reduce_add_ps(acc[r]));
}
}  // namespace

void TARGET attention_softmax__avx512(float* x, size_t ld, size_t rows, size_t n, float s, bool divide,
                                      const float* mask) {
  if (n == 0) return;
  const __m512 vs = _mm512_set1_ps(s);
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) attention_softmax_rows<4>(x + r * ld, ld, n, vs, divide, mask);
  for (; r < rows; ++r) attention_softmax_rows<1>(x + r * ld, ld, n, vs, divide, mask);
}

// 16 x 16 blocks of src transposed in registers (unpack 32-bit, unpack 64-bit,
// then two 128-bit lane shuffles): src rows past n read as zeros, the last
// block of k is loaded masked and only its rows stored. nr: a multiple of 16.
void TARGET pack_f32_transposed__avx512(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d) {
  const size_t panels = (n + nr - 1) / nr;
  for (size_t p = 0; p < panels; ++p) {
    float* dp = d + p * k * nr;
    for (size_t jb = 0; jb < nr; jb += 16) {
      const size_t j0 = p * nr + jb;
      const size_t nj = j0 >= n ? 0 : n - j0 < 16 ? n - j0 : 16;
      for (size_t k0 = 0; k0 < k; k0 += 16) {
        const size_t nk = k - k0 < 16 ? k - k0 : 16;
        const __mmask16 km = nk == 16 ? static_cast<__mmask16>(0xffff) : tail_mask(nk);
        __m512 r[16], t[16];
#pragma GCC unroll 16
        for (size_t j = 0; j < 16; ++j)
          r[j] = j < nj ? _mm512_maskz_loadu_ps(km, src + (j0 + j) * ld + k0) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
          t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
          const __m512d c = _mm512_castps_pd(t[4 * i + 1]), e = _mm512_castps_pd(t[4 * i + 3]);
          r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
          r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
          r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
          r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
        }
        // r[4g + c], lane L: rows 4g..4g+3 of column 4L + c.
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m512 v0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), v1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xee);
          const __m512 v2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44), v3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xee);
          t[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
          t[4 + c] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
          t[8 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
          t[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
        }
        for (size_t c = 0; c < nk; ++c) _mm512_storeu_ps(dp + (k0 + c) * nr + jb, t[c]);
      }
    }
  }
}

void TARGET layernorm__avx512(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps) {
  if (n == 0) return;
  __m512 vs = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) vs = _mm512_add_ps(vs, _mm512_loadu_ps(x + i));
  if (i < n) vs = _mm512_add_ps(vs, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  const float mean = _mm512_reduce_add_ps(vs) / static_cast<float>(n);
  const __m512 vm = _mm512_set1_ps(mean);
  __m512 vv = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
    vv = _mm512_fmadd_ps(d, d, vv);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
    vv = _mm512_fmadd_ps(d, d, vv);
  }
  const float var = _mm512_reduce_add_ps(vv) / static_cast<float>(n);
  const __m512 inv = _mm512_set1_ps(1.f / __builtin_sqrtf(var + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), inv),
                             _mm512_maskz_loadu_ps(m, scale + i));
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

void TARGET minmax__avx512(const float* x, size_t n, float* mn, float* mx) {
  if (n == 0) {
    *mn = *mx = 0.f;
    return;
  }
  __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(x[0]), m, x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  *mn = _mm512_reduce_min_ps(lo);
  *mx = _mm512_reduce_max_ps(hi);
}

void TARGET quantize_u8__avx512(const float* x, uint8_t* y, size_t n, float scale, int32_t zp) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512 lo = _mm512_set1_ps(0.f - static_cast<float>(zp)), hi = _mm512_set1_ps(255.f - static_cast<float>(zp));
  const __m512i vz = _mm512_set1_epi32(zp);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);  // max(NaN, lo) = lo
    const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vz);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtusepi32_epi8(q));
  }
}

// The integer GEMM's epilogue (Table::q8_dequantize) in registers, 16 columns
// at a time; GELU on the same vector before it is stored.
void TARGET q8_dequantize__avx512(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                                  const Q8Dequant& d, float* out, size_t ldo) {
  for (size_t j = 0; j < nc; j += 16) {
    const __mmask16 m = nc - j >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(nc - j);
    const __m512i dcol = _mm512_maskz_loadu_epi32(m, d.dcol + j), ccol = _mm512_maskz_loadu_epi32(m, d.ccol + j);
    const __m512 scale = _mm512_maskz_loadu_ps(m, d.scale + j);
    const __m512 bias = d.bias ? _mm512_maskz_loadu_ps(m, d.bias + j) : _mm512_setzero_ps();
    for (size_t r = 0; r < rows; ++r) {
      __m512i v = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(m, acc + r * acc_stride + j), ccol);
      if (row) v = _mm512_add_epi32(v, _mm512_mullo_epi32(dcol, _mm512_set1_epi32(row[r])));
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale);
      if (d.bias) f = _mm512_add_ps(f, bias);
      if (d.act == Activation::Gelu) f = vgelu(f);
      _mm512_mask_storeu_ps(out + r * ldo + j, m, f);
    }
  }
}

}  // namespace medquant::runtime::kernels
#endif
