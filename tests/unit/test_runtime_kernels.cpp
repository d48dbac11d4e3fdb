// The runtime's fast kernels against the plain ones (every table this CPU can
// run, odd sizes and tails), the thread pool, .npy files, and the loader on
// broken and fuzzed models (clear errors, never a crash).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/npy.h"
#include "random_floats.h"
#include "runtime/kernels/kernels.h"
#include "runtime/parallel.h"
#include "runtime/session.h"

namespace mq = medquant;
namespace kernels = medquant::runtime::kernels;
using medquant::runtime::Parallel;
using medquant::runtime::Session;
using medquant::runtime::Tensor;

namespace {

double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }

struct Dims {
  size_t m, n, k;
};
// {197, 300, 40}: enough column panels that 2 threads take whole panels (run_tiles).
const Dims kSizes[] = {{1, 1, 1}, {5, 7, 3}, {13, 33, 17}, {12, 32, 64}, {25, 65, 129}, {197, 100, 64}, {3, 300, 768}, {197, 300, 40}};

TEST(RuntimeKernels, F32GemmMatchesDoubleReference) {
  Parallel pool(2);
  for (const kernels::Table* t : kernels::available())
    for (const Dims& d : kSizes)
      for (int variant = 0; variant < 3; ++variant) {
        auto a = random_floats(d.m * d.k, 1), b = random_floats(d.k * d.n, 2), bias = random_floats(d.n, 3);
        auto packed = kernels::pack_f32(*t, b.data(), d.k, d.n, d.n);
        if (variant > 0) packed.bias = bias;
        const auto act = variant == 2 ? kernels::Activation::Gelu : kernels::Activation::None;
        std::vector<float> c(d.m * d.n, -1.f);
        kernels::f32_gemm(*t, d.m, a.data(), d.k, packed, c.data(), d.n, act, &pool);
        for (size_t i = 0; i < d.m; ++i)
          for (size_t j = 0; j < d.n; ++j) {
            double s = variant > 0 ? bias[j] : 0;
            for (size_t q = 0; q < d.k; ++q) s += static_cast<double>(a[i * d.k + q]) * b[q * d.n + j];
            if (variant == 2) s = gelu_ref(s);
            ASSERT_NEAR(c[i * d.n + j], s, 1e-4 * (1 + std::fabs(s)) * std::sqrt(static_cast<double>(d.k)))
                << t->name << " " << d.m << "x" << d.n << "x" << d.k << " at " << i << "," << j;
          }
        // The unpacked path (transposed B too).
        std::vector<float> bt(d.k * d.n);
        for (size_t q = 0; q < d.k; ++q)
          for (size_t j = 0; j < d.n; ++j) bt[j * d.k + q] = b[q * d.n + j];
        std::vector<float> c2(d.m * d.n), c3(d.m * d.n);
        kernels::f32_gemm_unpacked(*t, d.m, d.n, d.k, a.data(), d.k, b.data(), d.n, false, c2.data(), d.n);
        kernels::f32_gemm_unpacked(*t, d.m, d.n, d.k, a.data(), d.k, bt.data(), d.k, true, c3.data(), d.n);
        for (size_t i = 0; i < d.m * d.n; ++i) {
          double s = 0;
          const size_t r = i / d.n, col = i % d.n;
          for (size_t q = 0; q < d.k; ++q) s += static_cast<double>(a[r * d.k + q]) * b[q * d.n + col];
          ASSERT_NEAR(c2[i], s, 1e-4 * (1 + std::fabs(s)) * std::sqrt(static_cast<double>(d.k))) << t->name;
          ASSERT_EQ(c2[i], c3[i]) << t->name;
        }
      }
}

TEST(RuntimeKernels, Q8GemmIsExact) {
  Parallel pool(2);
  std::mt19937 rng(7);
  for (const kernels::Table* t : kernels::available())
    for (const Dims& d : kSizes)
      for (int variant = 0; variant < 4; ++variant) {
        const bool unsigned_w = variant & 1, per_column = variant & 2;
        std::vector<uint8_t> a(d.m * d.k), w(d.k * d.n);
        for (auto& v : a) v = static_cast<uint8_t>(rng());
        for (auto& v : w) v = static_cast<uint8_t>(rng());
        if (!unsigned_w && variant == 0) w[0] = 0x80;  // -128
        std::vector<int32_t> zp(per_column ? d.n : 1);
        for (auto& z : zp) z = unsigned_w ? static_cast<int32_t>(rng() % 256) : static_cast<int32_t>(rng() % 256) - 128;
        const int32_t a_zp = static_cast<int32_t>(rng() % 256);
        auto packed = kernels::pack_q8(*t, w.data(), d.k, d.n, unsigned_w, zp.data(), zp.size());
        // A readable up to kp bytes per row.
        std::vector<uint8_t> ap(d.m * packed.kp, static_cast<uint8_t>(a_zp));
        for (size_t i = 0; i < d.m; ++i) std::memcpy(ap.data() + i * packed.kp, a.data() + i * d.k, d.k);
        std::vector<int32_t> c(d.m * d.n);
        kernels::Q8Output out;
        out.i32 = c.data();
        out.ldc = d.n;
        kernels::q8_gemm(*t, d.m, ap.data(), packed.kp, a_zp, packed, out, &pool);
        std::vector<float> f(d.m * d.n), scale = random_floats(d.n, 9, 0.01f), bias = random_floats(d.n, 10);
        out = {};
        out.f32 = f.data();
        out.ldc = d.n;
        out.scale = scale.data();
        out.scale_per_column = true;
        out.bias = bias.data();
        kernels::q8_gemm(*t, d.m, ap.data(), packed.kp, a_zp, packed, out, &pool);
        // The same epilogue with GELU in it (the table's vector erf).
        std::vector<float> g(d.m * d.n);
        out.f32 = g.data();
        out.act = kernels::Activation::Gelu;
        kernels::q8_gemm(*t, d.m, ap.data(), packed.kp, a_zp, packed, out, &pool);
        for (size_t i = 0; i < d.m; ++i)
          for (size_t j = 0; j < d.n; ++j) {
            int64_t s = 0;
            const int32_t zw = zp[per_column ? j : 0];
            for (size_t q = 0; q < d.k; ++q) {
              const int32_t wv = unsigned_w ? w[q * d.n + j] : static_cast<int8_t>(w[q * d.n + j]);
              s += static_cast<int64_t>(a[i * d.k + q] - a_zp) * (wv - zw);
            }
            ASSERT_EQ(c[i * d.n + j], s) << t->name << " variant " << variant << " " << d.m << "x" << d.n << "x" << d.k;
            ASSERT_EQ(f[i * d.n + j], static_cast<float>(s) * scale[j] + bias[j]) << t->name;
            const double gr = gelu_ref(f[i * d.n + j]);
            ASSERT_NEAR(g[i * d.n + j], gr, 1e-6 * (1 + std::fabs(gr))) << t->name << " GELU epilogue";
          }
      }
}

TEST(RuntimeKernels, RowFunctionsMatchPortable) {
  const kernels::Table& ref = kernels::portable_table();
  for (const kernels::Table* t : kernels::available())
    for (size_t n : {1, 3, 7, 8, 15, 16, 17, 31, 64, 197, 768, 1000}) {
      auto x = random_floats(n, static_cast<unsigned>(n), 3.f);
      x[0] = 0.f;
      if (n > 2) x[1] = 12.f, x[2] = -12.f;
      std::vector<float> y(n), r(n);
      t->exp(x.data(), y.data(), n);
      ref.exp(x.data(), r.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], r[i], 3e-7 * std::fabs(r[i])) << t->name << " exp " << x[i];
      t->erf(x.data(), y.data(), n);
      ref.erf(x.data(), r.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], r[i], 2e-7 + 1e-6 * std::fabs(r[i])) << t->name << " erf " << x[i];
      t->gelu(x.data(), y.data(), n);
      ref.gelu(x.data(), r.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], r[i], 1e-6 * (1 + std::fabs(r[i]))) << t->name << " gelu " << x[i];
      t->scale(x.data(), y.data(), n, 0.125f, false);
      ref.scale(x.data(), r.data(), n, 0.125f, false);
      ASSERT_EQ(y, r) << t->name << " scale";
      t->scale(x.data(), y.data(), n, 3.f, true);
      ref.scale(x.data(), r.data(), n, 3.f, true);
      ASSERT_EQ(y, r) << t->name << " scale (divide)";
      t->softmax(x.data(), y.data(), n);
      ref.softmax(x.data(), r.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], r[i], 4e-6 * r[i] + 1e-9) << t->name << " softmax";
      auto scale = random_floats(n, 5), bias = random_floats(n, 6);
      t->layernorm(x.data(), y.data(), n, scale.data(), bias.data(), 1e-5f);
      ref.layernorm(x.data(), r.data(), n, scale.data(), bias.data(), 1e-5f);
      for (size_t i = 0; i < n; ++i) ASSERT_NEAR(y[i], r[i], 1e-5 * (1 + std::fabs(r[i]))) << t->name << " layernorm";
      float mn, mx, rmn, rmx;
      t->minmax(x.data(), n, &mn, &mx);
      ref.minmax(x.data(), n, &rmn, &rmx);
      ASSERT_EQ(mn, rmn);
      ASSERT_EQ(mx, rmx);
      // Ties (x / scale = k + 0.5) round half to even; NaN saturates low.
      for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>(i % 40) - 20) * 0.5f;
      if (n > 3) x[3] = std::nanf("");
      std::vector<uint8_t> q(n), rq(n);
      t->quantize_u8(x.data(), q.data(), n, 0.25f, 37);
      ref.quantize_u8(x.data(), rq.data(), n, 0.25f, 37);
      ASSERT_EQ(q, rq) << t->name;
      t->quantize_u8(x.data(), q.data(), n, 1.0f, 128);
      ref.quantize_u8(x.data(), rq.data(), n, 1.0f, 128);
      ASSERT_EQ(q, rq) << t->name;
    }
}

TEST(RuntimeKernels, ErfAndExpAreAccurate) {
  for (const kernels::Table* t : kernels::available()) {
    std::vector<float> x, y;
    for (float v = -10.f; v <= 10.f; v += 0.001953125f) x.push_back(v);
    y.resize(x.size());
    t->erf(x.data(), y.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], std::erf(static_cast<double>(x[i])), 2e-7) << t->name << " " << x[i];
    t->exp(x.data(), y.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i)
      ASSERT_NEAR(y[i], std::exp(static_cast<double>(x[i])), 3e-7 * std::exp(static_cast<double>(x[i]))) << t->name;
  }
}

TEST(RuntimeParallel, RunsEveryTaskAndRethrows) {
  Parallel pool(3);
  for (int round = 0; round < 200; ++round) {
    std::vector<int> hit(97, 0);
    pool.run(hit.size(), [&](size_t i) { hit[i]++; });
    for (int h : hit) ASSERT_EQ(h, 1);
  }
  EXPECT_THROW(pool.run(50, [](size_t i) { if (i == 17) mq::fail("task {}", i); }), mq::Error);
  std::atomic<int> n{0};
  pool.run(10, [&](size_t) { n++; });
  EXPECT_EQ(n.load(), 10);
}

TEST(RuntimeParallel, RangesCoverEveryIndexOnce) {
  for (size_t threads : {1, 2, 3}) {
    Parallel pool(threads);
    for (size_t n : {0, 1, 5, 7, 100, 151296})
      for (size_t min_chunk : {0, 1, 3, 16384}) {
        std::vector<int> hit(n, 0);
        std::atomic<size_t> calls{0};
        pool.ranges(n, min_chunk, [&](size_t b, size_t e) {
          ASSERT_LT(b, e);
          for (size_t i = b; i < e; ++i) hit[i]++;
          calls++;
        });
        for (int h : hit) ASSERT_EQ(h, 1) << threads << " " << n << " " << min_chunk;
        if (n > 0 && calls > threads) EXPECT_EQ(calls % threads, 0u) << "uneven split " << n << " " << min_chunk;
      }
  }
}

TEST(RuntimeParallel, NestedRegionsRunAndIdleWorkersComeBack) {
  for (size_t threads : {1, 2, 3}) {
    Parallel pool(threads);
    for (int round = 0; round < 50; ++round) {
      // A task that itself runs a region (an op calling a kernel that uses the pool).
      std::vector<std::atomic<int>> hit(8 * 16);
      pool.run(8, [&](size_t i) { pool.run(16, [&](size_t j) { hit[i * 16 + j]++; }); });
      for (auto& h : hit) ASSERT_EQ(h.load(), 1);
    }
    EXPECT_THROW(pool.run(40, [](size_t i) { if (i % 7 == 3) throw std::runtime_error("task"); }), std::runtime_error);
    // Past the spin and yield phases the workers sleep; the next regions wake them.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (int round = 0; round < 3; ++round) {
      std::atomic<int> n{0};
      pool.run(33, [&](size_t) { n++; });
      EXPECT_EQ(n.load(), 33);
    }
  }
}

TEST(RuntimeNpy, RoundTripsAndRejectsGarbage) {
  mq::core::NpyArray a;
  a.dtype = mq::core::DType::F32;
  a.shape = {2, 3};
  a.data.resize(24);
  for (int i = 0; i < 6; ++i) {
    float v = static_cast<float>(i) * 1.5f;
    std::memcpy(a.data.data() + 4 * i, &v, 4);
  }
  const std::string bytes = mq::core::npy_bytes(a);
  EXPECT_EQ(bytes.size() % 64, 24u % 64);  // data starts 64-byte aligned
  auto b = mq::core::parse_npy(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mem");
  EXPECT_EQ(b.shape, a.shape);
  EXPECT_EQ(b.data, a.data);
  EXPECT_THROW(mq::core::parse_npy(reinterpret_cast<const uint8_t*>("hello world"), 11, "mem"), mq::Error);
  for (size_t cut = 0; cut < bytes.size(); cut += 7)
    EXPECT_THROW(mq::core::parse_npy(reinterpret_cast<const uint8_t*>(bytes.data()), cut, "mem"), mq::Error);
}

// ---- models built in C++ for the loader tests

// An opset-17 model with an empty graph named `graph_name`.
::onnx::ModelProto empty_model(const char* graph_name) {
  ::onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(17);
  m.mutable_graph()->set_name(graph_name);
  return m;
}

// A float32 graph input or output of a fixed shape.
void add_io(::onnx::ValueInfoProto* v, const char* name, std::vector<int64_t> dims) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(1);
  for (int64_t d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
}

::onnx::ModelProto small_model() {
  ::onnx::ModelProto m = empty_model("g");
  auto* g = m.mutable_graph();
  add_io(g->add_input(), "x", {2, 4});
  add_io(g->add_output(), "y", {2, 3});
  auto* w = g->add_initializer();
  w->set_name("w");
  w->set_data_type(1);
  w->add_dims(4);
  w->add_dims(3);
  for (int i = 0; i < 12; ++i) w->add_float_data(0.1f * static_cast<float>(i));
  auto* shape = g->add_initializer();
  shape->set_name("shape");
  shape->set_data_type(7);
  shape->add_dims(2);
  shape->add_int64_data(2);
  shape->add_int64_data(-1);
  auto node = [&](const char* type, std::vector<const char*> in, std::vector<const char*> out) {
    auto* n = g->add_node();
    n->set_op_type(type);
    for (auto* s : in) n->add_input(s);
    for (auto* s : out) n->add_output(s);
    return n;
  };
  node("MatMul", {"x", "w"}, {"h"});
  node("Reshape", {"h", "shape"}, {"r"});
  auto* sm = node("Softmax", {"r"}, {"y"});
  auto* a = sm->add_attribute();
  a->set_name("axis");
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(-1);
  return m;
}

Tensor ones(std::vector<int64_t> shape) {
  Tensor t(1, shape);
  for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = 1.f;
  return t;
}

std::string error_of(const ::onnx::ModelProto& m) {
  const std::string bytes = m.SerializeAsString();
  try {
    Session s = Session::load_from_memory({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    s.run({{"x", ones({2, 4})}});
  } catch (const mq::Error& e) {
    return e.what();
  }
  return "";
}

TEST(RuntimeLoader, RunsFromMemory) {
  const std::string bytes = small_model().SerializeAsString();
  Session s = Session::load_from_memory({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, {.threads = 1});
  auto out = s.run({{"x", ones({2, 4})}});
  ASSERT_EQ(out[0].shape(), (std::vector<int64_t>{2, 3}));
  float sum = 0;
  for (int i = 0; i < 3; ++i) sum += out[0].data<float>()[i];
  EXPECT_NEAR(sum, 1.f, 1e-6);
  EXPECT_THROW(s.run({{"x", ones({3, 4})}}), mq::Error);   // declared dims
  EXPECT_THROW(s.run({{"y", ones({2, 4})}}), mq::Error);   // no such input
  EXPECT_THROW(s.run({}), mq::Error);                      // missing input
}

// Sessions of different thread counts running at once (each its own pool) give
// the single-thread results bit for bit: a residual-style Add long enough to be
// split, DynamicQuantizeLinear, LayerNormalization, a MatMul wide enough for
// whole-panel tasks, reductions over the last axis (parallel rows) and the
// first (the broadcast walk), and Pow(x, 2).
TEST(RuntimeParallel, SessionsOfDifferentThreadCountsAgree) {
  ::onnx::ModelProto m = empty_model("g");
  auto* g = m.mutable_graph();
  const int64_t rows = 197, cols = 300;
  add_io(g->add_input(), "a", {rows, cols});
  add_io(g->add_input(), "b", {rows, cols});
  add_io(g->add_output(), "s", {rows, cols});
  add_io(g->add_output(), "y", {rows, 400});
  add_io(g->add_output(), "ln", {rows, cols});
  add_io(g->add_output(), "q", {rows, cols});
  g->mutable_output(3)->mutable_type()->mutable_tensor_type()->set_elem_type(2);  // uint8
  add_io(g->add_output(), "qs", {});
  add_io(g->add_output(), "qz", {});
  g->mutable_output(5)->mutable_type()->mutable_tensor_type()->set_elem_type(2);
  add_io(g->add_output(), "rm", {rows, 1});  // ReduceMean over the last axis (contiguous rows)
  add_io(g->add_output(), "rs", {1, cols});  // ReduceSum over the first (the broadcast walk)
  add_io(g->add_output(), "p", {rows, cols});  // Pow(s, 2)
  auto init = [&](const char* name, std::vector<int64_t> dims, unsigned seed) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(1);
    int64_t n = 1;
    for (int64_t d : dims) t->add_dims(d), n *= d;
    for (float v : random_floats(static_cast<size_t>(n), seed)) t->add_float_data(v);
  };
  init("w", {cols, 400}, 11);  // enough weight panels for whole-panel tasks at 2 and 3 threads
  init("gamma", {cols}, 12);
  auto node = [&](const char* type, std::vector<const char*> in, std::vector<const char*> out) {
    auto* n = g->add_node();
    n->set_op_type(type);
    for (auto* s : in) n->add_input(s);
    for (auto* s : out) n->add_output(s);
  };
  node("Add", {"a", "b"}, {"s"});
  node("MatMul", {"s", "w"}, {"y"});
  node("LayerNormalization", {"s", "gamma"}, {"ln"});
  node("DynamicQuantizeLinear", {"s"}, {"q", "qs", "qz"});
  node("ReduceMean", {"s"}, {"rm"});  // opset 17: axes is an attribute
  auto* at = g->mutable_node(g->node_size() - 1)->add_attribute();
  at->set_name("axes");
  at->set_type(::onnx::AttributeProto::INTS);
  at->add_ints(-1);
  auto* axes = g->add_initializer();  // ReduceSum (opset 13+): axes is an input
  axes->set_name("axes0");
  axes->set_data_type(7);
  axes->add_dims(1);
  axes->add_int64_data(0);
  node("ReduceSum", {"s", "axes0"}, {"rs"});
  auto* two = g->add_initializer();
  two->set_name("two");
  two->set_data_type(1);
  two->add_float_data(2.f);
  node("Pow", {"s", "two"}, {"p"});
  const std::string bytes = m.SerializeAsString();
  const std::span<const uint8_t> span{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
  auto input = [&](unsigned seed) {
    Tensor t(1, {rows, cols});
    auto v = random_floats(static_cast<size_t>(rows * cols), seed);
    std::memcpy(t.data<float>(), v.data(), v.size() * sizeof(float));
    return t;
  };
  Tensor a = input(1), b = input(2);
  // x^2 rounds to the nearest subnormal, ties to even, as x * x and ONNX Runtime
  // do (0x1.9p-146 exactly; powf gives 0x1.ap-146).
  a.data<float>()[0] = 0x1.4p-73f;
  b.data<float>()[0] = 0.f;
  auto sum_sq = [](const Tensor& t, int64_t i) { const float v = t.data<float>()[i]; return v * v; };
  Session ref_session = Session::load_from_memory(span, {.threads = 1});
  const std::vector<Tensor> ref = ref_session.run({{"a", a}, {"b", b}});
  for (int64_t i = 0; i < rows * cols; ++i)
    ASSERT_EQ(ref[0].data<float>()[i], a.data<float>()[i] + b.data<float>()[i]);
  EXPECT_EQ(ref[8].data<float>()[0], 0x1.8p-146f);
  for (int64_t i = 0; i < rows * cols; ++i) ASSERT_EQ(ref[8].data<float>()[i], sum_sq(ref[0], i));
  // Reductions accumulate in double in input order.
  const float* sum = ref[0].data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (int64_t c = 0; c < cols; ++c) acc += sum[r * cols + c];
    ASSERT_EQ(ref[6].data<float>()[r], static_cast<float>(acc / cols)) << r;
  }
  for (int64_t c = 0; c < cols; ++c) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += sum[r * cols + c];
    ASSERT_EQ(ref[7].data<float>()[c], static_cast<float>(acc)) << c;
  }
  auto same = [](const Tensor& x, const Tensor& y) {
    return x.shape() == y.shape() && x.type() == y.type() && std::memcmp(x.raw(), y.raw(), x.bytes()) == 0;
  };
  std::vector<std::thread> runners;
  std::vector<int> mismatches(3, 0);
  for (size_t t = 0; t < 3; ++t)
    runners.emplace_back([&, t] {
      Session s = Session::load_from_memory(span, {.threads = t + 1});
      for (int round = 0; round < 20; ++round) {
        const std::vector<Tensor> out = s.run({{"a", a}, {"b", b}});
        for (size_t o = 0; o < ref.size(); ++o) mismatches[t] += !same(out[o], ref[o]);
      }
    });
  for (auto& r : runners) r.join();
  for (size_t t = 0; t < 3; ++t) EXPECT_EQ(mismatches[t], 0) << (t + 1) << " threads";
}

TEST(RuntimeLoader, BrokenModelsAreClearErrors) {
  {
    auto m = small_model();
    m.mutable_graph()->mutable_node(0)->set_op_type("FancyOp");
    EXPECT_NE(error_of(m).find("FancyOp"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();
    auto* a = m.mutable_graph()->mutable_node(2)->add_attribute();
    a->set_name("bogus");
    a->set_type(::onnx::AttributeProto::INT);
    EXPECT_NE(error_of(m).find("bogus"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();
    m.mutable_graph()->mutable_node(0)->set_input(0, "missing");
    EXPECT_NE(error_of(m).find("missing"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();  // a cycle
    m.mutable_graph()->mutable_node(0)->set_input(0, "r");
    EXPECT_NE(error_of(m).find("cycle"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();  // shape mismatch
    m.mutable_graph()->mutable_initializer(0)->set_dims(0, 5);
    for (int i = 0; i < 3; ++i) m.mutable_graph()->mutable_initializer(0)->add_float_data(0.f);
    EXPECT_NE(error_of(m).find("inner dimensions"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();  // absurd dims
    auto* s = m.mutable_graph()->mutable_initializer(1);
    s->set_int64_data(1, int64_t{1} << 40);
    EXPECT_FALSE(error_of(m).empty());
  }
  {
    auto m = small_model();  // an initializer shorter than its shape
    m.mutable_graph()->mutable_initializer(0)->mutable_float_data()->RemoveLast();
    EXPECT_FALSE(error_of(m).empty());
  }
  {
    auto m = small_model();  // fewer inputs than the op's schema requires (found by fuzz_runtime_session)
    m.mutable_graph()->mutable_node(0)->mutable_input()->RemoveLast();
    EXPECT_NE(error_of(m).find("has 1 inputs, MatMul takes 2"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();  // a required input left out by an empty name
    m.mutable_graph()->mutable_node(1)->set_input(1, "");
    EXPECT_NE(error_of(m).find("required input 1 ('shape') is missing"), std::string::npos) << error_of(m);
  }
  {
    auto m = small_model();  // an extra output
    m.mutable_graph()->mutable_node(2)->add_output("extra");
    EXPECT_NE(error_of(m).find("has 2 outputs, Softmax takes 1"), std::string::npos) << error_of(m);
  }
}

TEST(RuntimeLoader, FuzzedModelsNeverCrash) {
  const std::string good = small_model().SerializeAsString();
  std::mt19937 rng(1234);
  int loaded = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      const size_t at = rng() % b.size();
      switch (rng() % 3) {
        case 0: b[at] = static_cast<char>(rng()); break;
        case 1: b.erase(at, 1 + rng() % 4); break;
        default: b.insert(at, 1, static_cast<char>(rng())); break;
      }
      if (b.empty()) b = "x";
    }
    try {
      Session s = Session::load_from_memory({reinterpret_cast<const uint8_t*>(b.data()), b.size()}, {.threads = 1});
      ++loaded;
      std::vector<std::pair<std::string, Tensor>> feeds;
      for (const auto& in : s.inputs()) {
        std::vector<int64_t> shape;
        for (int64_t d : in.shape) shape.push_back(d < 0 ? 1 : std::min<int64_t>(d, 64));
        if (in.type != 1) continue;
        feeds.emplace_back(in.name, ones(shape));
      }
      s.run(feeds);
    } catch (const mq::Error&) {
    }
  }
  EXPECT_GT(loaded, 0);
}


// ---- fused attention equals the unfused chain

// q [1,5,2,4], k [1,7,2,4], v [1,7,2,3] through the head transposes, q k,
// the scale (Mul or Div, by an initializer or by a graph input, which must
// not fuse), an optional additive mask [1,1,1,7], softmax and x v, heads
// transposed back: [1,5,2,3].
::onnx::ModelProto attention_model(bool divide, bool constant_scale, bool masked) {
  ::onnx::ModelProto m = empty_model("attention");
  auto* g = m.mutable_graph();
  add_io(g->add_input(), "q", {1, 5, 2, 4});
  add_io(g->add_input(), "k", {1, 7, 2, 4});
  add_io(g->add_input(), "v", {1, 7, 2, 3});
  add_io(g->add_output(), "y", {1, 5, 2, 3});
  if (masked) add_io(g->add_input(), "mask", {1, 1, 1, 7});
  if (constant_scale) {
    auto* c = g->add_initializer();
    c->set_name("scale");
    c->set_data_type(1);
    c->add_float_data(divide ? 2.f : 0.5f);
  } else {
    add_io(g->add_input(), "scale", {});
  }
  auto node = [&](const char* type, std::vector<const char*> in, const char* out) {
    auto* n = g->add_node();
    n->set_op_type(type);
    for (auto* s : in) n->add_input(s);
    n->add_output(out);
    return n;
  };
  auto perm = [](::onnx::NodeProto* n, std::vector<int64_t> p) {
    auto* a = n->add_attribute();
    a->set_name("perm");
    a->set_type(::onnx::AttributeProto::INTS);
    for (int64_t d : p) a->add_ints(d);
  };
  perm(node("Transpose", {"q"}, "qt"), {0, 2, 1, 3});
  perm(node("Transpose", {"k"}, "kt"), {0, 2, 3, 1});
  perm(node("Transpose", {"v"}, "vt"), {0, 2, 1, 3});
  node("MatMul", {"qt", "kt"}, "s0");
  node(divide ? "Div" : "Mul", {"s0", "scale"}, "s1");
  if (masked) node("Add", {"s1", "mask"}, "s2");
  auto* sm = node("Softmax", {masked ? "s2" : "s1"}, "p");
  auto* a = sm->add_attribute();
  a->set_name("axis");
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(-1);
  node("MatMul", {"p", "vt"}, "o");
  perm(node("Transpose", {"o"}, "y"), {0, 2, 1, 3});
  return m;
}

TEST(RuntimeFusion, AttentionEqualsTheUnfusedChain) {
  auto random_tensor = [](std::vector<int64_t> shape, unsigned seed) {
    Tensor t(1, shape);
    auto v = random_floats(static_cast<size_t>(t.size()), seed, 2.f);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
  };
  for (bool divide : {false, true})
    for (bool constant_scale : {true, false})
    for (bool masked : {false, true}) {
      const std::string bytes = attention_model(divide, constant_scale, masked).SerializeAsString();
      const std::span<const uint8_t> span{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
      std::vector<std::pair<std::string, Tensor>> in{
          {"q", random_tensor({1, 5, 2, 4}, 21)}, {"k", random_tensor({1, 7, 2, 4}, 22)}, {"v", random_tensor({1, 7, 2, 3}, 23)}};
      if (masked) {
        Tensor mask = random_tensor({1, 1, 1, 7}, 24);
        mask.data<float>()[3] = -10000.f;  // a masked-out key
        in.emplace_back("mask", mask);
      }
      if (!constant_scale) {
        Tensor s(1, {});
        s.data<float>()[0] = divide ? 2.f : 0.5f;
        in.emplace_back("scale", s);
      }
      Session fused = Session::load_from_memory(span, {.threads = 2});
      Session plain = Session::load_from_memory(span, {.threads = 2, .fuse = false});
      const auto a = fused.run(in), b = plain.run(in);
      EXPECT_EQ(fused.stats().fusions, constant_scale ? 1u : 0u) << divide;
      ASSERT_EQ(a[0].shape(), (std::vector<int64_t>{1, 5, 2, 3}));
      ASSERT_EQ(a[0].shape(), b[0].shape());
      for (int64_t i = 0; i < a[0].size(); ++i)
        ASSERT_EQ(a[0].data<float>()[i], b[0].data<float>()[i]) << "divide " << divide << " mask " << masked << " at " << i;
    }
}

}  // namespace
