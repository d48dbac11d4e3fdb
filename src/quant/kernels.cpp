// Portable search kernels (ggml's scalar helpers, one sub-block at a time)
// and the run-time choice between them and the SIMD ones.
#include "quant/kernels.h"

#include <atomic>
#include <cstdlib>
#include <string_view>

#include "quant/blocks.h"

namespace medquant::quant::detail {

namespace {

void qkx_portable(int n, int64_t nsub, int nmax, const float* x, const float* w, uint8_t* L,
                  float* scales, float* mins, float rmin, float rdelta, int nstep, bool use_mad,
                  bool qkx3) {
  uint8_t Laux[32];
  for (int64_t s = 0; s < nsub; ++s) {
    const int64_t o = n * s;
    scales[s] = qkx3 ? make_qkx3_quants(n, nmax, x + o, w + o, L + o, &mins[s], Laux, rmin, rdelta,
                                        nstep, use_mad)
                     : make_qkx2_quants(n, nmax, x + o, w + o, L + o, &mins[s], Laux, rmin, rdelta,
                                        nstep, use_mad);
  }
}

void qx_portable(int n, int64_t nsub, int nmax, const float* x, const float* qw, int8_t* L,
                 float* scales) {
  for (int64_t s = 0; s < nsub; ++s) {
    const int64_t o = n * s;
    scales[s] = make_qx_quants(n, nmax, x + o, L + o, 1, qw ? qw + o : nullptr);
  }
}

void q3_portable(int n, int64_t nsub, int nmax, const float* x, int8_t* L, float* scales) {
  for (int64_t s = 0; s < nsub; ++s)
    scales[s] = make_q3_quants(n, nmax, x + n * s, L + n * s, true);
}

void requant_portable(int n, int nsub, const float* x, const float* d, const float* dm, int lo,
                      int hi, int offset, uint8_t* L) {
  for (int j = 0; j < nsub; ++j) {
    if (!d[j]) continue;
    for (int i = 0; i < n; ++i) {
      const float v = x[n * j + i];
      const int l = nearest_int(dm ? (v + dm[j]) / d[j] : v / d[j]);
      L[n * j + i] = offset + qmax(lo, qmin(hi, l));
    }
  }
}

const SearchKernels kPortable{qkx_portable,     qx_portable,         q3_portable,
                              requant_portable, legacy_ref_portable, "portable"};

// MEDQUANT_KERNELS=portable|avx2|avx512 caps the choice (for comparisons and
// bug hunts; every choice gives the same bytes).
const SearchKernels* best_kernels() {
  const char* env = std::getenv("MEDQUANT_KERNELS");
  const std::string_view cap = env ? env : "";
  if (cap == "portable") return &kPortable;
  if (cap == "avx2" && avx2_kernels()) return avx2_kernels();
  if (const SearchKernels* k = avx512_kernels()) return k;
  if (const SearchKernels* k = avx2_kernels()) return k;
  return &kPortable;
}

std::atomic<const SearchKernels*> g_kernels{nullptr};

}  // namespace

const SearchKernels& portable_kernels() {
  return kPortable;
}

const SearchKernels& kernels() {
  const SearchKernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {
    k = best_kernels();
    g_kernels.store(k, std::memory_order_release);
  }
  return *k;
}

bool set_isa(Isa isa) {
  const SearchKernels* k = isa == Isa::Portable ? &kPortable
                           : isa == Isa::Avx2   ? avx2_kernels()
                                                : avx512_kernels();
  if (!k) return false;
  g_kernels.store(k, std::memory_order_release);
  return true;
}

}  // namespace medquant::quant::detail
