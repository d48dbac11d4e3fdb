// medquant::onnx against ONNX's own reference data (Debian libonnx-testdata:
// backend node tests with model.onnx and input/output TensorProtos computed
// by ONNX's reference implementation) and the protobuf library itself.
#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "onnx/model_io.h"
#include "onnx/passes.h"
#include "onnx/calibrate.h"
#include "onnx/quantize_dynamic.h"

namespace fs = std::filesystem;
using namespace medquant;
using namespace medquant::onnx;
using ::testing::HasSubstr;

namespace {

const fs::path kNodeTests = "/usr/share/libonnx-testdata/data/node";

::onnx::TensorProto read_tensor(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  ::onnx::TensorProto t;
  EXPECT_TRUE(t.ParseFromIstream(&in)) << p;
  return t;
}

Tensor read_data(const std::string& test, const std::string& file) {
  auto tp = read_tensor(kNodeTests / test / "test_data_set_0" / file);
  return tensor_from_proto(tp, file);
}

std::vector<float> floats(const Tensor& t) { return t.to_floats(); }

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("medquant_test_onnx_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

#define REQUIRE_TESTDATA()                                                    \
  if (!fs::exists(kNodeTests)) GTEST_SKIP() << "libonnx-testdata not installed"

}  // namespace

// QuantizeLinear (ONNX reference): y = saturate(round_half_even(x / scale) + zp).
TEST(OnnxQuantize, QuantizeLinearMatchesOnnxReference) {
  REQUIRE_TESTDATA();
  Tensor x = read_data("test_quantizelinear", "input_0.pb");
  Tensor scale = read_data("test_quantizelinear", "input_1.pb");
  Tensor zp = read_data("test_quantizelinear", "input_2.pb");
  Tensor y = read_data("test_quantizelinear", "output_0.pb");
  ASSERT_EQ(zp.type, kUint8);
  const auto xs = floats(x);
  std::vector<uint8_t> out(xs.size());
  quantize_with_params(xs.data(), xs.size(), {floats(scale)[0], zp.bytes()[0]}, QuantType::QUInt8,
                       out.data());
  EXPECT_EQ(std::vector<uint8_t>(y.bytes().begin(), y.bytes().end()), out);
}

// DynamicQuantizeLinear (ONNX reference) is the uint8 asymmetric weight rule:
// range widened to include 0, scale = range / 255, zp = round(-rmin / scale).
TEST(OnnxQuantize, AsymmetricUint8MatchesDynamicQuantizeLinearReference) {
  REQUIRE_TESTDATA();
  for (const char* test : {"test_dynamicquantizelinear", "test_dynamicquantizelinear_max_adjusted",
                           "test_dynamicquantizelinear_min_adjusted"}) {
    SCOPED_TRACE(test);
    const auto xs = floats(read_data(test, "input_0.pb"));
    Tensor y = read_data(test, "output_0.pb");
    const float ref_scale = floats(read_data(test, "output_1.pb"))[0];
    const int ref_zp = read_data(test, "output_2.pb").bytes()[0];
    std::vector<uint8_t> out(xs.size());
    QuantParams p = quantize_values(xs.data(), xs.size(), QuantType::QUInt8, false, false, out.data());
    // The reference divides in float32, ORT's weight path in float64: same to the last bit or one ulp.
    EXPECT_FLOAT_EQ(ref_scale, p.scale);
    EXPECT_EQ(ref_zp, p.zero_point);
    EXPECT_EQ(std::vector<uint8_t>(y.bytes().begin(), y.bytes().end()), out);
  }
}

// Symmetric int8: zero point 0 and every value within [-127, 127]; the
// largest magnitude maps to +-127 exactly (the DequantizeLinear round trip
// is within half a step).
TEST(OnnxQuantize, SymmetricInt8RoundTripsThroughDequantizeLinear) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.3f);
  std::vector<float> xs(4096);
  for (auto& v : xs) v = dist(rng);
  for (bool reduce : {false, true}) {
    std::vector<uint8_t> out(xs.size());
    QuantParams p = quantize_values(xs.data(), xs.size(), QuantType::QInt8, true, reduce, out.data());
    EXPECT_EQ(p.zero_point, 0);
    const int limit = reduce ? 64 : 127;
    int peak = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const int q = static_cast<int8_t>(out[i]);
      ASSERT_LE(std::abs(q), limit);
      peak = std::max(peak, std::abs(q));
      EXPECT_LE(std::fabs(static_cast<float>(q) * p.scale - xs[i]), 0.5f * p.scale * 1.0001f);
    }
    EXPECT_EQ(peak, limit);
  }
}

TEST(OnnxQuantize, ConstantZeroTensorGetsScaleOne) {
  std::vector<float> zeros(16, 0.0f);
  std::vector<uint8_t> out(16);
  QuantParams p = quantize_values(zeros.data(), zeros.size(), QuantType::QUInt8, false, false, out.data());
  EXPECT_EQ(p.scale, 1.0f);  // compute_scale_zp's "scale < tiny" rule
  EXPECT_EQ(p.zero_point, 0);
}

// Every backend node-test model (including If/Loop subgraphs) loads, and
// writes back the same graph the protobuf library parses from the file.
TEST(OnnxModelIo, NodeTestModelsRoundTrip) {
  REQUIRE_TESTDATA();
  size_t models = 0;
  for (const auto& dir : fs::directory_iterator(kNodeTests)) {
    const fs::path file = dir.path() / "model.onnx";
    if (!fs::exists(file)) continue;
    SCOPED_TRACE(file.string());
    ::onnx::ModelProto ref;
    {
      std::ifstream in(file, std::ios::binary);
      ASSERT_TRUE(ref.ParseFromIstream(&in));
    }
    Model m = load_model(file.string());
    ::onnx::ModelProto ours = to_proto(m);
    ASSERT_EQ(ours.graph().initializer_size(), ref.graph().initializer_size());
    for (int i = 0; i < ref.graph().initializer_size(); ++i) {
      auto r = ref.graph().initializer(i);
      auto o = ours.graph().initializer(i);
      Tensor rt = tensor_from_proto(r, "ref"), ot = tensor_from_proto(o, "ours");
      EXPECT_EQ(rt.name, ot.name);
      EXPECT_EQ(rt.dims, ot.dims);
      EXPECT_TRUE(std::equal(rt.bytes().begin(), rt.bytes().end(), ot.bytes().begin(), ot.bytes().end()));
    }
    ref.mutable_graph()->clear_initializer();
    ours.mutable_graph()->clear_initializer();
    // An empty string set explicitly means the same as one left out.
    for (auto* g : {ref.mutable_graph(), ours.mutable_graph()})
      for (auto& n : *g->mutable_node()) {
        if (n.name().empty()) n.clear_name();
        if (n.domain().empty()) n.clear_domain();
        if (n.doc_string().empty()) n.clear_doc_string();
      }
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(ref, ours));
    ++models;
  }
  EXPECT_GT(models, 500u);
}

TEST(OnnxModelIo, CheckerAndShapeInferenceOnReferenceModels) {
  REQUIRE_TESTDATA();
  for (const char* test : {"test_matmul_3d", "test_gemm_transposeB", "test_transpose_default"}) {
    SCOPED_TRACE(test);
    Model m = load_model((kNodeTests / test / "model.onnx").string());
    EXPECT_NO_THROW(check_model(m));
    // Forget the declared output shape; shape inference must find it again.
    const ::onnx::ValueInfoProto declared = m.graph.outputs[0];
    m.graph.outputs[0].mutable_type()->mutable_tensor_type()->clear_shape();
    infer_shapes(m);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(declared, m.graph.outputs[0]))
        << m.graph.outputs[0].DebugString();
  }
}

TEST(OnnxModelIo, CheckerFailureNamesTheNode) {
  REQUIRE_TESTDATA();
  Model m = load_model((kNodeTests / "test_matmul_2d" / "model.onnx").string());
  m.graph.nodes[0].inputs[0] = "nowhere";
  try {
    check_model(m);
    FAIL() << "checker accepted an undefined input";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ONNX checker"));
    EXPECT_THAT(e.what(), HasSubstr("nowhere"));
  }
  m = load_model((kNodeTests / "test_matmul_2d" / "model.onnx").string());
  m.set_opset("", 18);
  EXPECT_THROW(check_model(m), Error);
}

TEST(OnnxModelIo, ExternalDataRoundTripAndErrors) {
  REQUIRE_TESTDATA();
  const fs::path dir = temp_dir("external");
  Model m = load_model((kNodeTests / "test_matmul_2d" / "model.onnx").string());
  std::vector<float> w(64 * 32);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.25f - 3.0f;
  std::string bytes(w.size() * 4, '\0');
  std::memcpy(bytes.data(), w.data(), bytes.size());
  m.graph.add_initializer(Tensor("extra", kFloat, {64, 32}, bytes));
  m.graph.add_initializer(Tensor("small", kFloat, {2}, std::string(8, '\0')));
  const std::string path = (dir / "m.onnx").string();
  SaveOptions opts;
  opts.external_data = SaveOptions::ExternalData::Always;
  save_model(m, path, opts);
  ASSERT_TRUE(fs::exists(dir / "m.onnx.data"));
  Model back = load_model(path);
  const Tensor* t = back.graph.find_initializer("extra");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->is_external());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->bytes().data()), t->bytes().size()), bytes);
  EXPECT_FALSE(back.graph.find_initializer("small")->is_external());  // under the 1 KiB threshold

  // A data file cut short: the error names the model and the tensor.
  fs::resize_file(dir / "m.onnx.data", 100);
  try {
    load_model(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("extra"));
  }
  fs::remove(dir / "m.onnx.data");
  try {
    load_model(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr("missing"));
  }
  fs::remove_all(dir);
}

TEST(OnnxModelIo, RejectsFilesThatAreNotModels) {
  const fs::path dir = temp_dir("bad");
  const std::string text = (dir / "text.onnx").string();
  std::ofstream(text) << "hello, this is not a protobuf\n";
  EXPECT_THROW(load_model(text), Error);
  if (fs::exists(kNodeTests)) {
    std::ifstream in(kNodeTests / "test_gemm_all_attributes" / "model.onnx", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    const std::string cut = (dir / "cut.onnx").string();
    std::ofstream(cut, std::ios::binary) << all.substr(0, all.size() / 2);
    try {
      load_model(cut);
      FAIL();
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(cut));
    }
  }
  fs::remove_all(dir);
}

// Every prefix of a real model, and copies with bytes flipped, either load
// or fail with Error: never a crash, never an exception of another type.
TEST(OnnxModelIo, DamagedFilesFailCleanly) {
  REQUIRE_TESTDATA();
  std::ifstream in(kNodeTests / "test_gemm_all_attributes" / "model.onnx", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), {});
  const fs::path dir = temp_dir("damaged");
  const std::string path = (dir / "m.onnx").string();
  auto try_load = [&](const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
      Model m = load_model(path);
      (void)to_proto(m);
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < all.size(); ++n) try_load(all.substr(0, n));
  std::mt19937 rng(3);
  for (int i = 0; i < 500; ++i) {
    std::string bytes = all;
    bytes[rng() % bytes.size()] = static_cast<char>(rng());
    try_load(bytes);
  }
  fs::remove_all(dir);
}

// Constant folding of data-movement ops, against ONNX's reference outputs.
TEST(OnnxPasses, FoldingMatchesOnnxReference) {
  REQUIRE_TESTDATA();
  size_t checked = 0;
  for (const auto& entry : fs::directory_iterator(kNodeTests)) {
    const std::string test = entry.path().filename().string();
    if (!(test.starts_with("test_transpose") || test.starts_with("test_reshape") ||
          test.starts_with("test_squeeze") || test.starts_with("test_unsqueeze")))
      continue;
    SCOPED_TRACE(test);
    Model m = load_model((entry.path() / "model.onnx").string());
    // Graph inputs become initializers holding the test's input data.
    for (size_t i = 0; i < m.graph.inputs.size(); ++i) {
      Tensor t = read_data(test, "input_" + std::to_string(i) + ".pb");
      t.name = m.graph.inputs[i].name();
      m.graph.add_initializer(std::move(t));
    }
    m.graph.inputs.clear();
    fold_constants(m.graph);
    const std::string out = m.graph.outputs[0].name();
    const Tensor* folded = m.graph.find_initializer(out);
    if (test == "test_reshape_allowzero_reordered") {
      EXPECT_EQ(folded, nullptr);  // allowzero=1 is left to the runtime
      continue;
    }
    ASSERT_NE(folded, nullptr);
    Tensor ref = read_data(test, "output_0.pb");
    EXPECT_EQ(folded->dims, ref.dims);
    EXPECT_TRUE(std::equal(ref.bytes().begin(), ref.bytes().end(), folded->bytes().begin(),
                           folded->bytes().end()));
    EXPECT_TRUE(m.graph.nodes.empty());
    ++checked;
  }
  EXPECT_GE(checked, 25u);
}

TEST(OnnxGraph, TopologicalOrderAndCycles) {
  Graph g;
  auto node = [](std::string name, std::vector<std::string> in, std::vector<std::string> out) {
    Node n;
    n.name = std::move(name);
    n.op_type = "Relu";
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    return n;
  };
  g.nodes = {node("c", {"b"}, {"c"}), node("a", {"x"}, {"a"}), node("b", {"a"}, {"b"}),
             node("d", {"x"}, {"d"})};
  g.sort_topologically();
  std::vector<std::string> order;
  for (const auto& n : g.nodes) order.push_back(n.name);
  // Producers first; otherwise file order.
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "d"}));
  g.nodes.push_back(node("loop1", {"loop2"}, {"loop1"}));
  g.nodes.push_back(node("loop2", {"loop1"}, {"loop2"}));
  try {
    g.topological_order();
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cycle"));
  }
}

TEST(OnnxPasses, DeadNodesAndIdentityGo) {
  Graph g;
  auto node = [](std::string op, std::vector<std::string> in, std::vector<std::string> out) {
    Node n;
    n.op_type = std::move(op);
    n.name = out[0];
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    return n;
  };
  g.nodes = {node("Identity", {"x"}, {"i"}), node("Relu", {"i"}, {"y"}), node("Relu", {"x"}, {"dead"})};
  ::onnx::ValueInfoProto y;
  y.set_name("y");
  g.outputs.push_back(y);
  g.add_initializer(Tensor("unused", kFloat, {1}, std::string(4, '\0')));
  PassStats s = simplify(g);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].inputs[0], "x");
  EXPECT_EQ(s.nodes_removed, 2u);
  EXPECT_EQ(g.initializers().size(), 0u);
}

// ---- calibration (onnx/calibrate.h) against numpy / onnxruntime.quantization.calibrate ----

TEST(OnnxCalibrate, HistogramEdgesAndBinsMatchNumpy) {
  // np.histogram([-3.7, 0.1, 3.7, 1.23456], 7, range=(-3.7, 3.7)) in float32.
  const std::vector<float> edges = histogram_edges(-3.7f, 3.7f, 7);
  const std::vector<float> expected = {-0x1.d9999ap+1f, -0x1.524924p+1f, -0x1.95f16p+0f, -0x1.0ea0e8p-1f,
                                       0x1.0ea0e8p-1f,  0x1.95f15cp+0f,  0x1.524926p+1f, 0x1.d9999ap+1f};
  EXPECT_EQ(edges, expected);
  std::vector<int64_t> hist(7, 0);
  for (float v : {-3.7f, 0.1f, 3.7f, 1.23456f}) ++hist[histogram_bin(edges, v)];
  EXPECT_EQ(hist, (std::vector<int64_t>{1, 0, 0, 1, 1, 0, 1}));
  // An empty range widens to +-0.5 as np.histogram does.
  EXPECT_EQ(histogram_edges(2.0f, 2.0f, 2), (std::vector<float>{1.5f, 2.0f, 2.5f}));
}

namespace {

// ((i * 7919) % 10007 - 5003)^3 / 1e9 + 7.5 in float32: the same values in numpy.
std::vector<float> cubic_data() {
  std::vector<float> x(6000);
  for (int64_t i = 0; i < 6000; ++i) {
    const int64_t q = (i * 7919) % 10007 - 5003;
    x[static_cast<size_t>(i)] = static_cast<float>(q * q * q) / 1e9f + 7.5f;
  }
  return x;
}

TensorRange calibrate_cubic(CalibrationOptions options) {
  const std::vector<float> x = cubic_data();
  Calibrator c(options, {"x"});
  for (int pass = 0; pass < c.passes(); ++pass) {
    c.begin_pass(pass);
    c.observe("x", x.data(), 3000);  // two samples, as ORT's collector sees two arrays
    c.observe("x", x.data() + 3000, 3000);
  }
  return c.compute().at("x");
}

}  // namespace

// Expected values: HistogramCollector(method, symmetric, bins, 128, percentile)
// .collect({"x": [x[:3000], x[3000:]]}) of onnxruntime 1.32 on the same data.
TEST(OnnxCalibrate, MinMaxPercentileEntropyMatchOrt) {
  using M = CalibrationMethod;
  const float lo = -0x1.d6e68ap+6f, hi = 0x1.097344p+7f;
  auto r = calibrate_cubic({.method = M::MinMax});
  EXPECT_EQ(r.lo, lo);
  EXPECT_EQ(r.hi, hi);
  r = calibrate_cubic({.method = M::MinMax, .symmetric = 1});
  EXPECT_EQ(r.lo, -hi);
  EXPECT_EQ(r.hi, hi);
  r = calibrate_cubic({.method = M::Percentile});  // symmetric, 2048 bins, 99.999
  EXPECT_EQ(r.lo, lo);
  EXPECT_EQ(r.hi, 0x1.095216p+7f);
  r = calibrate_cubic({.method = M::Percentile, .symmetric = 0, .percentile = 99.9});
  EXPECT_EQ(r.lo, -0x1.d5b8f8p+6f);
  EXPECT_EQ(r.hi, 0x1.08ee8cp+7f);
  r = calibrate_cubic({.method = M::Entropy});  // 128 bins: one candidate, the data's range
  EXPECT_EQ(r.lo, lo);
  EXPECT_EQ(r.hi, hi);
  r = calibrate_cubic({.method = M::Entropy, .num_bins = 1000});  // the KL search picks a tighter top
  EXPECT_EQ(r.lo, lo);
  EXPECT_EQ(r.hi, 0x1.dfef2p+6f);
}

TEST(OnnxCalibrate, RefusesBadSettingsAndEmptyData) {
  auto make = [](CalibrationOptions o) { Calibrator c(o, {"x"}); };
  EXPECT_THROW(make({.method = CalibrationMethod::Percentile, .percentile = 101}), Error);
  EXPECT_THROW(make({.method = CalibrationMethod::Entropy, .num_bins = 64}), Error);
  Calibrator c({}, {"x"});
  c.begin_pass(0);
  EXPECT_THROW(c.compute(), Error);
  EXPECT_THROW(c.observe("y", nullptr, 0), Error);
}
