// Fused multi-head attention (made by the fusion pass, never read from a
// model): softmax(q k * scale [+ mask]) v per batch and head, reading q, k, v in the
// [B, T, H, D] layout the Q/K/V projections produce and writing the context in
// that layout too, so the four head transposes around it are never
// materialised. Each head runs the same kernels in the same order as the
// unfused MatMul -> Mul/Div -> Softmax -> MatMul chain, so results are equal.
#include "runtime/ops/attention.h"

#include <vector>

#include "runtime/kernels/kernels.h"

namespace medquant::runtime {
namespace {

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
    pool.run(batch * heads, [&](size_t task) {
      const size_t b = task / heads, h = task % heads;
      thread_local std::vector<float> scores;
      scores.resize(t * tk);
      float* s = scores.data();
      // q row i of head h: q[b, i, h, :]; k as the B operand [d x tk] is k[b, :, h, :] transposed.
      kernels::f32_gemm_unpacked(kt, t, tk, d, pq + (b * t * heads + h) * d, heads * d,
                                 pk + (b * tk * heads + h) * d, heads * d, true, s, tk);
      for (size_t i = 0; i < t; ++i) {
        float* row = s + i * tk;
        kt.scale(row, row, tk, scale_, divide_);
        if (pm) {
          const float* mr = pm + (mask_per_batch ? b * tk : 0);
          for (size_t j = 0; j < tk; ++j) row[j] += mr[j];
        }
        kt.softmax(row, row, tk);
      }
      kernels::f32_gemm_unpacked(kt, t, dv, tk, s, tk, pv + (b * tk * heads + h) * dv, heads * dv, false,
                                 po + (b * t * heads + h) * dv, heads * dv);
    });
  }

 private:
  float scale_;
  bool divide_;
};

}  // namespace

std::unique_ptr<Op> make_attention_op(float scale, bool divide) { return std::make_unique<AttentionOp>(scale, divide); }

}  // namespace medquant::runtime
