// checkpoint/safetensors: files built here byte by byte (valid ones read back
// exactly; a corpus of broken ones each rejected with a specific message),
// sharded indexes and folders. The peer test holds the reader against the
// safetensors library on the real fixtures. checkpoint/hf_config: broken
// config.json files and values of the wrong type or range.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <stdlib.h>

#include <filesystem>
#include <random>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/hf_config.h"
#include "checkpoint/safetensors.h"
#include "core/error.h"

using namespace medquant;
using namespace medquant::checkpoint;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

namespace {

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// The bytes of a safetensors file with this header text and data buffer.
std::string raw_file(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

// Builds valid files the way the reference writer does: tensors packed in
// order, header padded with spaces to a multiple of 8.
struct Builder {
  Json header = Json::object();
  std::string data;

  Builder& tensor(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                  const std::string& bytes) {
    const uint64_t begin = data.size();
    data += bytes;
    header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
    return *this;
  }
  Builder& metadata(const std::string& key, const std::string& value) {
    header["__metadata__"][key] = value;
    return *this;
  }
  std::string bytes() const {
    std::string h = header.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');
    return raw_file(h, data);
  }
};

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + static_cast<size_t>(seed) * 17 + 1) & 0xff);
  return s;
}

std::string as_string(std::span<const uint8_t> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "medquant-st-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p.string();
  }
  // The error SafetensorsFile gives for a file with these bytes.
  std::string open_error(const std::string& bytes) {
    const std::string p = write("broken.safetensors", bytes);
    return error_of([&] { SafetensorsFile f(p); });
  }
  std::string tensor_error(const Json& entry, const std::string& data = std::string(64, '\0')) {
    return open_error(raw_file(Json{{"w", entry}}.dump(), data));
  }

  fs::path dir_;
};

}  // namespace

// ---------------------------------------------------------------- valid files

TEST_F(Safetensors, ReadsEveryDTypeExactly) {
  struct Case {
    const char* name;
    core::DType type;
    size_t size;
  };
  const Case cases[] = {{"F64", core::DType::F64, 8},     {"F32", core::DType::F32, 4},
                        {"F16", core::DType::F16, 2},     {"BF16", core::DType::BF16, 2},
                        {"I64", core::DType::I64, 8},     {"I32", core::DType::I32, 4},
                        {"I16", core::DType::I16, 2},     {"I8", core::DType::I8, 1},
                        {"U64", core::DType::U64, 8},     {"U32", core::DType::U32, 4},
                        {"U16", core::DType::U16, 2},     {"U8", core::DType::U8, 1},
                        {"BOOL", core::DType::Bool, 1},   {"F8_E4M3", core::DType::F8E4M3, 1},
                        {"F8_E5M2", core::DType::F8E5M2, 1}};
  Builder b;
  int seed = 0;
  for (const Case& c : cases) b.tensor(std::string("t.") + c.name, c.name, {2, 3}, pattern(6 * c.size, seed++));
  const std::string p = write("all.safetensors", b.bytes());
  SafetensorsFile f(p);
  ASSERT_EQ(f.tensors().size(), std::size(cases));
  seed = 0;
  for (const Case& c : cases) {
    const TensorInfo* t = f.find(std::string("t.") + c.name);
    ASSERT_NE(t, nullptr) << c.name;
    EXPECT_EQ(t->dtype, c.type);
    EXPECT_EQ(safetensors_dtype_name(t->dtype), c.name);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(t->num_elements(), 6u);
    EXPECT_EQ(t->nbytes(), 6 * c.size);
    EXPECT_EQ(as_string(f.data(*t)), pattern(6 * c.size, seed++)) << c.name;
    EXPECT_EQ(t->offset(), f.data_start() + t->begin);
  }
  EXPECT_EQ(f.find("absent"), nullptr);
}

TEST_F(Safetensors, FileOrderIsByOffsetNotByName) {
  // JSON key order (and nlohmann's sorted objects) differ from data order.
  const std::string data = pattern(12, 1);
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
      R"("c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})";
  SafetensorsFile f(write("order.safetensors", raw_file(header, data)));
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.tensors()[0].name, "c");
  EXPECT_EQ(f.tensors()[1].name, "b");
  EXPECT_EQ(f.tensors()[2].name, "a");
  EXPECT_EQ(as_string(f.data(f.tensors()[1])), data.substr(4, 4));
  EXPECT_EQ(f.header_size(), header.size());
  EXPECT_EQ(f.data_start(), 8 + header.size());
}

TEST_F(Safetensors, MetadataPaddingScalarsAndEmptyTensors) {
  Builder b;
  b.metadata("format", "pt").metadata("note", "é ✓");
  b.tensor("scalar", "F64", {}, pattern(8, 2));
  b.tensor("empty", "F32", {0, 5}, "");
  b.tensor("w", "I16", {4}, pattern(8, 3));
  b.tensor("empty2", "BF16", {3, 0}, "");  // shares its offset with nothing but the end
  std::string bytes = b.bytes();
  SafetensorsFile f(write("m.safetensors", bytes));
  EXPECT_EQ(f.header_size() % 8, 0u);  // padded with spaces by the builder
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "é ✓");
  ASSERT_EQ(f.tensors().size(), 4u);
  const TensorInfo* s = f.find("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->num_elements(), 1u);
  EXPECT_EQ(f.find("empty")->nbytes(), 0u);
  EXPECT_EQ(f.find("empty")->num_elements(), 0u);
  EXPECT_EQ(f.data(*f.find("empty")).size(), 0u);
  EXPECT_EQ(as_string(f.data(*f.find("w"))), pattern(8, 3));
}

TEST_F(Safetensors, EmptyTensorsMayShareOffsetsWithOthers) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("z1":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},)"
      R"("z2":{"dtype":"F32","shape":[0,7],"data_offsets":[0,0]}})";
  SafetensorsFile f(write("z.safetensors", raw_file(header, pattern(8, 0))));
  EXPECT_EQ(f.tensors().size(), 3u);
}

TEST_F(Safetensors, HugeDimsTimesZeroAreEmptyNotOverflow) {
  const std::string header =
      R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})";
  SafetensorsFile f(write("z.safetensors", raw_file(header)));
  EXPECT_EQ(f.tensors()[0].nbytes(), 0u);
}

TEST_F(Safetensors, GapsBetweenTensorsAreAccepted) {
  // The reference library insists on tiling the buffer; a gap is unambiguous.
  const std::string header =
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})";
  SafetensorsFile f(write("gap.safetensors", raw_file(header, pattern(10, 0))));
  EXPECT_EQ(as_string(f.data(*f.find("b"))), pattern(10, 0).substr(6, 2));
}

TEST_F(Safetensors, MinimalHeaderHasNoTensors) {
  SafetensorsFile f(write("e.safetensors", raw_file("{}")));
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

// ---------------------------------------------------------------- broken files

TEST_F(Safetensors, TruncatedHeaderLength) {
  EXPECT_THAT(open_error(""), HasSubstr("truncated: 0 bytes, too short for the 8-byte"));
  EXPECT_THAT(open_error(std::string("\x10\0\0", 3)), HasSubstr("truncated: 3 bytes"));
  EXPECT_THAT(open_error(std::string(7, '\0')), HasSubstr("truncated: 7 bytes"));
}

TEST_F(Safetensors, BadHeaderLength) {
  EXPECT_THAT(open_error(le64(0)), HasSubstr("bad header length 0"));
  EXPECT_THAT(open_error(le64(1) + "{"), HasSubstr("bad header length 1"));
  EXPECT_THAT(open_error(le64(200'000'000) + "{}"),
              HasSubstr("bad header length 200000000 (more than the 100000000 byte limit"));
  EXPECT_THAT(open_error(le64(~0ull) + "{}"), HasSubstr("bad header length"));
}

TEST_F(Safetensors, HeaderLengthBeyondFile) {
  EXPECT_THAT(open_error(le64(1000) + "{}"),
              HasSubstr("header length 1000 runs past the end of the file (size 10"));
}

TEST_F(Safetensors, TruncatedHeader) {
  const std::string good = Builder().tensor("w", "F32", {2}, pattern(8, 0)).bytes();
  const std::string cut = good.substr(0, 8 + 20);
  EXPECT_THAT(open_error(cut), HasSubstr("runs past the end of the file"));
  EXPECT_THAT(open_error(cut), HasSubstr("truncated?"));
}

TEST_F(Safetensors, TruncatedData) {
  const std::string good = Builder().tensor("w", "F32", {2}, pattern(8, 0)).bytes();
  const std::string msg = open_error(good.substr(0, good.size() - 1));
  EXPECT_THAT(msg, HasSubstr("tensor \"w\": data_offsets [0, 8] out of range: the data buffer has 7 bytes"));
  EXPECT_THAT(msg, HasSubstr("broken.safetensors"));
}

TEST_F(Safetensors, BadJsonGivesItsPosition) {
  const std::string msg = open_error(raw_file(R"({"a": [1,2,})"));
  EXPECT_THAT(msg, HasSubstr("safetensors header is not valid JSON at byte 11 (file offset 19)"));
  EXPECT_THAT(open_error(raw_file("{\"a\": \"\xff\"}")), HasSubstr("not valid JSON at byte"));
  EXPECT_THAT(open_error(raw_file(R"({"a": 1e400})")), HasSubstr("not valid JSON"));
  EXPECT_THAT(open_error(raw_file("{}xx")), HasSubstr("not valid JSON at byte 2"));
  // A NUL would end the text early for nlohmann; it is caught by itself.
  EXPECT_THAT(open_error(raw_file(std::string("{}\0\0", 4))),
              HasSubstr("not valid JSON at byte 2 (file offset 10): NUL byte"));
}

TEST_F(Safetensors, NonObjectJson) {
  EXPECT_THAT(open_error(raw_file("[1, 2]")), HasSubstr("header is not a JSON object (got array)"));
  EXPECT_THAT(open_error(raw_file("\"{}\"")), HasSubstr("not a JSON object (got string)"));
  EXPECT_THAT(open_error(raw_file(R"({"w": 3})")),
              HasSubstr("tensor \"w\": header entry is not an object"));
}

TEST_F(Safetensors, MissingFields) {
  EXPECT_THAT(tensor_error({{"shape", {1}}, {"data_offsets", {0, 4}}}),
              HasSubstr("tensor \"w\": missing \"dtype\""));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"data_offsets", {0, 4}}}),
              HasSubstr("tensor \"w\": missing \"shape\""));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {1}}}),
              HasSubstr("tensor \"w\": missing \"data_offsets\""));
}

TEST_F(Safetensors, FieldsOfTheWrongType) {
  EXPECT_THAT(tensor_error({{"dtype", 1}, {"shape", {1}}, {"data_offsets", {0, 4}}}),
              HasSubstr("\"dtype\" is not a string"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", 4}, {"data_offsets", {0, 4}}}),
              HasSubstr("\"shape\" is not an array"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {2.5}}, {"data_offsets", {0, 4}}}),
              HasSubstr("shape[0] is not a non-negative integer (got 2.5)"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {"1"}}, {"data_offsets", {0, 4}}}),
              HasSubstr("shape[0] is not a non-negative integer"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}}),
              HasSubstr("\"data_offsets\" is not an array [begin, end]"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4, 8}}}),
              HasSubstr("\"data_offsets\" is not an array [begin, end]"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {-4, 0}}}),
              HasSubstr("data_offsets [-4,0] are not non-negative integers"));
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", "0-4"}}),
              HasSubstr("\"data_offsets\" is not an array"));
}

TEST_F(Safetensors, UnknownDType) {
  EXPECT_THAT(tensor_error({{"dtype", "F17"}, {"shape", {1}}, {"data_offsets", {0, 4}}}),
              HasSubstr("tensor \"w\": unknown dtype \"F17\""));
  EXPECT_THAT(tensor_error({{"dtype", "f32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}),
              HasSubstr("unknown dtype \"f32\""));
  EXPECT_THAT(tensor_error({{"dtype", "F4"}, {"shape", {2}}, {"data_offsets", {0, 1}}}),
              HasSubstr("dtype \"F4\" is not supported"));
}

TEST_F(Safetensors, NegativeDim) {
  EXPECT_THAT(tensor_error({{"dtype", "F32"}, {"shape", {2, -1}}, {"data_offsets", {0, 4}}}),
              HasSubstr("tensor \"w\": negative dimension -1 at shape[1]"));
}

TEST_F(Safetensors, ShapeTimesSizeMustEqualSpan) {
  EXPECT_THAT(
      tensor_error({{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 20}}}),
      HasSubstr("tensor \"w\": shape [2,3] x F32 (4 bytes each) = 24 bytes, but data_offsets [0, 20] span 20 bytes"));
  EXPECT_THAT(tensor_error({{"dtype", "BF16"}, {"shape", Json::array()}, {"data_offsets", {0, 4}}}),
              HasSubstr("= 2 bytes, but data_offsets [0, 4] span 4 bytes"));
}

TEST_F(Safetensors, ShapeOverflow) {
  EXPECT_THAT(tensor_error({{"dtype", "F32"},
                            {"shape", {4294967296ll, 4294967296ll, 2}},
                            {"data_offsets", {0, 4}}}),
              HasSubstr("overflows 64-bit byte count"));
  // The element count fits but the byte count doesn't.
  EXPECT_THAT(tensor_error({{"dtype", "F64"},
                            {"shape", {2305843009213693952ll}},
                            {"data_offsets", {0, 4}}}),
              HasSubstr("overflows 64-bit byte count"));
  EXPECT_THAT(tensor_error({{"dtype", "U8"},
                            {"shape", {18446744073709551615ull}},
                            {"data_offsets", {0, 4}}}),
              HasSubstr("is too large"));
}

TEST_F(Safetensors, OffsetsOutOfRange) {
  EXPECT_THAT(
      tensor_error({{"dtype", "U8"}, {"shape", {1000}}, {"data_offsets", {0, 1000}}}),
      HasSubstr("tensor \"w\": data_offsets [0, 1000] out of range: the data buffer has 64 bytes"));
  EXPECT_THAT(tensor_error({{"dtype", "U8"},
                            {"shape", {1}},
                            {"data_offsets", {18446744073709551614ull, 18446744073709551615ull}}}),
              HasSubstr("out of range"));
}

TEST_F(Safetensors, BeginAfterEnd) {
  EXPECT_THAT(tensor_error({{"dtype", "U8"}, {"shape", {4}}, {"data_offsets", {8, 4}}}),
              HasSubstr("tensor \"w\": data_offsets begin 8 > end 4"));
}

TEST_F(Safetensors, OverlappingTensors) {
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_THAT(open_error(raw_file(header, pattern(12, 0))),
              HasSubstr("tensors \"a\" [0, 8] and \"b\" [4, 12] overlap"));
  // Contained in a bigger one, with a harmless empty one in between.
  const std::string inner =
      R"({"big":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
      R"("e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},)"
      R"("small":{"dtype":"U8","shape":[2],"data_offsets":[10,12]}})";
  EXPECT_THAT(open_error(raw_file(inner, pattern(16, 0))),
              HasSubstr("tensors \"big\" [0, 16] and \"small\" [10, 12] overlap"));
  // Same range twice.
  const std::string twice =
      R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
      R"("y":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  EXPECT_THAT(open_error(raw_file(twice, pattern(4, 0))), HasSubstr("overlap"));
}

TEST_F(Safetensors, DuplicateNames) {
  const std::string header =
      R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
      R"("w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})";
  EXPECT_THAT(open_error(raw_file(header, pattern(8, 0))),
              HasSubstr("safetensors header: key \"w\" appears twice"));
}

TEST_F(Safetensors, BadMetadata) {
  EXPECT_THAT(open_error(raw_file(R"({"__metadata__":{"format":1}})")),
              HasSubstr("\"__metadata__\" value of \"format\" is not a string"));
  EXPECT_THAT(open_error(raw_file(R"({"__metadata__":"pt"})")),
              HasSubstr("\"__metadata__\" is not an object"));
}

TEST_F(Safetensors, ErrorsNameTheFile) {
  const std::string p = write("named.safetensors", raw_file("[]"));
  EXPECT_THAT(error_of([&] { SafetensorsFile f(p); }), HasSubstr(p + ": "));
  EXPECT_THAT(error_of([&] { SafetensorsFile f((dir_ / "absent.safetensors").string()); }),
              HasSubstr("absent.safetensors: cannot open"));
}

// ---------------------------------------------------------------- checkpoints

namespace {
const Json kWeightMap = {{"layer.0.w", "model-00001-of-00002.safetensors"},
                         {"layer.0.b", "model-00001-of-00002.safetensors"},
                         {"layer.1.w", "model-00002-of-00002.safetensors"}};
}  // namespace

TEST_F(Safetensors, CheckpointFromOneFileAndItsFolder) {
  const std::string p = write("m/model.safetensors",
                              Builder().metadata("format", "pt").tensor("b", "I8", {3}, pattern(3, 4)).tensor("a", "I8", {1}, pattern(1, 5)).bytes());
  for (const std::string& path : {p, (dir_ / "m").string()}) {
    Checkpoint ck = Checkpoint::open(path);
    EXPECT_FALSE(ck.sharded());
    ASSERT_EQ(ck.tensors().size(), 2u);
    EXPECT_EQ(ck.tensors()[0].name(), "b");  // file order
    EXPECT_EQ(ck.metadata().at("format"), "pt");
    EXPECT_EQ(as_string(ck.at("a").bytes()), pattern(1, 5));
    EXPECT_EQ(ck.find("c"), nullptr);
    EXPECT_THAT(error_of([&] { ck.at("c"); }), HasSubstr("no tensor named \"c\""));
  }
}

TEST_F(Safetensors, ShardedCheckpoint) {
  auto w = [&](const std::string& name, const std::string& bytes) { return write("s/" + name, bytes); };
  w("model-00001-of-00002.safetensors",
    Builder().tensor("layer.0.w", "F32", {2, 2}, pattern(16, 1)).tensor("layer.0.b", "F32", {2}, pattern(8, 2)).bytes());
  w("model-00002-of-00002.safetensors", Builder().tensor("layer.1.w", "BF16", {4}, pattern(8, 3)).bytes());
  const std::string index =
      w("model.safetensors.index.json", Json{{"metadata", {{"total_size", 32}}}, {"weight_map", kWeightMap}}.dump());
  for (const std::string& path : {index, (dir_ / "s").string()}) {
    Checkpoint opened = Checkpoint::open(path);
    Checkpoint ck = std::move(opened);  // references survive a move
    EXPECT_TRUE(ck.sharded());
    EXPECT_EQ(ck.index_path(), index);
    EXPECT_EQ(ck.metadata().at("total_size"), "32");
    ASSERT_EQ(ck.files().size(), 2u);
    ASSERT_EQ(ck.tensors().size(), 3u);
    EXPECT_EQ(ck.tensors()[0].name(), "layer.0.w");
    EXPECT_EQ(ck.tensors()[1].name(), "layer.0.b");
    EXPECT_EQ(ck.tensors()[2].name(), "layer.1.w");
    EXPECT_THAT(ck.tensors()[2].file->path(), HasSubstr("model-00002-of-00002.safetensors"));
    EXPECT_EQ(as_string(ck.at("layer.1.w").bytes()), pattern(8, 3));
    EXPECT_EQ(ck.at("layer.0.b").info->shape, std::vector<int64_t>{2});
  }
}

TEST_F(Safetensors, IndexWithMissingShard) {
  write("s/model-00001-of-00002.safetensors",
        Builder().tensor("layer.0.w", "F32", {2, 2}, pattern(16, 1)).tensor("layer.0.b", "F32", {2}, pattern(8, 2)).bytes());
  const std::string index = write("s/model.safetensors.index.json", Json{{"weight_map", kWeightMap}}.dump());
  EXPECT_THAT(error_of([&] { Checkpoint::open(index); }),
              HasSubstr("shard \"model-00002-of-00002.safetensors\" (holding tensor \"layer.1.w\") is missing"));
}

TEST_F(Safetensors, IndexWithTensorMissingInShard) {
  write("s/model-00001-of-00002.safetensors", Builder().tensor("layer.0.w", "F32", {2, 2}, pattern(16, 1)).bytes());
  write("s/model-00002-of-00002.safetensors", Builder().tensor("layer.1.w", "BF16", {4}, pattern(8, 3)).bytes());
  const std::string index = write("s/model.safetensors.index.json", Json{{"weight_map", kWeightMap}}.dump());
  EXPECT_THAT(error_of([&] { Checkpoint::open(index); }),
              HasSubstr("tensor \"layer.0.b\" is listed for shard \"model-00001-of-00002.safetensors\" but"));
}

TEST_F(Safetensors, ShardWithTensorTheIndexDoesNotList) {
  write("s/model-00001-of-00002.safetensors",
        Builder().tensor("layer.0.w", "F32", {2, 2}, pattern(16, 1)).tensor("layer.0.b", "F32", {2}, pattern(8, 2)).tensor("extra", "U8", {1}, "x").bytes());
  write("s/model-00002-of-00002.safetensors", Builder().tensor("layer.1.w", "BF16", {4}, pattern(8, 3)).bytes());
  const std::string index = write("s/model.safetensors.index.json", Json{{"weight_map", kWeightMap}}.dump());
  EXPECT_THAT(error_of([&] { Checkpoint::open(index); }),
              HasSubstr("holds tensor \"extra\" that the index does not list"));
}

TEST_F(Safetensors, BrokenShardIsNamed) {
  write("s/model-00001-of-00002.safetensors", le64(3) + "{}");
  write("s/model-00002-of-00002.safetensors", Builder().tensor("layer.1.w", "BF16", {4}, pattern(8, 3)).bytes());
  const std::string index = write("s/model.safetensors.index.json", Json{{"weight_map", kWeightMap}}.dump());
  EXPECT_THAT(error_of([&] { Checkpoint::open(index); }),
              HasSubstr("model-00001-of-00002.safetensors: header length 3 runs past the end"));
}

TEST_F(Safetensors, BadIndexes) {
  auto idx = [&](const std::string& text) {
    const std::string p = write("i/model.safetensors.index.json", text);
    return error_of([&] { Checkpoint::open(p); });
  };
  EXPECT_THAT(idx("{\"weight_map\": {"), HasSubstr("index is not valid JSON at byte"));
  EXPECT_THAT(idx("[]"), HasSubstr("index is not a JSON object"));
  EXPECT_THAT(idx("{}"), HasSubstr("index has no \"weight_map\""));
  EXPECT_THAT(idx(R"({"weight_map": []})"), HasSubstr("\"weight_map\" is not an object"));
  EXPECT_THAT(idx(R"({"weight_map": {"w": 1}})"),
              HasSubstr("weight_map entry for tensor \"w\" is not a file name"));
  EXPECT_THAT(idx(R"({"weight_map": {"w": "../x.safetensors"}})"),
              HasSubstr("is not a file name inside the index's folder"));
  EXPECT_THAT(idx(R"({"weight_map": {"w": "/etc/passwd"}})"),
              HasSubstr("is not a file name inside the index's folder"));
  EXPECT_THAT(idx(R"({"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}})"),
              HasSubstr("key \"w\" appears twice"));
  EXPECT_THAT(idx(R"({"metadata": 3, "weight_map": {}})"), HasSubstr("\"metadata\" is not an object"));
}

TEST_F(Safetensors, Folders) {
  fs::create_directories(dir_ / "empty");
  EXPECT_THAT(error_of([&] { Checkpoint::open((dir_ / "empty").string()); }),
              HasSubstr("no .safetensors file or *.safetensors.index.json in this folder"));
  EXPECT_THAT(error_of([&] { Checkpoint::open((dir_ / "nowhere").string()); }),
              HasSubstr("nowhere: no such file or directory"));
  // Two files without an index: both are read, in name order ...
  write("two/b.safetensors", Builder().tensor("x", "U8", {1}, "b").bytes());
  write("two/a.safetensors", Builder().tensor("y", "U8", {1}, "a").bytes());
  Checkpoint ck = Checkpoint::open((dir_ / "two").string());
  ASSERT_EQ(ck.tensors().size(), 2u);
  EXPECT_EQ(ck.tensors()[0].name(), "y");
  // ... and a name in both is an error naming both files.
  write("dup/a.safetensors", Builder().tensor("x", "U8", {1}, "a").bytes());
  write("dup/b.safetensors", Builder().tensor("x", "U8", {1}, "b").bytes());
  EXPECT_THAT(error_of([&] { Checkpoint::open((dir_ / "dup").string()); }),
              ::testing::AllOf(HasSubstr("tensor \"x\" is in both"), HasSubstr("a.safetensors"),
                               HasSubstr("b.safetensors")));
  write("twoidx/a.safetensors.index.json", "{}");
  write("twoidx/b.safetensors.index.json", "{}");
  EXPECT_THAT(error_of([&] { Checkpoint::open((dir_ / "twoidx").string()); }),
              HasSubstr("folder holds 2 safetensors indexes"));
}

// Random damage to a valid file: every outcome is either a file whose tensors
// all lie inside it without overlapping, or a medquant::Error (never another
// exception, a crash, or an out-of-bounds read under ASan).
TEST_F(Safetensors, RandomCorruptionsAreCaughtOrHarmless) {
  Builder b;
  b.metadata("format", "pt");
  b.tensor("a", "F32", {3, 4}, pattern(48, 1)).tensor("b", "BF16", {5}, pattern(10, 2));
  b.tensor("c", "I64", {}, pattern(8, 3)).tensor("d", "U8", {0}, "");
  const std::string good = b.bytes();
  std::mt19937 rng(1234);
  int errors = 0, readable = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bad = good;
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0) {  // a few random bytes anywhere
      for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k)
        bad[rng() % bad.size()] = static_cast<char>(rng());
    } else if (kind == 1) {  // a digit of the header changed (offsets, shapes)
      std::vector<size_t> digits;
      for (size_t i = 8; i < bad.size() - b.data.size(); ++i)
        if (bad[i] >= '0' && bad[i] <= '9') digits.push_back(i);
      bad[digits[rng() % digits.size()]] = static_cast<char>('0' + rng() % 10);
    } else if (kind == 2) {  // truncated anywhere
      bad.resize(rng() % bad.size());
    } else {  // header length off by a little
      bad[0] = static_cast<char>(bad[0] + static_cast<int>(rng() % 17) - 8);
    }
    // A new name each time: rewriting one file in place makes ext4 flush it.
    const std::string p = write(fmt::format("fuzz-{}.safetensors", iter), bad);
    try {
      SafetensorsFile f(p);
      ++readable;
      uint64_t prev_end = 0;
      for (const TensorInfo& t : f.tensors()) {
        ASSERT_LE(t.offset() + t.nbytes(), f.file_size());
        if (t.nbytes() > 0) {
          ASSERT_GE(t.begin, prev_end);
          prev_end = t.end;
        }
        ASSERT_EQ(f.data(t).size(), t.nbytes());
      }
    } catch (const Error& e) {
      ++errors;
      ASSERT_THAT(e.what(), HasSubstr(p));
    }
    fs::remove(p);
  }
  EXPECT_GT(errors, 1000);
  EXPECT_GT(readable, 100);  // e.g. a changed data byte is not an error
}

// config.json and the other JSON files of a model folder.
class HfConfigFiles : public Safetensors {};

TEST_F(HfConfigFiles, BrokenFilesNameThePath) {
  const std::string missing = (dir_ / "nope.json").string();
  EXPECT_THAT(error_of([&] { read_json_file(missing); }), HasSubstr(missing + ": no such file"));
  const std::string cut = write("cut.json", R"({"hidden_size": 2)");
  EXPECT_THAT(error_of([&] { read_json_file(cut); }), HasSubstr(cut + ": not valid JSON (byte 18)"));
  const std::string binary = write("bin.json", std::string("\x89PNG\r\n\x1a\n\0\0", 10));
  EXPECT_THAT(error_of([&] { read_json_file(binary); }), HasSubstr(binary + ": not valid JSON"));
  const std::string empty = write("empty.json", "");
  EXPECT_THAT(error_of([&] { read_json_file(empty); }), HasSubstr(empty + ": not valid JSON"));

  EXPECT_THAT(error_of([&] { HfConfig::load((dir_ / "absent").string()); }), HasSubstr("not a folder"));
  EXPECT_THAT(error_of([&] { HfConfig::load(dir_.string()); }), HasSubstr("no config.json"));
  write("config.json", "[1, 2]");
  EXPECT_THAT(error_of([&] { HfConfig::load(dir_.string()); }),
              HasSubstr((dir_ / "config.json").string() + ": expected a JSON object, got an array"));
  write("config.json", R"({"architectures": []})");
  EXPECT_THAT(error_of([&] { HfConfig::load(dir_.string()).architecture(); }),
              HasSubstr("\"architectures\" must be a non-empty list"));
}

TEST_F(HfConfigFiles, IntegersOutOfRangeAreRefusedNotWrapped) {
  write("config.json", R"({"text_config": {"a": 18446744073709551615, "b": 1e30, "c": -1e300,
                            "d": 9007199254740993.0, "e": 4096.0, "f": -5, "g": 9223372036854775807,
                            "h": "12", "i": 2.5}})");
  const HfConfig c = HfConfig::load(dir_.string());
  const JsonObject t = c.root().object("text_config");
  const std::string file = c.path();
  EXPECT_THAT(error_of([&] { t.get_int("a"); }),
              HasSubstr(file + ": text_config.a is 18446744073709551615, out of the 64-bit integer range"));
  EXPECT_THAT(error_of([&] { t.get_int("b"); }), HasSubstr("text_config.b is a number, expected an integer"));
  EXPECT_THAT(error_of([&] { t.get_int("c"); }), HasSubstr("expected an integer"));
  EXPECT_THAT(error_of([&] { t.get_int("d"); }), HasSubstr("expected an integer"));  // not exact in a double
  EXPECT_EQ(t.get_int("e"), 4096);
  EXPECT_EQ(t.get_int("f"), -5);  // the sign is the model module's to judge
  EXPECT_EQ(t.get_int("g"), INT64_MAX);
  EXPECT_THAT(error_of([&] { t.get_int("h"); }), HasSubstr("text_config.h is a string, expected an integer"));
  EXPECT_THAT(error_of([&] { t.get_int("i"); }), HasSubstr("expected an integer"));
  EXPECT_THAT(error_of([&] { c.root().object("text_config").object("a"); }), HasSubstr("expected an object"));
  EXPECT_FALSE(t.get_int("absent").has_value());
}
