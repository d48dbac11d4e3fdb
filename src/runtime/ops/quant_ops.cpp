// Quantization operators: DynamicQuantizeLinear, QuantizeLinear,
// DequantizeLinear, MatMulInteger, QLinearMatMul (reference loops; per-tensor
// QuantizeLinear through the quantize kernel), with the u8 x s8 GEMM kernels
// for MatMulInteger (int8 A shifted to uint8): a constant 2-D weight packed
// once, other B packed per batch. The fusion pass may give it the
// dequantizing scale, a bias and GELU (what ONNX Runtime calls
// MatMulIntegerToFloat; fusion.cpp also builds it from QDQ pairs), and turns
// QuantizeLinear -> DequantizeLinear pairs into QuantizeDequantize.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"
#include "runtime/ops/fusable.h"
#include "runtime/ops/int8.h"

namespace medquant::runtime {

// 8 bytes at a time.
void flip_sign_bits(uint8_t* y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, y + i, 8);
    w ^= 0x8080808080808080ull;
    std::memcpy(y + i, &w, 8);
  }
  for (; i < n; ++i) y[i] ^= 0x80;
}

namespace {

using kernels::Activation;

// Per-tensor or per-axis (1-D along `axis`) parameter index for element i.
struct AxisParams {
  int64_t count = 1, block = 1;  // parameter p covers runs of `block` elements, cycling
  int64_t index(int64_t i) const { return count == 1 ? 0 : (i / block) % count; }
};

AxisParams axis_params(const Shape& x, const Shape& p, int64_t axis, std::string_view where) {
  AxisParams a;
  const int64_t n = shape_size(p, where);
  if (n == 1) return a;
  if (p.size() != 1) fail("{}: scale must be a scalar or 1-D (blocked quantization is not supported)", where);
  const int64_t ax = normalize_axis(axis, static_cast<int64_t>(x.size()), where);
  if (x[ax] != n) fail("{}: {} scales for axis {} of size {}", where, n, ax, x[ax]);
  a.count = n;
  for (size_t d = ax + 1; d < x.size(); ++d) a.block *= x[d];
  return a;
}

inline float round_half_even(float v) { return std::nearbyint(v); }  // default rounding mode

template <typename Q>
Q saturate_round(float v, int32_t zp) {
  const float lo = static_cast<float>(std::numeric_limits<Q>::min()) - zp;
  const float hi = static_cast<float>(std::numeric_limits<Q>::max()) - zp;
  if (std::isnan(v)) v = 0;  // x86 would give INT_MIN; keep it defined
  v = std::min(std::max(v, lo), hi);
  return static_cast<Q>(static_cast<int32_t>(round_half_even(v)) + zp);
}

class DynamicQuantizeLinearOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kFloat) fail("{}: input must be float32", where);
    out[0] = {onnx::kUint8, ctx.shape(0)};
    if (out.size() > 1) out[1] = {onnx::kFloat, {}};
    if (out.size() > 2) out[2] = {onnx::kUint8, {}};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const auto& k = kernels::best();
    const size_t n = static_cast<size_t>(x.size());
    float mn = 0, mx = 0;
    if (n) {
      const size_t chunks = std::min<size_t>(pool.size() * 2, std::max<size_t>(1, n / 16384));
      std::vector<float> mins(chunks, 0.f), maxs(chunks, 0.f);
      pool.run(chunks, [&](size_t c) {
        const size_t s = n * c / chunks, e = n * (c + 1) / chunks;
        k.minmax(x.data<float>() + s, e - s, &mins[c], &maxs[c]);
      });
      mn = mins[0];
      mx = maxs[0];
      for (size_t c = 1; c < chunks; ++c) {
        mn = std::min(mn, mins[c]);
        mx = std::max(mx, maxs[c]);
      }
    }
    float scale, zp_f;
    params(mn, mx, scale, zp_f);
    const int32_t zp = static_cast<int32_t>(zp_f);
    if (out.size() > 1 && out[1]) out[1]->data<float>()[0] = scale;
    if (out.size() > 2 && out[2]) out[2]->data<uint8_t>()[0] = static_cast<uint8_t>(zp);
    if (out[0]) {
      uint8_t* y = out[0]->data<uint8_t>();
      pool.ranges(n, 16384, [&](size_t s, size_t e) { k.quantize_u8(x.data<float>() + s, y + s, e - s, scale, zp); });
    }
  }
  // ONNX / ONNX Runtime: range includes 0; scale = (max - min) / 255 (1 / 255 when
  // max == min); zero point = round_half_even(clamp(0 - min / scale, 0, 255)).
  static void params(float mn, float mx, float& scale, float& zp) {
    mn = std::min(mn, 0.f);
    mx = std::max(mx, 0.f);
    scale = (mx == mn ? 1.0f : mx - mn) / 255.0f;
    const float initial = 0.0f - mn / scale;
    zp = round_half_even(std::max(0.0f, std::min(255.0f, initial)));
  }
};

class QuantizeLinearOp : public Op {
 public:
  explicit QuantizeLinearOp(int64_t axis) : axis_(axis) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kFloat) fail("{}: input must be float32", where);
    if (ctx.type(1) != onnx::kFloat) fail("{}: scale must be float32", where);
    int32_t qt = onnx::kUint8;
    if (ctx.has(2)) {
      qt = ctx.type(2);
      if (qt != onnx::kUint8 && qt != onnx::kInt8) fail("{}: zero point type {} is not supported", where, onnx::elem_type_name(qt));
      if (ctx.shape(2) != ctx.shape(1) && shape_size(ctx.shape(2), where) != shape_size(ctx.shape(1), where))
        fail("{}: scale and zero point have different shapes", where);
    }
    axis_params(ctx.shape(0), ctx.shape(1), axis_, where);
    out[0] = {qt, ctx.shape(0)};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    const Tensor* z = in.size() > 2 ? in[2] : nullptr;
    const AxisParams p = axis_params(x.shape(), s.shape(), axis_, where);
    if (p.count == 1) {
      // Per tensor: the uint8 kernel (int8 is uint8 with the zero point moved by 128).
      const bool shifted = out[0]->type() == onnx::kInt8;
      const int32_t zp = (z ? load_q(*z, 0) : 0) + (shifted ? 128 : 0);
      const float scale = s.data<float>()[0];
      uint8_t* y = out[0]->data<uint8_t>();
      pool.ranges(static_cast<size_t>(x.size()), 16384, [&](size_t b, size_t e) {
        kernels::best().quantize_u8(x.data<float>() + b, y + b, e - b, scale, zp);
        if (shifted) flip_sign_bits(y + b, e - b);
      });
      return;
    }
    auto body = [&](auto tag) {
      using Q = decltype(tag);
      Q* y = out[0]->data<Q>();
      for (int64_t i = 0; i < x.size(); ++i) {
        const int64_t c = p.index(i);
        const int32_t zp = z ? static_cast<int32_t>(z->data<Q>()[c]) : 0;
        y[i] = saturate_round<Q>(x.data<float>()[i] / s.data<float>()[c], zp);
      }
    };
    if (out[0]->type() == onnx::kInt8) body(int8_t{});
    else body(uint8_t{});
  }

 private:
  int64_t axis_;
};

class DequantizeLinearOp : public Op {
 public:
  explicit DequantizeLinearOp(int64_t axis) : axis_(axis) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    if (t != onnx::kUint8 && t != onnx::kInt8 && t != onnx::kInt32) fail("{}: input type {} is not supported", where, onnx::elem_type_name(t));
    if (ctx.type(1) != onnx::kFloat) fail("{}: scale must be float32", where);
    if (ctx.has(2) && ctx.type(2) != t) fail("{}: zero point must have the input's type", where);
    if (ctx.has(2) && shape_size(ctx.shape(2), where) != shape_size(ctx.shape(1), where))
      fail("{}: scale and zero point have different shapes", where);
    axis_params(ctx.shape(0), ctx.shape(1), axis_, where);
    out[0] = {onnx::kFloat, ctx.shape(0)};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    const Tensor* z = in.size() > 2 ? in[2] : nullptr;
    const AxisParams p = axis_params(x.shape(), s.shape(), axis_, where);
    float* y = out[0]->data<float>();
    auto body = [&](auto tag) {
      using Q = decltype(tag);
      const Q* a = x.data<Q>();
      if (p.count == 1) {
        const int32_t zp = z ? static_cast<int32_t>(z->data<Q>()[0]) : 0;
        const float sc = s.data<float>()[0];
        pool.ranges(static_cast<size_t>(x.size()), 16384, [&](size_t b, size_t e) {
          for (size_t i = b; i < e; ++i) y[i] = static_cast<float>(static_cast<int32_t>(a[i]) - zp) * sc;
        });
        return;
      }
      for (int64_t i = 0; i < x.size(); ++i) {
        const int64_t c = p.index(i);
        const int32_t zp = z ? static_cast<int32_t>(z->data<Q>()[c]) : 0;
        y[i] = static_cast<float>(static_cast<int32_t>(a[i]) - zp) * s.data<float>()[c];
      }
    };
    if (x.type() == onnx::kInt8) body(int8_t{});
    else if (x.type() == onnx::kUint8) body(uint8_t{});
    else body(int32_t{});
  }

 private:
  int64_t axis_;
};

// Shapes and batch offsets of numpy matmul on a and b.
struct MatMulShape {
  int64_t M = 0, K = 0, N = 0, batches = 1;
  Shape out;
  std::vector<int64_t> aoff, boff;
};

MatMulShape matmul_shape(const Shape& a0, const Shape& b0, std::string_view where, bool offsets) {
  MatMulShape r;
  Shape a = a0, b = b0;
  if (a.empty() || b.empty()) fail("{}: inputs must have rank >= 1", where);
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  if (a.back() != b[b.size() - 2]) fail("{}: A {} and B {} have different inner dimensions", where, shape_string(a0), shape_string(b0));
  r.M = a[a.size() - 2];
  r.K = a.back();
  r.N = b.back();
  Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  Shape batch = broadcast_shapes(ab, bb, where);
  r.out = batch;
  if (!a1) r.out.push_back(r.M);
  if (!b1) r.out.push_back(r.N);
  r.batches = shape_size(batch, where);
  if (offsets) {
    r.aoff.resize(r.batches);
    r.boff.resize(r.batches);
    BroadcastWalk<2> w(batch, {&ab, &bb});
    w.for_each_run([&](int64_t o, std::array<int64_t, 2> off, int64_t len, std::array<int64_t, 2> st) {
      for (int64_t i = 0; i < len; ++i) {
        r.aoff[o + i] = (off[0] + i * st[0]) * r.M * r.K;
        r.boff[o + i] = (off[1] + i * st[1]) * r.K * r.N;
      }
    });
  }
  return r;
}

// y [M x pack.n] = A [M x K] x pack through the int8 GEMM, `o` giving the
// epilogue; int8 A is shifted to uint8 (+128, its zero point with it) so one
// kernel serves both, and rows are padded to kp bytes.
void q8_matmul(const uint8_t* a, size_t M, bool shifted, int32_t a_zp, const kernels::PackedQ8& pack,
               kernels::Q8Output o, void* y, Parallel* pool) {
  const size_t K = pack.k;
  if (shifted) a_zp += 128;
  o.ldc = pack.n;
  if (o.scale) o.f32 = static_cast<float*>(y);
  else o.i32 = static_cast<int32_t*>(y);
  std::shared_ptr<uint8_t[]> padded;
  size_t lda = K;
  if (pack.kp != K || shifted) {
    padded = allocate_bytes(M * pack.kp);
    for (size_t i = 0; i < M; ++i) {
      uint8_t* d = padded.get() + i * pack.kp;
      std::memcpy(d, a + i * K, K);
      if (shifted) flip_sign_bits(d, K);
      std::memset(d + K, a_zp, pack.kp - K);
    }
    a = padded.get();
    lda = pack.kp;
  }
  kernels::q8_gemm(kernels::best(), M, a, lda, a_zp, pack, o, pool);
}

// Every batch of A x B (numpy broadcasting; B not constant: packed per batch)
// into y, out_bytes per element; with at least as many batches (heads) as
// threads each batch is one task, else the threads share each GEMM.
void q8_matmul_batched(const Tensor& a, const Tensor& b, const MatMulShape& s, int32_t a_zp,
                       const std::vector<int32_t>& b_zp, const kernels::Q8Output& o, uint8_t* y, size_t out_bytes,
                       Parallel& pool) {
  const bool per_batch = static_cast<size_t>(s.batches) >= pool.size() && pool.size() > 1;
  auto batch = [&](size_t bi) {
    const auto pack = kernels::pack_q8(kernels::best(), b.data<uint8_t>() + s.boff[bi], s.K, s.N,
                                       b.type() == onnx::kUint8, b_zp.data(), b_zp.size());
    q8_matmul(a.data<uint8_t>() + s.aoff[bi], s.M, a.type() == onnx::kInt8, a_zp, pack, o,
              y + bi * s.M * s.N * out_bytes, per_batch ? nullptr : &pool);
  };
  if (per_batch) pool.run(static_cast<size_t>(s.batches), batch);
  else
    for (int64_t bi = 0; bi < s.batches; ++bi) batch(static_cast<size_t>(bi));
}

std::vector<int32_t> zero_points(const Tensor* z) {
  std::vector<int32_t> zp{0};
  if (z) {
    zp.resize(static_cast<size_t>(z->size()));
    for (int64_t i = 0; i < z->size(); ++i) zp[i] = load_q(*z, i);
  }
  return zp;
}

class MatMulIntegerOp : public Op, public FusableLinear {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    for (size_t i = 0; i < 4 && i < ctx.count(); ++i) {
      if (!ctx.has(i)) continue;
      const int32_t t = ctx.type(i);
      if (t != onnx::kUint8 && t != onnx::kInt8) fail("{}: input {} must be uint8 or int8", where, i);
    }
    if (ctx.has(2) && ctx.type(2) != ctx.type(0)) fail("{}: a_zero_point must have A's type", where);
    if (ctx.has(3) && ctx.type(3) != ctx.type(1)) fail("{}: b_zero_point must have B's type", where);
    MatMulShape s = matmul_shape(ctx.shape(0), ctx.shape(1), where, false);
    if (ctx.has(2)) {
      const int64_t n = shape_size(ctx.shape(2), where);
      if (n != 1 && !(ctx.rank(2) == 1 && n == s.M)) fail("{}: a_zero_point must be a scalar or 1-D of M", where);
    }
    if (ctx.has(3)) {
      const int64_t n = shape_size(ctx.shape(3), where);
      if (n != 1 && !(ctx.rank(3) == 1 && n == s.N)) fail("{}: b_zero_point must be a scalar or 1-D of N", where);
    }
    if (dequantize_) {
      if (ctx.type(4) != onnx::kFloat) fail("{}: fused scale must be float", where);
      out[0] = {onnx::kFloat, s.out};
    } else {
      out[0] = {onnx::kInt32, s.out};
    }
    return true;
  }

  void prepare(const InferContext& ctx) override {
    packed_ = false;
    const Tensor* w = ctx.value(1);
    if (!w || w->rank() != 2 || ctx.rank(0) < 2) return;
    if (ctx.has(2) && shape_size(ctx.shape(2), where) != 1) return;
    if (ctx.has(3) && !ctx.value(3)) return;
    const size_t K = w->dim(0), N = w->dim(1);
    const std::vector<int32_t> zp = zero_points(ctx.has(3) ? ctx.value(3) : nullptr);
    if (w_src_ != w->raw() || pack_.n != N || pack_.k != K)
      pack_ = kernels::pack_q8(kernels::best(), w->data<uint8_t>(), K, N, w->type() == onnx::kUint8, zp.data(), zp.size());
    w_src_ = w->raw();
    packed_ = true;
  }

  bool packed() const override { return packed_; }
  size_t output_columns() const override { return pack_.n; }
  void set_bias(std::vector<float> bias) override { bias_ = std::move(bias); }
  void set_activation(Activation act) override { act_ = act; }
  bool has_bias() const override { return !bias_.empty(); }
  Activation activation() const override { return act_; }
  // Also unpacked (QDQ products of two activations, fusion.cpp).
  bool set_dequantize() override {
    dequantize_ = true;
    return true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const Tensor* azp = in.size() > 2 ? in[2] : nullptr;
    const Tensor* bzp = in.size() > 3 ? in[3] : nullptr;
    Tensor& y = *out[0];
    kernels::Q8Output o;
    if (dequantize_) {
      const Tensor& sc = *in[4];
      o.scale = sc.data<float>();
      o.scale_per_column = sc.size() != 1;
      o.bias = bias_.empty() ? nullptr : bias_.data();
      o.act = act_;
    }
    const int32_t a_zp = azp && azp->size() == 1 ? load_q(*azp, 0) : 0;
    if (packed_) {
      const size_t K = pack_.k;
      const size_t M = K ? static_cast<size_t>(a.size()) / K : 0;
      if (M == 0 || pack_.n == 0) return;
      if (o.scale_per_column && static_cast<size_t>(in[4]->size()) != pack_.n)
        fail("{}: fused scale has {} values for {} columns", where, in[4]->size(), pack_.n);
      q8_matmul(a.data<uint8_t>(), M, a.type() == onnx::kInt8, a_zp, pack_, o, y.raw(), &pool);
      return;
    }
    if (a.rank() >= 2 && b.rank() >= 2 && (!azp || azp->size() == 1)) {
      // Batched, B not constant (QDQ attention products): B packed per batch.
      MatMulShape s = matmul_shape(a.shape(), b.shape(), where, true);
      if (s.M == 0 || s.N == 0) return;
      if (o.scale_per_column && in[4]->size() != s.N)
        fail("{}: fused scale has {} values for {} columns", where, in[4]->size(), s.N);
      q8_matmul_batched(a, b, s, a_zp, zero_points(bzp), o, static_cast<uint8_t*>(y.raw()),
                        dequantize_ ? sizeof(float) : sizeof(int32_t), pool);
      return;
    }
    MatMulShape s = matmul_shape(a.shape(), b.shape(), where, true);
    // A fused dequantizing epilogue whose plan could not pack: integers first.
    Tensor acc_tensor;
    if (dequantize_) acc_tensor = Tensor(onnx::kInt32, y.shape());
    int32_t* py = dequantize_ ? acc_tensor.data<int32_t>() : y.data<int32_t>();
    for (int64_t bi = 0; bi < s.batches; ++bi)
      for (int64_t i = 0; i < s.M; ++i) {
        const int32_t za = azp ? load_q(*azp, azp->size() == 1 ? 0 : i) : 0;
        for (int64_t j = 0; j < s.N; ++j) {
          const int32_t zb = bzp ? load_q(*bzp, bzp->size() == 1 ? 0 : j) : 0;
          int32_t acc = 0;
          for (int64_t q = 0; q < s.K; ++q)
            acc += (load_q(a, s.aoff[bi] + i * s.K + q) - za) * (load_q(b, s.boff[bi] + q * s.N + j) - zb);
          py[bi * s.M * s.N + i * s.N + j] = acc;
        }
      }
    if (dequantize_) {
      const Tensor& sc = *in[4];
      float* f = y.data<float>();
      for (int64_t r = 0; r < s.batches * s.M; ++r) {
        for (int64_t j = 0; j < s.N; ++j) {
          float v = static_cast<float>(py[r * s.N + j]) * sc.data<float>()[sc.size() == 1 ? 0 : j];
          if (!bias_.empty()) v += bias_[j];
          f[r * s.N + j] = v;
        }
        if (act_ == Activation::Gelu) kernels::best().gelu(f + r * s.N, f + r * s.N, s.N);
      }
    }
  }

 private:
  bool packed_ = false, dequantize_ = false;
  kernels::PackedQ8 pack_;
  const void* w_src_ = nullptr;
  std::vector<float> bias_;
  Activation act_ = Activation::None;
};

class QuantizeDequantizeOp : public Op {
 public:
  QuantizeDequantizeOp(float scale, int32_t zero_point, int32_t type) : scale_(scale), zp_(zero_point), type_(type) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kFloat) fail("{}: input must be float32", where);
    out[0] = {type_, ctx.shape(0)};
    out[1] = {onnx::kFloat, ctx.shape(0)};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const float* x = in[0]->data<float>();
    uint8_t* q = out[0] ? out[0]->data<uint8_t>() : nullptr;
    float* y = out[1] ? out[1]->data<float>() : nullptr;
    // The uint8 kernel for both types: int8 values are the uint8 ones with
    // the zero point moved by 128, and (q - zp) is the same either way.
    const bool shifted = type_ == onnx::kInt8;
    const int32_t zp = zp_ + (shifted ? 128 : 0);
    const auto& k = kernels::best();
    pool.ranges(static_cast<size_t>(in[0]->size()), 16384, [&](size_t b, size_t e) {
      constexpr size_t kChunk = 2048;  // stays in L1 between the two passes
      alignas(64) uint8_t tmp[kChunk];
      for (size_t c = b; c < e; c += kChunk) {
        const size_t n = std::min(kChunk, e - c);
        uint8_t* u = q && !shifted ? q + c : tmp;
        k.quantize_u8(x + c, u, n, scale_, zp);
        if (y)
          for (size_t i = 0; i < n; ++i) y[c + i] = static_cast<float>(static_cast<int32_t>(u[i]) - zp) * scale_;
        if (q && shifted) {
          std::memcpy(q + c, u, n);
          flip_sign_bits(q + c, n);
        }
      }
    });
  }

 private:
  float scale_;
  int32_t zp_, type_;
};

class QLinearMatMulOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t ta = ctx.type(0), tb = ctx.type(3), ty = ctx.type(7);
    for (int32_t t : {ta, tb, ty})
      if (t != onnx::kUint8 && t != onnx::kInt8) fail("{}: quantized inputs must be uint8 or int8", where);
    if (ctx.type(2) != ta || ctx.type(5) != tb) fail("{}: zero points must match their tensors' types", where);
    for (size_t i : {1, 4, 6})
      if (ctx.type(i) != onnx::kFloat) fail("{}: scales must be float32", where);
    MatMulShape s = matmul_shape(ctx.shape(0), ctx.shape(3), where, false);
    for (size_t i : {1, 2, 6, 7})
      if (shape_size(ctx.shape(i), where) != 1) fail("{}: per-row A or per-tensor Y parameters only (input {} is not a scalar)", where, i);
    const int64_t nb = shape_size(ctx.shape(4), where);
    if ((nb != 1 && nb != s.N) || shape_size(ctx.shape(5), where) != nb) fail("{}: b scale/zero point must be scalars or N values", where);
    out[0] = {ty, s.out};
    return true;
  }
  void prepare(const InferContext& ctx) override {
    packed_ = false;
    const Tensor* b = ctx.value(3);
    if (!b || !ctx.value(5) || b->rank() != 2 || ctx.rank(0) < 2) return;
    if (b_src_ != b->raw() || pack_.k != static_cast<size_t>(b->dim(0)) || pack_.n != static_cast<size_t>(b->dim(1)))
      pack_ = kernels::pack_q8(kernels::best(), b->data<uint8_t>(), b->dim(0), b->dim(1), b->type() == onnx::kUint8,
                               zero_points(ctx.value(5)).data(), static_cast<size_t>(ctx.value(5)->size()));
    b_src_ = b->raw();
    packed_ = true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor &a = *in[0], &b = *in[3];
    const float as = in[1]->data<float>()[0], ys = in[6]->data<float>()[0];
    const int32_t az = load_q(*in[2], 0), yz = load_q(*in[7], 0);
    const Tensor &bs = *in[4], &bz = *in[5];
    MatMulShape s = matmul_shape(a.shape(), b.shape(), where, true);
    Tensor& y = *out[0];
    if (a.rank() >= 2 && b.rank() >= 2) {
      // The integer GEMM with float(acc) * (a_s * b_s / y_s) as its epilogue,
      // then that requantized (the quantize kernel with scale 1: the same
      // rounding and saturation as the loop below).
      std::vector<float> multiplier(static_cast<size_t>(bs.size()));
      for (size_t c = 0; c < multiplier.size(); ++c) multiplier[c] = as * bs.data<float>()[c] / ys;
      kernels::Q8Output o;
      o.scale = multiplier.data();
      o.scale_per_column = multiplier.size() != 1;
      const size_t total = static_cast<size_t>(y.size());
      if (total == 0) return;
      auto scratch = allocate_bytes(total * sizeof(float));
      if (packed_)
        q8_matmul(a.data<uint8_t>(), total / pack_.n, a.type() == onnx::kInt8, az, pack_, o, scratch.get(), &pool);
      else
        q8_matmul_batched(a, b, s, az, zero_points(&bz), o, scratch.get(), sizeof(float), pool);
      const bool shifted = y.type() == onnx::kInt8;
      const float* f = reinterpret_cast<const float*>(scratch.get());
      uint8_t* q = y.data<uint8_t>();
      pool.ranges(total, 16384, [&](size_t b0, size_t e) {
        kernels::best().quantize_u8(f + b0, q + b0, e - b0, 1.0f, yz + (shifted ? 128 : 0));
        if (shifted) flip_sign_bits(q + b0, e - b0);
      });
      return;
    }
    for (int64_t bi = 0; bi < s.batches; ++bi)
      for (int64_t i = 0; i < s.M; ++i)
        for (int64_t j = 0; j < s.N; ++j) {
          const int64_t c = bs.size() == 1 ? 0 : j;
          const int32_t zb = load_q(bz, c);
          int32_t acc = 0;
          for (int64_t q = 0; q < s.K; ++q)
            acc += (load_q(a, s.aoff[bi] + i * s.K + q) - az) * (load_q(b, s.boff[bi] + q * s.N + j) - zb);
          const float multiplier = as * bs.data<float>()[c] / ys;
          const float v = static_cast<float>(acc) * multiplier;
          const int64_t o = bi * s.M * s.N + i * s.N + j;
          if (y.type() == onnx::kUint8) y.data<uint8_t>()[o] = saturate_round<uint8_t>(v, yz);
          else y.data<int8_t>()[o] = saturate_round<int8_t>(v, yz);
        }
  }

 private:
  bool packed_ = false;
  kernels::PackedQ8 pack_;
  const void* b_src_ = nullptr;
};

}  // namespace

std::unique_ptr<Op> make_quantize_dequantize_op(float scale, int32_t zero_point, int32_t type) {
  return std::make_unique<QuantizeDequantizeOp>(scale, zero_point, type);
}

void dynamic_quantize_params(float min, float max, float& scale, float& zero_point) {
  DynamicQuantizeLinearOp::params(min, max, scale, zero_point);
}

void register_quant_ops(OpRegistry& r) {
  r.add("", "DynamicQuantizeLinear", 11, 21, [](OpArgs&) { return std::make_unique<DynamicQuantizeLinearOp>(); });
  r.add("", "QuantizeLinear", 10, 21, [](OpArgs& a) {
    if (a.opset >= 19 && a.attrs.i("saturate", 1) != 1) fail("{}: saturate=0 is not supported", a.where);
    if (a.opset >= 21 && a.attrs.has("block_size")) fail("{}: blocked quantization is not supported", a.where);
    if (a.opset >= 21) a.attrs.ignore("output_dtype");
    return std::make_unique<QuantizeLinearOp>(a.opset >= 13 ? a.attrs.i("axis", 1) : 1);
  });
  r.add("", "DequantizeLinear", 10, 21, [](OpArgs& a) {
    if (a.opset >= 21 && a.attrs.has("block_size")) fail("{}: blocked quantization is not supported", a.where);
    return std::make_unique<DequantizeLinearOp>(a.opset >= 13 ? a.attrs.i("axis", 1) : 1);
  });
  r.add("", "MatMulInteger", 10, 21, [](OpArgs&) { return std::make_unique<MatMulIntegerOp>(); });
  r.add("", "QLinearMatMul", 10, 21, [](OpArgs&) { return std::make_unique<QLinearMatMulOp>(); });
}

}  // namespace medquant::runtime
