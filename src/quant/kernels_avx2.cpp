// AVX2 search kernels: 8 sub-blocks per vector (see kernels_simd.inc).
#include <immintrin.h>

#include <cstdint>

#include "quant/blocks.h"
#include "quant/kernels.h"

#define MQ_W 8
#define MQ_ISA "avx2"
namespace medquant::quant::detail::avx2 {
#include "quant/kernels_simd.inc"
}  // namespace medquant::quant::detail::avx2
#undef MQ_ISA
#undef MQ_W

namespace medquant::quant::detail {

const SearchKernels* avx2_kernels() {
  static const SearchKernels k{avx2::qkx_simd,     avx2::qx_simd,         avx2::q3_simd,
                               avx2::requant_simd, avx2::legacy_ref_simd, "avx2"};
  return __builtin_cpu_supports("avx2") ? &k : nullptr;
}

}  // namespace medquant::quant::detail
