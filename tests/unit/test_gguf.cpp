// gguf/: the reader and writer against ggml's own gguf implementation (the
// pinned llama.cpp's libggml), a corpus of broken files, and the quantization
// plan against llama.cpp's llama_quant_compute_types.
#include <gguf.h>
#include <ggml.h>
#include <llama.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/imatrix.h"
#include "gguf/quantize_plan.h"
#include "gguf/validate.h"

// llama.cpp's staging API for testing its quantization rules (src/llama-ext.h,
// exported from libllama but not installed as a header).
struct quantize_state_impl;
struct llama_quant_model_desc {
  const char* architecture;
  uint32_t n_embd;
  uint32_t n_ff;
  uint32_t n_layer;
  uint32_t n_head;
  uint32_t n_head_kv;
  uint32_t n_expert;
  uint32_t n_embd_head_k;
  uint32_t n_embd_head_v;
};
LLAMA_API quantize_state_impl* llama_quant_init(const llama_model* model,
                                                const llama_model_quantize_params* params);
LLAMA_API void llama_quant_free(quantize_state_impl* qs);
LLAMA_API llama_model* llama_quant_model_from_metadata(const llama_quant_model_desc* desc);
LLAMA_API void llama_quant_compute_types(quantize_state_impl* qs, llama_ftype ftype,
                                         ggml_tensor** tensors, ggml_type* result_types,
                                         size_t n_tensors);

namespace {

namespace fs = std::filesystem;
using medquant::Error;
using namespace medquant::gguf;
using medquant::quant::Type;
using ::testing::HasSubstr;

// ggml logs every rejected file to stderr; the tests expect many.
struct QuietGgml {
  QuietGgml() {
    ggml_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
    llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  }
} quiet_ggml;

fs::path temp_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("medquant-test-gguf-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const fs::path& p, std::span<const uint8_t> b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

struct GgufCtx {
  gguf_context* ctx;
  explicit GgufCtx(gguf_context* c) : ctx(c) {}
  ~GgufCtx() {
    if (ctx) gguf_free(ctx);
  }
};

// ggml's reader, as llama.cpp opens a file (metadata only).
bool ggml_accepts(const fs::path& p) {
  gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
  GgufCtx c(gguf_init_from_file(p.c_str(), params));
  return c.ctx != nullptr;
}

// A small model with every value type and a few tensor types, written by ggml.
struct Sample {
  fs::path path;
  std::vector<std::vector<uint8_t>> tensor_bytes;
};

Sample write_sample_with_ggml(const std::string& name) {
  Sample s;
  s.path = temp_dir() / name;
  gguf_context* g = gguf_init_empty();
  gguf_set_val_str(g, "general.architecture", "llama");
  gguf_set_val_u8(g, "t.u8", 250);
  gguf_set_val_i8(g, "t.i8", -7);
  gguf_set_val_u16(g, "t.u16", 65000);
  gguf_set_val_i16(g, "t.i16", -32000);
  gguf_set_val_u32(g, "t.u32", 4000000000u);
  gguf_set_val_i32(g, "t.i32", -2000000000);
  gguf_set_val_f32(g, "t.f32", 1.5f);
  gguf_set_val_bool(g, "t.bool", true);
  gguf_set_val_u64(g, "t.u64", 18000000000000000000ull);
  gguf_set_val_i64(g, "t.i64", -9000000000000000000ll);
  gguf_set_val_f64(g, "t.f64", -2.25);
  gguf_set_val_str(g, "t.str", "h\xc3\xa9llo \"world\"\n");
  const int32_t ints[] = {1, -2, 3, 2147483647};
  gguf_set_arr_data(g, "t.arr_i32", GGUF_TYPE_INT32, ints, 4);
  const float floats[] = {0.5f, -1e30f, 3.25f};
  gguf_set_arr_data(g, "t.arr_f32", GGUF_TYPE_FLOAT32, floats, 3);
  const int8_t bools[] = {1, 0, 1};
  gguf_set_arr_data(g, "t.arr_bool", GGUF_TYPE_BOOL, bools, 3);
  const char* strs[] = {"<pad>", "", "token with spaces", "\xe2\x96\x81x"};
  gguf_set_arr_str(g, "t.arr_str", strs, 4);
  gguf_set_arr_data(g, "t.arr_empty", GGUF_TYPE_UINT64, nullptr, 0);

  ggml_init_params ip{/*mem_size=*/8 << 20, /*mem_buffer=*/nullptr, /*no_alloc=*/false};
  ggml_context* ctx = ggml_init(ip);
  std::mt19937 rng(42);
  auto add = [&](const char* tname, ggml_type type, std::vector<int64_t> ne) {
    ggml_tensor* t = ggml_new_tensor(ctx, type, static_cast<int>(ne.size()), ne.data());
    ggml_set_name(t, tname);
    static uint8_t dummy;
    if (!t->data) t->data = &dummy;  // ggml leaves a zero-byte tensor without data
    auto* p = static_cast<uint8_t*>(t->data);
    for (size_t i = 0; i < ggml_nbytes(t); ++i) p[i] = static_cast<uint8_t>(rng() & 0x3f);
    s.tensor_bytes.emplace_back(p, p + ggml_nbytes(t));
    gguf_add_tensor(g, t);
  };
  add("token_embd.weight", GGML_TYPE_F16, {64, 10});
  add("blk.0.attn_norm.weight", GGML_TYPE_F32, {64});
  add("blk.0.ffn_up.weight", GGML_TYPE_Q8_0, {64, 3});
  add("blk.0.ffn_down.weight", GGML_TYPE_Q4_K, {256, 2});
  add("blk.0.experts", GGML_TYPE_BF16, {32, 2, 3});
  add("empty", GGML_TYPE_F32, {0, 4});
  EXPECT_TRUE(gguf_write_to_file(g, s.path.c_str(), false));
  gguf_free(g);
  ggml_free(ctx);
  return s;
}

// Our KVs and tensor infos for the sample, built with our API.
std::vector<KeyValue> sample_kvs() {
  std::vector<KeyValue> kvs;
  kvs.push_back({"general.architecture", Value::string("llama")});
  kvs.push_back({"t.u8", Value::scalar<uint8_t>(250)});
  kvs.push_back({"t.i8", Value::scalar<int8_t>(-7)});
  kvs.push_back({"t.u16", Value::scalar<uint16_t>(65000)});
  kvs.push_back({"t.i16", Value::scalar<int16_t>(-32000)});
  kvs.push_back({"t.u32", Value::scalar<uint32_t>(4000000000u)});
  kvs.push_back({"t.i32", Value::scalar<int32_t>(-2000000000)});
  kvs.push_back({"t.f32", Value::scalar<float>(1.5f)});
  kvs.push_back({"t.bool", Value::scalar<bool>(true)});
  kvs.push_back({"t.u64", Value::scalar<uint64_t>(18000000000000000000ull)});
  kvs.push_back({"t.i64", Value::scalar<int64_t>(-9000000000000000000ll)});
  kvs.push_back({"t.f64", Value::scalar<double>(-2.25)});
  kvs.push_back({"t.str", Value::string("h\xc3\xa9llo \"world\"\n")});
  const int32_t ints[] = {1, -2, 3, 2147483647};
  kvs.push_back({"t.arr_i32", Value::array<int32_t>(ints)});
  const float floats[] = {0.5f, -1e30f, 3.25f};
  kvs.push_back({"t.arr_f32", Value::array<float>(floats)});
  const bool bools[] = {true, false, true};
  kvs.push_back({"t.arr_bool", Value::array<bool>(bools)});
  kvs.push_back({"t.arr_str",
                 Value::string_array({"<pad>", "", "token with spaces", "\xe2\x96\x81x"})});
  kvs.push_back({"t.arr_empty", Value::array<uint64_t>({})});
  return kvs;
}

TensorInfo info(std::string name, Type type, std::vector<int64_t> ne) {
  TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  for (size_t i = 0; i < ne.size(); ++i) t.ne[i] = ne[i];
  t.n_dims = t.effective_n_dims();
  return t;
}

std::vector<TensorInfo> sample_tensors() {
  return {info("token_embd.weight", Type::F16, {64, 10}),
          info("blk.0.attn_norm.weight", Type::F32, {64}),
          info("blk.0.ffn_up.weight", Type::Q8_0, {64, 3}),
          info("blk.0.ffn_down.weight", Type::Q4_K, {256, 2}),
          info("blk.0.experts", Type::BF16, {32, 2, 3}),
          info("empty", Type::F32, {0, 4})};
}

// ---------------------------------------------------------------- reader

TEST(GgufReader, ReadsWhatGgmlWrites) {
  const Sample s = write_sample_with_ggml("ggml-written.gguf");
  Reader r(s.path.string());
  gguf_init_params params{true, nullptr};
  GgufCtx g(gguf_init_from_file(s.path.c_str(), params));
  ASSERT_NE(g.ctx, nullptr);

  EXPECT_EQ(r.header().version, 3u);
  EXPECT_EQ(r.header().alignment, gguf_get_alignment(g.ctx));
  EXPECT_EQ(r.header().data_offset, gguf_get_data_offset(g.ctx));
  ASSERT_EQ(static_cast<int64_t>(r.kvs().size()), gguf_get_n_kv(g.ctx));
  for (int64_t i = 0; i < gguf_get_n_kv(g.ctx); ++i) {
    const KeyValue& kv = r.kvs()[i];
    SCOPED_TRACE(kv.key);
    EXPECT_EQ(kv.key, gguf_get_key(g.ctx, i));
    const gguf_type gt = gguf_get_kv_type(g.ctx, i);
    if (gt == GGUF_TYPE_ARRAY) {
      ASSERT_TRUE(kv.value.is_array());
      const gguf_type at = gguf_get_arr_type(g.ctx, i);
      EXPECT_EQ(static_cast<uint32_t>(kv.value.type()), static_cast<uint32_t>(at));
      ASSERT_EQ(kv.value.count(), gguf_get_arr_n(g.ctx, i));
      if (at == GGUF_TYPE_STRING) {
        for (size_t j = 0; j < kv.value.count(); ++j)
          EXPECT_EQ(kv.value.str(j), gguf_get_arr_str(g.ctx, i, j));
      } else if (kv.value.count() > 0) {
        const auto* p = static_cast<const uint8_t*>(gguf_get_arr_data(g.ctx, i));
        EXPECT_EQ(kv.value.bytes(), std::vector<uint8_t>(p, p + kv.value.bytes().size()));
      }
    } else {
      ASSERT_FALSE(kv.value.is_array());
      EXPECT_EQ(static_cast<uint32_t>(kv.value.type()), static_cast<uint32_t>(gt));
      if (gt == GGUF_TYPE_STRING) {
        EXPECT_EQ(kv.value.str(), gguf_get_val_str(g.ctx, i));
      } else {
        const auto* p = static_cast<const uint8_t*>(gguf_get_val_data(g.ctx, i));
        EXPECT_EQ(kv.value.bytes(), std::vector<uint8_t>(p, p + kv.value.bytes().size()));
      }
    }
  }
  ASSERT_EQ(static_cast<int64_t>(r.tensors().size()), gguf_get_n_tensors(g.ctx));
  for (int64_t i = 0; i < gguf_get_n_tensors(g.ctx); ++i) {
    const TensorInfo& t = r.tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, gguf_get_tensor_name(g.ctx, i));
    EXPECT_EQ(static_cast<uint32_t>(t.type), static_cast<uint32_t>(gguf_get_tensor_type(g.ctx, i)));
    const int64_t* ne = gguf_get_tensor_ne(g.ctx, i);
    for (int d = 0; d < 4; ++d) EXPECT_EQ(t.ne[d], ne[d]);
    EXPECT_EQ(t.offset, gguf_get_tensor_offset(g.ctx, i));
    EXPECT_EQ(t.n_bytes(), gguf_get_tensor_size(g.ctx, i));
    const auto data = r.tensor_data(t);
    EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), s.tensor_bytes[i]);
  }
  EXPECT_EQ(r.header().get_string("general.architecture"), "llama");
  EXPECT_EQ(r.header().get_int("t.u32"), 4000000000ll);
  EXPECT_EQ(r.header().find("t.arr_str")->value.to_string(2),
            "[\"<pad>\", \"\", ... (4 values)]");
}

TEST(GgufWriter, WritesTheBytesGgmlWrites) {
  const Sample s = write_sample_with_ggml("ggml-reference.gguf");
  const fs::path ours = temp_dir() / "ours.gguf";
  {
    Writer w(ours.string(), sample_kvs(), sample_tensors());
    // Tensor data in uneven pieces, to exercise the streaming path.
    for (const auto& bytes : s.tensor_bytes) {
      std::span<const uint8_t> b(bytes);
      while (!b.empty()) {
        const size_t n = std::min<size_t>(b.size(), 7);
        w.write(b.first(n));
        b = b.subspan(n);
      }
    }
    w.commit();
  }
  EXPECT_EQ(read_bytes(ours), read_bytes(s.path));
  EXPECT_TRUE(ggml_accepts(ours));
}

TEST(GgufWriter, HeaderMatchesGgmlMetaData) {
  const Sample s = write_sample_with_ggml("ggml-meta.gguf");
  gguf_init_params params{true, nullptr};
  GgufCtx g(gguf_init_from_file(s.path.c_str(), params));
  ASSERT_NE(g.ctx, nullptr);
  std::vector<uint8_t> meta(gguf_get_meta_size(g.ctx));
  gguf_get_meta_data(g.ctx, meta.data());
  auto tensors = sample_tensors();
  assign_offsets(tensors, 32);
  EXPECT_EQ(serialize_header(sample_kvs(), tensors), meta);
}

TEST(GgufWriter, HonoursGeneralAlignment) {
  auto kvs = sample_kvs();
  kvs.push_back({"general.alignment", Value::scalar<uint32_t>(64)});
  const fs::path p = temp_dir() / "align64.gguf";
  Writer w(p.string(), kvs, sample_tensors());
  for (const auto& t : w.tensors()) {
    EXPECT_EQ(t.offset % 64, 0u);
    std::vector<uint8_t> zeros(t.n_bytes(), 0);
    w.write(zeros);
  }
  w.commit();
  Reader r(p.string());
  EXPECT_EQ(r.header().alignment, 64u);
  EXPECT_EQ(r.header().data_offset % 64, 0u);
  gguf_init_params params{true, nullptr};
  GgufCtx g(gguf_init_from_file(p.c_str(), params));
  ASSERT_NE(g.ctx, nullptr);
  EXPECT_EQ(gguf_get_alignment(g.ctx), 64u);
  for (size_t i = 0; i < r.tensors().size(); ++i)
    EXPECT_EQ(r.tensors()[i].offset, gguf_get_tensor_offset(g.ctx, static_cast<int64_t>(i)));
}

TEST(GgufWriter, RefusesShortOrLongData) {
  const fs::path p = temp_dir() / "short.gguf";
  {
    Writer w(p.string(), sample_kvs(), sample_tensors());
    std::vector<uint8_t> some(100, 0);
    w.write(some);
    EXPECT_THAT([&] { w.commit(); },
                ::testing::ThrowsMessage<Error>(HasSubstr("token_embd.weight' got 100 of its 1280")));
  }
  EXPECT_FALSE(fs::exists(p));  // nothing under the final name
  Writer w(p.string(), sample_kvs(), {info("a", Type::F32, {4})});
  std::vector<uint8_t> too_much(17, 0);
  EXPECT_THROW(w.write(too_much), Error);
}

TEST(GgufReader, ReadsVersion2) {
  const Sample s = write_sample_with_ggml("v3.gguf");
  auto bytes = read_bytes(s.path);
  bytes[4] = 2;
  const fs::path p = temp_dir() / "v2.gguf";
  write_bytes(p, bytes);
  Reader r(p.string());
  EXPECT_EQ(r.header().version, 2u);
  EXPECT_EQ(r.tensors().size(), 6u);
}

TEST(GgufReader, NormalisesBoolsAsGgml) {
  // ggml reads a bool byte as "!= 0" and writes it back as 1.
  auto kvs = std::vector<KeyValue>{{"b", Value::scalar<bool>(true)}};
  auto bytes = serialize_header(kvs, {});
  const size_t value_at = 4 + 4 + 8 + 8 + 8 + 1 + 4;
  ASSERT_EQ(bytes[value_at], 1);
  bytes[value_at] = 7;
  auto h = parse(bytes, "bools");
  EXPECT_EQ(h.kvs[0].value.bytes(), std::vector<uint8_t>{1});
}

// ---------------------------------------------------------------- broken files

// Little-endian bytes for hand-made (and deliberately wrong) files.
struct Raw {
  std::vector<uint8_t> b;
  template <typename T>
  Raw& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Raw& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(int64_t n_tensors, int64_t n_kv, uint32_t version = 3) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return put<uint32_t>(version).put<int64_t>(n_tensors).put<int64_t>(n_kv);
  }
  Raw& kv_u32(std::string_view key, uint32_t v) { return str(key).put<uint32_t>(4).put<uint32_t>(v); }
  Raw& tensor(std::string_view name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (int64_t n : ne) put<int64_t>(n);
    return put<uint32_t>(type).put<uint64_t>(offset);
  }
  Raw& pad(size_t a = 32) {
    b.resize((b.size() + a - 1) / a * a, 0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

struct BrokenCase {
  std::string name;
  std::vector<uint8_t> bytes;
  std::string message;  // expected in our error
};

std::vector<BrokenCase> broken_cases() {
  std::vector<BrokenCase> c;
  auto add = [&](std::string name, Raw r, std::string msg) {
    c.push_back({std::move(name), std::move(r.b), std::move(msg)});
  };
  add("empty", Raw{}, "too short for the magic");
  {
    Raw r;
    r.b = {'G', 'G', 'M', 'L'};
    r.put<uint32_t>(3).zeros(16);
    add("bad magic", r, "not a GGUF file: magic 'GGML' (47 47 4d 4c) at offset 0");
  }
  add("version 1", Raw{}.header(0, 0, 1), "version 1");
  add("version 4", Raw{}.header(0, 0, 4), "unsupported GGUF version 4");
  add("byte-swapped", Raw{}.header(0, 0, 0x03000000), "big-endian");
  {
    Raw r;
    r.b = {'G', 'G', 'U', 'F'};
    r.put<uint32_t>(3);
    add("truncated counts", r, "truncated: tensor count at offset 8");
  }
  add("negative tensor count", Raw{}.header(-1, 0), "tensor count -1 at offset 8 is negative");
  add("negative kv count", Raw{}.header(0, -5), "key-value count -5");
  add("huge kv count", Raw{}.header(0, INT64_MAX), "cannot fit");
  add("huge tensor count", Raw{}.header(INT64_MAX, 0), "cannot fit");
  add("string past end", Raw{}.header(0, 1).put<uint64_t>(1000).zeros(8), "has length 1000");
  add("huge string", Raw{}.header(0, 1).put<uint64_t>(UINT64_MAX).zeros(8), "more than the limit");
  add("empty key", Raw{}.header(0, 1).str("").put<uint32_t>(4).put<uint32_t>(1), "empty key");
  add("duplicate key", Raw{}.header(0, 2).kv_u32("a", 1).kv_u32("a", 2), "duplicate key 'a'");
  add("unknown value type", Raw{}.header(0, 1).str("a").put<uint32_t>(13).put<uint32_t>(1),
      "unknown value type 13");
  add("array of arrays", Raw{}.header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(0),
      "invalid element type 9");
  add("huge array", Raw{}.header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 40),
      "more than the limit");
  add("array past end", Raw{}.header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(1000).zeros(16),
      "claims 1000 values");
  add("string array past end",
      Raw{}.header(0, 1).str("a").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1000000).zeros(16),
      "claims 1000000 strings");
  add("alignment not u32", Raw{}.header(0, 1).str("general.alignment").put<uint32_t>(5).put<int32_t>(32),
      "must be u32");
  add("alignment not power of 2", Raw{}.header(0, 1).kv_u32("general.alignment", 48), "not a power of two");
  add("alignment zero", Raw{}.header(0, 1).kv_u32("general.alignment", 0), "not a power of two");
  add("too many dims", Raw{}.header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().zeros(32),
      "5 dimensions");
  add("negative ne", Raw{}.header(1, 0).tensor("t", {4, -1}, 0, 0).pad().zeros(32), "negative");
  add("ne overflow", Raw{}.header(1, 0).tensor("t", {1ll << 32, 1ll << 32}, 0, 0).pad().zeros(32),
      "more elements than fit");
  add("row overflow with a zero", Raw{}.header(1, 0).tensor("t", {0, 1ll << 40, 1ll << 40}, 0, 0).pad(),
      "more elements than fit");
  add("bytes overflow", Raw{}.header(1, 0).tensor("t", {1ll << 61, 2}, 0, 0).pad().zeros(32),
      "does not fit in 64 bits");
  add("unknown type", Raw{}.header(1, 0).tensor("t", {4}, 99, 0).pad().zeros(32), "unknown ggml type 99");
  add("removed type", Raw{}.header(1, 0).tensor("t", {32}, 4, 0).pad().zeros(32), "unknown ggml type 4");
  add("row not a block multiple", Raw{}.header(1, 0).tensor("t", {100, 2}, 12, 0).pad().zeros(512),
      "not a multiple of the block size 256");
  add("misaligned offset", Raw{}.header(1, 0).tensor("t", {4}, 0, 8).pad().zeros(64),
      "not a multiple of the alignment 32");
  add("offset past end", Raw{}.header(1, 0).tensor("t", {4}, 0, 1ull << 62).pad().zeros(32),
      "runs past the end");
  add("data past end", Raw{}.header(1, 0).tensor("t", {64}, 0, 0).pad().zeros(100), "runs past the end");
  add("overlap", Raw{}.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad().zeros(128),
      "overlap");
  add("duplicate tensor", Raw{}.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad().zeros(64),
      "duplicate tensor name 'a'");
  add("long name", Raw{}.header(1, 0).tensor(std::string(64, 'x'), {8}, 0, 0).pad().zeros(32),
      "longer than ggml's limit");
  add("header past end", Raw{}.header(1, 0).tensor("t", {8}, 0, 0), "truncated");
  return c;
}

TEST(GgufBroken, EveryCaseGivesAClearErrorAndGgmlAgrees) {
  for (const auto& bc : broken_cases()) {
    SCOPED_TRACE(bc.name);
    const fs::path p = temp_dir() / "broken.gguf";
    write_bytes(p, bc.bytes);
    EXPECT_THAT([&] { Reader r(p.string()); },
                ::testing::ThrowsMessage<Error>(::testing::AllOf(HasSubstr(p.string()),
                                                                 HasSubstr(bc.message))));
    // ggml refuses all the others too (it is stricter on data placement: it
    // needs tensors back to back); it does not look at the data section when
    // reading metadata, and lets a zero-length row hide an overflowing count.
    if (bc.name != "data past end" && bc.name != "row overflow with a zero") {
      EXPECT_FALSE(ggml_accepts(p));
    }
  }
}

TEST(GgufBroken, TruncatedAnywhereBeforeTheLastTensorEnds) {
  const Sample s = write_sample_with_ggml("to-truncate.gguf");
  const auto full = read_bytes(s.path);
  Reader whole(s.path.string());
  const TensorInfo& last = whole.tensors().back().n_bytes() ? whole.tensors().back()
                                                             : whole.tensors()[whole.tensors().size() - 2];
  const size_t data_end = whole.header().data_offset + last.offset + last.n_bytes();
  const fs::path p = temp_dir() / "truncated.gguf";
  for (size_t n = 0; n < data_end; ++n)
    EXPECT_THROW(parse(std::span(full).first(n), "truncated"), Error) << n;
  // Section boundaries, where ggml's metadata reader must fail as well.
  const size_t header_end = serialize_header(sample_kvs(), sample_tensors()).size();
  for (size_t n : {size_t{0}, size_t{4}, size_t{8}, size_t{16}, size_t{24}, header_end - 1}) {
    write_bytes(p, std::span(full).first(n));
    EXPECT_THAT([&] { Reader r(p.string()); },
                ::testing::ThrowsMessage<Error>(HasSubstr("truncated")));
    EXPECT_FALSE(ggml_accepts(p)) << n;
  }
}

TEST(GgufBroken, RandomCorruptionNeverCrashes) {
  const Sample s = write_sample_with_ggml("to-corrupt.gguf");
  const auto full = read_bytes(s.path);
  const size_t header_end = serialize_header(sample_kvs(), sample_tensors()).size();
  std::mt19937 rng(7);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = full;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % header_end] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const Header h = parse(b, "corrupt");
      ++accepted;
      for (const auto& t : h.tensors)
        ASSERT_LE(h.data_offset + t.offset + t.n_bytes(), b.size());
    } catch (const Error&) {
    }
  }
  EXPECT_GT(accepted, 0);  // flips inside string bytes and values are harmless
}

// ---------------------------------------------------------------- validation

TEST(GgufValidate, FindsWhatGgmlValidateRowDataFinds) {
  std::mt19937 rng(3);
  const Type types[] = {Type::F32, Type::F16, Type::BF16, Type::Q4_0, Type::Q4_1, Type::Q5_0,
                        Type::Q5_1, Type::Q8_0, Type::Q2_K, Type::Q3_K, Type::Q4_K, Type::Q5_K,
                        Type::Q6_K, Type::Q8_K, Type::IQ4_NL, Type::IQ4_XS, Type::TQ2_0};
  for (Type type : types) {
    const auto& tr = medquant::quant::traits(type);
    SCOPED_TRACE(tr.name);
    for (int iter = 0; iter < 300; ++iter) {
      std::vector<uint8_t> b(tr.type_size * (tr.block_size == 1 ? 1000 : 16));
      for (auto& x : b) x = static_cast<uint8_t>(rng());
      // Keep most bytes small so that valid blocks are common.
      if (iter % 2)
        for (auto& x : b) x &= 0x3b;
      const bool ours = !find_invalid_data(type, b).has_value();
      const bool ggml = ggml_validate_row_data(static_cast<ggml_type>(type), b.data(), b.size());
      ASSERT_EQ(ours, ggml) << "iteration " << iter;
    }
  }
}

// ---------------------------------------------------------------- imatrix

TEST(Imatrix, LegacyFormatNormalisedByCallCount) {
  Raw r;
  r.put<int32_t>(2);
  r.put<int32_t>(5).b.insert(r.b.end(), {'b', 'l', 'k', '.', 'a'});
  r.put<int32_t>(4).put<int32_t>(2).put<float>(8.0f).put<float>(2.0f);
  r.put<int32_t>(1).b.push_back('c');
  r.put<int32_t>(0).put<int32_t>(1).put<float>(3.0f);
  r.put<int32_t>(17).put<int32_t>(4).b.insert(r.b.end(), {'w', 'i', 'k', 'i'});
  const fs::path p = temp_dir() / "legacy.dat";
  write_bytes(p, r.b);
  const Imatrix im = load_imatrix(p.string());
  EXPECT_TRUE(im.legacy);
  EXPECT_EQ(im.chunk_count, 17);
  EXPECT_EQ(im.datasets, std::vector<std::string>{"wiki"});
  EXPECT_EQ(im.entries.at("blk.a"), (std::vector<float>{2.0f, 0.5f}));
  EXPECT_EQ(im.entries.at("c"), (std::vector<float>{3.0f}));

  r.b.resize(20);  // cut inside the first entry's values
  write_bytes(p, r.b);
  EXPECT_THAT([&] { load_imatrix(p.string()); },
              ::testing::ThrowsMessage<Error>(HasSubstr("truncated legacy imatrix")));
}

TEST(Imatrix, GgufFormatNormalisedPerExpert) {
  std::vector<KeyValue> kvs = {
      {"imatrix.datasets", Value::string_array({"calib.txt"})},
      {"imatrix.chunk_count", Value::scalar<uint32_t>(3)},
      {"imatrix.chunk_size", Value::scalar<uint32_t>(512)}};
  std::vector<TensorInfo> ts = {info("w.in_sum2", Type::F32, {2, 2}),
                                info("w.counts", Type::F32, {1, 2})};
  const fs::path p = temp_dir() / "imatrix.gguf";
  Writer w(p.string(), kvs, ts);
  const float sums[] = {6.0f, 3.0f, 5.0f, 7.0f};
  const float counts[] = {3.2f, 0.0f};  // rounds to 3; 0 gives ones
  w.write({reinterpret_cast<const uint8_t*>(sums), sizeof(sums)});
  w.write({reinterpret_cast<const uint8_t*>(counts), sizeof(counts)});
  w.commit();
  const Imatrix im = load_imatrix(p.string());
  EXPECT_FALSE(im.legacy);
  EXPECT_EQ(im.chunk_count, 3);
  EXPECT_EQ(im.datasets, std::vector<std::string>{"calib.txt"});
  EXPECT_EQ(im.entries.at("w"), (std::vector<float>{2.0f, 1.0f, 1.0f, 1.0f}));
}

TEST(Imatrix, WrittenAsLlamaImatrixAndReadBack) {
  ImatrixSums s;
  s.entries["blk.0.ffn_up.weight"] = {{4.0f, 8.0f}, {2}};
  s.entries["blk.0.ffn_down_exps.weight"] = {{3.0f, 6.0f, 5.0f, 7.0f}, {3, 0}};
  s.datasets = {"medical.txt"};
  s.chunk_count = 2;
  s.chunk_size = 64;
  const fs::path p = temp_dir() / "written.imatrix.gguf";
  write_imatrix(p.string(), s);
  const Reader r(p.string());
  ASSERT_EQ(r.tensors().size(), 4u);  // sorted by name, in_sum2 then counts
  EXPECT_EQ(r.tensors()[0].name, "blk.0.ffn_down_exps.weight.in_sum2");
  EXPECT_EQ(r.tensors()[0].shape_string(), "[2, 2]");
  EXPECT_EQ(r.tensors()[1].name, "blk.0.ffn_down_exps.weight.counts");
  EXPECT_EQ(r.tensors()[3].n_dims, 1u);  // [1, 1] as ggml writes it
  EXPECT_EQ(r.header().get_string("general.type"), "imatrix");
  const Imatrix im = load_imatrix(p.string());
  EXPECT_EQ(im.chunk_count, 2);
  EXPECT_EQ(im.datasets, std::vector<std::string>{"medical.txt"});
  EXPECT_EQ(im.entries.at("blk.0.ffn_up.weight"), (std::vector<float>{2.0f, 4.0f}));
  EXPECT_EQ(im.entries.at("blk.0.ffn_down_exps.weight"), (std::vector<float>{1.0f, 2.0f, 1.0f, 1.0f}));
  EXPECT_THAT([&] { write_imatrix((temp_dir() / "empty.gguf").string(), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("no imatrix entries")));
}

// ---------------------------------------------------------------- plan

Header model_header(const std::string& arch, uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv,
                    uint32_t n_expert, std::vector<TensorInfo> tensors) {
  Header h;
  h.kvs.push_back({"general.architecture", Value::string(arch)});
  h.kvs.push_back({arch + ".block_count", Value::scalar<uint32_t>(n_layer)});
  h.kvs.push_back({arch + ".attention.head_count", Value::scalar<uint32_t>(n_head)});
  h.kvs.push_back({arch + ".attention.head_count_kv", Value::scalar<uint32_t>(n_head_kv)});
  if (n_expert) h.kvs.push_back({arch + ".expert_count", Value::scalar<uint32_t>(n_expert)});
  h.tensors = std::move(tensors);
  return h;
}

// A random llama-like model: layers with attention and FFN tensors, norms,
// odd row lengths, optional output.weight, MoE experts.
std::vector<TensorInfo> random_model(std::mt19937& rng, uint32_t n_layer, uint32_t n_expert,
                                     bool tied) {
  const int64_t widths[] = {256, 512, 2560, 96, 320, 100, 64};
  auto width = [&] { return widths[rng() % (rng() % 3 == 0 ? 7 : 3)]; };
  const int64_t n_embd = width(), n_ff = width();
  std::vector<TensorInfo> ts;
  ts.push_back(info("token_embd.weight", Type::F16, {n_embd, 1000}));
  ts.push_back(info("output_norm.weight", Type::F32, {n_embd}));
  if (!tied) ts.push_back(info("output.weight", Type::F16, {n_embd, 1000}));
  if (rng() % 4 == 0) ts.push_back(info("position_embd.weight", Type::F16, {n_embd, 64}));
  for (uint32_t l = 0; l < n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    ts.push_back(info(b + "attn_norm.weight", Type::F32, {n_embd}));
    if (rng() % 5 == 0) {
      ts.push_back(info(b + "attn_qkv.weight", Type::F16, {n_embd, 3 * n_embd}));
    } else {
      ts.push_back(info(b + "attn_q.weight", Type::F16, {n_embd, n_embd}));
      ts.push_back(info(b + "attn_k.weight", Type::BF16, {n_embd, n_embd / 2}));
      ts.push_back(info(b + "attn_v.weight", Type::F16, {n_embd, n_embd / 2}));
    }
    ts.push_back(info(b + "attn_output.weight", Type::F16, {n_embd, n_embd}));
    ts.push_back(info(b + "ffn_norm.weight", Type::F32, {n_embd}));
    if (n_expert) {
      ts.push_back(info(b + "ffn_gate_inp.weight", Type::F32, {n_embd, n_expert}));
      ts.push_back(info(b + "ffn_gate_exps.weight", Type::F16, {n_embd, n_ff, n_expert}));
      ts.push_back(info(b + "ffn_up_exps.weight", Type::F16, {n_embd, n_ff, n_expert}));
      ts.push_back(info(b + "ffn_down_exps.weight", Type::F16, {n_ff, n_embd, n_expert}));
    } else {
      ts.push_back(info(b + "ffn_gate.weight", Type::F16, {n_embd, n_ff}));
      ts.push_back(info(b + "ffn_up.weight", Type::F16, {n_embd, n_ff}));
      ts.push_back(info(b + "ffn_down.weight", Type::F16, {n_ff, n_embd}));
    }
  }
  std::shuffle(ts.begin(), ts.end(), rng);  // file order must not matter
  return ts;
}

struct LlamaTypes {
  std::vector<ggml_type> types;  // in llama order
};

// llama.cpp's answer for the same model and options.
std::vector<ggml_type> llama_types(const Header& h, const std::vector<size_t>& order,
                                   const ModelParams& mp, const PlanOptions& opt) {
  llama_quant_model_desc desc{mp.arch.c_str(), 256, 256, mp.n_layer, mp.n_head,
                              mp.n_head_kv,    mp.n_expert, 64, 64};
  llama_model* model = llama_quant_model_from_metadata(&desc);
  llama_model_quantize_params params = llama_model_quantize_default_params();
  params.ftype = static_cast<llama_ftype>(opt.mix.file_type);
  params.pure = opt.pure;
  params.quantize_output_tensor = !opt.leave_output_tensor;
  if (opt.output_tensor_type) params.output_tensor_type = static_cast<ggml_type>(*opt.output_tensor_type);
  if (opt.token_embedding_type)
    params.token_embedding_type = static_cast<ggml_type>(*opt.token_embedding_type);
  std::vector<llama_model_tensor_override> tt;
  for (const auto& o : opt.tensor_types)
    tt.push_back({o.pattern.c_str(), static_cast<ggml_type>(o.type)});
  tt.push_back({nullptr, GGML_TYPE_COUNT});
  if (!opt.tensor_types.empty()) params.tt_overrides = tt.data();
  quantize_state_impl* qs = llama_quant_init(model, &params);

  ggml_init_params ip{ggml_tensor_overhead() * (order.size() + 1), nullptr, true};
  ggml_context* ctx = ggml_init(ip);
  std::vector<ggml_tensor*> ts;
  for (size_t i : order) {
    const TensorInfo& t = h.tensors[i];
    ggml_tensor* g = ggml_new_tensor(ctx, static_cast<ggml_type>(t.type), 4, t.ne.data());
    ggml_set_name(g, t.name.c_str());
    ts.push_back(g);
  }
  std::vector<ggml_type> out(ts.size());
  llama_quant_compute_types(qs, params.ftype, ts.data(), out.data(), ts.size());
  llama_quant_free(qs);
  llama_model_free(model);
  ggml_free(ctx);
  return out;
}

TEST(QuantizePlan, TensorOrderIsLlamaLoaderOrder) {
  std::vector<TensorInfo> ts = {info("blk.10.a", Type::F32, {1}), info("output.weight", Type::F32, {1}),
                                info("blk.2.b", Type::F32, {1}),  info("blk.2.a", Type::F32, {1}),
                                info("blk.x", Type::F32, {1}),    info("a", Type::F32, {1})};
  std::vector<std::string> names;
  for (size_t i : llama_tensor_order(ts)) names.push_back(ts[i].name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "blk.x", "output.weight", "blk.2.a", "blk.2.b",
                                             "blk.10.a"}));
}

TEST(QuantizePlan, MatchesLlamaCppForEveryMix) {
  std::mt19937 rng(1234);
  int checked = 0;
  for (int iter = 0; iter < 60; ++iter) {
    static const char* kArchs[] = {"llama", "gemma3", "falcon", "qwen2"};
    const std::string arch = kArchs[iter % 4];
    const uint32_t n_layer = std::vector<uint32_t>{1, 3, 8, 26, 34}[rng() % 5];
    const uint32_t n_head = 8, n_head_kv = std::vector<uint32_t>{8, 4, 2, 1}[rng() % 4];
    const uint32_t n_expert = (iter % 7 == 3) ? 8 : 0;
    const bool tied = rng() % 2;
    const Header h = model_header(arch, n_layer, n_head, n_head_kv, n_expert,
                                  random_model(rng, n_layer, n_expert, tied));
    const ModelParams mp = ModelParams::from(h, "model");
    for (const Mix& mix : mixes()) {
      PlanOptions opt;
      opt.mix = mix;
      switch (rng() % 6) {
        case 0: opt.pure = true; break;
        case 1: opt.leave_output_tensor = true; break;
        case 2: opt.output_tensor_type = Type::Q8_0; break;
        case 3: opt.token_embedding_type = Type::Q4_0; break;
        case 4:
          opt.tensor_types = {parse_tensor_type_override("attn_v=q8_0"),
                              parse_tensor_type_override("blk\\.1\\..*ffn=q5_k")};
          break;
        default: break;
      }
      SCOPED_TRACE(fmt::format("iter {} arch {} layers {} gqa {} experts {} tied {} mix {}", iter,
                               arch, n_layer, mp.n_gqa(), n_expert, tied, mix.name));
      Plan plan;
      try {
        plan = plan_quantization(h, opt, "model");
      } catch (const Error& e) {
        // Only the forced types that cannot fit a row are refused (llama.cpp aborts there).
        EXPECT_THAT(e.what(), HasSubstr("not a multiple"));
        continue;
      }
      const auto order = llama_tensor_order(h.tensors);
      const auto expected = llama_types(h, order, mp, opt);
      ASSERT_EQ(plan.tensors.size(), expected.size());
      for (size_t k = 0; k < expected.size(); ++k) {
        EXPECT_EQ(plan.tensors[k].source, order[k]);
        EXPECT_EQ(static_cast<uint32_t>(plan.tensors[k].type), static_cast<uint32_t>(expected[k]))
            << h.tensors[order[k]].name << " " << h.tensors[order[k]].shape_string();
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 500);
}

TEST(QuantizePlan, MetadataAsLlamaQuantizeSetsIt) {
  Header h;
  h.kvs = {{"general.architecture", Value::string("llama")},
           {"general.file_type", Value::scalar<uint32_t>(1)},
           {"split.count", Value::scalar<uint16_t>(2)},
           {"general.quantization_version", Value::scalar<uint32_t>(1)},
           {"llama.block_count", Value::scalar<uint32_t>(2)}};
  ImatrixMetadata im{"/some/path/imatrix.gguf", std::string(200, 'd'), 42, 5};
  const auto kvs = quantized_kvs(h, FileType::MostlyQ4_K_S, &im);
  std::vector<std::string> keys;
  for (const auto& kv : kvs) keys.push_back(kv.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"general.architecture", "llama.block_count",
                                            "general.quantization_version", "general.file_type",
                                            "quantize.imatrix.file", "quantize.imatrix.dataset",
                                            "quantize.imatrix.entries_count",
                                            "quantize.imatrix.chunks_count"}));
  EXPECT_EQ(kvs[2].value.get<uint32_t>(), 2u);
  EXPECT_EQ(kvs[3].value.get<uint32_t>(), 14u);
  EXPECT_EQ(kvs[5].value.str().size(), 127u);  // llama-quantize's 128-byte override buffer
}

TEST(QuantizePlan, ParsesMixesLikeLlamaQuantize) {
  EXPECT_EQ(parse_mix("q4_k_s")->name, "Q4_K_S");
  EXPECT_EQ(parse_mix("Q4_K")->name, "Q4_K_M");
  EXPECT_EQ(parse_mix("15")->name, "Q4_K_M");
  EXPECT_EQ(parse_mix("bf16")->file_type, FileType::MostlyBF16);
  EXPECT_FALSE(parse_mix("IQ2_XXS"));
  EXPECT_THROW(parse_tensor_type_override("attn_v"), Error);
  EXPECT_THROW(parse_tensor_type_override("attn_v=q9_9"), Error);
  EXPECT_EQ(parse_tensor_type_override("ATTN_V=Q8_0").pattern, "attn_v");
}

}  // namespace
