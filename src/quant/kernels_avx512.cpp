// AVX-512 search kernels: 16 sub-blocks per vector (see kernels_simd.inc).
#include <immintrin.h>

#include <cstdint>

#include "quant/blocks.h"
#include "quant/kernels.h"

#define MQ_W 16
#define MQ_ISA "avx512f,avx512vl,avx512bw,avx512dq"
namespace medquant::quant::detail::avx512 {
#include "quant/kernels_simd.inc"
}  // namespace medquant::quant::detail::avx512
#undef MQ_ISA
#undef MQ_W

namespace medquant::quant::detail {

const SearchKernels* avx512_kernels() {
  static const SearchKernels k{avx512::qkx_simd,     avx512::qx_simd,         avx512::q3_simd,
                               avx512::requant_simd, avx512::legacy_ref_simd, "avx512"};
  const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return ok ? &k : nullptr;
}

}  // namespace medquant::quant::detail
