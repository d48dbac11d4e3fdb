// quantize_tensor: a whole tensor in parallel, plus its quantization error.
#include <algorithm>
#include <atomic>
#include <cmath>
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

}  // namespace

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
        core::fp16_to_fp32_row(h, f32.data(), nv);
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
      double se = 0, sx = 0;
      float me = 0;
      for (int64_t i = 0; i < n_per_row; ++i) {
        const float e = decoded[i] - xr[i];
        se += static_cast<double>(e) * e;
        sx += static_cast<double>(xr[i]) * xr[i];
        me = std::max(me, std::fabs(e));
      }
      if (!std::isfinite(se)) {
        for (int64_t i = 0; i < n_per_row; ++i) {
          if (!std::isfinite(xr[i])) {
            fail("row {}, column {}: the source value {} is not finite", r0 + r, i, xr[i]);
          }
        }
        fail("row {}: too large for {} (a block scale overflows fp16)", r0 + r, t.name);
      }
      st.sum_sq_err += se;
      st.sum_sq_src += sx;
      st.max_abs_err = std::max<double>(st.max_abs_err, me);
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
