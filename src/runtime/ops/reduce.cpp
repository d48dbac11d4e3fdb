// Reductions (reference implementations): ReduceMean, ReduceSum, ReduceMax,
// ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare. Float inputs
// accumulate in double; reductions over trailing axes run in parallel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"

namespace medquant::runtime {
namespace {

enum class Reduce { Mean, Sum, Max, Min, Prod, L1, L2, SumSquare };

class ReduceOp : public Op {
 public:
  ReduceOp(Reduce kind, bool axes_input, std::vector<int64_t> axes, bool keepdims, bool noop_empty)
      : kind_(kind), axes_input_(axes_input), axes_(std::move(axes)), keepdims_(keepdims), noop_empty_(noop_empty) {}

  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (!is_float_type(t) && !is_integer_type(t)) fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    std::vector<int64_t> axes = axes_;
    if (axes_input_ && ctx.has(1)) {
      const Tensor* v = ctx.value(1);
      if (!v) return false;
      if (v->type() != onnx::kInt64) fail("{}: axes must be int64", where);
      axes = v->to_int64();
    }
    const Shape& in = ctx.shape(0);
    const int64_t r = static_cast<int64_t>(in.size());
    reduced_.assign(in.size(), false);
    noop_ = axes.empty() && noop_empty_;
    if (axes.empty() && !noop_empty_) reduced_.assign(in.size(), true);
    for (int64_t a : axes) {
      const int64_t n = normalize_axis(a, r, where);
      reduced_[n] = true;
    }
    Shape s;
    keep_shape_.clear();
    for (size_t d = 0; d < in.size(); ++d) {
      keep_shape_.push_back(reduced_[d] ? 1 : in[d]);
      if (!reduced_[d] || keepdims_) s.push_back(reduced_[d] ? 1 : in[d]);
    }
    trailing_ = true;
    for (size_t d = 0, seen_reduced = 0; d < in.size(); ++d) {
      if (in[d] == 1) continue;
      if (reduced_[d]) seen_reduced = 1;
      else if (seen_reduced) trailing_ = false;
    }
    if ((kind_ == Reduce::Max || kind_ == Reduce::Min) && shape_size(in, where) == 0 && shape_size(s, where) > 0)
      fail("{}: cannot take the max/min of an empty set", where);
    out[0] = {t, s};
    return true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    if (noop_) {
      if (x.bytes()) std::memcpy(y.raw(), x.raw(), x.bytes());
      return;
    }
    const int64_t n_out = y.size();
    const int64_t count = n_out ? x.size() / std::max<int64_t>(n_out, 1) : 0;
    dispatch_numeric(x.type(), where, [&](auto tag) {
      using T = decltype(tag);
      using A = std::conditional_t<std::is_floating_point_v<T>, double,
                                   std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;
      A init = 0;
      if (kind_ == Reduce::Prod) init = 1;
      if (kind_ == Reduce::Max) init = std::numeric_limits<A>::lowest();
      if (kind_ == Reduce::Min) init = std::numeric_limits<A>::max();
      if constexpr (std::is_floating_point_v<T>) {
        if (kind_ == Reduce::Max) init = -std::numeric_limits<A>::infinity();
        if (kind_ == Reduce::Min) init = std::numeric_limits<A>::infinity();
      }
      auto finish = [&](A v) {
        if (kind_ == Reduce::Mean) v = count ? static_cast<A>(v / static_cast<A>(count)) : v;
        if (kind_ == Reduce::L2) v = static_cast<A>(std::sqrt(static_cast<double>(v)));
        return static_cast<T>(v);
      };
      const T* a = x.data<T>();
      T* b = y.data<T>();
      with_kind([&](auto kind) {
        // Trailing axes reduced (e.g. the ReduceMeans of LayerNorm in opset < 17
        // exports): output o is the contiguous run a[o * count, (o + 1) * count),
        // summed in the same order as the walk below, outputs spread over the pool.
        if (trailing_) {
          pool.ranges(static_cast<size_t>(n_out), static_cast<size_t>(std::max<int64_t>(1, 16384 / std::max<int64_t>(count, 1))),
                      [&](size_t s, size_t e) {
                        for (size_t o = s; o < e; ++o) {
                          A acc = init;
                          const T* r = a + static_cast<int64_t>(o) * count;
                          for (int64_t i = 0; i < count; ++i) step(kind, acc, static_cast<A>(r[i]));
                          b[o] = finish(acc);
                        }
                      });
          return;
        }
        std::vector<A> acc(static_cast<size_t>(n_out), init);
        // Walk the input; the output (kept dims) broadcasts over it.
        BroadcastWalk<1> w(x.shape(), {&keep_shape_});
        w.for_each_run([&](int64_t o, std::array<int64_t, 1> off, int64_t len, std::array<int64_t, 1> st) {
          for (int64_t i = 0; i < len; ++i) step(kind, acc[off[0] + i * st[0]], static_cast<A>(a[o + i]));
        });
        for (int64_t i = 0; i < n_out; ++i) b[i] = finish(acc[i]);
      });
    });
  }

 private:
  template <Reduce K>
  using Kind = std::integral_constant<Reduce, K>;
  // fn(Kind<k>) for this op's kind, so the inner loops have no switch.
  template <typename Fn>
  void with_kind(Fn&& fn) const {
    switch (kind_) {
      case Reduce::Mean: return fn(Kind<Reduce::Mean>{});
      case Reduce::Sum: return fn(Kind<Reduce::Sum>{});
      case Reduce::Max: return fn(Kind<Reduce::Max>{});
      case Reduce::Min: return fn(Kind<Reduce::Min>{});
      case Reduce::Prod: return fn(Kind<Reduce::Prod>{});
      case Reduce::L1: return fn(Kind<Reduce::L1>{});
      case Reduce::L2: return fn(Kind<Reduce::L2>{});
      case Reduce::SumSquare: return fn(Kind<Reduce::SumSquare>{});
    }
  }
  template <Reduce K, typename A>
  static void step(Kind<K>, A& s, A v) {
    if constexpr (K == Reduce::Mean || K == Reduce::Sum) s += v;
    else if constexpr (K == Reduce::Max) { if (v > s || v != v) s = v; }
    else if constexpr (K == Reduce::Min) { if (v < s || v != v) s = v; }
    else if constexpr (K == Reduce::Prod) s *= v;
    else if constexpr (K == Reduce::L1) s += v < 0 ? A(0) - v : v;
    else s += v * v;  // L2, SumSquare
  }

  Reduce kind_;
  bool axes_input_;
  std::vector<int64_t> axes_;
  bool keepdims_, noop_empty_;
  std::vector<bool> reduced_;
  Shape keep_shape_;
  bool trailing_ = false;  // the reduced dims (size > 1) all come after the kept ones
  bool noop_ = false;
};

}  // namespace

void register_reduce_ops(OpRegistry& r) {
  auto add = [&](const char* name, Reduce k, int64_t input_since) {
    r.add("", name, 1, input_since - 1, [k](OpArgs& a) {
      return std::make_unique<ReduceOp>(k, false, a.attrs.ints("axes"), a.attrs.i("keepdims", 1) != 0, false);
    });
    r.add("", name, input_since, 21, [k](OpArgs& a) {
      return std::make_unique<ReduceOp>(k, true, std::vector<int64_t>{}, a.attrs.i("keepdims", 1) != 0,
                                        a.attrs.i("noop_with_empty_axes", 0) != 0);
    });
  };
  add("ReduceSum", Reduce::Sum, 13);
  add("ReduceMean", Reduce::Mean, 18);
  add("ReduceMax", Reduce::Max, 18);
  add("ReduceMin", Reduce::Min, 18);
  add("ReduceProd", Reduce::Prod, 18);
  add("ReduceL1", Reduce::L1, 18);
  add("ReduceL2", Reduce::L2, 18);
  add("ReduceSumSquare", Reduce::SumSquare, 18);
}

}  // namespace medquant::runtime
