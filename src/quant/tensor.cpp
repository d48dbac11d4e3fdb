// quantize_tensor: a whole tensor in parallel, plus its quantization error.
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "quant/quant.h"

namespace medquant::quant {

namespace {

// Rows are handed out in chunks of about this many values: big enough to
// amortise scheduling, small enough that a chunk's source, f32 copy and
// decoded copy stay in L2 while its error is measured.
constexpr int64_t kChunkValues = 32 * 1024;

struct ChunkStats {
  double sum_sq_err = 0;
  double sum_sq_src = 0;
  double max_abs_err = 0;
};

// fp16 -> f32 with F16C: the same floats as core::fp16_to_fp32_row except
// that signalling NaNs come out quiet, and NaN sources are rejected anyway.
__attribute__((target("avx,f16c"))) void fp16_to_fp32_f16c(const uint16_t* h, float* f, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
    _mm256_storeu_ps(f + i, _mm256_cvtph_ps(v));
  }
  core::fp16_to_fp32_row(h + i, f + i, n - i);
}

void fp16_to_fp32(const uint16_t* h, float* f, int64_t n) {
  // F16C from CPUID leaf 1 (clang's __builtin_cpu_supports has no "f16c").
  static const bool f16c = [] {
    unsigned a, b, c, d;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
  }();
  if (f16c) {
    fp16_to_fp32_f16c(h, f, n);
  } else {
    core::fp16_to_fp32_row(h, f, n);
  }
}

// Squared error and squared source of one row, in 8 independent partial
// sums (a fixed order, so the result doesn't depend on anything but the row).
struct RowError {
  double se = 0, sx = 0;
  float max_abs = 0;
};
// One body for every instruction set: the same partial sums, so the figures
// don't depend on the CPU either (the compiler vectorises across the 8).
typedef float F8 __attribute__((vector_size(32)));
typedef double D8 __attribute__((vector_size(64)));
__attribute__((always_inline)) inline RowError row_error_body(const float* x, const float* d,
                                                              int64_t n) {
  D8 se = {}, sx = {};
  F8 me = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    F8 xv, dv;
    std::memcpy(&xv, x + i, sizeof(xv));
    std::memcpy(&dv, d + i, sizeof(dv));
    const F8 e = dv - xv;
    const D8 ed = __builtin_convertvector(e, D8), xd = __builtin_convertvector(xv, D8);
    se += ed * ed;
    sx += xd * xd;
    const F8 ae = e < 0 ? -e : e;
    me = me < ae ? ae : me;
  }
  RowError r;
  for (; i < n; ++i) {
    const float e = d[i] - x[i];
    r.se += static_cast<double>(e) * e;
    r.sx += static_cast<double>(x[i]) * x[i];
    r.max_abs = std::max(r.max_abs, std::fabs(e));
  }
  for (int k = 0; k < 8; ++k) {
    r.se += se[k];
    r.sx += sx[k];
    r.max_abs = std::max(r.max_abs, me[k]);
  }
  return r;
}
RowError row_error_portable(const float* x, const float* d, int64_t n) {
  return row_error_body(x, d, n);
}
__attribute__((target("avx2"))) RowError row_error_avx2(const float* x, const float* d, int64_t n) {
  return row_error_body(x, d, n);
}
__attribute__((target("avx512f"))) RowError row_error_avx512(const float* x, const float* d,
                                                             int64_t n) {
  return row_error_body(x, d, n);
}
RowError row_error(const float* x, const float* d, int64_t n) {
  static const auto fn = __builtin_cpu_supports("avx512f") ? row_error_avx512
                         : __builtin_cpu_supports("avx2")  ? row_error_avx2
                                                           : row_error_portable;
  return fn(x, d, n);
}

}  // namespace

void TensorStatsSum::add(const TensorStats& part, uint64_t values) {
  sq_err += part.rmse * part.rmse * static_cast<double>(values);
  sq_src += part.rms_source * part.rms_source * static_cast<double>(values);
  max_abs = std::max(max_abs, part.max_abs_err);
  n += values;
}

void TensorStatsSum::merge(const TensorStatsSum& other) {
  sq_err += other.sq_err;
  sq_src += other.sq_src;
  max_abs = std::max(max_abs, other.max_abs);
  n += other.n;
}

TensorStats TensorStatsSum::result() const {
  TensorStats s;
  if (n == 0) return s;
  s.rmse = std::sqrt(sq_err / static_cast<double>(n));
  s.rms_source = std::sqrt(sq_src / static_cast<double>(n));
  s.max_abs_err = max_abs;
  return s;
}

TensorStats quantize_tensor(Type type, core::DType src_dtype, const void* src, void* dst,
                            int64_t nrows, int64_t n_per_row, const float* imatrix,
                            core::ThreadPool& pool, core::Progress* progress) {
  const TypeTraits& t = traits(type);
  if (!t.can_quantize || !t.can_dequantize) fail("medquant can't quantize to {}", t.name);
  if (src_dtype != core::DType::F32 && src_dtype != core::DType::F16 &&
      src_dtype != core::DType::BF16) {
    fail("can't quantize from {} (only f32, f16, bf16)", core::dtype_name(src_dtype));
  }
  if (nrows < 0 || n_per_row <= 0) fail("bad tensor shape: {} rows of {} values", nrows, n_per_row);
  const size_t rs = row_size(type, n_per_row);  // checks the block size
  if (requires_imatrix(type) && !imatrix) fail("{} needs an importance matrix", t.name);

  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkValues / n_per_row);
  const int64_t nchunks = (nrows + rows_per_chunk - 1) / rows_per_chunk;
  std::vector<ChunkStats> stats(nchunks);
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};

  auto do_chunk = [&](int64_t c, std::vector<float>& f32, std::vector<float>& decoded) {
    const int64_t r0 = c * rows_per_chunk;
    const int64_t nr = std::min(rows_per_chunk, nrows - r0);
    const int64_t nv = nr * n_per_row;
    const float* x;
    if (src_dtype == core::DType::F32) {
      x = static_cast<const float*>(src) + r0 * n_per_row;
    } else {
      f32.resize(nv);
      const auto* h = static_cast<const uint16_t*>(src) + r0 * n_per_row;
      if (src_dtype == core::DType::F16) {
        fp16_to_fp32(h, f32.data(), nv);
      } else {
        core::bf16_to_fp32_row(h, f32.data(), nv);
      }
      x = f32.data();
    }
    uint8_t* out = static_cast<uint8_t*>(dst) + r0 * rs;
    quantize_rows(type, x, out, nr, n_per_row, imatrix);

    ChunkStats st;
    decoded.resize(n_per_row);
    for (int64_t r = 0; r < nr; ++r) {
      const float* xr = x + r * n_per_row;
      dequantize_row(type, out + r * rs, decoded.data(), n_per_row);
      const RowError re = row_error(xr, decoded.data(), n_per_row);
      if (!std::isfinite(re.se) || !std::isfinite(re.sx)) {
        for (int64_t i = 0; i < n_per_row; ++i) {
          if (!std::isfinite(xr[i])) {
            fail("row {}, column {}: the source value {} is not finite", r0 + r, i, xr[i]);
          }
        }
        fail("row {}: too large for {} (a block scale overflows fp16)", r0 + r, t.name);
      }
      st.sum_sq_err += re.se;
      st.sum_sq_src += re.sx;
      st.max_abs_err = std::max<double>(st.max_abs_err, re.max_abs);
    }
    stats[c] = st;
    if (progress) progress->add(nv);
  };

  pool.parallel_chunks(0, pool.size(), [&](size_t, size_t) {
    std::vector<float> f32, decoded;
    try {
      for (int64_t c; !failed.load(std::memory_order_relaxed) && (c = next.fetch_add(1)) < nchunks;)
        do_chunk(c, f32, decoded);
    } catch (...) {
      failed = true;
      throw;
    }
  });

  // Summed in chunk order, so the figures don't depend on the thread count.
  ChunkStats total;
  for (const ChunkStats& s : stats) {
    total.sum_sq_err += s.sum_sq_err;
    total.sum_sq_src += s.sum_sq_src;
    total.max_abs_err = std::max(total.max_abs_err, s.max_abs_err);
  }
  TensorStats out;
  const double count = static_cast<double>(nrows) * static_cast<double>(n_per_row);
  if (count > 0) {
    out.rmse = std::sqrt(total.sum_sq_err / count);
    out.rms_source = std::sqrt(total.sum_sq_src / count);
  }
  out.max_abs_err = total.max_abs_err;
  return out;
}

}  // namespace medquant::quant
