// Kernel table selection, weight packing and the GEMM operators built on the
// micro-kernels (tiling, threading, epilogues).
#include "runtime/kernels/kernels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "runtime/parallel.h"
#include "runtime/tensor.h"

namespace medquant::runtime::kernels {

std::vector<const Table*> available() {
  std::vector<const Table*> out{&portable_table()};
#if defined(__x86_64__)
  for (const Table* t : {avx2_table(), avxvnni_table(), avx512_table(), avx512vnni_table()})
    if (t) out.push_back(t);
#endif
  return out;
}

const Table& best() {
  static const Table* chosen = [] {
    auto all = available();
    const Table* pick = all.back();
    if (const char* env = std::getenv("MEDQUANT_ISA"); env && *env) {
      pick = nullptr;
      for (const Table* t : all)
        if (t->name == env) pick = t;
      if (!pick) pick = all.back();  // unknown or unsupported here: the best there is
    }
    return pick;
  }();
  return *chosen;
}

namespace {
size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }
constexpr size_t kMaxMr = 16, kMaxNr = 64;

// Calls task(panel * mblocks + block) for every weight panel and row block.
// With a few panels for every thread, one task takes all of a panel's row
// blocks, so one core streams each weight panel from memory once (blocks of a
// panel spread over two cores fetch it twice; ViT-B's weights do not fit in
// L3); else, e.g. few columns, blocks are tasks of their own.
template <typename Task>
void run_tiles(Parallel* pool, size_t panels, size_t mblocks, Task& task) {
  const size_t tasks = panels * mblocks;
  if (!pool || tasks == 1) {
    for (size_t i = 0; i < tasks; ++i) task(i);
  } else if (mblocks > 1 && panels >= 4 * pool->size()) {
    pool->run(panels, [&](size_t p) {
      for (size_t b = 0; b < mblocks; ++b) task(p * mblocks + b);
    });
  } else {
    pool->run(tasks, task);
  }
}

}  // namespace

// Row-major B copies whole panel rows; transposed B walks each column once.
void pack_f32_panels(const float* b, size_t k, size_t n, size_t ldb, bool transposed, size_t nr, float* d) {
  const size_t panels = (n + nr - 1) / nr;
  for (size_t pi = 0; pi < panels; ++pi) {
    const size_t j0 = pi * nr, nc = std::min(nr, n - j0);
    float* dp = d + pi * k * nr;
    if (!transposed) {
      for (size_t kk = 0; kk < k; ++kk) {
        std::memcpy(dp + kk * nr, b + kk * ldb + j0, nc * sizeof(float));
        std::fill(dp + kk * nr + nc, dp + (kk + 1) * nr, 0.f);
      }
      continue;
    }
    if (nc < nr)
      for (size_t kk = 0; kk < k; ++kk) std::fill(dp + kk * nr + nc, dp + (kk + 1) * nr, 0.f);
    for (size_t j = 0; j < nc; ++j) {
      const float* col = b + (j0 + j) * ldb;
      for (size_t kk = 0; kk < k; ++kk) dp[kk * nr + j] = col[kk];
    }
  }
}

PackedF32 pack_f32(const Table& t, const float* b, size_t k, size_t n, size_t ldb, bool transposed) {
  PackedF32 p;
  p.k = k;
  p.n = n;
  p.nr = t.f32_nr;
  const size_t panels = (n + p.nr - 1) / p.nr;
  auto bytes = allocate_bytes(std::max<size_t>(1, panels * k * p.nr) * sizeof(float));
  p.data = std::shared_ptr<float[]>(bytes, reinterpret_cast<float*>(bytes.get()));
  pack_f32_panels(b, k, n, ldb, transposed, p.nr, p.data.get());
  return p;
}

void f32_gemm(const Table& t, size_t m, const float* a, size_t lda, const PackedF32& b, float* c,
              size_t ldc, Activation act, Parallel* pool) {
  const size_t mr = t.f32_mr, nr = b.nr, n = b.n, k = b.k;
  if (m == 0 || n == 0) return;
  if (nr != t.f32_nr) fail("f32 GEMM: weights packed for another kernel table");
  const size_t panels = (n + nr - 1) / nr;
  const size_t mb = mr * std::max<size_t>(1, 96 / mr);
  const size_t mblocks = (m + mb - 1) / mb;
  auto task = [&](size_t idx) {
    const size_t p = idx / mblocks, blk = idx % mblocks;
    const size_t j0 = p * nr, nc = std::min(nr, n - j0);
    const float* w = b.panel(p);
    alignas(64) float bias_pad[kMaxNr];
    const float* bias = nullptr;
    if (!b.bias.empty()) {
      if (nc == nr) bias = b.bias.data() + j0;
      else {
        std::fill(bias_pad, bias_pad + nr, 0.f);
        std::copy(b.bias.data() + j0, b.bias.data() + j0 + nc, bias_pad);
        bias = bias_pad;
      }
    }
    alignas(64) float tile[kMaxMr * kMaxNr];
    const size_t end = std::min(m, (blk + 1) * mb);
    for (size_t i = blk * mb; i < end; i += mr) {
      const size_t rows = std::min(mr, end - i);
      float* ci = c + i * ldc + j0;
      if (nc == nr) {
        t.f32_gemm(rows, nr, k, a + i * lda, lda, w, ci, ldc, bias);
      } else {
        t.f32_gemm(rows, nr, k, a + i * lda, lda, w, tile, nr, bias);
        for (size_t r = 0; r < rows; ++r) std::memcpy(ci + r * ldc, tile + r * nr, nc * sizeof(float));
      }
      if (act == Activation::Gelu)
        for (size_t r = 0; r < rows; ++r) t.gelu(ci + r * ldc, ci + r * ldc, nc);
    }
  };
  run_tiles(pool, panels, mblocks, task);
}

void f32_gemm_unpacked(const Table& t, size_t m, size_t n, size_t k, const float* a, size_t lda,
                       const float* b, size_t ldb, bool b_transposed, float* c, size_t ldc) {
  if (m == 0 || n == 0) return;
  thread_local std::vector<float> buffer;
  const size_t nr = t.f32_nr, mr = t.f32_mr;
  const size_t panels = (n + nr - 1) / nr;
  buffer.resize(panels * k * nr + 16);
  float* d = buffer.data();
  pack_f32_panels(b, k, n, ldb, b_transposed, nr, d);
  alignas(64) float tile[kMaxMr * kMaxNr];
  for (size_t pi = 0; pi < panels; ++pi) {
    const size_t j0 = pi * nr, nc = std::min(nr, n - j0);
    for (size_t i = 0; i < m; i += mr) {
      const size_t rows = std::min(mr, m - i);
      if (nc == nr) {
        t.f32_gemm(rows, nr, k, a + i * lda, lda, d + pi * k * nr, c + i * ldc + j0, ldc, nullptr);
      } else {
        t.f32_gemm(rows, nr, k, a + i * lda, lda, d + pi * k * nr, tile, nr, nullptr);
        for (size_t r = 0; r < rows; ++r) std::memcpy(c + (i + r) * ldc + j0, tile + r * nr, nc * sizeof(float));
      }
    }
  }
}

PackedQ8 pack_q8(const Table& t, const uint8_t* w, size_t k, size_t n, bool unsigned_weights,
                 const int32_t* zero_points, size_t zero_point_count) {
  PackedQ8 p;
  p.k = k;
  p.kp = round_up(std::max<size_t>(k, 1), 4);
  p.n = n;
  p.nr = t.q8_nr;
  p.unsigned_weights = unsigned_weights;
  const size_t panels = (n + p.nr - 1) / p.nr;
  auto bytes = allocate_bytes(std::max<size_t>(1, panels * p.kp * p.nr));
  p.data = std::shared_ptr<int8_t[]>(bytes, reinterpret_cast<int8_t*>(bytes.get()));
  std::memset(p.data.get(), 0, panels * p.kp * p.nr);
  p.column_sum.assign(n, 0);
  p.zero_point.resize(n);
  for (size_t j = 0; j < n; ++j) p.zero_point[j] = zero_point_count == 1 ? zero_points[0] : zero_points[j];
  int8_t* d = p.data.get();
  const int32_t offset = unsigned_weights ? 128 : 0;
  for (size_t kk = 0; kk < k; ++kk) {
    const uint8_t* row = w + kk * n;
    int8_t* dk = d + (kk / 4) * p.nr * 4 + kk % 4;  // panel 0, column 0 of this k
    for (size_t pi = 0, col = 0; col < n; ++pi) {
      int8_t* dp = dk + pi * p.kp * p.nr;
      for (size_t j = 0; j < p.nr && col < n; ++j, ++col) {
        const int32_t s = unsigned_weights ? static_cast<int32_t>(row[col]) - offset
                                           : static_cast<int32_t>(static_cast<int8_t>(row[col]));
        dp[j * 4] = static_cast<int8_t>(s);
        p.column_sum[col] += s;
      }
    }
  }
  return p;
}

void q8_gemm(const Table& t, size_t m, const uint8_t* a, size_t lda, int32_t a_zp, const PackedQ8& b,
             const Q8Output& out, Parallel* pool) {
  const size_t mr = t.q8_mr, nr = b.nr, n = b.n, k = b.k, kp = b.kp;
  if (m == 0 || n == 0) return;
  if (nr != t.q8_nr) fail("int8 GEMM: weights packed for another kernel table");
  // Row sums of A over the real K (zero-point corrections, see pack_q8), only
  // needed when some column's weight offset (dcol below) is not zero: signed
  // symmetric weights, the usual dynamic INT8 build, skip this pass.
  bool need_rows = b.unsigned_weights;
  for (size_t j = 0; j < n && !need_rows; ++j) need_rows = b.zero_point[j] != 0;
  const uint32_t kza = static_cast<uint32_t>(k) * static_cast<uint32_t>(a_zp);
  std::vector<int32_t> rowsum(need_rows ? m : 0);
  auto sums = [&](size_t s, size_t e) {
    for (size_t i = s; i < e; ++i) {
      const uint8_t* ai = a + i * lda;
      int32_t acc = 0;
      for (size_t q = 0; q < k; ++q) acc += ai[q];
      rowsum[i] = static_cast<int32_t>(static_cast<uint32_t>(acc) - kza);
    }
  };
  if (need_rows) {
    if (pool) pool->ranges(m, 64, sums);
    else sums(0, m);
  }
  const size_t panels = (n + nr - 1) / nr;
  const size_t mb = mr * std::max<size_t>(1, 96 / mr);
  const size_t mblocks = (m + mb - 1) / mb;
  auto task = [&](size_t idx) {
    const size_t p = idx / mblocks, blk = idx % mblocks;
    const size_t j0 = p * nr, nc = std::min(nr, n - j0);
    const int8_t* w = b.panel(p);
    alignas(64) int32_t tile[kMaxMr * kMaxNr];
    alignas(64) int32_t dcol[kMaxNr], ccol[kMaxNr];
    alignas(64) float scale[kMaxNr];
    for (size_t j = 0; j < nc; ++j) {
      dcol[j] = (b.unsigned_weights ? 128 : 0) - b.zero_point[j0 + j];
      ccol[j] = static_cast<int32_t>(static_cast<uint32_t>(a_zp) * static_cast<uint32_t>(b.column_sum[j0 + j]));
      if (out.f32) scale[j] = out.scale_per_column ? out.scale[j0 + j] : out.scale[0];
    }
    const Q8Dequant dq{dcol, ccol, scale, out.bias ? out.bias + j0 : nullptr, out.act};
    const size_t end = std::min(m, (blk + 1) * mb);
    for (size_t i = blk * mb; i < end; i += mr) {
      const size_t rows = std::min(mr, end - i);
      t.q8_gemm(rows, nr, kp, a + i * lda, lda, w, tile, nr);
      const int32_t* rs = need_rows ? rowsum.data() + i : nullptr;
      if (out.f32) {
        t.q8_dequantize(tile, nr, rows, nc, rs, dq, out.f32 + i * out.ldc + j0, out.ldc);
        continue;
      }
      for (size_t r = 0; r < rows; ++r) {
        const uint32_t rv = rs ? static_cast<uint32_t>(rs[r]) : 0u;
        const int32_t* tr = tile + r * nr;
        int32_t* o = out.i32 + (i + r) * out.ldc + j0;
        for (size_t j = 0; j < nc; ++j)
          o[j] = static_cast<int32_t>(static_cast<uint32_t>(tr[j]) + static_cast<uint32_t>(dcol[j]) * rv -
                                      static_cast<uint32_t>(ccol[j]));
      }
    }
  };
  run_tiles(pool, panels, mblocks, task);
}

}  // namespace medquant::runtime::kernels
