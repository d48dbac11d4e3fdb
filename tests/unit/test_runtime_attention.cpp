// The fused attention operator and the kernels it is built on. Kernels, in
// every table this CPU can run: the scaled softmax equals the chain it
// replaces (scale, mask add, softmax) bit for bit, the transposed packing
// equals the plain column walk, and a GEMM tile narrower than the panel
// computes the same columns as the full one. The operator (with the table
// MEDQUANT_ISA picks) equals the unfused chain on shapes with several row
// blocks, partial panels and a per-batch mask.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "onnx/graph.h"
#include "random_floats.h"
#include "runtime/kernels/kernels.h"
#include "runtime/session.h"

namespace mq = medquant;
namespace kernels = medquant::runtime::kernels;
using medquant::runtime::Session;
using medquant::runtime::Tensor;

namespace {

TEST(RuntimeAttentionKernels, ScaledSoftmaxEqualsTheChain) {
  for (const kernels::Table* t : kernels::available())
    for (size_t n : {1, 5, 16, 17, 45, 197, 300})
      for (int variant = 0; variant < 4; ++variant) {
        const bool divide = variant & 1, masked = variant & 2;
        const size_t rows = 11, ld = n + 7;  // rows a padded stride apart, more rows than one group
        auto x = random_floats(rows * ld, static_cast<unsigned>(n), 6.f);
        auto mask = random_floats(n, 9, 2.f);
        mask[0] = -10000.f;
        if (n > 3) mask[3] = -INFINITY;
        const float s = divide ? 8.f : 0.125f;
        std::vector<float> got = x, want = x;
        t->attention_softmax(got.data(), ld, rows, n, s, divide, masked ? mask.data() : nullptr);
        for (size_t r = 0; r < rows; ++r) {
          float* row = want.data() + r * ld;
          t->scale(row, row, n, s, divide);
          if (masked)
            for (size_t j = 0; j < n; ++j) row[j] += mask[j];
          t->softmax(row, row, n);
        }
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
              << t->name << " n " << n << " variant " << variant << " at " << i << ": " << got[i] << " vs " << want[i];
      }
}

TEST(RuntimeAttentionKernels, TransposedPackingEqualsTheColumnWalk) {
  for (const kernels::Table* t : kernels::available())
    for (size_t n : {1, 13, 16, 33, 45, 197})
      for (size_t k : {1, 7, 16, 20, 64, 67}) {
        const size_t ld = k + 5, nr = t->f32_nr, panels = (n + nr - 1) / nr;
        const auto src = random_floats(n * ld, static_cast<unsigned>(n * 100 + k));
        std::vector<float> got(panels * k * nr, NAN);
        t->pack_f32_transposed(src.data(), n, k, ld, nr, got.data());
        for (size_t p = 0; p < panels; ++p)
          for (size_t kk = 0; kk < k; ++kk)
            for (size_t j = 0; j < nr; ++j) {
              const size_t col = p * nr + j;
              ASSERT_EQ(got[(p * k + kk) * nr + j], col < n ? src[col * ld + kk] : 0.f)
                  << t->name << " n " << n << " k " << k << " panel " << p << " row " << kk << " column " << j;
            }
        // The layout pack_f32 makes from the same rows.
        const auto packed = kernels::pack_f32(*t, src.data(), k, n, ld, true);
        ASSERT_EQ(std::memcmp(got.data(), packed.data.get(), got.size() * sizeof(float)), 0) << t->name;
      }
}

TEST(RuntimeAttentionKernels, NarrowTilesComputeTheFullTilesColumns) {
  for (const kernels::Table* t : kernels::available()) {
    const size_t mr = t->f32_mr, nr = t->f32_nr;
    for (size_t kc : {1, 20, 64}) {
      const auto a = random_floats(mr * kc, 1), w = random_floats(kc * nr, 2), bias = random_floats(nr, 3);
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()})
        for (size_t rows = 1; rows <= mr; ++rows) {
          std::vector<float> full(mr * nr, NAN);
          t->f32_gemm(rows, nr, kc, a.data(), kc, w.data(), full.data(), nr, b);
          for (size_t nc = 1; nc <= nr; ++nc) {
            std::vector<float> part(mr * nr, NAN);
            t->f32_gemm(rows, nc, kc, a.data(), kc, w.data(), part.data(), nr, b);
            for (size_t i = 0; i < rows; ++i)
              for (size_t j = 0; j < nc; ++j)
                ASSERT_EQ(std::memcmp(&part[i * nr + j], &full[i * nr + j], sizeof(float)), 0)
                    << t->name << " rows " << rows << " nc " << nc << " kc " << kc << " at " << i << "," << j;
          }
        }
    }
  }
}

struct AttentionShape {
  int64_t batch, t, tk, heads, d, dv;
};

// The pattern the fusion pass matches, written with the Model IR: q [B,T,H,D],
// k [B,Tk,H,D], v [B,Tk,H,Dv] through the head transposes, q k, Mul or Div by
// a constant, an optional additive mask [1 or B,1,1,Tk], softmax, x v, heads
// transposed back: [B,T,H,Dv].
std::shared_ptr<const mq::onnx::Model> attention_model(const AttentionShape& a, bool divide, int64_t mask_batch) {
  auto m = std::make_shared<mq::onnx::Model>();
  m->header.set_ir_version(8);
  m->set_opset("", 17);
  auto& g = m->graph;
  auto io = [](std::vector<::onnx::ValueInfoProto>& list, const char* name, std::vector<int64_t> dims) {
    auto& v = list.emplace_back();
    v.set_name(name);
    auto* tt = v.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(1);
    for (int64_t d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
  };
  io(g.inputs, "q", {a.batch, a.t, a.heads, a.d});
  io(g.inputs, "k", {a.batch, a.tk, a.heads, a.d});
  io(g.inputs, "v", {a.batch, a.tk, a.heads, a.dv});
  if (mask_batch) io(g.inputs, "mask", {mask_batch, 1, 1, a.tk});
  io(g.outputs, "y", {a.batch, a.t, a.heads, a.dv});
  const float scale = divide ? 8.f : 0.125f;
  g.add_initializer(mq::onnx::Tensor("scale", 1, {}, std::string(reinterpret_cast<const char*>(&scale), 4)));
  auto node = [&](const char* type, std::vector<std::string> in, const char* out, std::vector<int64_t> perm = {}) {
    auto& n = g.nodes.emplace_back(mq::onnx::make_node(type, std::move(in), {out}, out));
    if (perm.empty()) return;
    auto& attr = n.attributes.emplace_back();
    attr.set_name("perm");
    attr.set_type(::onnx::AttributeProto::INTS);
    for (int64_t p : perm) attr.add_ints(p);
  };
  node("Transpose", {"q"}, "qt", {0, 2, 1, 3});
  node("Transpose", {"k"}, "kt", {0, 2, 3, 1});
  node("Transpose", {"v"}, "vt", {0, 2, 1, 3});
  node("MatMul", {"qt", "kt"}, "s0");
  node(divide ? "Div" : "Mul", {"s0", "scale"}, "s1");
  if (mask_batch) node("Add", {"s1", "mask"}, "s2");
  node("Softmax", {mask_batch ? "s2" : "s1"}, "p");
  node("MatMul", {"p", "vt"}, "o");
  node("Transpose", {"o"}, "y", {0, 2, 1, 3});
  return m;
}

TEST(RuntimeAttention, FusedEqualsTheUnfusedChain) {
  auto random_tensor = [](std::vector<int64_t> shape, unsigned seed) {
    Tensor t(1, shape);
    auto v = random_floats(static_cast<size_t>(t.size()), seed, 2.f);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  };
  // ViT-B/16's 197 tokens (several row blocks, a last key panel of 5), and
  // odd sizes: a partial output panel (dv 40), T != Tk, batch 2.
  for (const AttentionShape& a : {AttentionShape{1, 197, 197, 3, 64, 64}, AttentionShape{2, 30, 45, 3, 20, 40},
                                  AttentionShape{2, 50, 7, 2, 8, 5}})
    for (int variant = 0; variant < 6; ++variant) {
      const bool divide = variant & 1;
      const int64_t mask_batch = variant / 2 == 0 ? 0 : variant / 2 == 1 ? 1 : a.batch;
      const auto model = attention_model(a, divide, mask_batch);
      std::vector<std::pair<std::string, Tensor>> in{{"q", random_tensor({a.batch, a.t, a.heads, a.d}, 21)},
                                                     {"k", random_tensor({a.batch, a.tk, a.heads, a.d}, 22)},
                                                     {"v", random_tensor({a.batch, a.tk, a.heads, a.dv}, 23)}};
      if (mask_batch) {
        Tensor mask = random_tensor({mask_batch, 1, 1, a.tk}, 24);
        mask.data<float>()[a.tk / 2] = -10000.f;  // masked-out keys
        mask.data<float>()[mask.size() - 1] = -INFINITY;
        in.emplace_back("mask", mask);
      }
      for (size_t threads : {1, 2}) {
        Session fused = Session::from_model(model, {.threads = threads});
        Session plain = Session::from_model(model, {.threads = threads, .fuse = false});
        ASSERT_EQ(fused.stats().fusions, 1u);
        const auto x = fused.run(in), y = plain.run(in);
        ASSERT_EQ(x[0].shape(), (std::vector<int64_t>{a.batch, a.t, a.heads, a.dv}));
        ASSERT_EQ(x[0].shape(), y[0].shape());
        for (int64_t i = 0; i < x[0].size(); ++i)
          ASSERT_EQ(std::memcmp(x[0].data<float>() + i, y[0].data<float>() + i, sizeof(float)), 0)
              << fused.stats().kernels << " T " << a.t << " Tk " << a.tk << " variant " << variant << " threads "
              << threads << " at " << i << ": " << x[0].data<float>()[i] << " vs " << y[0].data<float>()[i];
      }
    }
}

}  // namespace
