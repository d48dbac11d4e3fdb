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

template <int MR>
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

}  // namespace

void TARGET f32_gemm_12x32__avx512(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                                   const float* w, float* c, size_t c_stride, const float* bias) {
  switch (mr) {
    case 1: return gemm_tile<1>(kc, a, a_stride, w, c, c_stride, bias);
    case 2: return gemm_tile<2>(kc, a, a_stride, w, c, c_stride, bias);
    case 3: return gemm_tile<3>(kc, a, a_stride, w, c, c_stride, bias);
    case 4: return gemm_tile<4>(kc, a, a_stride, w, c, c_stride, bias);
    case 5: return gemm_tile<5>(kc, a, a_stride, w, c, c_stride, bias);
    case 6: return gemm_tile<6>(kc, a, a_stride, w, c, c_stride, bias);
    case 7: return gemm_tile<7>(kc, a, a_stride, w, c, c_stride, bias);
    case 8: return gemm_tile<8>(kc, a, a_stride, w, c, c_stride, bias);
    case 9: return gemm_tile<9>(kc, a, a_stride, w, c, c_stride, bias);
    case 10: return gemm_tile<10>(kc, a, a_stride, w, c, c_stride, bias);
    case 11: return gemm_tile<11>(kc, a, a_stride, w, c, c_stride, bias);
    default: return gemm_tile<12>(kc, a, a_stride, w, c, c_stride, bias);
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

void TARGET softmax__avx512(const float* x, float* y, size_t n) {
  if (n == 0) return;
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  size_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  if (i < n) vmax = _mm512_mask_max_ps(vmax, tail_mask(n - i), vmax, _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 vsum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
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
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(vsum));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
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
