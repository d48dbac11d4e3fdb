// AVX2 search kernels: 8 sub-blocks per vector (see kernels_simd.inc).
#include <immintrin.h>

#include <cstdint>

#include "quant/blocks.h"
#include "quant/kernels.h"

// clang ignores `#pragma GCC target`; its own pragma puts the same target
// attribute on every function (and lambda) up to the pop.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#define MQ_W 8
namespace medquant::quant::detail::avx2 {
#include "quant/kernels_simd.inc"
}  // namespace medquant::quant::detail::avx2
#undef MQ_W
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace medquant::quant::detail {

const SearchKernels* avx2_kernels() {
  static const SearchKernels k{avx2::qkx_simd,     avx2::qx_simd,         avx2::q3_simd,
                               avx2::requant_simd, avx2::legacy_ref_simd, "avx2"};
  return __builtin_cpu_supports("avx2") ? &k : nullptr;
}

}  // namespace medquant::quant::detail
