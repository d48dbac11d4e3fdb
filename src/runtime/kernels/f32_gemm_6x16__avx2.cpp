// AVX2 + FMA float kernels: the 6x16 GEMM micro-kernel (12 ymm accumulators)
// and the row functions (tails of fewer than 8 go through a padded vector).
#if defined(__x86_64__)
#include <immintrin.h>

#include "runtime/kernels/x86.h"

#define TARGET __attribute__((target("avx2,fma")))
#define VEC __m256
#define VSET _mm256_set1_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
#define VMIN _mm256_min_ps
#define VMAX _mm256_max_ps
#define VFMADD _mm256_fmadd_ps
#define VFNMADD _mm256_fnmadd_ps
#define VROUND(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VSCALE2N(p, n) \
  _mm256_mul_ps((p), _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))
#define VABS(x) _mm256_and_ps((x), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))
#define VCOPYSIGN(mag, sgn)                                                              \
  _mm256_or_ps(_mm256_and_ps((mag), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))), \
               _mm256_and_ps((sgn), _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)))))
#define VBLEND_LT(a, b, x, y) _mm256_blendv_ps((y), (x), _mm256_cmp_ps((a), (b), _CMP_LT_OQ))

namespace medquant::runtime::kernels {
namespace {
#include "runtime/kernels/x86_math.inc"

// As in the AVX-512 kernel: deep products prefetch their panel 6 KiB ahead
// past the 4 KiB pages where the hardware prefetcher stops.
constexpr size_t kPrefetchMinK = 256, kPrefetchRows = 96;

template <int MR, bool PREFETCH>
void TARGET gemm_tile(size_t kc, const float* a, size_t a_stride, const float* w, float* c, size_t c_stride,
                      const float* bias) {
  __m256 acc0[MR], acc1[MR];
  const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  const __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    acc0[i] = b0;
    acc1[i] = b1;
  }
  for (size_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_loadu_ps(w);
    const __m256 w1 = _mm256_loadu_ps(w + 8);
    if constexpr (PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(w + 16 * kPrefetchRows), _MM_HINT_T0);
    w += 16;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i * a_stride + k);
      acc0[i] = _mm256_fmadd_ps(av, w0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, w1, acc1[i]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(c + i * c_stride, acc0[i]);
    _mm256_storeu_ps(c + i * c_stride + 8, acc1[i]);
  }
}

template <bool PREFETCH>
void TARGET tile(size_t mr, size_t kc, const float* a, size_t a_stride, const float* w, float* c, size_t c_stride,
                 const float* bias) {
  switch (mr) {
    case 1: return gemm_tile<1, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
    case 2: return gemm_tile<2, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
    case 3: return gemm_tile<3, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
    case 4: return gemm_tile<4, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
    case 5: return gemm_tile<5, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
    default: return gemm_tile<6, PREFETCH>(kc, a, a_stride, w, c, c_stride, bias);
  }
}

inline float TARGET hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float TARGET hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float TARGET hmin(__m256 v) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  s = _mm_min_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Loads the last n < 8 floats padded with `fill`.
inline __m256 TARGET load_tail(const float* x, size_t n, float fill) {
  alignas(32) float buf[8];
  for (size_t i = 0; i < 8; ++i) buf[i] = i < n ? x[i] : fill;
  return _mm256_load_ps(buf);
}
inline void TARGET store_tail(float* y, size_t n, __m256 v) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, v);
  for (size_t i = 0; i < n; ++i) y[i] = buf[i];
}

}  // namespace

void TARGET f32_gemm_6x16__avx2(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                                const float* w, float* c, size_t c_stride, const float* bias) {
  if (kc >= kPrefetchMinK) return tile<true>(mr, kc, a, a_stride, w, c, c_stride, bias);
  tile<false>(mr, kc, a, a_stride, w, c, c_stride, bias);
}

#define ROW_FN(name, fn)                                                      \
  void TARGET name(const float* x, float* y, size_t n) {                      \
    size_t i = 0;                                                             \
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fn(_mm256_loadu_ps(x + i))); \
    if (i < n) store_tail(y + i, n - i, fn(load_tail(x + i, n - i, 0.f)));    \
  }
ROW_FN(exp__avx2, vexp)
ROW_FN(erf__avx2, verf)
ROW_FN(gelu__avx2, vgelu)
#undef ROW_FN

void TARGET scale__avx2(const float* x, float* y, size_t n, float s, bool divide) {
  const __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, divide ? _mm256_div_ps(v, vs) : _mm256_mul_ps(v, vs));
  }
  for (; i < n; ++i) y[i] = divide ? x[i] / s : x[i] * s;
}

void TARGET softmax__avx2(const float* x, float* y, size_t n) {
  if (n == 0) return;
  __m256 vmax = _mm256_set1_ps(-__builtin_inff());
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  if (i < n) vmax = _mm256_max_ps(vmax, load_tail(x + i, n - i, -__builtin_inff()));
  const __m256 mx = _mm256_set1_ps(hmax(vmax));
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = vexp(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
    _mm256_storeu_ps(y + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (; i < n; ++i) {
    __m256 e = vexp(_mm256_set1_ps(x[i] - _mm256_cvtss_f32(mx)));
    y[i] = _mm256_cvtss_f32(e);
    sum += y[i];
  }
  const float inv = 1.f / sum;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vinv));
  for (; i < n; ++i) y[i] *= inv;
}

namespace {
// R rows side by side through each pass (their running max/sum chains and
// reductions overlap), each row's own operations those of scale__avx2, the
// mask add and softmax__avx2 in the same order; the empty asm keeps the
// compiler from contracting the product and the mask add into an FMA.
template <int R>
void TARGET attention_softmax_rows(float* x, size_t ld, size_t n, float s, bool divide, const float* mask) {
  const __m256 vs = _mm256_set1_ps(s);
  float* row[R];
  __m256 acc[R];
  float value[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    row[r] = x + r * ld;
    acc[r] = _mm256_set1_ps(-__builtin_inff());
  }
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 mv = mask ? _mm256_loadu_ps(mask + i) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m256 v = _mm256_loadu_ps(row[r] + i);
      v = divide ? _mm256_div_ps(v, vs) : _mm256_mul_ps(v, vs);
      if (mask) {
        __asm__("" : "+x"(v));
        v = _mm256_add_ps(v, mv);
      }
      _mm256_storeu_ps(row[r] + i, v);
      acc[r] = _mm256_max_ps(acc[r], v);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (size_t j = i; j < n; ++j) {
      float v = divide ? row[r][j] / s : row[r][j] * s;
      if (mask) {
        __asm__("" : "+x"(v));
        v += mask[j];
      }
      row[r][j] = v;
    }
    if (i < n) acc[r] = _mm256_max_ps(acc[r], load_tail(row[r] + i, n - i, -__builtin_inff()));
    value[r] = hmax(acc[r]);
    acc[r] = _mm256_setzero_ps();
  }
  for (i = 0; i + 8 <= n; i += 8)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 e = vexp(_mm256_sub_ps(_mm256_loadu_ps(row[r] + i), _mm256_set1_ps(value[r])));
      _mm256_storeu_ps(row[r] + i, e);
      acc[r] = _mm256_add_ps(acc[r], e);
    }
  for (int r = 0; r < R; ++r) {
    float* y = row[r];
    float sum = hsum(acc[r]);
    if (i < n) {  // softmax__avx2's scalar tail: the same lane-wise exp, summed in order
      store_tail(y + i, n - i, vexp(_mm256_sub_ps(load_tail(y + i, n - i, 0.f), _mm256_set1_ps(value[r]))));
      for (size_t j = i; j < n; ++j) sum += y[j];
    }
    const float inv = 1.f / sum;
    const __m256 vinv = _mm256_set1_ps(inv);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(y + j), vinv));
    for (; j < n; ++j) y[j] *= inv;
  }
}
}  // namespace

void TARGET attention_softmax__avx2(float* x, size_t ld, size_t rows, size_t n, float s, bool divide,
                                    const float* mask) {
  if (n == 0) return;
  size_t r = 0;
  for (; r + 4 <= rows; r += 4) attention_softmax_rows<4>(x + r * ld, ld, n, s, divide, mask);
  for (; r < rows; ++r) attention_softmax_rows<1>(x + r * ld, ld, n, s, divide, mask);
}

// 8 x 8 blocks of src transposed in registers (unpack, shuffle, 128-bit lane
// swap): src rows past n read as zeros, the last block of k is loaded padded
// and only its rows stored. nr: a multiple of 8.
void TARGET pack_f32_transposed__avx2(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d) {
  const size_t panels = (n + nr - 1) / nr;
  for (size_t p = 0; p < panels; ++p) {
    float* dp = d + p * k * nr;
    for (size_t jb = 0; jb < nr; jb += 8) {
      const size_t j0 = p * nr + jb;
      const size_t nj = j0 >= n ? 0 : n - j0 < 8 ? n - j0 : 8;
      for (size_t k0 = 0; k0 < k; k0 += 8) {
        const size_t nk = k - k0 < 8 ? k - k0 : 8;
        __m256 r[8], t[8];
#pragma GCC unroll 8
        for (size_t j = 0; j < 8; ++j)
          r[j] = j >= nj ? _mm256_setzero_ps()
                 : nk == 8 ? _mm256_loadu_ps(src + (j0 + j) * ld + k0)
                           : load_tail(src + (j0 + j) * ld + k0, nk, 0.f);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
          t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // r[4h + c]: rows 4h..4h+3 of column c (low lane) and c + 4 (high lane).
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          r[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
          r[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
          r[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
          r[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          t[c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x20);
          t[4 + c] = _mm256_permute2f128_ps(r[c], r[4 + c], 0x31);
        }
        for (size_t c = 0; c < nk; ++c) _mm256_storeu_ps(dp + (k0 + c) * nr + jb, t[c]);
      }
    }
  }
}

void TARGET layernorm__avx2(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps) {
  if (n == 0) return;
  __m256 vs = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) vs = _mm256_add_ps(vs, _mm256_loadu_ps(x + i));
  float sum = hsum(vs);
  for (; i < n; ++i) sum += x[i];
  const float mean = sum / static_cast<float>(n);
  const __m256 vm = _mm256_set1_ps(mean);
  __m256 vv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    vv = _mm256_fmadd_ps(d, d, vv);
  }
  float var = hsum(vv);
  for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<float>(n);
  const float inv = 1.f / __builtin_sqrtf(var + eps);
  const __m256 vi = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vi), _mm256_loadu_ps(scale + i));
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) {
    const float v = (x[i] - mean) * inv * scale[i];
    y[i] = bias ? v + bias[i] : v;
  }
}

void TARGET minmax__avx2(const float* x, size_t n, float* mn, float* mx) {
  if (n == 0) {
    *mn = *mx = 0.f;
    return;
  }
  __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  if (i < n) {
    const __m256 v = load_tail(x + i, n - i, x[0]);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  *mn = hmin(lo);
  *mx = hmax(hi);
}

void TARGET quantize_u8__avx2(const float* x, uint8_t* y, size_t n, float scale, int32_t zp) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(0.f - static_cast<float>(zp)), hi = _mm256_set1_ps(255.f - static_cast<float>(zp));
  const __m256i vz = _mm256_set1_epi32(zp);
  for (size_t i = 0; i < n; i += 8) {
    const size_t m = n - i >= 8 ? 8 : n - i;
    __m256 v = _mm256_div_ps(m == 8 ? _mm256_loadu_ps(x + i) : load_tail(x + i, m, 0.f), vs);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), vz);
    alignas(32) int32_t buf[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(buf), q);
    for (size_t j = 0; j < m; ++j) y[i + j] = static_cast<uint8_t>(buf[j]);
  }
}

// The integer GEMM's epilogue (Table::q8_dequantize) in registers, 8 columns
// at a time; a tail of fewer than 8 goes through the padded vector.
void TARGET q8_dequantize__avx2(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                                const Q8Dequant& d, float* out, size_t ldo) {
  for (size_t j = 0; j < nc; j += 8) {
    const size_t w = nc - j >= 8 ? 8 : nc - j;
    alignas(32) int32_t ibuf[8] = {}, dbuf[8] = {}, cbuf[8] = {};
    alignas(32) float sbuf[8] = {}, bbuf[8] = {}, obuf[8];
    for (size_t q = 0; q < w; ++q) {
      dbuf[q] = d.dcol[j + q];
      cbuf[q] = d.ccol[j + q];
      sbuf[q] = d.scale[j + q];
      if (d.bias) bbuf[q] = d.bias[j + q];
    }
    const __m256i dcol = _mm256_load_si256(reinterpret_cast<const __m256i*>(dbuf));
    const __m256i ccol = _mm256_load_si256(reinterpret_cast<const __m256i*>(cbuf));
    const __m256 scale = _mm256_load_ps(sbuf), bias = _mm256_load_ps(bbuf);
    for (size_t r = 0; r < rows; ++r) {
      const int32_t* a = acc + r * acc_stride + j;
      __m256i v;
      if (w == 8) {
        v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
      } else {
        for (size_t q = 0; q < w; ++q) ibuf[q] = a[q];
        v = _mm256_load_si256(reinterpret_cast<const __m256i*>(ibuf));
      }
      v = _mm256_sub_epi32(v, ccol);
      if (row) v = _mm256_add_epi32(v, _mm256_mullo_epi32(dcol, _mm256_set1_epi32(row[r])));
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale);
      if (d.bias) f = _mm256_add_ps(f, bias);
      if (d.act == Activation::Gelu) f = vgelu(f);
      float* o = out + r * ldo + j;
      if (w == 8) {
        _mm256_storeu_ps(o, f);
      } else {
        _mm256_store_ps(obuf, f);
        for (size_t q = 0; q < w; ++q) o[q] = obuf[q];
      }
    }
  }
}

}  // namespace medquant::runtime::kernels
#endif
