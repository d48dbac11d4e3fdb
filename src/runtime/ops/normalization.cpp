// Softmax, LogSoftmax and LayerNormalization (reference implementations; float
// rows along the last axis go through the vectorised row kernels).
#include <cmath>
#include <limits>

#include "runtime/kernels/kernels.h"
#include "runtime/op.h"
#include "runtime/ops/dispatch.h"

namespace medquant::runtime {
namespace {

template <typename T>
void softmax_strided(const T* x, T* y, int64_t n, int64_t stride, bool log) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i * stride]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(x[i * stride] - mx);
    if (!log) y[i * stride] = e;
    sum += e;
  }
  if (log) {
    const T ls = static_cast<T>(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i * stride] = x[i * stride] - mx - ls;
  } else {
    const T inv = static_cast<T>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i * stride] *= inv;
  }
}

class SoftmaxOp : public Op {
 public:
  SoftmaxOp(int64_t axis, bool coerce_2d, bool log) : axis_(axis), coerce_(coerce_2d), log_(log) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    dispatch_float(ctx.type(0), where, [](auto) {});
    normalize_axis(axis_, static_cast<int64_t>(ctx.rank(0)), where);
    out[0] = ctx.desc(0);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    const int64_t r = static_cast<int64_t>(x.rank());
    const int64_t axis = normalize_axis(axis_, r, where);
    int64_t outer = 1, n = 1, inner = 1;
    for (int64_t d = 0; d < r; ++d) {
      if (d < axis) outer *= x.dim(d);
      else if (d == axis || coerce_) n *= x.dim(d);
      else inner *= x.dim(d);
    }
    if (n == 0 || outer * inner == 0) return;
    dispatch_float(x.type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T* a = x.data<T>();
      T* b = y.data<T>();
      if constexpr (std::is_same_v<T, float>) {
        if (inner == 1 && !log_) {
          const auto& k = kernels::best();
          pool.ranges(static_cast<size_t>(outer), std::max<size_t>(1, 4096 / n), [&](size_t s, size_t e) {
            for (size_t o = s; o < e; ++o) k.softmax(a + o * n, b + o * n, static_cast<size_t>(n));
          });
          return;
        }
      }
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i)
          softmax_strided(a + o * n * inner + i, b + o * n * inner + i, n, inner, log_);
    });
  }

 private:
  int64_t axis_;
  bool coerce_, log_;
};

class LayerNormOp : public Op {
 public:
  LayerNormOp(int64_t axis, float eps) : axis_(axis), eps_(eps) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    dispatch_float(t, where, [](auto) {});
    const Shape& s = ctx.shape(0);
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(s.size()), where);
    int64_t norm = 1;
    for (size_t d = axis; d < s.size(); ++d) norm *= s[d];
    for (size_t i = 1; i < 3; ++i) {
      if (!ctx.has(i)) continue;
      if (ctx.type(i) != t) fail("{}: scale and bias must have the input's type", where);
      const int64_t c = shape_size(ctx.shape(i), where);
      if (c != norm && c != 1)
        fail("{}: {} of shape {} does not match the normalized shape (size {})", where,
             i == 1 ? "scale" : "bias", shape_string(ctx.shape(i)), norm);
    }
    out[0] = ctx.desc(0);
    Shape stat(s.begin(), s.begin() + axis);
    stat.resize(s.size(), 1);
    if (out.size() > 1) out[1] = {onnx::kFloat, stat};
    if (out.size() > 2) out[2] = {onnx::kFloat, stat};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.rank()), where);
    int64_t rows = 1, n = 1;
    for (int64_t d = 0; d < static_cast<int64_t>(x.rank()); ++d) (d < axis ? rows : n) *= x.dim(d);
    const Tensor* scale = in.size() > 1 ? in[1] : nullptr;
    const Tensor* bias = in.size() > 2 ? in[2] : nullptr;
    Tensor* mean_out = out.size() > 1 ? out[1] : nullptr;
    Tensor* inv_out = out.size() > 2 ? out[2] : nullptr;
    if (n == 0) return;
    dispatch_float(x.type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T* a = x.data<T>();
      T* y = out[0]->data<T>();
      const bool full_scale = scale && scale->size() == n, full_bias = bias && bias->size() == n;
      if constexpr (std::is_same_v<T, float>) {
        if (!mean_out && !inv_out && (full_scale || !scale) && (full_bias || !bias) && scale) {
          const auto& k = kernels::best();
          pool.ranges(static_cast<size_t>(rows), std::max<size_t>(1, 4096 / n), [&](size_t s, size_t e) {
            for (size_t r = s; r < e; ++r)
              k.layernorm(a + r * n, y + r * n, static_cast<size_t>(n), scale->data<float>(),
                          bias ? bias->data<float>() : nullptr, eps_);
          });
          return;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = a + r * n;
        T* yr = y + r * n;
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) sum += xr[i];
        const double mean = sum / n;
        double var = 0;
        for (int64_t i = 0; i < n; ++i) var += (xr[i] - mean) * (xr[i] - mean);
        var /= n;
        const double inv = 1.0 / std::sqrt(var + eps_);
        for (int64_t i = 0; i < n; ++i) {
          double v = (xr[i] - mean) * inv;
          if (scale) v *= scale->data<T>()[full_scale ? i : 0];
          if (bias) v += bias->data<T>()[full_bias ? i : 0];
          yr[i] = static_cast<T>(v);
        }
        if (mean_out) mean_out->data<float>()[r] = static_cast<float>(mean);
        if (inv_out) inv_out->data<float>()[r] = static_cast<float>(inv);
      }
    });
  }

 private:
  int64_t axis_;
  float eps_;
};

}  // namespace

void register_normalization_ops(OpRegistry& r) {
  for (const char* name : {"Softmax", "LogSoftmax"}) {
    const bool log = std::string(name) == "LogSoftmax";
    r.add("", name, 1, 12, [log](OpArgs& a) { return std::make_unique<SoftmaxOp>(a.attrs.i("axis", 1), true, log); });
    r.add("", name, 13, 21, [log](OpArgs& a) { return std::make_unique<SoftmaxOp>(a.attrs.i("axis", -1), false, log); });
  }
  r.add("", "LayerNormalization", 17, 21, [](OpArgs& a) {
    if (a.attrs.i("stash_type", 1) != 1) fail("{}: stash_type other than float is not supported", a.where);
    return std::make_unique<LayerNormOp>(a.attrs.i("axis", -1), a.attrs.f("epsilon", 1e-5f));
  });
}

}  // namespace medquant::runtime
