// Shape and data-movement operators (reference implementations): Reshape,
// Squeeze, Unsqueeze, Flatten (views), Transpose, Concat, Split, Slice,
// Gather, Expand, Tile, Shape, Size, Constant, ConstantOfShape, Range.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"

namespace medquant::runtime {
namespace {

// Values of an integer input as int64 (shape-like inputs); nullopt when not known.
std::optional<std::vector<int64_t>> int_values(const InferContext& ctx, size_t i, std::string_view where) {
  const Tensor* v = ctx.value(i);
  if (!v) return std::nullopt;
  if (v->type() != onnx::kInt64 && v->type() != onnx::kInt32)
    fail("{}: input {} must be int64 or int32, got {}", where, i, onnx::elem_type_name(v->type()));
  return v->to_int64();
}

void copy_bytes(void* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n);
}

// ---------------------------------------------------------------- views

class ReshapeOp : public Op {
 public:
  explicit ReshapeOp(bool allowzero) : allowzero_(allowzero) {}
  bool is_view() const override { return true; }
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    auto target = int_values(ctx, 1, where);
    if (!target) return false;
    const Shape& in = ctx.shape(0);
    const int64_t total = shape_size(in, where);
    Shape s(target->size());
    int64_t known = 1, infer_at = -1;
    for (size_t i = 0; i < s.size(); ++i) {
      int64_t d = (*target)[i];
      if (d == 0 && !allowzero_) {
        if (i >= in.size()) fail("{}: shape {} copies dim {} that the input {} lacks", where, shape_string(*target), i, shape_string(in));
        d = in[i];
      }
      if (d == -1) {
        if (infer_at >= 0) fail("{}: shape {} has more than one -1", where, shape_string(*target));
        infer_at = static_cast<int64_t>(i);
        s[i] = 1;
        continue;
      }
      if (d < 0) fail("{}: shape {} has a negative dim", where, shape_string(*target));
      s[i] = d;
      known = d == 0 ? 0 : (known > kMaxElements / d ? kMaxElements + 1 : known * d);
    }
    if (infer_at >= 0) {
      if (known == 0 || total % known != 0)
        fail("{}: cannot reshape {} to {}", where, shape_string(in), shape_string(*target));
      s[static_cast<size_t>(infer_at)] = total / known;
    } else if (known != total) {
      fail("{}: cannot reshape {} ({} elements) to {}", where, shape_string(in), total, shape_string(s));
    }
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const>, std::span<Tensor* const>, Parallel&) override {}

 private:
  bool allowzero_;
};

class SqueezeOp : public Op {
 public:
  SqueezeOp(bool unsqueeze, bool axes_input, std::vector<int64_t> axes)
      : unsqueeze_(unsqueeze), axes_input_(axes_input), axes_(std::move(axes)) {}
  bool is_view() const override { return true; }
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    std::vector<int64_t> axes = axes_;
    bool have_axes = !axes_input_ ? !axes_.empty() || unsqueeze_ : ctx.has(1);
    if (axes_input_ && ctx.has(1)) {
      auto v = int_values(ctx, 1, where);
      if (!v) return false;
      axes = *v;
    }
    const Shape& in = ctx.shape(0);
    Shape s;
    if (unsqueeze_) {
      const int64_t r = static_cast<int64_t>(in.size() + axes.size());
      std::vector<bool> inserted(static_cast<size_t>(r), false);
      for (int64_t a : axes) {
        const int64_t n = normalize_axis(a, r, where);
        if (inserted[n]) fail("{}: axis {} is repeated", where, a);
        inserted[n] = true;
      }
      size_t k = 0;
      for (int64_t i = 0; i < r; ++i) s.push_back(inserted[i] ? 1 : in[k++]);
    } else {
      const int64_t r = static_cast<int64_t>(in.size());
      std::vector<bool> drop(in.size(), false);
      if (have_axes) {
        for (int64_t a : axes) {
          const int64_t n = normalize_axis(a, r, where);
          if (in[n] != 1) fail("{}: cannot squeeze axis {} of size {}", where, a, in[n]);
          drop[n] = true;
        }
      } else {
        for (size_t i = 0; i < in.size(); ++i) drop[i] = in[i] == 1;
      }
      for (size_t i = 0; i < in.size(); ++i)
        if (!drop[i]) s.push_back(in[i]);
    }
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const>, std::span<Tensor* const>, Parallel&) override {}

 private:
  bool unsqueeze_, axes_input_;
  std::vector<int64_t> axes_;
};

class FlattenOp : public Op {
 public:
  explicit FlattenOp(int64_t axis) : axis_(axis) {}
  bool is_view() const override { return true; }
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const Shape& in = ctx.shape(0);
    const int64_t r = static_cast<int64_t>(in.size());
    if (axis_ < -r || axis_ > r) fail("{}: axis {} is out of range for rank {}", where, axis_, r);
    const int64_t axis = axis_ < 0 ? axis_ + r : axis_;
    int64_t a = 1, b = 1;
    for (int64_t i = 0; i < r; ++i) (i < axis ? a : b) *= in[i];
    out[0] = {ctx.type(0), {a, b}};
    return true;
  }
  void run(std::span<const Tensor* const>, std::span<Tensor* const>, Parallel&) override {}

 private:
  int64_t axis_;
};

// ---------------------------------------------------------------- Transpose

class TransposeOp : public Op {
 public:
  explicit TransposeOp(std::vector<int64_t> perm) : perm_(std::move(perm)) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const Shape& in = ctx.shape(0);
    std::vector<int64_t> perm = perm_;
    if (perm.empty())
      for (size_t i = in.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
    if (perm.size() != in.size()) fail("{}: perm has {} entries for rank {}", where, perm.size(), in.size());
    std::vector<bool> seen(in.size(), false);
    Shape s(in.size());
    for (size_t i = 0; i < perm.size(); ++i) {
      const int64_t p = normalize_axis(perm[i], static_cast<int64_t>(in.size()), where);
      if (seen[p]) fail("{}: perm repeats axis {}", where, p);
      seen[p] = true;
      s[i] = in[p];
    }
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    const size_t r = x.rank();
    std::vector<int64_t> perm = perm_;
    if (perm.empty())
      for (size_t i = r; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
    for (auto& p : perm) p = p < 0 ? p + static_cast<int64_t>(r) : p;
    const auto xs = strides_of(x.shape());
    // Output walked in order; input strides permuted. Collapse with BroadcastWalk<1>
    // by describing the input as a strided view of the output's shape.
    Shape oshape = y.shape();
    std::vector<int64_t> istr(r);
    for (size_t i = 0; i < r; ++i) istr[i] = xs[perm[i]];
    transpose_copy(x, y, oshape, istr, pool);
  }

  // y (contiguous, shape oshape) [i...] = x[sum i_d * istr_d]
  static void transpose_copy(const Tensor& x, Tensor& y, const Shape& oshape,
                             const std::vector<int64_t>& istr, Parallel& pool) {
    const size_t es = onnx::elem_size(x.type());
    // Drop unit dims and merge dims contiguous in both.
    Shape d;
    std::vector<int64_t> s;
    for (size_t i = 0; i < oshape.size(); ++i) {
      if (oshape[i] == 1) continue;
      if (!d.empty() && s.back() == istr[i] * oshape[i]) {
        d.back() *= oshape[i];
        s.back() = istr[i];
      } else {
        d.push_back(oshape[i]);
        s.push_back(istr[i]);
      }
    }
    if (d.empty()) {
      copy_bytes(y.raw(), x.raw(), x.bytes());
      return;
    }
    const size_t rr = d.size();
    int64_t outer = 1;
    for (size_t i = 0; i + 1 < rr; ++i) outer *= d[i];
    const int64_t len = d[rr - 1], step = s[rr - 1];
    const auto* src = static_cast<const uint8_t*>(x.raw());
    auto* dst = static_cast<uint8_t*>(y.raw());
    auto body = [&](size_t ob, size_t oe) {
      std::vector<int64_t> idx(rr, 0);
      int64_t off = 0, rem = static_cast<int64_t>(ob);
      for (size_t k = rr - 1; k-- > 0;) {
        idx[k] = rem % d[k];
        rem /= d[k];
        off += idx[k] * s[k];
      }
      dispatch_bytes(es, "Transpose", [&](auto tag) {
        using T = decltype(tag);
        const T* a = reinterpret_cast<const T*>(src);
        T* b = reinterpret_cast<T*>(dst);
        for (size_t o = ob; o < oe; ++o) {
          T* row = b + static_cast<int64_t>(o) * len;
          if (step == 1) std::memcpy(row, a + off, static_cast<size_t>(len) * sizeof(T));
          else
            for (int64_t i = 0; i < len; ++i) row[i] = a[off + i * step];
          for (size_t k = rr - 1; k-- > 0;) {
            ++idx[k];
            off += s[k];
            if (idx[k] < d[k]) break;
            off -= s[k] * d[k];
            idx[k] = 0;
          }
        }
      });
    };
    if (x.size() < (1 << 15)) body(0, static_cast<size_t>(outer));
    else pool.ranges(static_cast<size_t>(outer), std::max<size_t>(1, (1 << 13) / static_cast<size_t>(len)), body);
  }

 private:
  std::vector<int64_t> perm_;
};

// ---------------------------------------------------------------- Concat / Split

class ConcatOp : public Op {
 public:
  explicit ConcatOp(int64_t axis) : axis_(axis) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.count() == 0) fail("{}: needs at least one input", where);
    Shape s = ctx.shape(0);
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(s.size()), where);
    if (s.empty()) fail("{}: cannot concatenate scalars", where);
    s[axis] = 0;
    for (size_t i = 0; i < ctx.count(); ++i) {
      const Shape& si = ctx.shape(i);
      if (ctx.type(i) != ctx.type(0)) fail("{}: inputs have different element types", where);
      if (si.size() != s.size()) fail("{}: input {} has rank {}, expected {}", where, i, si.size(), s.size());
      for (size_t d = 0; d < s.size(); ++d)
        if (static_cast<int64_t>(d) != axis && si[d] != ctx.shape(0)[d])
          fail("{}: input {} has shape {}, incompatible with {}", where, i, shape_string(si), shape_string(ctx.shape(0)));
      s[axis] += si[axis];
    }
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    Tensor& y = *out[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(y.rank()), where);
    const size_t es = onnx::elem_size(y.type());
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= y.dim(d);
    for (size_t d = axis + 1; d < y.rank(); ++d) inner *= y.dim(d);
    const int64_t row = y.dim(axis) * inner;
    auto* dst = static_cast<uint8_t*>(y.raw());
    int64_t at = 0;
    for (const Tensor* x : in) {
      const int64_t chunk = x->dim(axis) * inner;
      const auto* src = static_cast<const uint8_t*>(x->raw());
      for (int64_t o = 0; o < outer; ++o)
        copy_bytes(dst + (o * row + at) * es, src + o * chunk * es, static_cast<size_t>(chunk) * es);
      at += chunk;
    }
  }

 private:
  int64_t axis_;
};

class SplitOp : public Op {
 public:
  SplitOp(int64_t axis, std::vector<int64_t> split, bool split_input, int64_t num_outputs)
      : axis_(axis), split_(std::move(split)), split_input_(split_input), num_outputs_(num_outputs) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const Shape& in = ctx.shape(0);
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(in.size()), where);
    std::vector<int64_t> split = split_;
    if (split_input_ && ctx.has(1)) {
      auto v = int_values(ctx, 1, where);
      if (!v) return false;
      split = *v;
    }
    const int64_t n = static_cast<int64_t>(out.size());
    const int64_t dim = in[axis];
    if (split.empty()) {
      if (num_outputs_ > 0 && num_outputs_ != n) fail("{}: num_outputs {} but {} outputs", where, num_outputs_, n);
      const int64_t part = num_outputs_ > 0 ? (dim + n - 1) / n : dim / n;
      if (num_outputs_ <= 0 && dim % n != 0) fail("{}: dim {} does not split evenly into {}", where, dim, n);
      for (int64_t i = 0; i < n; ++i) split.push_back(std::min(part, std::max<int64_t>(0, dim - i * part)));
    }
    if (static_cast<int64_t>(split.size()) != n) fail("{}: {} split sizes for {} outputs", where, split.size(), n);
    int64_t sum = 0;
    for (int64_t v : split) {
      if (v < 0) fail("{}: negative split size", where);
      sum += v;
    }
    if (sum != dim) fail("{}: split sizes add up to {}, the axis has {}", where, sum, dim);
    for (int64_t i = 0; i < n; ++i) {
      Shape s = in;
      s[axis] = split[i];
      out[i] = {ctx.type(0), s};
    }
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.rank()), where);
    const size_t es = onnx::elem_size(x.type());
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= x.dim(d);
    for (size_t d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
    const int64_t row = x.dim(axis) * inner;
    const auto* src = static_cast<const uint8_t*>(x.raw());
    int64_t at = 0;
    for (Tensor* y : out) {
      if (!y) continue;  // unused output: still advance
      const int64_t chunk = y->dim(axis) * inner;
      auto* dst = static_cast<uint8_t*>(y->raw());
      for (int64_t o = 0; o < outer; ++o)
        copy_bytes(dst + o * chunk * es, src + (o * row + at) * es, static_cast<size_t>(chunk) * es);
      at += chunk;
    }
  }

 private:
  int64_t axis_;
  std::vector<int64_t> split_;
  bool split_input_;
  int64_t num_outputs_;
};

// ---------------------------------------------------------------- Slice

class SliceOp : public Op {
 public:
  SliceOp(bool inputs, std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> axes)
      : inputs_(inputs), starts_(std::move(starts)), ends_(std::move(ends)), axes_(std::move(axes)) {}

  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    std::vector<int64_t> starts = starts_, ends = ends_, axes = axes_, steps;
    if (inputs_) {
      auto s = int_values(ctx, 1, where), e = int_values(ctx, 2, where);
      if (!s || !e) return false;
      starts = *s;
      ends = *e;
      axes.clear();
      if (ctx.has(3)) {
        auto a = int_values(ctx, 3, where);
        if (!a) return false;
        axes = *a;
      }
      if (ctx.has(4)) {
        auto st = int_values(ctx, 4, where);
        if (!st) return false;
        steps = *st;
      }
    }
    const Shape& in = ctx.shape(0);
    const int64_t r = static_cast<int64_t>(in.size());
    if (starts.size() != ends.size()) fail("{}: starts and ends differ in length", where);
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (axes.size() != starts.size() || steps.size() != starts.size())
      fail("{}: starts, ends, axes and steps differ in length", where);
    start_.assign(in.size(), 0);
    step_.assign(in.size(), 1);
    Shape s = in;
    std::vector<bool> seen(in.size(), false);
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t a = normalize_axis(axes[i], r, where);
      if (seen[a]) fail("{}: axis {} repeated", where, a);
      seen[a] = true;
      const int64_t dim = in[a], step = steps[i];
      if (step == 0) fail("{}: step 0", where);
      int64_t b = starts[i], e = ends[i];
      if (b < 0) b = b < -dim ? -1 : b + dim;  // beware INT64_MIN
      if (e < 0) e = e < -dim ? -1 : e + dim;
      int64_t n;
      if (step > 0) {
        b = std::clamp<int64_t>(b, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
        n = e > b ? (e - b + step - 1) / step : 0;
      } else {
        b = std::clamp<int64_t>(b, -1, dim - 1);
        e = std::clamp<int64_t>(e, -1, dim - 1);
        n = b > e ? (b - e + (-step) - 1) / (-step) : 0;
      }
      start_[a] = n > 0 ? b : 0;
      step_[a] = step;
      s[a] = n;
    }
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    if (y.size() == 0) return;
    const auto xs = strides_of(x.shape());
    int64_t base = 0;
    std::vector<int64_t> istr(x.rank());
    for (size_t d = 0; d < x.rank(); ++d) {
      base += start_[d] * xs[d];
      istr[d] = xs[d] * step_[d];
    }
    const size_t es = onnx::elem_size(x.type());
    Tensor shifted = Tensor::view(x.type(), {x.size() - base}, static_cast<uint8_t*>(const_cast<void*>(x.raw())) + base * es);
    TransposeOp::transpose_copy(shifted, y, y.shape(), istr, pool);
  }

 private:
  bool inputs_;
  std::vector<int64_t> starts_, ends_, axes_;
  std::vector<int64_t> start_, step_;  // per dim, from the last infer
};

// ---------------------------------------------------------------- Gather

class GatherOp : public Op {
 public:
  explicit GatherOp(int64_t axis) : axis_(axis) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const Shape& data = ctx.shape(0);
    if (ctx.type(1) != onnx::kInt64 && ctx.type(1) != onnx::kInt32)
      fail("{}: indices must be int32 or int64", where);
    if (data.empty()) fail("{}: data must have rank >= 1", where);
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(data.size()), where);
    Shape s(data.begin(), data.begin() + axis);
    s.insert(s.end(), ctx.shape(1).begin(), ctx.shape(1).end());
    s.insert(s.end(), data.begin() + axis + 1, data.end());
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    const std::vector<int64_t> idx = in[1]->to_int64();
    Tensor& y = *out[0];
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(x.rank()), where);
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= x.dim(d);
    for (size_t d = axis + 1; d < x.rank(); ++d) inner *= x.dim(d);
    const int64_t dim = x.dim(axis);
    const size_t es = onnx::elem_size(x.type());
    const size_t chunk = static_cast<size_t>(inner) * es;
    const auto* src = static_cast<const uint8_t*>(x.raw());
    auto* dst = static_cast<uint8_t*>(y.raw());
    const int64_t n = static_cast<int64_t>(idx.size());
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < n; ++j) {
        int64_t k = idx[j];
        if (k < -dim || k >= dim) fail("{}: index {} is out of range for axis of size {}", where, k, dim);
        if (k < 0) k += dim;
        copy_bytes(dst + (o * n + j) * chunk, src + (o * dim + k) * chunk, chunk);
      }
  }

 private:
  int64_t axis_;
};

class GatherElementsOp : public Op {
 public:
  explicit GatherElementsOp(int64_t axis) : axis_(axis) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.rank(0) != ctx.rank(1) || ctx.rank(0) == 0) fail("{}: data and indices must have the same rank", where);
    normalize_axis(axis_, static_cast<int64_t>(ctx.rank(0)), where);
    if (ctx.type(1) != onnx::kInt64 && ctx.type(1) != onnx::kInt32) fail("{}: indices must be int32 or int64", where);
    out[0] = {ctx.type(0), ctx.shape(1)};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    const auto idx = in[1]->to_int64();
    Tensor& y = *out[0];
    const size_t r = x.rank();
    const int64_t axis = normalize_axis(axis_, static_cast<int64_t>(r), where);
    const auto xs = strides_of(x.shape());
    const size_t es = onnx::elem_size(x.type());
    std::vector<int64_t> pos(r, 0);
    for (int64_t i = 0; i < y.size(); ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < r; ++d) {
        int64_t c = pos[d];
        if (static_cast<int64_t>(d) == axis) {
          c = idx[i];
          if (c < -x.dim(d) || c >= x.dim(d)) fail("{}: index {} out of range", where, c);
          if (c < 0) c += x.dim(d);
        } else if (c >= x.dim(d)) {
          fail("{}: indices shape exceeds data shape", where);
        }
        off += c * xs[d];
      }
      std::memcpy(static_cast<uint8_t*>(y.raw()) + i * es, static_cast<const uint8_t*>(x.raw()) + off * es, es);
      for (size_t d = r; d-- > 0;) {
        if (++pos[d] < y.dim(d)) break;
        pos[d] = 0;
      }
    }
  }

 private:
  int64_t axis_;
};

// ---------------------------------------------------------------- Expand / Tile

class ExpandOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    auto s = int_values(ctx, 1, where);
    if (!s) return false;
    out[0] = {ctx.type(0), broadcast_shapes(ctx.shape(0), *s, where)};
    shape_size(out[0].shape, where);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    BroadcastWalk<1> w(y.shape(), {&x.shape()});
    dispatch_bytes(onnx::elem_size(x.type()), where, [&](auto tag) {
      using T = decltype(tag);
      const T* a = x.data<T>();
      T* b = y.data<T>();
      w.for_each_run([&](int64_t o, std::array<int64_t, 1> off, int64_t len, std::array<int64_t, 1> st) {
        for (int64_t i = 0; i < len; ++i) b[o + i] = a[off[0] + i * st[0]];
      });
    });
  }
};

class TileOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    auto rep = int_values(ctx, 1, where);
    if (!rep) return false;
    if (rep->size() != ctx.rank(0)) fail("{}: repeats has {} entries for rank {}", where, rep->size(), ctx.rank(0));
    Shape s = ctx.shape(0);
    for (size_t i = 0; i < s.size(); ++i) {
      if ((*rep)[i] < 0) fail("{}: negative repeat", where);
      s[i] *= (*rep)[i];
    }
    shape_size(s, where);
    out[0] = {ctx.type(0), s};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    const size_t r = x.rank(), es = onnx::elem_size(x.type());
    const auto xs = strides_of(x.shape());
    std::vector<int64_t> pos(r, 0);
    for (int64_t i = 0; i < y.size(); ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < r; ++d) off += (pos[d] % x.dim(d)) * xs[d];
      std::memcpy(static_cast<uint8_t*>(y.raw()) + i * es, static_cast<const uint8_t*>(x.raw()) + off * es, es);
      for (size_t d = r; d-- > 0;) {
        if (++pos[d] < y.dim(d)) break;
        pos[d] = 0;
      }
    }
  }
};

// ---------------------------------------------------------------- Shape / Size

class ShapeOp : public Op {
 public:
  ShapeOp(int64_t start, std::optional<int64_t> end) : start_(start), end_(end) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int64_t r = static_cast<int64_t>(ctx.rank(0));
    auto clampi = [&](int64_t v) { return std::clamp<int64_t>(v < 0 ? v + r : v, 0, r); };
    b_ = clampi(start_);
    e_ = end_ ? clampi(*end_) : r;
    out[0] = {onnx::kInt64, {std::max<int64_t>(0, e_ - b_)}};
    dims_ = ctx.shape(0);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Shape& s = in[0]->shape();
    for (int64_t i = b_; i < e_; ++i) out[0]->data<int64_t>()[i - b_] = s[i];
  }

 private:
  int64_t start_;
  std::optional<int64_t> end_;
  int64_t b_ = 0, e_ = 0;
  Shape dims_;
};

class SizeOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    out[0] = {onnx::kInt64, {}};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    out[0]->data<int64_t>()[0] = in[0]->size();
  }
};

// ---------------------------------------------------------------- constants

class ConstantOp : public Op {
 public:
  explicit ConstantOp(Tensor value) : value_(std::move(value)) {}
  bool infer(const InferContext&, std::vector<TensorDesc>& out) override {
    out[0] = {value_.type(), value_.shape()};
    return true;
  }
  void run(std::span<const Tensor* const>, std::span<Tensor* const> out, Parallel&) override {
    copy_bytes(out[0]->raw(), value_.raw(), value_.bytes());
  }

 private:
  Tensor value_;
};

Tensor tensor_attribute(const ::onnx::TensorProto& proto, const std::string& where) {
  ::onnx::TensorProto copy = proto;
  if (copy.data_location() == ::onnx::TensorProto::EXTERNAL)
    fail("{}: tensor attribute with external data is not supported", where);
  onnx::Tensor t = onnx::tensor_from_proto(copy, where);
  return with_context(where, [&] { return Tensor::from_onnx(t); });
}

class ConstantOfShapeOp : public Op {
 public:
  explicit ConstantOfShapeOp(Tensor value) : value_(std::move(value)) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    auto s = int_values(ctx, 0, where);
    if (!s) return false;
    if (ctx.type(0) != onnx::kInt64) fail("{}: shape must be int64", where);
    Shape shape(s->begin(), s->end());
    shape_size(shape, where);
    out[0] = {value_.type(), shape};
    return true;
  }
  void run(std::span<const Tensor* const>, std::span<Tensor* const> out, Parallel&) override {
    Tensor& y = *out[0];
    const size_t es = onnx::elem_size(y.type());
    auto* dst = static_cast<uint8_t*>(y.raw());
    for (int64_t i = 0; i < y.size(); ++i) std::memcpy(dst + i * es, value_.raw(), es);
  }

 private:
  Tensor value_;
};

class RangeOp : public Op {
 public:
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    const int32_t t = ctx.type(0);
    for (size_t i = 0; i < 3; ++i) {
      if (ctx.type(i) != t) fail("{}: start, limit and delta must have one type", where);
      if (!ctx.shape(i).empty() && shape_size(ctx.shape(i), where) != 1) fail("{}: inputs must be scalars", where);
    }
    if (!(t == onnx::kFloat || t == onnx::kDouble || t == onnx::kInt16 || t == onnx::kInt32 || t == onnx::kInt64))
      fail("{}: element type {} is not supported", where, onnx::elem_type_name(t));
    if (!ctx.value(0) || !ctx.value(1) || !ctx.value(2)) return false;
    const double s = ctx.value(0)->scalar_as_double(), l = ctx.value(1)->scalar_as_double(),
                 d = ctx.value(2)->scalar_as_double();
    if (d == 0) fail("{}: delta is 0", where);
    const double n = std::ceil((l - s) / d);
    if (!(n < static_cast<double>(kMaxElements))) fail("{}: range of {} elements is too big", where, n);
    out[0] = {t, {static_cast<int64_t>(std::max(0.0, n))}};
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    dispatch_numeric(in[0]->type(), where, [&](auto tag) {
      using T = decltype(tag);
      const T s = in[0]->data<T>()[0], d = in[2]->data<T>()[0];
      T* y = out[0]->data<T>();
      for (int64_t i = 0; i < out[0]->size(); ++i) y[i] = static_cast<T>(s + static_cast<T>(i) * d);
    });
  }
};

}  // namespace

Tensor constant_attribute_value(OpArgs& a);

Tensor constant_attribute_value(OpArgs& a) {
  if (const auto* t = a.attrs.tensor("value")) return tensor_attribute(*t, a.where);
  if (a.attrs.has("value_float")) return Tensor::scalar<float>(a.attrs.f("value_float", 0));
  if (a.attrs.has("value_int")) return Tensor::scalar<int64_t>(a.attrs.i("value_int", 0));
  if (a.attrs.has("value_floats")) {
    auto v = a.attrs.floats("value_floats");
    return Tensor::from<float>({static_cast<int64_t>(v.size())}, v);
  }
  if (a.attrs.has("value_ints")) {
    auto v = a.attrs.ints("value_ints");
    return Tensor::from<int64_t>({static_cast<int64_t>(v.size())}, v);
  }
  fail("{}: Constant without a supported value attribute (value, value_float(s), value_int(s))", a.where);
}

void register_shape_ops(OpRegistry& r) {
  r.add("", "Reshape", 5, 21, [](OpArgs& a) {
    return std::make_unique<ReshapeOp>(a.opset >= 14 && a.attrs.i("allowzero", 0) != 0);
  });
  r.add("", "Squeeze", 1, 12, [](OpArgs& a) { return std::make_unique<SqueezeOp>(false, false, a.attrs.ints("axes")); });
  r.add("", "Squeeze", 13, 21, [](OpArgs&) { return std::make_unique<SqueezeOp>(false, true, std::vector<int64_t>{}); });
  r.add("", "Unsqueeze", 1, 12, [](OpArgs& a) {
    auto axes = a.attrs.ints("axes");
    if (axes.empty()) fail("{}: axes attribute is required", a.where);
    return std::make_unique<SqueezeOp>(true, false, axes);
  });
  r.add("", "Unsqueeze", 13, 21, [](OpArgs& a) {
    if (a.node.inputs.size() < 2 || a.node.inputs[1].empty()) fail("{}: axes input is required", a.where);
    return std::make_unique<SqueezeOp>(true, true, std::vector<int64_t>{});
  });
  r.add("", "Flatten", 1, 21, [](OpArgs& a) { return std::make_unique<FlattenOp>(a.attrs.i("axis", 1)); });
  r.add("", "Transpose", 1, 21, [](OpArgs& a) { return std::make_unique<TransposeOp>(a.attrs.ints("perm")); });
  r.add("", "Concat", 4, 21, [](OpArgs& a) { return std::make_unique<ConcatOp>(a.attrs.required_i("axis")); });
  r.add("", "Split", 2, 12, [](OpArgs& a) {
    return std::make_unique<SplitOp>(a.attrs.i("axis", 0), a.attrs.ints("split"), false, 0);
  });
  r.add("", "Split", 13, 21, [](OpArgs& a) {
    const int64_t num = a.opset >= 18 ? a.attrs.i("num_outputs", 0) : 0;
    return std::make_unique<SplitOp>(a.attrs.i("axis", 0), std::vector<int64_t>{}, true, num);
  });
  r.add("", "Slice", 1, 9, [](OpArgs& a) {
    return std::make_unique<SliceOp>(false, a.attrs.ints("starts"), a.attrs.ints("ends"), a.attrs.ints("axes"));
  });
  r.add("", "Slice", 10, 21, [](OpArgs&) {
    return std::make_unique<SliceOp>(true, std::vector<int64_t>{}, std::vector<int64_t>{}, std::vector<int64_t>{});
  });
  r.add("", "Gather", 1, 21, [](OpArgs& a) { return std::make_unique<GatherOp>(a.attrs.i("axis", 0)); });
  r.add("", "GatherElements", 11, 21, [](OpArgs& a) { return std::make_unique<GatherElementsOp>(a.attrs.i("axis", 0)); });
  r.add("", "Expand", 8, 21, [](OpArgs&) { return std::make_unique<ExpandOp>(); });
  r.add("", "Tile", 6, 21, [](OpArgs&) { return std::make_unique<TileOp>(); });
  r.add("", "Shape", 1, 21, [](OpArgs& a) {
    std::optional<int64_t> end;
    int64_t start = 0;
    if (a.opset >= 15) {
      start = a.attrs.i("start", 0);
      if (a.attrs.has("end")) end = a.attrs.i("end", 0);
    }
    return std::make_unique<ShapeOp>(start, end);
  });
  r.add("", "Size", 1, 21, [](OpArgs&) { return std::make_unique<SizeOp>(); });
  r.add("", "Constant", 1, 21, [](OpArgs& a) {
    if (a.attrs.has("sparse_value")) fail("{}: sparse constants are not supported", a.where);
    if (a.attrs.has("value_string") || a.attrs.has("value_strings"))
      fail("{}: string constants are not supported", a.where);
    return std::make_unique<ConstantOp>(constant_attribute_value(a));
  });
  r.add("", "ConstantOfShape", 9, 21, [](OpArgs& a) {
    Tensor v = Tensor::scalar<float>(0.f);
    if (const auto* t = a.attrs.tensor("value")) {
      v = tensor_attribute(*t, a.where);
      if (v.size() != 1) fail("{}: value must hold one element", a.where);
    }
    return std::make_unique<ConstantOfShapeOp>(v);
  });
  r.add("", "Range", 11, 21, [](OpArgs&) { return std::make_unique<RangeOp>(); });
}

}  // namespace medquant::runtime
