// Conv (1-D and 2-D, groups, pads, strides, dilations, auto_pad) and
// ConvInteger. Both run as im2col rows (one per output pixel) times the packed
// transposed weight (f32 GEMM; int8 GEMM), then a transpose to NCHW.
#include <algorithm>
#include <cstring>

#include "runtime/op.h"
#include "runtime/ops/dispatch.h"
#include "runtime/ops/fusable.h"
#include "runtime/ops/int8.h"

namespace medquant::runtime {
namespace {

struct ConvAttrs {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> dilations, kernel_shape, pads, strides;
  int64_t group = 1;
};

ConvAttrs read_conv_attrs(Attributes& a) {
  ConvAttrs c;
  c.auto_pad = a.s("auto_pad", "NOTSET");
  if (c.auto_pad != "NOTSET" && c.auto_pad != "VALID" && c.auto_pad != "SAME_UPPER" && c.auto_pad != "SAME_LOWER")
    fail("{}: auto_pad '{}' is not supported", a.where(), c.auto_pad);
  c.dilations = a.ints("dilations");
  c.kernel_shape = a.ints("kernel_shape");
  c.pads = a.ints("pads");
  c.strides = a.ints("strides");
  c.group = a.i("group", 1);
  if (c.group < 1) fail("{}: group must be >= 1", a.where());
  return c;
}

// Geometry of one 2-D convolution (1-D convs use H = 1).
struct Geometry {
  int64_t N, C, H, W, M, KH, KW, OH, OW, group;
  int64_t sh, sw, dh, dw, pt, pl;
  bool one_d;
};

Geometry geometry(const ConvAttrs& c, const Shape& x, const Shape& w, std::string_view where) {
  if (x.size() != 3 && x.size() != 4) fail("{}: only 1-D and 2-D convolutions are supported (input rank {})", where, x.size());
  if (w.size() != x.size()) fail("{}: weight rank {} differs from input rank {}", where, w.size(), x.size());
  const size_t sd = x.size() - 2;
  Geometry g{};
  g.one_d = sd == 1;
  g.N = x[0];
  g.C = x[1];
  g.H = g.one_d ? 1 : x[2];
  g.W = x.back();
  g.M = w[0];
  g.KH = g.one_d ? 1 : w[2];
  g.KW = w.back();
  g.group = c.group;
  if (g.C % g.group != 0 || g.M % g.group != 0 || w[1] * g.group != g.C)
    fail("{}: input channels {}, weight {} and group {} do not fit", where, g.C, shape_string(w), g.group);
  if (!c.kernel_shape.empty() && (c.kernel_shape.size() != sd || c.kernel_shape.back() != g.KW || (!g.one_d && c.kernel_shape[0] != g.KH)))
    fail("{}: kernel_shape does not match the weight {}", where, shape_string(w));
  auto get = [&](const std::vector<int64_t>& v, size_t i, int64_t dflt) { return v.empty() ? dflt : v[i]; };
  if ((!c.strides.empty() && c.strides.size() != sd) || (!c.dilations.empty() && c.dilations.size() != sd) ||
      (!c.pads.empty() && c.pads.size() != 2 * sd))
    fail("{}: strides, dilations or pads have the wrong length", where);
  g.sh = g.one_d ? 1 : get(c.strides, 0, 1);
  g.sw = get(c.strides, sd - 1, 1);
  g.dh = g.one_d ? 1 : get(c.dilations, 0, 1);
  g.dw = get(c.dilations, sd - 1, 1);
  if (g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1) fail("{}: strides and dilations must be >= 1", where);
  int64_t pt = g.one_d ? 0 : get(c.pads, 0, 0), pl = get(c.pads, sd - 1, 0);
  int64_t pb = g.one_d ? 0 : get(c.pads, 2, 0), pr = get(c.pads, 2 * sd - 1, 0);
  if (pt < 0 || pl < 0 || pb < 0 || pr < 0) fail("{}: negative pads", where);
  auto out_dim = [&](int64_t in, int64_t k, int64_t s, int64_t d, int64_t& p0, int64_t& p1) {
    const int64_t ek = (k - 1) * d + 1;
    if (c.auto_pad == "VALID") {
      p0 = p1 = 0;
    } else if (c.auto_pad != "NOTSET") {
      const int64_t o = (in + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (o - 1) * s + ek - in);
      p0 = c.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      p1 = total - p0;
    }
    const int64_t span = in + p0 + p1 - ek;
    if (span < 0) fail("{}: kernel larger than the padded input", where);
    return span / s + 1;
  };
  g.OH = g.one_d ? 1 : out_dim(g.H, g.KH, g.sh, g.dh, pt, pb);
  g.OW = out_dim(g.W, g.KW, g.sw, g.dw, pl, pr);
  g.pt = pt;
  g.pl = pl;
  return g;
}

Shape out_shape(const Geometry& g) {
  if (g.one_d) return {g.N, g.M, g.OW};
  return {g.N, g.M, g.OH, g.OW};
}

// Rows of patches, ld apart: row (oh, ow) holds x[c][ih][iw] over (c in
// group, kh, kw), then pad up to ld.
template <typename T>
void im2row(const T* x, const Geometry& g, int64_t c0, int64_t cg, T* rows, T pad, int64_t ld) {
  const int64_t K = cg * g.KH * g.KW;
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      T* r = rows + (oh * g.OW + ow) * ld;
      std::fill(r + K, r + ld, pad);
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t ih = oh * g.sh - g.pt + kh * g.dh, iw0 = ow * g.sw - g.pl;
          // A run of the row inside the image (patch embeddings: every one): one copy.
          if (g.dw == 1 && ih >= 0 && ih < g.H && iw0 >= 0 && iw0 + g.KW <= g.W) {
            std::memcpy(r, x + ((c0 + c) * g.H + ih) * g.W + iw0, static_cast<size_t>(g.KW) * sizeof(T));
            r += g.KW;
            continue;
          }
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const int64_t iw = iw0 + kw * g.dw;
            *r++ = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? x[((c0 + c) * g.H + ih) * g.W + iw] : pad;
          }
        }
    }
}

// GEMM rows [P x mg] (4-byte elements) to mg channel planes of P, in tiles
// that keep both sides in cache.
void rows_to_planes(const uint32_t* t, int64_t P, int64_t mg, uint32_t* y) {
  constexpr int64_t kTile = 16;
  for (int64_t p0 = 0; p0 < P; p0 += kTile)
    for (int64_t m0 = 0; m0 < mg; m0 += kTile) {
      const int64_t pe = std::min(P, p0 + kTile), me = std::min(mg, m0 + kTile);
      for (int64_t m = m0; m < me; ++m)
        for (int64_t p = p0; p < pe; ++p) y[m * P + p] = t[p * mg + m];
    }
}

class ConvOp : public Op {
 public:
  explicit ConvOp(ConvAttrs a) : a_(std::move(a)) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kFloat || ctx.type(1) != onnx::kFloat) fail("{}: float32 inputs only", where);
    Geometry g = geometry(a_, ctx.shape(0), ctx.shape(1), where);
    if (ctx.has(2) && (ctx.type(2) != onnx::kFloat || shape_size(ctx.shape(2), where) != g.M))
      fail("{}: bias must hold {} float values", where, g.M);
    out[0] = {onnx::kFloat, out_shape(g)};
    shape_size(out[0].shape, where);
    return true;
  }
  void prepare(const InferContext& ctx) override {
    packs_.clear();
    const Tensor* w = ctx.value(1);
    if (!w) return;
    Geometry g = geometry(a_, ctx.shape(0), ctx.shape(1), where);
    const int64_t mg = g.M / g.group, K = (g.C / g.group) * g.KH * g.KW;
    for (int64_t gi = 0; gi < g.group; ++gi)
      // Weight rows [mg x K] are the transposed B [K x mg] of rows x B.
      packs_.push_back(kernels::pack_f32(kernels::best(), w->data<float>() + gi * mg * K, K, mg, K, true));
    if (ctx.value(2))
      for (int64_t gi = 0; gi < g.group; ++gi)
        packs_[gi].bias.assign(ctx.value(2)->data<float>() + gi * mg, ctx.value(2)->data<float>() + (gi + 1) * mg);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* b = in.size() > 2 ? in[2] : nullptr;
    Tensor& y = *out[0];
    Geometry g = geometry(a_, x.shape(), w.shape(), where);
    const int64_t cg = g.C / g.group, mg = g.M / g.group, K = cg * g.KH * g.KW, P = g.OH * g.OW;
    if (P == 0 || g.M == 0) return;
    const auto& k = kernels::best();
    std::vector<kernels::PackedF32> local;
    const std::vector<kernels::PackedF32>* packs = &packs_;
    if (packs_.empty()) {
      for (int64_t gi = 0; gi < g.group; ++gi) {
        local.push_back(kernels::pack_f32(k, w.data<float>() + gi * mg * K, K, mg, K, true));
        if (b) local.back().bias.assign(b->data<float>() + gi * mg, b->data<float>() + (gi + 1) * mg);
      }
      packs = &local;
    }
    auto rows = allocate_bytes(static_cast<size_t>(P * K) * sizeof(float));
    auto tmp = allocate_bytes(static_cast<size_t>(P * mg) * sizeof(float));
    float* r = reinterpret_cast<float*>(rows.get());
    float* t = reinterpret_cast<float*>(tmp.get());
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t gi = 0; gi < g.group; ++gi) {
        im2row(x.data<float>() + n * g.C * g.H * g.W, g, gi * cg, cg, r, 0.f, K);
        kernels::f32_gemm(k, P, r, K, (*packs)[gi], t, mg, kernels::Activation::None, &pool);
        rows_to_planes(reinterpret_cast<const uint32_t*>(t), P, mg,
                       reinterpret_cast<uint32_t*>(y.data<float>() + (n * g.M + gi * mg) * P));
      }
  }

 private:
  ConvAttrs a_;
  std::vector<kernels::PackedF32> packs_;
};

// ConvInteger as uint8 patch rows times each group's packed weights (the int8
// GEMM), then a transpose to NCHW. An int8 input is shifted to uint8 (+128, its
// zero point with it); padding is the zero point, i.e. the value 0. The fusion
// pass may add the dequantizing scale, a per-channel bias and GELU to the
// GEMM's epilogue (ConvInteger -> Cast -> Mul(scale) [-> Add(bias)]).
class ConvIntegerOp : public Op, public FusableLinear {
 public:
  explicit ConvIntegerOp(ConvAttrs a) : a_(std::move(a)) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    for (size_t i = 0; i < 4; ++i)
      if (ctx.has(i) && ctx.type(i) != onnx::kUint8 && ctx.type(i) != onnx::kInt8) fail("{}: input {} must be uint8 or int8", where, i);
    Geometry g = geometry(a_, ctx.shape(0), ctx.shape(1), where);
    if (ctx.has(2) && (shape_size(ctx.shape(2), where) != 1 || ctx.type(2) != ctx.type(0)))
      fail("{}: x_zero_point must be a scalar of x's type", where);
    if (ctx.has(3)) {
      const int64_t n = shape_size(ctx.shape(3), where);
      if ((n != 1 && n != g.M) || ctx.type(3) != ctx.type(1))
        fail("{}: w_zero_point must be a scalar or one per output channel, of w's type", where);
    }
    if (dequantize_) {
      if (!ctx.has(4) || ctx.type(4) != onnx::kFloat) fail("{}: fused scale must be float", where);
      out[0] = {onnx::kFloat, out_shape(g)};
    } else {
      out[0] = {onnx::kInt32, out_shape(g)};
    }
    shape_size(out[0].shape, where);
    return true;
  }
  void prepare(const InferContext& ctx) override {
    packed_ = false;
    const Tensor* w = ctx.value(1);
    if (!w || (ctx.has(3) && !ctx.value(3))) return;
    const Tensor* wz = ctx.has(3) ? ctx.value(3) : nullptr;
    if (w_src_ != w->raw() || wz_src_ != (wz ? wz->raw() : nullptr) || packs_.empty())
      packs_ = pack(*w, wz, geometry(a_, ctx.shape(0), ctx.shape(1), where));
    w_src_ = w->raw();
    wz_src_ = wz ? wz->raw() : nullptr;
    columns_ = static_cast<size_t>(w->dim(0));
    packed_ = true;
  }

  bool packed() const override { return packed_; }
  size_t output_columns() const override { return columns_; }
  bool channels_first() const override { return true; }
  void set_bias(std::vector<float> bias) override { bias_ = std::move(bias); }
  void set_activation(kernels::Activation act) override { act_ = act; }
  bool has_bias() const override { return !bias_.empty(); }
  kernels::Activation activation() const override { return act_; }
  bool set_dequantize() override {
    if (!packed_) return false;
    dequantize_ = true;
    return true;
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    const Tensor& w = *in[1];
    const Tensor* wz = in.size() > 3 ? in[3] : nullptr;
    Tensor& y = *out[0];
    Geometry g = geometry(a_, x.shape(), w.shape(), where);
    const int64_t cg = g.C / g.group, mg = g.M / g.group, P = g.OH * g.OW, image = g.C * g.H * g.W;
    if (P == 0 || mg == 0 || g.N == 0) return;
    const auto& k = kernels::best();
    std::vector<kernels::PackedQ8> local;
    const std::vector<kernels::PackedQ8>* packs = &packs_;
    if (!packed_) {
      local = pack(w, wz, g);
      packs = &local;
    }
    const float* scale = nullptr;
    bool per_channel = false;
    if (dequantize_) {
      const Tensor& s = *in[4];
      per_channel = s.size() != 1;
      if (per_channel && s.size() != g.M) fail("{}: fused scale has {} values for {} channels", where, s.size(), g.M);
      scale = s.data<float>();
    }
    // int8 input: shifted to uint8 so that one kernel serves both.
    const bool shifted = x.type() == onnx::kInt8;
    const int32_t x_zp = (in.size() > 2 && in[2] ? load_q(*in[2], 0) : 0) + (shifted ? 128 : 0);
    const size_t kp = (*packs)[0].kp;
    auto rows = allocate_bytes(static_cast<size_t>(P) * kp);
    auto tmp = allocate_bytes(static_cast<size_t>(P * mg) * 4);
    std::shared_ptr<uint8_t[]> converted;
    if (shifted) converted = allocate_bytes(static_cast<size_t>(image));
    for (int64_t n = 0; n < g.N; ++n) {
      const uint8_t* img = x.data<uint8_t>() + n * image;
      if (shifted) {
        std::memcpy(converted.get(), img, static_cast<size_t>(image));
        flip_sign_bits(converted.get(), static_cast<size_t>(image));
        img = converted.get();
      }
      for (int64_t gi = 0; gi < g.group; ++gi) {
        im2row(img, g, gi * cg, cg, rows.get(), static_cast<uint8_t>(x_zp), static_cast<int64_t>(kp));
        kernels::Q8Output o;
        o.ldc = static_cast<size_t>(mg);
        if (dequantize_) {
          o.f32 = reinterpret_cast<float*>(tmp.get());
          o.scale = per_channel ? scale + gi * mg : scale;
          o.scale_per_column = per_channel;
          o.bias = bias_.empty() ? nullptr : bias_.data() + gi * mg;
          o.act = act_;
        } else {
          o.i32 = reinterpret_cast<int32_t*>(tmp.get());
        }
        kernels::q8_gemm(k, static_cast<size_t>(P), rows.get(), kp, x_zp, (*packs)[gi], o, &pool);
        // int32 or float: 4 bytes either way.
        rows_to_planes(reinterpret_cast<const uint32_t*>(tmp.get()), P, mg,
                       static_cast<uint32_t*>(y.raw()) + (n * g.M + gi * mg) * P);
      }
    }
  }

 private:
  // Each group's weight rows [mg x K] are the transposed B [K x mg] of rows x B.
  std::vector<kernels::PackedQ8> pack(const Tensor& w, const Tensor* wz, const Geometry& g) const {
    const int64_t mg = g.M / g.group, K = (g.C / g.group) * g.KH * g.KW;
    std::vector<kernels::PackedQ8> packs;
    std::vector<uint8_t> b(static_cast<size_t>(K * mg));
    for (int64_t gi = 0; gi < g.group; ++gi) {
      const uint8_t* src = w.data<uint8_t>() + gi * mg * K;
      for (int64_t m = 0; m < mg; ++m)
        for (int64_t q = 0; q < K; ++q) b[q * mg + m] = src[m * K + q];
      std::vector<int32_t> zp;
      if (!wz) zp.push_back(0);
      else if (wz->size() == 1) zp.push_back(load_q(*wz, 0));
      else
        for (int64_t m = 0; m < mg; ++m) zp.push_back(load_q(*wz, gi * mg + m));
      packs.push_back(kernels::pack_q8(kernels::best(), b.data(), K, mg, w.type() == onnx::kUint8, zp.data(), zp.size()));
    }
    return packs;
  }

  ConvAttrs a_;
  bool packed_ = false, dequantize_ = false;
  std::vector<kernels::PackedQ8> packs_;
  const void* w_src_ = nullptr;
  const void* wz_src_ = nullptr;
  size_t columns_ = 0;
  std::vector<float> bias_;
  kernels::Activation act_ = kernels::Activation::None;
};

}  // namespace

void register_conv_ops(OpRegistry& r) {
  r.add("", "Conv", 1, 21, [](OpArgs& a) { return std::make_unique<ConvOp>(read_conv_attrs(a.attrs)); });
  r.add("", "ConvInteger", 10, 21, [](OpArgs& a) { return std::make_unique<ConvIntegerOp>(read_conv_attrs(a.attrs)); });
}

}  // namespace medquant::runtime
