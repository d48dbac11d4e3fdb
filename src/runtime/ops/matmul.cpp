// MatMul and Gemm. Reference loops for every type; float32 goes through the
// packed f32 GEMM kernels: a constant 2-D weight is packed once in prepare(),
// and the fusion pass may add a bias and GELU to that path's epilogue.
#include <cmath>
#include <cstring>

#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"
#include "runtime/ops/fusable.h"

namespace medquant::runtime {
namespace {

using kernels::Activation;

void apply_activation_ref(float* y, size_t n, Activation act) {
  if (act == Activation::Gelu) kernels::best().gelu(y, y, n);
}

class MatMulOp : public Op, public FusableLinear {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (ctx.type(1) != t) fail("{}: A and B have different element types", where);
    if (!is_float_type(t) && !is_integer_type(t)) fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    Shape a = ctx.shape(0), b = ctx.shape(1);
    if (a.empty() || b.empty()) fail("{}: inputs must have rank >= 1", where);
    const bool a1 = a.size() == 1, b1 = b.size() == 1;
    if (a1) a.insert(a.begin(), 1);
    if (b1) b.push_back(1);
    if (a.back() != b[b.size() - 2])
      fail("{}: A {} and B {} have different inner dimensions", where, shape_string(ctx.shape(0)), shape_string(ctx.shape(1)));
    Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
    Shape s = broadcast_shapes(ab, bb, where);
    if (!a1) s.push_back(a[a.size() - 2]);
    if (!b1) s.push_back(b.back());
    out[0] = {t, s};
    return true;
  }

  void prepare(const InferContext& ctx) override {
    packed_ = false;
    const Tensor* w = ctx.value(1);
    if (ctx.type(0) != onnx::kFloat || !w || w->rank() != 2 || ctx.rank(0) < 2) return;
    const auto& k = kernels::best();
    if (!pack_.data || pack_.k != static_cast<size_t>(w->dim(0)) || pack_.n != static_cast<size_t>(w->dim(1)) || w_src_ != w->raw()) {
      pack_ = kernels::pack_f32(k, w->data<float>(), w->dim(0), w->dim(1), w->dim(1));
      w_src_ = w->raw();
    }
    pack_.bias = bias_;
    packed_ = true;
  }

  bool packed() const override { return packed_; }
  size_t output_columns() const override { return pack_.n; }
  void set_bias(std::vector<float> bias) override {
    bias_ = std::move(bias);
    pack_.bias = bias_;
  }
  void set_activation(Activation act) override { act_ = act; }
  bool has_bias() const override { return !bias_.empty(); }
  Activation activation() const override { return act_; }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    Tensor& y = *out[0];
    const auto& k = kernels::best();
    if (packed_) {
      const size_t kk = static_cast<size_t>(a.shape().back());
      const size_t m = kk ? static_cast<size_t>(a.size()) / kk : 0;
      if (m == 0) return;
      kernels::f32_gemm(k, m, a.data<float>(), kk, pack_, y.data<float>(), pack_.n, act_, &pool);
      return;
    }
    Shape as = a.shape(), bs = b.shape();
    if (as.size() == 1) as.insert(as.begin(), 1);
    if (bs.size() == 1) bs.push_back(1);
    const int64_t M = as[as.size() - 2], K = as.back(), N = bs.back();
    Shape ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
    Shape batch = broadcast_shapes(ab, bb, where);
    const int64_t nb = shape_size(batch);
    // Offsets of each batch's matrices (broadcast).
    std::vector<int64_t> aoff(static_cast<size_t>(nb)), boff(static_cast<size_t>(nb));
    {
      Shape abk = ab, bbk = bb;
      BroadcastWalk<2> w(batch, {&abk, &bbk});
      w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        for (int64_t i = 0; i < len; ++i) {
          aoff[o + i] = (off[0] + i * st[0]) * M * K;
          boff[o + i] = (off[1] + i * st[1]) * K * N;
        }
      });
    }
    if (M * N == 0) return;
    if (a.type() == onnx::kFloat) {
      const float* pa = a.data<float>();
      const float* pb = b.data<float>();
      float* py = y.data<float>();
      if (nb == 1 && M * N * K >= (1 << 18)) {
        auto packed = kernels::pack_f32(k, pb, K, N, N);
        kernels::f32_gemm(k, M, pa, K, packed, py, N, Activation::None, &pool);
      } else {
        pool.run(static_cast<size_t>(nb), [&](size_t i) {
          kernels::f32_gemm_unpacked(k, M, N, K, pa + aoff[i], K, pb + boff[i], N, false, py + i * M * N, N);
        });
      }
      // Epilogues fused on an earlier plan still apply when this plan could not pack.
      if (!bias_.empty() || act_ != Activation::None)
        for (int64_t r = 0; r < nb * M; ++r) {
          float* row = py + r * N;
          if (!bias_.empty())
            for (int64_t j = 0; j < N; ++j) row[j] += bias_[j];
          apply_activation_ref(row, N, act_);
        }
      return;
    }
    dispatch_numeric(a.type(), where, [&](auto tag) {
      using T = decltype(tag);
      using A = std::conditional_t<std::is_floating_point_v<T>, T, int64_t>;
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* py = y.data<T>();
      for (int64_t bi = 0; bi < nb; ++bi)
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            A s = 0;
            for (int64_t q = 0; q < K; ++q) s += static_cast<A>(pa[aoff[bi] + i * K + q]) * static_cast<A>(pb[boff[bi] + q * N + j]);
            py[bi * M * N + i * N + j] = static_cast<T>(s);
          }
    });
  }

 private:
  bool packed_ = false;
  kernels::PackedF32 pack_;
  const void* w_src_ = nullptr;
  std::vector<float> bias_;
  Activation act_ = Activation::None;
};

class GemmOp : public Op {
 public:
  GemmOp(float alpha, float beta, bool ta, bool tb) : alpha_(alpha), beta_(beta), ta_(ta), tb_(tb) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (ctx.type(1) != t || (ctx.has(2) && ctx.type(2) != t)) fail("{}: inputs have different element types", where);
    if (!is_float_type(t) && !is_integer_type(t)) fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    if (ctx.rank(0) != 2 || ctx.rank(1) != 2) fail("{}: A and B must be 2-D", where);
    const Shape& a = ctx.shape(0);
    const Shape& b = ctx.shape(1);
    const int64_t M = ta_ ? a[1] : a[0], K = ta_ ? a[0] : a[1];
    const int64_t K2 = tb_ ? b[1] : b[0], N = tb_ ? b[0] : b[1];
    if (K != K2) fail("{}: A {} and B {} have different inner dimensions", where, shape_string(a), shape_string(b));
    if (ctx.has(2)) {
      Shape s = broadcast_shapes(ctx.shape(2), {M, N}, where);
      if (s != Shape{M, N}) fail("{}: C {} does not broadcast to [{}, {}]", where, shape_string(ctx.shape(2)), M, N);
    }
    out[0] = {t, {M, N}};
    return true;
  }
  void prepare(const InferContext& ctx) override {
    packed_ = false;
    const Tensor* w = ctx.value(1);
    if (ctx.type(0) != onnx::kFloat || !w || ta_) return;
    std::vector<float> scaled;
    const float* src = w->data<float>();
    if (alpha_ != 1.f) {
      scaled.assign(src, src + w->size());
      for (float& v : scaled) v *= alpha_;
      src = scaled.data();
    }
    const size_t K = tb_ ? w->dim(1) : w->dim(0), N = tb_ ? w->dim(0) : w->dim(1);
    pack_ = kernels::pack_f32(kernels::best(), src, K, N, w->dim(1), tb_);
    packed_ = true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* c = in.size() > 2 ? in[2] : nullptr;
    Tensor& y = *out[0];
    const int64_t M = y.dim(0), N = y.dim(1), K = ta_ ? a.dim(0) : a.dim(1);
    if (M * N == 0) return;
    if (packed_ && a.type() == onnx::kFloat) {
      kernels::f32_gemm(kernels::best(), M, a.data<float>(), K, pack_, y.data<float>(), N, Activation::None, &pool);
      if (c && beta_ != 0) add_c(*c, y);
      return;
    }
    dispatch_numeric(a.type(), where, [&](auto tag) {
      using T = decltype(tag);
      using A = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* py = y.data<T>();
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          A s = 0;
          for (int64_t q = 0; q < K; ++q)
            s += static_cast<A>(pa[ta_ ? q * M + i : i * K + q]) * static_cast<A>(pb[tb_ ? j * K + q : q * N + j]);
          py[i * N + j] = static_cast<T>(static_cast<A>(alpha_) * s);
        }
    });
    if (c && beta_ != 0) add_c(*c, y);
  }

 private:
  void add_c(const Tensor& c, Tensor& y) {
    BroadcastWalk<1> w(y.shape(), {&c.shape()});
    dispatch_numeric(y.type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T* pc = c.data<T>();
      T* py = y.data<T>();
      const T beta = static_cast<T>(beta_);
      w.for_each_run([&](int64_t o, std::array<int64_t, 1> off, int64_t len, std::array<int64_t, 1> st) {
        for (int64_t i = 0; i < len; ++i) py[o + i] = static_cast<T>(py[o + i] + beta * pc[off[0] + i * st[0]]);
      });
    });
  }

  float alpha_, beta_;
  bool ta_, tb_;
  bool packed_ = false;
  kernels::PackedF32 pack_;
};

}  // namespace

void register_matmul_ops(OpRegistry& r) {
  r.add("", "MatMul", 1, 21, [](OpArgs&) { return std::make_unique<MatMulOp>(); });
  r.add("", "Gemm", 7, 21, [](OpArgs& a) {
    return std::make_unique<GemmOp>(a.attrs.f("alpha", 1.f), a.attrs.f("beta", 1.f),
                                    a.attrs.i("transA", 0) != 0, a.attrs.i("transB", 0) != 0);
  });
}

}  // namespace medquant::runtime
