// onnx/model_io: hostile initializer shapes in a well-formed protobuf (part of
// the onnx unit test binary; test_onnx.cpp holds the round trips and damaged
// files). Each must be refused with an Error naming the file and initializer,
// never accepted with a shape its bytes cannot back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "onnx/model_io.h"

namespace fs = std::filesystem;
using medquant::Error;
using ::testing::HasSubstr;

namespace {

// A model whose only initializer "w" (float) has these dims and raw bytes, or
// external data in "w.bin" beside it when `external`.
std::string write_model(const fs::path& dir, const std::vector<int64_t>& dims, const std::string& raw,
                        bool external = false) {
  ::onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  auto* g = m.mutable_graph();
  g->set_name("g");
  auto* t = g->add_initializer();
  t->set_name("w");
  t->set_data_type(::onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  if (external) {
    t->set_data_location(::onnx::TensorProto::EXTERNAL);
    auto* e = t->add_external_data();
    e->set_key("location");
    e->set_value("w.bin");
    std::ofstream(dir / "w.bin", std::ios::binary) << raw;
  } else {
    t->set_raw_data(raw);
  }
  const fs::path p = dir / "m.onnx";
  std::ofstream out(p, std::ios::binary);
  m.SerializeToOstream(&out);
  return p.string();
}

std::string load_error(const std::string& path) {
  try {
    (void)medquant::onnx::load_model(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class OnnxHostileShapes : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("medquant_onnx_shapes_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_P(OnnxHostileShapes, AreRefusedNamingTheInitializer) {
  const bool external = GetParam();
  const std::string p = write_model(dir_, {2, 3}, std::string(24, '\0'), external);
  EXPECT_EQ(medquant::onnx::load_model(p).graph.find_initializer("w")->bytes().size(), 24u);

  EXPECT_THAT(load_error(write_model(dir_, {-1, 6}, std::string(24, '\0'), external)),
              HasSubstr(p + ": initializer 'w' has a negative dimension -1"));
  // 2^62 x 4 floats: the product wraps to 0 bytes in 64 bits, which an empty
  // buffer would match.
  EXPECT_THAT(load_error(write_model(dir_, {int64_t{1} << 62, 4}, "", external)),
              HasSubstr(p + ": initializer 'w': shape 4611686018427387904x4 is too large"));
  EXPECT_THAT(load_error(write_model(dir_, {int64_t{1} << 40, int64_t{1} << 40}, "", external)),
              HasSubstr("is too large"));
  EXPECT_THAT(load_error(write_model(dir_, {INT64_MAX}, std::string(8, '\0'), external)),
              HasSubstr("is too large"));
}

INSTANTIATE_TEST_SUITE_P(RawAndExternal, OnnxHostileShapes, ::testing::Bool());

}  // namespace
