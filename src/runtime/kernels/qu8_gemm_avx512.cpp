// u8 x s8 -> s32 GEMM micro-kernels for AVX-512: 12 rows x 32 columns, B
// packed four k at a time (vpdpbusd operand layout). The VNNI kernel uses
// vpdpbusd; the AVX-512BW one computes the same sums exactly with 16-bit
// products and vpmaddwd (vpmaddubsw would saturate).
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/x86.h"

#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define TARGET_BW __attribute__((target("avx512f,avx512bw,avx512vl")))

namespace medquant::runtime::kernels {
namespace {

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Deep products (weights, K >= 256) prefetch their panel 6 KiB ahead: the
// hardware prefetcher stops at each 4 KiB page of weights read from memory.
constexpr size_t kPrefetchMinK = 256, kPrefetchSteps = 48;

template <int MR, bool PREFETCH = false>
void TARGET_VNNI tile_vnni(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c, size_t c_stride) {
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
  for (size_t k = 0; k < kc; k += 4) {
    const __m512i w0 = _mm512_loadu_si512(w);
    const __m512i w1 = _mm512_loadu_si512(w + 64);
    if constexpr (PREFETCH) {  // never faults, also past the panel's end
      _mm_prefetch(reinterpret_cast<const char*>(w + 128 * kPrefetchSteps), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w + 128 * kPrefetchSteps + 64), _MM_HINT_T0);
    }
    w += 128;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(load4(a + i * a_stride + k));
      acc0[i] = _mm512_dpbusd_epi32(acc0[i], av, w0);
      acc1[i] = _mm512_dpbusd_epi32(acc1[i], av, w1);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_si512(c + i * c_stride, acc0[i]);
    _mm512_storeu_si512(c + i * c_stride + 16, acc1[i]);
  }
}

template <int MR>
void TARGET_VNNI tile_vnni_prefetch(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c,
                                    size_t c_stride) {
  tile_vnni<MR, true>(kc, a, a_stride, w, c, c_stride);
}

template <int MR>
void TARGET_BW tile_bw(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c, size_t c_stride) {
  __m512i acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm512_setzero_si512();
  const __m512i lo_bytes = _mm512_set1_epi16(0x00ff);
  for (size_t k = 0; k < kc; k += 4) {
    const __m512i w0 = _mm512_loadu_si512(w);
    const __m512i w1 = _mm512_loadu_si512(w + 64);
    w += 128;
    // Signed 16-bit lanes: even bytes (k, k+2) and odd bytes (k+1, k+3).
    const __m512i w0e = _mm512_srai_epi16(_mm512_slli_epi16(w0, 8), 8), w0o = _mm512_srai_epi16(w0, 8);
    const __m512i w1e = _mm512_srai_epi16(_mm512_slli_epi16(w1, 8), 8), w1o = _mm512_srai_epi16(w1, 8);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_set1_epi32(load4(a + i * a_stride + k));
      const __m512i ae = _mm512_and_si512(av, lo_bytes), ao = _mm512_srli_epi16(av, 8);
      acc0[i] = _mm512_add_epi32(acc0[i], _mm512_add_epi32(_mm512_madd_epi16(ae, w0e), _mm512_madd_epi16(ao, w0o)));
      acc1[i] = _mm512_add_epi32(acc1[i], _mm512_add_epi32(_mm512_madd_epi16(ae, w1e), _mm512_madd_epi16(ao, w1o)));
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    _mm512_storeu_si512(c + i * c_stride, acc0[i]);
    _mm512_storeu_si512(c + i * c_stride + 16, acc1[i]);
  }
}

}  // namespace

#define DISPATCH_MR(fn)                                     \
  switch (mr) {                                             \
    case 1: return fn<1>(kc, a, a_stride, w, c, c_stride);   \
    case 2: return fn<2>(kc, a, a_stride, w, c, c_stride);   \
    case 3: return fn<3>(kc, a, a_stride, w, c, c_stride);   \
    case 4: return fn<4>(kc, a, a_stride, w, c, c_stride);   \
    case 5: return fn<5>(kc, a, a_stride, w, c, c_stride);   \
    case 6: return fn<6>(kc, a, a_stride, w, c, c_stride);   \
    case 7: return fn<7>(kc, a, a_stride, w, c, c_stride);   \
    case 8: return fn<8>(kc, a, a_stride, w, c, c_stride);   \
    case 9: return fn<9>(kc, a, a_stride, w, c, c_stride);   \
    case 10: return fn<10>(kc, a, a_stride, w, c, c_stride); \
    case 11: return fn<11>(kc, a, a_stride, w, c, c_stride); \
    default: return fn<12>(kc, a, a_stride, w, c, c_stride); \
  }

void TARGET_VNNI q8_gemm_12x32__avx512vnni(size_t mr, size_t, size_t kc, const uint8_t* a, size_t a_stride,
                                           const int8_t* w, int32_t* c, size_t c_stride) {
  if (kc >= kPrefetchMinK) DISPATCH_MR(tile_vnni_prefetch)
  DISPATCH_MR(tile_vnni)
}

void TARGET_BW q8_gemm_12x32__avx512bw(size_t mr, size_t, size_t kc, const uint8_t* a, size_t a_stride,
                                       const int8_t* w, int32_t* c, size_t c_stride) {
  DISPATCH_MR(tile_bw)
}

}  // namespace medquant::runtime::kernels
#endif
