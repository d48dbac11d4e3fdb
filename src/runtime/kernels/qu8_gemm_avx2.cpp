// u8 x s8 -> s32 GEMM micro-kernels for 256-bit vectors: 6 rows x 16 columns,
// B packed four k at a time. AVX-VNNI uses vpdpbusd (VEX); plain AVX2
// computes the same sums exactly with 16-bit products and vpmaddwd.
#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/x86.h"

#define TARGET_VNNI __attribute__((target("avx2,fma,avxvnni")))
#define TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace medquant::runtime::kernels {
namespace {

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// As the AVX-512 kernels: deep products (K >= 256) prefetch their panel
// 6 KiB ahead, past the 4 KiB pages where the hardware prefetcher stops.
constexpr size_t kPrefetchMinK = 256, kPrefetchSteps = 96;

template <int MR, bool PREFETCH = false>
void TARGET_VNNI tile_vnni(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c, size_t c_stride) {
  __m256i acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_si256();
  for (size_t k = 0; k < kc; k += 4) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
    if constexpr (PREFETCH) _mm_prefetch(reinterpret_cast<const char*>(w + 64 * kPrefetchSteps), _MM_HINT_T0);
    w += 64;
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_set1_epi32(load4(a + i * a_stride + k));
      acc0[i] = _mm256_dpbusd_avx_epi32(acc0[i], av, w0);
      acc1[i] = _mm256_dpbusd_avx_epi32(acc1[i], av, w1);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * c_stride), acc0[i]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * c_stride + 8), acc1[i]);
  }
}

template <int MR>
void TARGET_VNNI tile_vnni_prefetch(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c,
                                    size_t c_stride) {
  tile_vnni<MR, true>(kc, a, a_stride, w, c, c_stride);
}

template <int MR>
void TARGET_AVX2 tile_avx2(size_t kc, const uint8_t* a, size_t a_stride, const int8_t* w, int32_t* c, size_t c_stride) {
  __m256i acc0[MR], acc1[MR];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = _mm256_setzero_si256();
  const __m256i lo_bytes = _mm256_set1_epi16(0x00ff);
  for (size_t k = 0; k < kc; k += 4) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32));
    w += 64;
    const __m256i w0e = _mm256_srai_epi16(_mm256_slli_epi16(w0, 8), 8), w0o = _mm256_srai_epi16(w0, 8);
    const __m256i w1e = _mm256_srai_epi16(_mm256_slli_epi16(w1, 8), 8), w1o = _mm256_srai_epi16(w1, 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256i av = _mm256_set1_epi32(load4(a + i * a_stride + k));
      const __m256i ae = _mm256_and_si256(av, lo_bytes), ao = _mm256_srli_epi16(av, 8);
      acc0[i] = _mm256_add_epi32(acc0[i], _mm256_add_epi32(_mm256_madd_epi16(ae, w0e), _mm256_madd_epi16(ao, w0o)));
      acc1[i] = _mm256_add_epi32(acc1[i], _mm256_add_epi32(_mm256_madd_epi16(ae, w1e), _mm256_madd_epi16(ao, w1o)));
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * c_stride), acc0[i]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + i * c_stride + 8), acc1[i]);
  }
}

}  // namespace

#define DISPATCH_MR(fn)                                   \
  switch (mr) {                                           \
    case 1: return fn<1>(kc, a, a_stride, w, c, c_stride); \
    case 2: return fn<2>(kc, a, a_stride, w, c, c_stride); \
    case 3: return fn<3>(kc, a, a_stride, w, c, c_stride); \
    case 4: return fn<4>(kc, a, a_stride, w, c, c_stride); \
    case 5: return fn<5>(kc, a, a_stride, w, c, c_stride); \
    default: return fn<6>(kc, a, a_stride, w, c, c_stride); \
  }

void TARGET_VNNI q8_gemm_6x16__avxvnni(size_t mr, size_t, size_t kc, const uint8_t* a, size_t a_stride,
                                       const int8_t* w, int32_t* c, size_t c_stride) {
  if (kc >= kPrefetchMinK) DISPATCH_MR(tile_vnni_prefetch)
  DISPATCH_MR(tile_vnni)
}

void TARGET_AVX2 q8_gemm_6x16__avx2(size_t mr, size_t, size_t kc, const uint8_t* a, size_t a_stride,
                                    const int8_t* w, int32_t* c, size_t c_stride) {
  DISPATCH_MR(tile_avx2)
}

}  // namespace medquant::runtime::kernels
#endif
