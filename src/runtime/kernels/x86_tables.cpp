// The x86 kernel tables, each offered only when the CPU has its features.
#if defined(__x86_64__)
#include <cpuid.h>

#include "runtime/kernels/kernels.h"
#include "runtime/kernels/x86.h"

namespace medquant::runtime::kernels {
namespace {

bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512() {
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}
bool has_avx512vnni() { return has_avx512() && __builtin_cpu_supports("avx512vnni"); }
// AVX-VNNI is CPUID.(EAX=7,ECX=1):EAX[4]; read directly because clang's
// __builtin_cpu_supports does not know the name (gcc's does).
bool has_avxvnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return has_avx2() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}

}  // namespace

const Table* avx2_table() {
  static const Table t{"avx2", 6, 16, f32_gemm_6x16__avx2, "f32_gemm_6x16__avx2",
                       6, 16, q8_gemm_6x16__avx2, "q8_gemm_6x16__avx2",
                       softmax__avx2, scale__avx2, attention_softmax__avx2,
                       pack_f32_transposed__avx2, layernorm__avx2, gelu__avx2, erf__avx2, exp__avx2, minmax__avx2, quantize_u8__avx2,
                       q8_dequantize__avx2};
  return has_avx2() ? &t : nullptr;
}

const Table* avxvnni_table() {
  static const Table t{"avxvnni", 6, 16, f32_gemm_6x16__avx2, "f32_gemm_6x16__avx2",
                       6, 16, q8_gemm_6x16__avxvnni, "q8_gemm_6x16__avxvnni",
                       softmax__avx2, scale__avx2, attention_softmax__avx2,
                       pack_f32_transposed__avx2, layernorm__avx2, gelu__avx2, erf__avx2, exp__avx2, minmax__avx2, quantize_u8__avx2,
                       q8_dequantize__avx2};
  return has_avxvnni() ? &t : nullptr;
}

const Table* avx512_table() {
  static const Table t{"avx512", 12, 32, f32_gemm_12x32__avx512, "f32_gemm_12x32__avx512",
                       12, 32, q8_gemm_12x32__avx512bw, "q8_gemm_12x32__avx512bw",
                       softmax__avx512, scale__avx512, attention_softmax__avx512, pack_f32_transposed__avx512,
                       layernorm__avx512, gelu__avx512, erf__avx512, exp__avx512, minmax__avx512,
                       quantize_u8__avx512, q8_dequantize__avx512};
  return has_avx512() ? &t : nullptr;
}

const Table* avx512vnni_table() {
  static const Table t{"avx512vnni", 12, 32, f32_gemm_12x32__avx512, "f32_gemm_12x32__avx512",
                       12, 32, q8_gemm_12x32__avx512vnni, "q8_gemm_12x32__avx512vnni",
                       softmax__avx512, scale__avx512, attention_softmax__avx512, pack_f32_transposed__avx512,
                       layernorm__avx512, gelu__avx512, erf__avx512, exp__avx512, minmax__avx512,
                       quantize_u8__avx512, q8_dequantize__avx512};
  return has_avx512vnni() ? &t : nullptr;
}

}  // namespace medquant::runtime::kernels
#endif
