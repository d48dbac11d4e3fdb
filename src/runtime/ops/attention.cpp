// Fused multi-head attention (made by the fusion pass, never read from a
// model): softmax(q k * scale [+ mask]) v per batch and head, reading q, k, v in the
// [B, T, H, D] layout the Q/K/V projections produce and writing the context in
// that layout too, so the four head transposes around it are never
// materialised. Each head packs K^T and V once, then takes its query rows a
// block at a time through q K^T, the scaled softmax and P V, so the block's
// scores stay in L1. Every score and output element is computed by the same
// micro-kernel, in the same order, as in the unfused MatMul -> Mul/Div ->
// Softmax -> MatMul chain (row blocks only change which rows go together), so
// results are equal.
#include "runtime/ops/attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/kernels/kernels.h"

namespace medquant::runtime {
namespace {

// Query rows per block: a multiple of the micro-kernel's rows near this many
// (24 rows of 197 scores are 19 KiB, half of L1).
constexpr size_t kRowBlock = 24;
constexpr size_t kMaxTile = 16 * 64;  // one micro-kernel tile, the largest MR x NR of any table

class AttentionOp : public Op {
 public:
  AttentionOp(float scale, bool divide) : scale_(scale), divide_(divide) {}

  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    for (size_t i = 0; i < 3; ++i) {
      if (ctx.type(i) != onnx::kFloat) fail("{}: q, k and v must be float32", where);
      if (ctx.rank(i) != 4) fail("{}: q, k and v must be [batch, tokens, heads, head_dim]", where);
    }
    const Shape &q = ctx.shape(0), &k = ctx.shape(1), &v = ctx.shape(2);
    if (k[0] != q[0] || v[0] != q[0] || k[2] != q[2] || v[2] != q[2] || k[3] != q[3] || v[1] != k[1])
      fail("{}: q {}, k {} and v {} do not fit together", where, shape_string(q), shape_string(k), shape_string(v));
    if (ctx.has(3)) {
      const Shape& m = ctx.shape(3);
      if (ctx.type(3) != onnx::kFloat || m.size() != 4 || (m[0] != 1 && m[0] != q[0]) || m[1] != 1 || m[2] != 1 || m[3] != k[1])
        fail("{}: mask {} is not [1 or batch, 1, 1, {}] float32", where, shape_string(m), k[1]);
    }
    out[0] = {onnx::kFloat, {q[0], q[1], q[2], v[3]}};
    return true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
    const size_t batch = q.dim(0), t = q.dim(1), heads = q.dim(2), d = q.dim(3);
    const size_t tk = k.dim(1), dv = v.dim(3);
    if (batch * heads * t == 0 || dv == 0) return;
    const auto& kt = kernels::best();
    const float* pq = q.data<float>();
    const float* pk = k.data<float>();
    const float* pv = v.data<float>();
    const Tensor* mask = in.size() > 3 ? in[3] : nullptr;
    const float* pm = mask ? mask->data<float>() : nullptr;
    const bool mask_per_batch = mask && mask->dim(0) != 1;
    float* po = out[0]->data<float>();
    const size_t mr = kt.f32_mr, nr = kt.f32_nr;
    const size_t kpanels = (tk + nr - 1) / nr, vpanels = (dv + nr - 1) / nr;
    // Score rows are whole panels wide, so every q K^T tile is stored in place
    // (a kernel may write all NR columns of a partial panel, or only nc).
    const size_t lds = kpanels * nr;
    const size_t mb = mr * std::max<size_t>(1, kRowBlock / mr);
    const size_t ldq = heads * d, ldv = heads * dv;
    pool.run(batch * heads, [&](size_t task) {
      const size_t b = task / heads, h = task % heads;
      thread_local std::vector<float> buffer;
      buffer.resize(kpanels * nr * d + vpanels * nr * tk + mb * lds + kMaxTile);
      float* kpack = buffer.data();
      float* vpack = kpack + kpanels * nr * d;
      float* s = vpack + vpanels * nr * tk;
      float* tile = s + mb * lds;
      // K as the B operand [d x tk] is k[b, :, h, :] transposed; V [tk x dv] is v[b, :, h, :].
      kt.pack_f32_transposed(pk + (b * tk * heads + h) * d, tk, d, ldq, nr, kpack);
      kernels::pack_f32_panels(pv + (b * tk * heads + h) * dv, tk, dv, ldv, false, nr, vpack);
      const float* mrow = pm ? pm + (mask_per_batch ? b * tk : 0) : nullptr;
      const float* qh = pq + (b * t * heads + h) * d;
      float* oh = po + (b * t * heads + h) * dv;
      for (size_t r0 = 0; r0 < t; r0 += mb) {
        const size_t rows = std::min(mb, t - r0);
        for (size_t p = 0; p < kpanels; ++p)
          for (size_t i = 0; i < rows; i += mr)
            kt.f32_gemm(std::min(mr, rows - i), std::min(nr, tk - p * nr), d, qh + (r0 + i) * ldq, ldq,
                        kpack + p * d * nr, s + i * lds + p * nr, lds, nullptr);
        kt.attention_softmax(s, lds, rows, tk, scale_, divide_, mrow);
        for (size_t p = 0; p < vpanels; ++p) {
          const size_t j0 = p * nr, nc = std::min(nr, dv - j0);
          for (size_t i = 0; i < rows; i += mr) {
            const size_t m = std::min(mr, rows - i);
            float* o = oh + (r0 + i) * ldv + j0;
            if (nc == nr) {
              kt.f32_gemm(m, nr, tk, s + i * lds, lds, vpack + p * tk * nr, o, ldv, nullptr);
              continue;
            }
            kt.f32_gemm(m, nr, tk, s + i * lds, lds, vpack + p * tk * nr, tile, nr, nullptr);
            for (size_t r = 0; r < m; ++r) std::memcpy(o + r * ldv, tile + r * nr, nc * sizeof(float));
          }
        }
      }
    });
  }

 private:
  float scale_;
  bool divide_;
};

}  // namespace

std::unique_ptr<Op> make_attention_op(float scale, bool divide) { return std::make_unique<AttentionOp>(scale, divide); }

}  // namespace medquant::runtime
