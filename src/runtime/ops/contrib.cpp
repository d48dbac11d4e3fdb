// com.microsoft operators that ONNX Runtime's optimizer writes when it saves
// an optimized model: Gelu, FastGelu, BiasGelu, QuickGelu (reference loops).
#include <cmath>

#include "runtime/kernels/kernels.h"
#include "runtime/ops/broadcast.h"
#include "runtime/ops/dispatch.h"

namespace medquant::runtime {
namespace {

enum class GeluKind { Erf, Fast, Quick };

class ContribGeluOp : public Op {
 public:
  ContribGeluOp(GeluKind kind, float alpha) : kind_(kind), alpha_(alpha) {}
  bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) override {
    if (ctx.type(0) != onnx::kFloat) fail("{}: float32 input only", where);
    if (ctx.has(1)) {
      if (ctx.type(1) != onnx::kFloat || ctx.rank(1) != 1 || ctx.shape(0).empty() || ctx.shape(1)[0] != ctx.shape(0).back())
        fail("{}: bias must be 1-D over the last dimension", where);
    }
    out[0] = ctx.desc(0);
    return true;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel&) override {
    const Tensor& x = *in[0];
    const Tensor* b = in.size() > 1 ? in[1] : nullptr;
    const int64_t n = x.size(), last = x.shape().empty() ? 1 : x.shape().back();
    const float* a = x.data<float>();
    float* y = out[0]->data<float>();
    for (int64_t i = 0; i < n; ++i) {
      const float v = a[i] + (b ? b->data<float>()[i % last] : 0.f);
      switch (kind_) {
        case GeluKind::Erf: y[i] = 0.5f * v * (1.f + std::erf(v * static_cast<float>(M_SQRT1_2))); break;
        case GeluKind::Fast: y[i] = 0.5f * v * (1.f + std::tanh(0.7978845608028654f * (v + 0.044715f * v * v * v))); break;
        case GeluKind::Quick: y[i] = v / (1.f + std::exp(-alpha_ * v)); break;
      }
    }
  }

 private:
  GeluKind kind_;
  float alpha_;
};

}  // namespace

void register_contrib_ops(OpRegistry& r) {
  const std::string ms = "com.microsoft";
  r.add(ms, "Gelu", 1, 1, [](OpArgs&) { return std::make_unique<ContribGeluOp>(GeluKind::Erf, 0.f); });
  r.add(ms, "BiasGelu", 1, 1, [](OpArgs&) { return std::make_unique<ContribGeluOp>(GeluKind::Erf, 0.f); });
  r.add(ms, "FastGelu", 1, 1, [](OpArgs&) { return std::make_unique<ContribGeluOp>(GeluKind::Fast, 0.f); });
  r.add(ms, "QuickGelu", 1, 1, [](OpArgs& a) { return std::make_unique<ContribGeluOp>(GeluKind::Quick, a.attrs.f("alpha", 1.702f)); });
}

}  // namespace medquant::runtime
