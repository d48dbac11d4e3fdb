// Elementwise operators (reference implementations): unary math, binary
// arithmetic and comparisons with numpy broadcasting, variadic Max/Min/Sum,
// Where, Clip, Cast/CastLike, Identity. Float Exp/Erf/Gelu go through the
// vectorised row kernels of the chosen instruction set.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/half.h"
#include "runtime/kernels/kernels.h"
#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"

namespace medquant::runtime {
namespace {

constexpr int64_t kParallelElements = 1 << 15;

// ---------------------------------------------------------------- unary

enum class Unary { Neg, Abs, Sqrt, Reciprocal, Exp, Erf, Tanh, Relu, Sigmoid, Gelu, GeluTanh, Not,
                   Floor, Ceil, Log, Sign, Round };

template <typename T>
T apply_unary(Unary k, T x) {
  if constexpr (std::is_floating_point_v<T>) {
    switch (k) {
      case Unary::Neg: return -x;
      case Unary::Abs: return std::fabs(x);
      case Unary::Sqrt: return std::sqrt(x);
      case Unary::Reciprocal: return T(1) / x;
      case Unary::Exp: return std::exp(x);
      case Unary::Erf: return std::erf(x);
      case Unary::Tanh: return std::tanh(x);
      case Unary::Relu: return x > T(0) ? x : T(0);
      case Unary::Sigmoid:
        return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
      case Unary::Gelu: return T(0.5) * x * (T(1) + std::erf(x / std::sqrt(T(2))));
      case Unary::GeluTanh: {
        const T c = std::sqrt(T(2) / T(M_PI));
        return T(0.5) * x * (T(1) + std::tanh(c * (x + T(0.044715) * x * x * x)));
      }
      case Unary::Floor: return std::floor(x);
      case Unary::Round: return std::nearbyint(x);  // half to even
      case Unary::Ceil: return std::ceil(x);
      case Unary::Log: return std::log(x);
      case Unary::Sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
      default: break;
    }
  } else {
    switch (k) {
      case Unary::Neg: return static_cast<T>(-x);
      case Unary::Abs: if constexpr (std::is_signed_v<T>) return x < 0 ? static_cast<T>(-x) : x; else return x;
      case Unary::Relu: if constexpr (std::is_signed_v<T>) return x < 0 ? T(0) : x; else return x;
      case Unary::Sign: if constexpr (std::is_signed_v<T>) return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0)); else return x > 0 ? T(1) : T(0);
      default: break;
    }
  }
  return x;
}

bool unary_allows_integers(Unary k) {
  return k == Unary::Neg || k == Unary::Abs || k == Unary::Relu || k == Unary::Sign;
}

class UnaryOp : public Op {
 public:
  explicit UnaryOp(Unary kind) : kind_(kind) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (kind_ == Unary::Not) {
      if (t != onnx::kBool) fail("{}: input must be bool, got {}", where, onnx::elem_type_name(t));
    } else if (!is_float_type(t) && !(unary_allows_integers(kind_) && is_integer_type(t))) {
      fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    }
    out[0] = ctx.desc(0);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    const size_t n = static_cast<size_t>(x.size());
    if (kind_ == Unary::Not) {
      const bool* a = x.data<bool>();
      bool* b = y.data<bool>();
      for (size_t i = 0; i < n; ++i) b[i] = !a[i];
      return;
    }
    if (x.type() == onnx::kFloat) {
      const auto& k = kernels::best();
      void (*row)(const float*, float*, size_t) = nullptr;
      if (kind_ == Unary::Exp) row = k.exp;
      if (kind_ == Unary::Erf) row = k.erf;
      if (kind_ == Unary::Gelu) row = k.gelu;
      const float* a = x.data<float>();
      float* b = y.data<float>();
      pool.ranges(n, kParallelElements, [&](size_t s, size_t e) {
        if (row) return row(a + s, b + s, e - s);
        for (size_t i = s; i < e; ++i) b[i] = apply_unary(kind_, a[i]);
      });
      return;
    }
    dispatch_numeric(x.type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T* a = x.data<T>();
      T* b = y.data<T>();
      for (size_t i = 0; i < n; ++i) b[i] = apply_unary(kind_, a[i]);
    });
  }

 private:
  Unary kind_;
};

// ---------------------------------------------------------------- binary

enum class Binary { Add, Sub, Mul, Div, Pow, Equal, Less, Greater, LessOrEqual, GreaterOrEqual,
                    And, Or, Xor, Max, Min, Mod };

bool is_comparison(Binary k) {
  return k == Binary::Equal || k == Binary::Less || k == Binary::Greater ||
         k == Binary::LessOrEqual || k == Binary::GreaterOrEqual;
}
bool is_logical(Binary k) { return k == Binary::And || k == Binary::Or || k == Binary::Xor; }

template <typename T>
T int_pow(T base, double e) {
  return static_cast<T>(std::pow(static_cast<double>(base), e));
}

template <typename T>
T apply_arith(Binary k, T a, T b, const std::string& where) {
  switch (k) {
    case Binary::Add: return static_cast<T>(a + b);
    case Binary::Sub: return static_cast<T>(a - b);
    case Binary::Mul: return static_cast<T>(a * b);
    case Binary::Div:
      if constexpr (std::is_integral_v<T>) {
        if (b == 0) fail("{}: integer division by zero", where);
        if constexpr (std::is_signed_v<T>)
          if (a == std::numeric_limits<T>::min() && b == T(-1)) return a;  // wraps, never traps
      }
      return static_cast<T>(a / b);
    case Binary::Max:
      if constexpr (std::is_floating_point_v<T>) if (std::isnan(a) || std::isnan(b)) return a + b;
      return a > b ? a : b;
    case Binary::Min:
      if constexpr (std::is_floating_point_v<T>) if (std::isnan(a) || std::isnan(b)) return a + b;
      return a < b ? a : b;
    default: return a;
  }
}

template <typename T>
bool apply_compare(Binary k, T a, T b) {
  switch (k) {
    case Binary::Equal: return a == b;
    case Binary::Less: return a < b;
    case Binary::Greater: return a > b;
    case Binary::LessOrEqual: return a <= b;
    case Binary::GreaterOrEqual: return a >= b;
    default: return false;
  }
}

// Float fast loops: the compiler vectorises these (steps are 0 or 1).
template <typename F>
void float_run(float* y, const float* a, const float* b, int64_t len, int64_t sa, int64_t sb, F f) {
  if (sa == 1 && sb == 1) for (int64_t i = 0; i < len; ++i) y[i] = f(a[i], b[i]);
  else if (sa == 1 && sb == 0) { const float v = *b; for (int64_t i = 0; i < len; ++i) y[i] = f(a[i], v); }
  else if (sa == 0 && sb == 1) { const float v = *a; for (int64_t i = 0; i < len; ++i) y[i] = f(v, b[i]); }
  else for (int64_t i = 0; i < len; ++i) y[i] = f(a[i * sa], b[i * sb]);
}

class BinaryOp : public Op {
 public:
  BinaryOp(Binary kind, bool variadic) : kind_(kind), variadic_(variadic) {}

  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.count() == 0) fail("{}: needs at least one input", where);
    const int32_t t = ctx.type(0);
    Shape shape = ctx.shape(0);
    for (size_t i = 1; i < ctx.count(); ++i) {
      if (kind_ != Binary::Pow && ctx.type(i) != t)
        fail("{}: inputs have different element types ({} and {})", where, onnx::elem_type_name(t),
             onnx::elem_type_name(ctx.type(i)));
      shape = broadcast_shapes(shape, ctx.shape(i), where);
    }
    if (is_logical(kind_)) {
      if (t != onnx::kBool) fail("{}: inputs must be bool", where);
    } else if (!(is_float_type(t) || is_integer_type(t) ||
                 (t == onnx::kFloat16 && (kind_ == Binary::Max || kind_ == Binary::Min)) ||
                 (t == onnx::kBool && kind_ == Binary::Equal))) {
      fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    }
    if (kind_ == Binary::Pow && !is_float_type(ctx.type(1)) && !is_integer_type(ctx.type(1)))
      fail("{}: exponent type {} is not supported", where, onnx::elem_type_name(ctx.type(1)));
    out[0] = {is_comparison(kind_) || is_logical(kind_) ? int32_t{onnx::kBool} : t, shape};
    return true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    Tensor& y = *out[0];
    if (!variadic_ || in.size() == 2) return binary(*in[0], *in[1], y, pool);
    // Variadic: y = in0 broadcast, then y = op(y, in_k).
    const Tensor& x0 = *in[0];
    BroadcastWalk<1> w(y.shape(), {&x0.shape()});
    const size_t es = onnx::elem_size(y.type());
    auto* dst = static_cast<uint8_t*>(y.raw());
    const auto* src = static_cast<const uint8_t*>(x0.raw());
    w.for_each_run([&](int64_t o, std::array<int64_t, 1> off, int64_t len, std::array<int64_t, 1> st) {
      for (int64_t i = 0; i < len; ++i) std::memcpy(dst + (o + i) * es, src + (off[0] + i * st[0]) * es, es);
    });
    for (size_t k = 1; k < in.size(); ++k) binary(y, *in[k], y, pool);
  }

 private:
  void binary(const Tensor& a, const Tensor& b, Tensor& y, Parallel& pool) {
    BroadcastWalk<2> w(y.shape(), {&a.shape(), &b.shape()});
    const int64_t outer = w.outer();
    const int64_t per = std::max<int64_t>(1, kParallelElements / std::max<int64_t>(1, w.run_length()));
    auto split = [&](auto&& body) {
      if (y.size() < kParallelElements) return w.for_each_run(body);
      if (outer < 2) {  // one long run (same shapes, e.g. a residual Add): split it
        return w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
          pool.ranges(static_cast<size_t>(len), kParallelElements, [&](size_t s, size_t e) {
            const auto i = static_cast<int64_t>(s);
            body(o + i, std::array<int64_t, 2>{off[0] + i * st[0], off[1] + i * st[1]}, static_cast<int64_t>(e - s), st);
          });
        });
      }
      pool.ranges(static_cast<size_t>(outer), static_cast<size_t>(per), [&](size_t s, size_t e) {
        w.for_each_run(static_cast<int64_t>(s), static_cast<int64_t>(e), body);
      });
    };
    if (a.type() == onnx::kFloat && b.type() == onnx::kFloat && !is_comparison(kind_) &&
        kind_ != Binary::Pow && kind_ != Binary::Max && kind_ != Binary::Min) {
      const float* pa = a.data<float>();
      const float* pb = b.data<float>();
      float* py = y.data<float>();
      split([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        float* yo = py + o;
        const float* ao = pa + off[0];
        const float* bo = pb + off[1];
        switch (kind_) {
          case Binary::Add: float_run(yo, ao, bo, len, st[0], st[1], [](float u, float v) { return u + v; }); break;
          case Binary::Sub: float_run(yo, ao, bo, len, st[0], st[1], [](float u, float v) { return u - v; }); break;
          case Binary::Mul: float_run(yo, ao, bo, len, st[0], st[1], [](float u, float v) { return u * v; }); break;
          case Binary::Div: float_run(yo, ao, bo, len, st[0], st[1], [](float u, float v) { return u / v; }); break;
          default: break;
        }
      });
      return;
    }
    if (kind_ == Binary::Pow && a.type() == onnx::kFloat && b.type() == onnx::kFloat) {
      const float* pa = a.data<float>();
      const float* pb = b.data<float>();
      float* py = y.data<float>();
      // A scalar exponent 2 (the variance in LayerNorm as torch exports it below
      // opset 17) is x * x, as ONNX Runtime computes it: correctly rounded, where
      // powf is off by one unit on some subnormal results, and no call per element.
      const bool square = b.size() == 1 && pb[0] == 2.f;
      split([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        if (square) float_run(py + o, pa + off[0], pb + off[1], len, st[0], st[1], [](float u, float) { return u * u; });
        else float_run(py + o, pa + off[0], pb + off[1], len, st[0], st[1], [](float u, float v) { return std::pow(u, v); });
      });
      return;
    }
    if (is_logical(kind_) || (kind_ == Binary::Equal && a.type() == onnx::kBool)) {
      const bool* pa = a.data<bool>();
      const bool* pb = b.data<bool>();
      bool* py = y.data<bool>();
      w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        for (int64_t i = 0; i < len; ++i) {
          const bool u = pa[off[0] + i * st[0]], v = pb[off[1] + i * st[1]];
          py[o + i] = kind_ == Binary::And ? (u && v) : kind_ == Binary::Or ? (u || v)
                    : kind_ == Binary::Xor ? (u != v) : (u == v);
        }
      });
      return;
    }
    if (a.type() == onnx::kFloat16) {  // Max/Min on float16: compare as float
      const uint16_t* pa = a.data<uint16_t>();
      const uint16_t* pb = b.data<uint16_t>();
      uint16_t* py = y.data<uint16_t>();
      w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        for (int64_t i = 0; i < len; ++i) {
          const uint16_t u = pa[off[0] + i * st[0]], v = pb[off[1] + i * st[1]];
          const float fu = core::fp16_to_fp32(u), fv = core::fp16_to_fp32(v);
          py[o + i] = (kind_ == Binary::Max) == (fu >= fv) ? u : v;
        }
      });
      return;
    }
    dispatch_numeric(a.type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T* pa = a.data<T>();
      if (kind_ == Binary::Pow) {
        dispatch_numeric(b.type(), where, [&](auto etag) {
          using E = decltype(etag);
          const E* pb = b.data<E>();
          T* py = y.data<T>();
          w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
            for (int64_t i = 0; i < len; ++i) {
              const T u = pa[off[0] + i * st[0]];
              const E v = pb[off[1] + i * st[1]];
              if constexpr (std::is_floating_point_v<T>) py[o + i] = std::pow(u, static_cast<T>(v));
              else py[o + i] = int_pow(u, static_cast<double>(v));
            }
          });
        });
        return;
      }
      const T* pb = b.data<T>();
      if (is_comparison(kind_)) {
        bool* py = y.data<bool>();
        w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
          for (int64_t i = 0; i < len; ++i) py[o + i] = apply_compare(kind_, pa[off[0] + i * st[0]], pb[off[1] + i * st[1]]);
        });
        return;
      }
      T* py = y.data<T>();
      w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
        for (int64_t i = 0; i < len; ++i)
          py[o + i] = apply_arith(kind_, pa[off[0] + i * st[0]], pb[off[1] + i * st[1]], where);
      });
    });
  }

  Binary kind_;
  bool variadic_;
};

// Sum of any number of inputs (variadic Add).
class SumOp : public BinaryOp {
 public:
  SumOp() : BinaryOp(Binary::Add, true) {}
};

// ---------------------------------------------------------------- Where

class WhereOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kBool) fail("{}: condition must be bool", where);
    if (ctx.type(1) != ctx.type(2)) fail("{}: X and Y have different element types", where);
    if (onnx::elem_size(ctx.type(1)) == 0) fail("{}: element type {} is not supported", where, onnx::elem_type_name(ctx.type(1)));
    Shape s = broadcast_shapes(broadcast_shapes(ctx.shape(0), ctx.shape(1), where), ctx.shape(2), where);
    out[0] = {ctx.type(1), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    Tensor& y = *out[0];
    BroadcastWalk<3> w(y.shape(), {&in[0]->shape(), &in[1]->shape(), &in[2]->shape()});
    const bool* c = in[0]->data<bool>();
    dispatch_bytes(onnx::elem_size(y.type()), where, [&](auto tag) {
      using T = decltype(tag);
      const T* a = in[1]->data<T>();
      const T* b = in[2]->data<T>();
      T* py = y.data<T>();
      w.for_each_run([&](int64_t o, std::array<int64_t, 3> off, int64_t len, std::array<int64_t, 3> st) {
        for (int64_t i = 0; i < len; ++i)
          py[o + i] = c[off[0] + i * st[0]] ? a[off[1] + i * st[1]] : b[off[2] + i * st[2]];
      });
    });
  }
};

// ---------------------------------------------------------------- Clip

class ClipOp : public Op {
 public:
  ClipOp(bool attrs, float lo, float hi) : attrs_(attrs), lo_(lo), hi_(hi) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (!is_float_type(t) && !is_integer_type(t)) fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    if (attrs_ && !is_float_type(t)) fail("{}: Clip before opset 11 takes float inputs only", where);
    for (size_t i = 1; i < 3; ++i)
      if (ctx.has(i)) {
        if (ctx.type(i) != t) fail("{}: min/max must have the input's type", where);
        if (shape_size(ctx.shape(i), where) != 1) fail("{}: min/max must be scalars", where);
      }
    out[0] = ctx.desc(0);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    dispatch_numeric(in[0]->type(), where, [&](auto tag) {
      using T = decltype(tag);
      T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
      if (attrs_) {
        lo = static_cast<T>(lo_);
        hi = static_cast<T>(hi_);
      } else {
        if (in.size() > 1 && in[1]) lo = in[1]->data<T>()[0];
        if (in.size() > 2 && in[2]) hi = in[2]->data<T>()[0];
      }
      const T* a = in[0]->data<T>();
      T* y = out[0]->data<T>();
      for (int64_t i = 0; i < in[0]->size(); ++i) {
        T v = a[i];
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        y[i] = v;
      }
    });
  }

 private:
  bool attrs_;
  float lo_, hi_;
};

// ---------------------------------------------------------------- Cast

struct F16 { uint16_t bits; };
struct BF16 { uint16_t bits; };

template <typename Fn>
void dispatch_castable(int32_t type, std::string_view where, Fn&& fn) {
  switch (type) {
    case onnx::kFloat16: return fn(F16{});
    case onnx::kBfloat16: return fn(BF16{});
    case onnx::kBool: return fn(bool{});
    default: dispatch_numeric(type, where, fn);
  }
}

bool castable(int32_t t) {
  return is_float_type(t) || is_integer_type(t) || t == onnx::kFloat16 || t == onnx::kBfloat16 ||
         t == onnx::kBool;
}

template <typename S>
auto widen(S s) {
  if constexpr (std::is_same_v<S, F16>) return core::fp16_to_fp32(s.bits);
  else if constexpr (std::is_same_v<S, BF16>) return core::bf16_to_fp32(s.bits);
  else return s;
}

template <typename D, typename V>
D narrow(V v) {
  if constexpr (std::is_same_v<D, F16>) return F16{core::fp32_to_fp16(static_cast<float>(v))};
  else if constexpr (std::is_same_v<D, BF16>) return BF16{core::fp32_to_bf16(static_cast<float>(v))};
  else if constexpr (std::is_same_v<D, bool>) return v != V(0);
  else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<V>) {
    // Out of range is undefined in ONNX; saturate (never UB), NaN -> 0.
    if (std::isnan(v)) return D(0);
    if (v <= static_cast<V>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
    if (v >= static_cast<V>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

class CastOp : public Op {
 public:
  explicit CastOp(int32_t to) : to_(to) {}  // to_ == 0: CastLike (type of input 1)
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t to = to_ ? to_ : ctx.type(1);
    if (!castable(ctx.type(0)) || !castable(to))
      fail("{}: cast from {} to {} is not supported", where, onnx::elem_type_name(ctx.type(0)),
           onnx::elem_type_name(to));
    out[0] = {to, ctx.shape(0)};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    if (x.type() == y.type()) {
      std::memcpy(y.raw(), x.raw(), x.bytes());
      return;
    }
    const size_t n = static_cast<size_t>(x.size());
    dispatch_castable(x.type(), where, [&](auto stag) {
      using S = decltype(stag);
      dispatch_castable(y.type(), where, [&](auto dtag) {
        using D = decltype(dtag);
        const S* a = static_cast<const S*>(x.raw());
        D* b = static_cast<D*>(y.raw());
        for (size_t i = 0; i < n; ++i) b[i] = narrow<D>(widen(a[i]));
      });
    });
  }

 private:
  int32_t to_;
};

class IdentityOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    out[0] = ctx.desc(0);
    return true;
  }
  bool is_view() const override { return true; }
  void run(std::span<const Tensor* const>, std::span<Tensor* const>, Parallel&) override {}
};

}  // namespace

void register_elementwise_ops(OpRegistry& r) {
  auto unary = [&](const char* name, Unary k, int64_t since = 6) {
    r.add("", name, since, 21, [k](OpArgs&) { return std::make_unique<UnaryOp>(k); });
  };
  unary("Neg", Unary::Neg);
  unary("Abs", Unary::Abs);
  unary("Sqrt", Unary::Sqrt);
  unary("Reciprocal", Unary::Reciprocal);
  unary("Exp", Unary::Exp);
  unary("Erf", Unary::Erf, 9);
  unary("Tanh", Unary::Tanh);
  unary("Relu", Unary::Relu);
  unary("Sigmoid", Unary::Sigmoid);
  unary("Not", Unary::Not, 1);
  unary("Floor", Unary::Floor);
  unary("Ceil", Unary::Ceil);
  unary("Log", Unary::Log);
  unary("Sign", Unary::Sign, 9);
  unary("Round", Unary::Round, 11);
  r.add("", "Gelu", 20, 21, [](OpArgs& a) {
    const std::string approx = a.attrs.s("approximate", "none");
    if (approx != "none" && approx != "tanh")
      fail("{}: approximate='{}' is not supported", a.where, approx);
    return std::make_unique<UnaryOp>(approx == "tanh" ? Unary::GeluTanh : Unary::Gelu);
  });

  auto binary = [&](const char* name, Binary k, int64_t since = 7) {
    r.add("", name, since, 21, [k](OpArgs&) { return std::make_unique<BinaryOp>(k, false); });
  };
  binary("Add", Binary::Add);
  binary("Sub", Binary::Sub);
  binary("Mul", Binary::Mul);
  binary("Div", Binary::Div);
  binary("Pow", Binary::Pow);
  binary("Equal", Binary::Equal);
  binary("Less", Binary::Less);
  binary("Greater", Binary::Greater);
  binary("LessOrEqual", Binary::LessOrEqual, 12);
  binary("GreaterOrEqual", Binary::GreaterOrEqual, 12);
  binary("And", Binary::And);
  binary("Or", Binary::Or);
  binary("Xor", Binary::Xor);
  r.add("", "Max", 8, 21, [](OpArgs&) { return std::make_unique<BinaryOp>(Binary::Max, true); });
  r.add("", "Min", 8, 21, [](OpArgs&) { return std::make_unique<BinaryOp>(Binary::Min, true); });
  r.add("", "Sum", 8, 21, [](OpArgs&) { return std::make_unique<SumOp>(); });
  r.add("", "Where", 9, 21, [](OpArgs&) { return std::make_unique<WhereOp>(); });
  r.add("", "Clip", 6, 10, [](OpArgs& a) {
    return std::make_unique<ClipOp>(true, a.attrs.f("min", std::numeric_limits<float>::lowest()),
                                    a.attrs.f("max", std::numeric_limits<float>::max()));
  });
  r.add("", "Clip", 11, 21, [](OpArgs&) { return std::make_unique<ClipOp>(false, 0.f, 0.f); });
  r.add("", "Cast", 6, 21, [](OpArgs& a) {
    const int64_t to = a.attrs.required_i("to");
    a.attrs.ignore("saturate");  // only affects float8 targets, which are refused
    if (!castable(static_cast<int32_t>(to)))
      fail("{}: cast to {} is not supported", a.where, onnx::elem_type_name(static_cast<int32_t>(to)));
    return std::make_unique<CastOp>(static_cast<int32_t>(to));
  });
  r.add("", "CastLike", 15, 21, [](OpArgs& a) {
    a.attrs.ignore("saturate");
    return std::make_unique<CastOp>(0);
  });
  r.add("", "Identity", 1, 21, [](OpArgs&) { return std::make_unique<IdentityOp>(); });
  r.add("", "Dropout", 7, 21, [](OpArgs& a) {
    a.attrs.ignore("seed");
    if (a.opset < 12) a.attrs.f("ratio", 0.5f);
    if (a.node.outputs.size() > 1 && !a.node.outputs[1].empty())
      fail("{}: Dropout's mask output is not supported", a.where);
    if (a.node.inputs.size() > 2 && !a.node.inputs[2].empty())
      fail("{}: Dropout with a training_mode input is not supported", a.where);
    return std::make_unique<IdentityOp>();
  });
}

}  // namespace medquant::runtime
