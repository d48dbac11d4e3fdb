// Internal to quant/ (and its tests): the three scale-search loops that cost
// nearly all of k-quant time, each run over many independent sub-blocks. The
// portable kernels call ggml's scalar helpers one sub-block after another;
// the AVX2 / AVX-512 kernels run 8 / 16 sub-blocks side by side, one per
// SIMD lane, every lane doing exactly the scalar float operations in the
// scalar order (sums stay sequential within a lane), so results are the same
// bits. The best set for the CPU is chosen once at first use.
#pragma once

#include <cstdint>
#include <string_view>

namespace medquant::quant::detail {

// The 32-value types, for legacy_ref below.
enum class Legacy { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 };

struct SearchKernels {
  // For s in [0, nsub): scales[s] = make_qkx2_quants(n, nmax, x + n*s,
  // w + n*s, L + n*s, &mins[s], ..., rmin, rdelta, nstep, use_mad), or
  // make_qkx3_quants when qkx3 (w never null).
  void (*qkx)(int n, int64_t nsub, int nmax, const float* x, const float* w, uint8_t* L,
              float* scales, float* mins, float rmin, float rdelta, int nstep, bool use_mad,
              bool qkx3);
  // For s in [0, nsub): scales[s] = make_qx_quants(n, nmax, x + n*s, L + n*s,
  // 1, qw ? qw + n*s : nullptr).
  void (*qx)(int n, int64_t nsub, int nmax, const float* x, const float* qw, int8_t* L,
             float* scales);
  // For s in [0, nsub): scales[s] = make_q3_quants(n, nmax, x + n*s, L + n*s, true).
  void (*q3)(int n, int64_t nsub, int nmax, const float* x, int8_t* L, float* scales);
  // The requantization at the end of every k-quant: for each sub-block j in
  // [0, nsub) with d[j] != 0 and each i < n, L[n*j + i] = offset +
  // clamp(nearest_int(dm ? (x[n*j+i] + dm[j]) / d[j] : x[n*j+i] / d[j]), lo, hi).
  // Sub-blocks with d[j] == 0 keep their L.
  void (*requant)(int n, int nsub, const float* x, const float* d, const float* dm, int lo, int hi,
                  int offset, uint8_t* L);
  // quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref on nb blocks (several
  // blocks per vector: lane k scans block k in ggml's order).
  void (*legacy_ref)(Legacy kind, const float* x, void* y, int64_t nb);
  std::string_view isa;
};

enum class Isa { Portable, Avx2, Avx512 };

// The kernels in use (the best the CPU has, unless set_isa() chose others).
const SearchKernels& kernels();
// For tests and benchmarks: use the given set; returns false (and changes
// nothing) if the CPU or the build lacks it. Not thread-safe with running codecs.
bool set_isa(Isa isa);

const SearchKernels& portable_kernels();
void legacy_ref_portable(Legacy kind, const float* x, void* y, int64_t nb);  // legacy.cpp
const SearchKernels* avx2_kernels();                                         // null if not built
const SearchKernels* avx512_kernels();                                       // null if not built

}  // namespace medquant::quant::detail
