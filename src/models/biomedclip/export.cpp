#include "models/biomedclip/export.h"

#include <fmt/format.h>
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/thread_pool.h"
#include "onnx/model_io.h"
#include "text/wordpiece.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif

namespace medquant::models::biomedclip {
namespace fs = std::filesystem;
namespace {

// ---- attributes ---------------------------------------------------------------

::onnx::AttributeProto attr_int(const char* name, int64_t v) {
  ::onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(::onnx::AttributeProto::INT);
  a.set_i(v);
  return a;
}
::onnx::AttributeProto attr_ints(const char* name, const std::vector<int64_t>& v) {
  ::onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(::onnx::AttributeProto::INTS);
  for (int64_t x : v) a.add_ints(x);
  return a;
}
::onnx::AttributeProto attr_float(const char* name, float v) {
  ::onnx::AttributeProto a;
  a.set_name(name);
  a.set_type(::onnx::AttributeProto::FLOAT);
  a.set_f(v);
  return a;
}

::onnx::ValueInfoProto value_info(const std::string& name, int32_t type, const std::vector<int64_t>& dims) {
  ::onnx::ValueInfoProto v;
  v.set_name(name);
  auto* t = v.mutable_type()->mutable_tensor_type();
  t->set_elem_type(type);
  auto* s = t->mutable_shape();
  for (int64_t d : dims) s->add_dim()->set_dim_value(d);
  return v;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// [rows, cols] row-major -> [cols, rows], blocked for the caches, bands of
// output rows spread over the thread pool.
std::vector<float> transpose(const float* src, int64_t rows, int64_t cols) {
  std::vector<float> dst(static_cast<size_t>(rows * cols));
  constexpr int64_t kBlock = 32;
  const auto bands = static_cast<size_t>((cols + kBlock - 1) / kBlock);
  auto run = [&](size_t b0, size_t b1) {
    for (int64_t c0 = static_cast<int64_t>(b0) * kBlock; c0 < std::min(cols, static_cast<int64_t>(b1) * kBlock); c0 += kBlock)
      for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
        const int64_t r1 = std::min(rows, r0 + kBlock), c1 = std::min(cols, c0 + kBlock);
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) dst[static_cast<size_t>(c * rows + r)] = src[r * cols + c];
      }
  };
  if (rows * cols < (1 << 16))
    run(0, bands);
  else
    core::default_pool().parallel_chunks(0, bands, run);
  return dst;
}

// ---- graph builder ------------------------------------------------------------

class Builder {
 public:
  Builder(onnx::Model& model, std::shared_ptr<const Weights> weights)
      : g_(model.graph), w_(std::move(weights)) {}

  // One node with one output; returns the output's name.
  std::string op(const char* type, std::vector<std::string> inputs, const std::string& name,
                 std::vector<::onnx::AttributeProto> attrs = {}) {
    onnx::Node n;
    n.name = name;
    n.op_type = type;
    n.inputs = std::move(inputs);
    n.outputs = {name + "_output_0"};
    n.attributes = std::move(attrs);
    g_.nodes.push_back(std::move(n));
    return g_.nodes.back().outputs[0];
  }
  // Renames the last node's output (for graph outputs).
  void rename_last_output(const std::string& name) { g_.nodes.back().outputs[0] = name; }

  std::string f32(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
    g_.add_initializer(onnx::Tensor(name, onnx::kFloat, std::move(dims), float_bytes(v)));
    return name;
  }
  std::string i64(const std::string& name, std::vector<int64_t> dims, const std::vector<int64_t>& v) {
    g_.add_initializer(onnx::Tensor(
        name, onnx::kInt64, std::move(dims),
        std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t))));
    return name;
  }
  // A float scalar constant, shared by value.
  std::string scalar(float v, const char* label) {
    const std::string name = fmt::format("const.{}", label);
    if (!g_.find_initializer(name)) f32(name, {}, {v});
    return name;
  }
  std::string axes(const std::vector<int64_t>& v) {
    const std::string name = fmt::format("const.axes.{}", fmt::join(v, "_"));
    if (!g_.find_initializer(name)) i64(name, {static_cast<int64_t>(v.size())}, v);
    return name;
  }
  std::string shape(const std::vector<int64_t>& v) {
    const std::string name = fmt::format("const.shape.{}", fmt::join(v, "_"));
    if (!g_.find_initializer(name)) i64(name, {static_cast<int64_t>(v.size())}, v);
    return name;
  }

  // Checkpoint tensor `src` (elements [begin, begin + count) of it, all if
  // count = 0) as initializer `name` with `dims`: a view of the mapping when
  // stored as float32, else converted.
  std::string weight(const std::string& src, const std::string& name, std::vector<int64_t> dims,
                     int64_t begin = 0) {
    int64_t count = 1;
    for (int64_t d : dims) count *= d;
    onnx::Tensor t;
    t.name = name;
    t.type = onnx::kFloat;
    t.dims = std::move(dims);
    const auto raw = w_->f32_bytes(src);
    if (!raw.empty()) {
      if (static_cast<uint64_t>(begin + count) * 4 > raw.size())
        fail("{}: tensor '{}' is smaller than expected (a medquant bug)", w_->path(), src);
      t.set_view(w_, raw.data() + begin * 4, static_cast<size_t>(count) * 4);
    } else {
      const auto f = w_->floats(src);
      const auto v = f.values();
      t.set_bytes(std::string(reinterpret_cast<const char*>(v.data() + begin),
                              static_cast<size_t>(count) * 4));
    }
    g_.add_initializer(std::move(t));
    return name;
  }
  // Rows [r0, r1) of the torch Linear weight `src` [out, in], transposed to
  // [in, r1 - r0] for MatMul(x, W).
  std::string weight_t(const std::string& src, const std::string& name, int64_t r0 = 0,
                       int64_t r1 = -1) {
    const auto& s = w_->shapes().at(src);
    const int64_t in = s[1];
    if (r1 < 0) r1 = s[0];
    const auto f = w_->floats(src);
    auto t = transpose(f.values().data() + r0 * in, r1 - r0, in);
    g_.add_initializer(onnx::Tensor(name, onnx::kFloat, {in, r1 - r0}, float_bytes(t)));
    w_->release(src);
    return name;
  }
  const Weights& weights() const { return *w_; }
  onnx::Graph& graph() { return g_; }

 private:
  onnx::Graph& g_;
  std::shared_ptr<const Weights> w_;
};

std::string layer_norm(Builder& b, const std::string& x, const std::string& w, const std::string& bias,
                       float eps, const std::string& name) {
  return b.op("LayerNormalization", {x, w, bias}, name, {attr_int("axis", -1), attr_float("epsilon", eps)});
}

// x * 0.5 * (1 + erf(x / sqrt 2)), in torch's export order.
std::string gelu(Builder& b, const std::string& x, const std::string& name) {
  const auto d = b.op("Div", {x, b.scalar(static_cast<float>(M_SQRT2), "sqrt2")}, name + "/Div");
  const auto e = b.op("Erf", {d}, name + "/Erf");
  const auto a = b.op("Add", {e, b.scalar(1.0f, "one")}, name + "/Add");
  const auto m = b.op("Mul", {x, a}, name + "/Mul");
  return b.op("Mul", {m, b.scalar(0.5f, "half")}, name + "/Mul_1");
}

std::string linear(Builder& b, const std::string& x, const std::string& w, const std::string& bias,
                   const std::string& name) {
  const auto y = b.op("MatMul", {x, w}, name + "/MatMul");
  return bias.empty() ? y : b.op("Add", {y, bias}, name + "/Add");
}

struct Qkv {
  std::string q_w, q_b, k_w, k_b, v_w, v_b;
};

// Multi-head self-attention over x [N,T,W]; returns the heads merged [N,T,W]
// (before the output projection). `mask` is an additive [N,1,1,T] or "".
std::string attention(Builder& b, const std::string& x, const Qkv& p, int64_t heads, int64_t width,
                      const std::string& mask, const std::string& name) {
  const int64_t d = width / heads;
  const auto split = b.shape({0, 0, heads, d});
  auto project = [&](const std::string& w, const std::string& bias, const char* which,
                     const std::vector<int64_t>& perm) {
    const auto y = linear(b, x, w, bias, fmt::format("{}/{}", name, which));
    const auto r = b.op("Reshape", {y, split}, fmt::format("{}/{}/Reshape", name, which));
    return b.op("Transpose", {r}, fmt::format("{}/{}/Transpose", name, which), {attr_ints("perm", perm)});
  };
  const auto q = project(p.q_w, p.q_b, "query", {0, 2, 1, 3});
  const auto k = project(p.k_w, p.k_b, "key", {0, 2, 3, 1});
  const auto v = project(p.v_w, p.v_b, "value", {0, 2, 1, 3});
  auto s = b.op("MatMul", {q, k}, name + "/scores/MatMul");
  s = b.op("Div", {s, b.scalar(std::sqrt(static_cast<float>(d)), fmt::format("sqrt_head_dim_{}", d).c_str())},
           name + "/scores/Div");
  if (!mask.empty()) s = b.op("Add", {s, mask}, name + "/scores/Add");
  const auto probs = b.op("Softmax", {s}, name + "/Softmax", {attr_int("axis", -1)});
  const auto ctx = b.op("MatMul", {probs, v}, name + "/context/MatMul");
  const auto t = b.op("Transpose", {ctx}, name + "/context/Transpose", {attr_ints("perm", {0, 2, 1, 3})});
  return b.op("Reshape", {t, b.shape({0, 0, width})}, name + "/context/Reshape");
}

// x / max(||x||, 1e-12) over the last axis (torch.nn.functional.normalize).
std::string l2_normalize(Builder& b, const std::string& x, const std::string& name) {
  const auto n = b.op("ReduceL2", {x}, name + "/ReduceL2", {attr_ints("axes", {-1}), attr_int("keepdims", 1)});
  const auto c = b.op("Max", {n, b.scalar(1e-12f, "norm_eps")}, name + "/Max");
  return b.op("Div", {x, c}, name + "/Div");
}

onnx::Model new_model(const std::string& graph_name, int64_t opset) {
  if (opset != kDefaultOpset)
    fail("--opset {}: only opset {} is written (LayerNormalization needs 17; medquant's ONNX "
         "checker, libonnx 1.12, knows no newer opset)",
         opset, kDefaultOpset);
  onnx::Model m;
  m.header.set_ir_version(8);
  m.header.set_producer_name("medquant");
  m.header.set_producer_version(MEDQUANT_VERSION);
  m.set_opset("", opset);
  m.graph.name = graph_name;
  return m;
}

void check_batch(int64_t batch) {
  if (batch < 1 || batch > 65536) fail("--batch {}: must be between 1 and 65536", batch);
}

// ---- BERT encoder ---------------------------------------------------------------

struct BertOut {
  std::string hidden;     // [N,L,H]
  std::string mask_float; // [N,L] float (1 = token)
};

BertOut bert_encoder(Builder& b, const BertConfig& c, int64_t batch, int64_t len,
                     const std::string& ids, const std::string& mask, const std::string& scope,
                     const std::string& init_prefix) {
  const std::string& p = c.prefix;
  const int64_t h = c.hidden;
  auto wname = [&](const std::string& s) { return init_prefix + s.substr(p.size()); };
  auto view = [&](const std::string& s, std::vector<int64_t> dims, int64_t begin = 0) {
    return b.weight(s, wname(s), std::move(dims), begin);
  };
  // Embeddings: word + token type 0 + absolute positions 0..L-1, then LayerNorm.
  const auto we = view(p + "embeddings.word_embeddings.weight", {c.vocab_size, h});
  auto x = b.op("Gather", {we, ids}, scope + "/embeddings/word_embeddings/Gather", {attr_int("axis", 0)});
  const auto tt = b.weight(p + "embeddings.token_type_embeddings.weight",
                           init_prefix + "embeddings.token_type_embeddings.weight.0", {h});
  x = b.op("Add", {x, tt}, scope + "/embeddings/Add");
  const auto pos = b.weight(p + "embeddings.position_embeddings.weight",
                            init_prefix + fmt::format("embeddings.position_embeddings.weight.0_{}", len),
                            {len, h});
  x = b.op("Add", {x, pos}, scope + "/embeddings/Add_1");
  auto ln = [&](const std::string& x_in, const std::string& module, const std::string& node) {
    const auto nw = view(c.norm_param(p + module, true), {h});
    const auto nb = view(c.norm_param(p + module, false), {h});
    return layer_norm(b, x_in, nw, nb, c.layer_norm_eps, node);
  };
  x = ln(x, "embeddings.LayerNorm", scope + "/embeddings/LayerNorm");

  // Additive key mask, as transformers builds it: (1 - mask) * float32 min.
  const auto m4 = b.op("Unsqueeze", {mask, b.axes({1, 2})}, scope + "/mask/Unsqueeze");
  const auto mf4 = b.op("Cast", {m4}, scope + "/mask/Cast", {attr_int("to", onnx::kFloat)});
  const auto inv = b.op("Sub", {b.scalar(1.0f, "one"), mf4}, scope + "/mask/Sub");
  const auto add_mask = b.op("Mul", {inv, b.scalar(std::numeric_limits<float>::lowest(), "float_min")},
                             scope + "/mask/Mul");

  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string l = fmt::format("{}encoder.layer.{}.", p, i);
    const std::string s = fmt::format("{}/encoder/layer.{}", scope, i);
    Qkv qkv;
    qkv.q_w = b.weight_t(l + "attention.self.query.weight", wname(l + "attention.self.query.weight"));
    qkv.q_b = view(l + "attention.self.query.bias", {h});
    qkv.k_w = b.weight_t(l + "attention.self.key.weight", wname(l + "attention.self.key.weight"));
    qkv.k_b = view(l + "attention.self.key.bias", {h});
    qkv.v_w = b.weight_t(l + "attention.self.value.weight", wname(l + "attention.self.value.weight"));
    qkv.v_b = view(l + "attention.self.value.bias", {h});
    const auto ctx = attention(b, x, qkv, c.heads, h, add_mask, s + "/attention/self");
    const auto ow = b.weight_t(l + "attention.output.dense.weight", wname(l + "attention.output.dense.weight"));
    const auto a = linear(b, ctx, ow, view(l + "attention.output.dense.bias", {h}), s + "/attention/output/dense");
    x = ln(b.op("Add", {a, x}, s + "/attention/output/Add"), l.substr(p.size()) + "attention.output.LayerNorm",
           s + "/attention/output/LayerNorm");
    const auto iw = b.weight_t(l + "intermediate.dense.weight", wname(l + "intermediate.dense.weight"));
    auto f = linear(b, x, iw, view(l + "intermediate.dense.bias", {c.intermediate}), s + "/intermediate/dense");
    f = gelu(b, f, s + "/intermediate/Gelu");
    const auto dw = b.weight_t(l + "output.dense.weight", wname(l + "output.dense.weight"));
    const auto o = linear(b, f, dw, view(l + "output.dense.bias", {h}), s + "/output/dense");
    x = ln(b.op("Add", {o, x}, s + "/output/Add"), l.substr(p.size()) + "output.LayerNorm",
           s + "/output/LayerNorm");
  }
  const auto mf = b.op("Cast", {mask}, scope + "/mask/Cast_1", {attr_int("to", onnx::kFloat)});
  (void)batch;
  return {x, mf};
}

// Hidden state of token 0: [N,L,H] -> [N,H].
std::string token0(Builder& b, const std::string& x, const std::string& name) {
  if (!b.graph().find_initializer("const.index0")) b.i64("const.index0", {}, {0});
  return b.op("Gather", {x, "const.index0"}, name, {attr_int("axis", 1)});
}

// sum(h * m) / (sum(m) [clamped]) over the tokens.
std::string masked_mean(Builder& b, const std::string& x, const std::string& mask_float,
                        std::optional<float> clamp, const std::string& name) {
  const auto m3 = b.op("Unsqueeze", {mask_float, b.axes({2})}, name + "/Unsqueeze");
  const auto prod = b.op("Mul", {x, m3}, name + "/Mul");
  const auto sum = b.op("ReduceSum", {prod, b.axes({1})}, name + "/ReduceSum", {attr_int("keepdims", 0)});
  auto count = b.op("ReduceSum", {mask_float, b.axes({1})}, name + "/ReduceSum_1", {attr_int("keepdims", 1)});
  if (clamp) count = b.op("Max", {count, b.scalar(*clamp, "mean_clamp")}, name + "/Max");
  return b.op("Div", {sum, count}, name + "/Div");
}

// ---- metadata ------------------------------------------------------------------

std::string json_numbers(const std::array<double, 3>& v) {
  return fmt::format("[{:.9g}, {:.9g}, {:.9g}]", v[0], v[1], v[2]);
}

// "org/name" from a Hugging Face cache path (.../models--org--name/snapshots/<rev>),
// else the folder's name.
std::string model_name_from_dir(const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  for (fs::path q = p; q.has_parent_path() && q != q.parent_path(); q = q.parent_path()) {
    const std::string n = q.filename().string();
    if (n.starts_with("models--")) {
      std::string id = n.substr(8);
      const size_t sep = id.find("--");
      if (sep != std::string::npos) id.replace(sep, 2, "/");
      return id;
    }
  }
  return p.filename().string();
}

struct TokenizerInfo {
  std::string vocab_file, vocab_sha256;
  size_t vocab_size = 0;
  bool do_lower_case = true;
  int32_t cls = -1, sep = -1, pad = -1, unk = -1;
};

std::optional<TokenizerInfo> read_tokenizer(const std::string& dir, int64_t embedding_rows) {
  const fs::path vocab = fs::path(dir) / "vocab.txt";
  if (!fs::exists(vocab)) return std::nullopt;
  TokenizerInfo t;
  t.vocab_file = "vocab.txt";
  const std::string text = core::read_text_file(vocab.string());
  t.vocab_sha256 = core::sha256_hex(text);
  const auto v = text::Vocab::parse(text, vocab.string());
  t.vocab_size = v.size();
  if (static_cast<int64_t>(v.size()) > embedding_rows)
    fail("{}: {} tokens, but the text tower's word embeddings have only {} rows", vocab.string(),
         v.size(), embedding_rows);
  t.cls = v.find("[CLS]");
  t.sep = v.find("[SEP]");
  t.pad = v.find("[PAD]");
  t.unk = v.find("[UNK]");
  const fs::path tc = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(tc)) {
    Json j;
    try {
      j = Json::parse(core::read_text_file(tc.string()));
    } catch (const Json::exception& e) {
      fail("{}: {}", tc.string(), e.what());
    }
    if (j.is_object() && j.contains("do_lower_case") && j["do_lower_case"].is_boolean())
      t.do_lower_case = j["do_lower_case"].get<bool>();
  }
  return t;
}

void add_tokenizer_metadata(onnx::Model& m, const std::optional<TokenizerInfo>& t) {
  if (!t) return;
  m.set_metadata("tokenizer", "bert_wordpiece");
  m.set_metadata("tokenizer_vocab_file", t->vocab_file);
  m.set_metadata("tokenizer_vocab_sha256", t->vocab_sha256);
  m.set_metadata("tokenizer_vocab_size", std::to_string(t->vocab_size));
  m.set_metadata("tokenizer_do_lower_case", t->do_lower_case ? "true" : "false");
  m.set_metadata("cls_token_id", std::to_string(t->cls));
  m.set_metadata("sep_token_id", std::to_string(t->sep));
  m.set_metadata("pad_token_id", std::to_string(t->pad));
  m.set_metadata("unk_token_id", std::to_string(t->unk));
}

Json read_json(const std::string& path) {
  try {
    return Json::parse(core::read_text_file(path));
  } catch (const Json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

std::string existing(const fs::path& p) { return fs::exists(p) ? p.string() : std::string(); }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void check_output_dir(const std::string& out_dir) {
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_directory(out_dir, ec))
    fail("{}: exists and is not a folder", out_dir);
  fs::create_directories(out_dir, ec);
  if (ec) fail("{}: cannot create the folder: {}", out_dir, ec.message());
}

}  // namespace

// ---- BiomedCLIP ------------------------------------------------------------------

BiomedClipCheckpoint BiomedClipCheckpoint::open(const std::string& dir) {
  BiomedClipCheckpoint c;
  c.dir = dir;
  if (!fs::is_directory(dir)) fail("{}: not a folder (expected a BiomedCLIP checkpoint folder)", dir);
  const fs::path d(dir);
  c.config_path = existing(d / "open_clip_config.json");
  if (c.config_path.empty())
    fail("{}: no open_clip_config.json (not an open_clip checkpoint folder)", dir);
  c.weights_path = existing(d / "open_clip_model.safetensors");
  if (c.weights_path.empty()) c.weights_path = existing(d / "open_clip_pytorch_model.bin");
  if (c.weights_path.empty())
    fail("{}: no open_clip_pytorch_model.bin or open_clip_model.safetensors", dir);
  c.vocab_path = existing(d / "vocab.txt");

  ConfigFiles& f = c.files;
  f.open_clip_path = c.config_path;
  f.open_clip = read_json(c.config_path);
  // Side configs: the timm local-dir config and the BERT config, if present.
  auto text_of = [&](const char* a, const char* b) -> std::string {
    if (!f.open_clip.is_object() || !f.open_clip.contains("model_cfg")) return "";
    const Json& mc = f.open_clip["model_cfg"];
    if (!mc.is_object() || !mc.contains(a) || !mc[a].is_object()) return "";
    const Json& s = mc[a];
    return s.contains(b) && s[b].is_string() ? s[b].get<std::string>() : "";
  };
  const std::string timm = text_of("vision_cfg", "timm_model_name");
  if (timm.starts_with("local-dir:")) {
    fs::path t(timm.substr(10));
    if (t.is_relative()) t = d / t;
    if (fs::is_directory(t)) t /= "config.json";
    if (fs::exists(t)) {
      f.timm_path = t.string();
      f.timm = read_json(f.timm_path);
    }
  }
  const std::string hf = text_of("text_cfg", "hf_model_name");
  std::vector<fs::path> text_candidates = {d / "text_config.json"};
  if (!hf.empty()) {
    text_candidates.push_back(d / hf / "config.json");
    text_candidates.push_back(d / fs::path(hf).filename() / "config.json");
  }
  for (const auto& t : text_candidates)
    if (fs::is_regular_file(t)) {
      f.text_path = t.string();
      f.text = read_json(f.text_path);
      break;
    }

  c.weights = Weights::open(c.weights_path);
  f.weights_path = c.weights_path;
  c.config = describe_biomedclip(f, c.weights->shapes());
  {
    const auto s = c.weights->floats("logit_scale");
    c.logit_scale = s.values()[0];
    if (c.weights->has("logit_bias") && c.weights->shapes().at("logit_bias").size() <= 1)
      c.logit_bias = c.weights->floats("logit_bias").values()[0];
  }
  return c;
}

onnx::Model build_vision_model(const BiomedClipCheckpoint& ckpt, const ExportOptions& o) {
  check_batch(o.batch);
  const VisionConfig& v = ckpt.config.vision;
  onnx::Model m = new_model("biomedclip_vision", o.opset);
  Builder b(m, ckpt.weights);
  const std::string& p = v.prefix;
  const int64_t n = o.batch, w = v.width, g = v.grid(), t = v.tokens();
  const std::string ip = "visual.";  // initializer names: the checkpoint's, without "trunk."
  auto name = [&](const std::string& s) { return ip + s.substr(p.size()); };
  auto view = [&](const std::string& s, std::vector<int64_t> dims, int64_t begin = 0) {
    return b.weight(s, name(s), std::move(dims), begin);
  };
  m.graph.inputs.push_back(value_info("pixel_values", onnx::kFloat, {n, 3, v.image_size, v.image_size}));

  // Patches: Conv(kernel = stride = patch) -> [N, W, g*g] -> [N, g*g, W], + positions.
  const auto pw = view(p + "patch_embed.proj.weight", {w, 3, v.patch_size, v.patch_size});
  const auto pb = view(p + "patch_embed.proj.bias", {w});
  auto x = b.op("Conv", {"pixel_values", pw, pb}, "/visual/patch_embed/proj/Conv",
                {attr_ints("kernel_shape", {v.patch_size, v.patch_size}),
                 attr_ints("strides", {v.patch_size, v.patch_size})});
  x = b.op("Reshape", {x, b.shape({0, w, g * g})}, "/visual/patch_embed/Reshape");
  x = b.op("Transpose", {x}, "/visual/patch_embed/Transpose", {attr_ints("perm", {0, 2, 1})});
  const auto pos = b.weight(p + "pos_embed", "visual.pos_embed.patches", {1, g * g, w}, w);
  x = b.op("Add", {x, pos}, "/visual/pos_embed/Add");
  // Class token + its position (the same float sum timm computes), one per image.
  {
    const auto cls = ckpt.weights->floats(p + "cls_token");
    const auto pe = ckpt.weights->floats(p + "pos_embed");
    std::vector<float> row(static_cast<size_t>(n * w));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < w; ++j) row[i * w + j] = cls.values()[j] + pe.values()[j];
    b.f32("visual.cls_token_plus_pos_embed", {n, 1, w}, row);
  }
  x = b.op("Concat", {"visual.cls_token_plus_pos_embed", x}, "/visual/Concat", {attr_int("axis", 1)});

  for (int64_t i = 0; i < v.depth; ++i) {
    const std::string blk = fmt::format("{}blocks.{}.", p, i);
    const std::string s = fmt::format("/visual/blocks.{}", i);
    const std::string bn = name(blk);
    auto h = layer_norm(b, x, view(blk + "norm1.weight", {w}), view(blk + "norm1.bias", {w}),
                        v.layer_norm_eps, s + "/norm1/LayerNormalization");
    // timm's stacked qkv Linear, split into three MatMuls.
    const std::string qkv_w = blk + "attn.qkv.weight", qkv_b = blk + "attn.qkv.bias";
    Qkv qkv;
    qkv.q_w = b.weight_t(qkv_w, bn + "attn.q.weight", 0, w);
    qkv.k_w = b.weight_t(qkv_w, bn + "attn.k.weight", w, 2 * w);
    qkv.v_w = b.weight_t(qkv_w, bn + "attn.v.weight", 2 * w, 3 * w);
    qkv.q_b = b.weight(qkv_b, bn + "attn.q.bias", {w}, 0);
    qkv.k_b = b.weight(qkv_b, bn + "attn.k.bias", {w}, w);
    qkv.v_b = b.weight(qkv_b, bn + "attn.v.bias", {w}, 2 * w);
    const auto ctx = attention(b, h, qkv, v.heads, w, "", s + "/attn");
    const auto a = linear(b, ctx, b.weight_t(blk + "attn.proj.weight", bn + "attn.proj.weight"),
                          view(blk + "attn.proj.bias", {w}), s + "/attn/proj");
    x = b.op("Add", {x, a}, s + "/Add");
    h = layer_norm(b, x, view(blk + "norm2.weight", {w}), view(blk + "norm2.bias", {w}),
                   v.layer_norm_eps, s + "/norm2/LayerNormalization");
    h = linear(b, h, b.weight_t(blk + "mlp.fc1.weight", bn + "mlp.fc1.weight"),
               view(blk + "mlp.fc1.bias", {v.mlp_hidden}), s + "/mlp/fc1");
    h = gelu(b, h, s + "/mlp/act/Gelu");
    h = linear(b, h, b.weight_t(blk + "mlp.fc2.weight", bn + "mlp.fc2.weight"),
               view(blk + "mlp.fc2.bias", {w}), s + "/mlp/fc2");
    x = b.op("Add", {x, h}, s + "/Add_1");
  }

  // Final norm and pooling: token 0 (normed alone: LayerNorm is per token), or
  // the mean of the normed patch tokens.
  const auto nw = view(p + "norm.weight", {w});
  const auto nb = view(p + "norm.bias", {w});
  std::string pooled;
  if (v.pool == VisionPool::Token) {
    pooled = token0(b, x, "/visual/pool/Gather");
    pooled = layer_norm(b, pooled, nw, nb, v.layer_norm_eps, "/visual/norm/LayerNormalization");
  } else {
    x = layer_norm(b, x, nw, nb, v.layer_norm_eps, "/visual/norm/LayerNormalization");
    const auto patches = b.op("Slice", {x, b.axes({1}), b.axes({t}), b.axes({1})}, "/visual/pool/Slice");
    pooled = b.op("ReduceMean", {patches}, "/visual/pool/ReduceMean",
                  {attr_ints("axes", {1}), attr_int("keepdims", 0)});
  }
  std::string out = pooled;
  if (!v.head.empty()) {
    const auto hw = b.weight_t(v.head + ".weight", v.head + ".weight");
    const auto hb = v.head_bias ? b.weight(v.head + ".bias", v.head + ".bias", {v.output_dim}) : "";
    out = linear(b, pooled, hw, hb, "/visual/head/proj");
  }
  if (o.l2_normalize) out = l2_normalize(b, out, "/visual/normalize");
  if (m.graph.nodes.back().outputs[0] != out) out = b.op("Identity", {out}, "/visual/output/Identity");
  b.rename_last_output("image_embeds");
  m.graph.outputs.push_back(value_info("image_embeds", onnx::kFloat, {n, v.output_dim}));
  return m;
}

onnx::Model build_text_model(const BiomedClipCheckpoint& ckpt, const ExportOptions& o) {
  check_batch(o.batch);
  const TextConfig& t = ckpt.config.text;
  onnx::Model m = new_model("biomedclip_text", o.opset);
  Builder b(m, ckpt.weights);
  const int64_t n = o.batch, len = t.context_length;
  m.graph.inputs.push_back(value_info("input_ids", onnx::kInt64, {n, len}));
  m.graph.inputs.push_back(value_info("attention_mask", onnx::kInt64, {n, len}));
  const auto enc = bert_encoder(b, t.bert, n, len, "input_ids", "attention_mask", "/text/transformer",
                                "text.transformer.");
  std::string pooled;
  if (t.pool == TextPool::Mean) {
    pooled = masked_mean(b, enc.hidden, enc.mask_float, std::nullopt, "/text/pooler");
  } else {
    pooled = token0(b, enc.hidden, "/text/pooler/Gather");
    if (t.pool == TextPool::ClsPooler) {
      const std::string pp = t.bert.prefix + "pooler.dense.";
      pooled = linear(b, pooled, b.weight_t(pp + "weight", pp + "weight"),
                      b.weight(pp + "bias", pp + "bias", {t.bert.hidden}), "/text/transformer/pooler/dense");
      pooled = b.op("Tanh", {pooled}, "/text/transformer/pooler/Tanh");
    }
  }
  std::string out = pooled;
  if (t.proj == TextProj::Mlp) {
    out = b.op("MatMul", {out, b.weight_t("text.proj.0.weight", "text.proj.0.weight")}, "/text/proj/0/MatMul");
    out = gelu(b, out, "/text/proj/1/Gelu");
    out = b.op("MatMul", {out, b.weight_t("text.proj.2.weight", "text.proj.2.weight")}, "/text/proj/2/MatMul");
  } else if (t.proj == TextProj::Linear) {
    out = b.op("MatMul", {out, b.weight_t("text.proj.weight", "text.proj.weight")}, "/text/proj/MatMul");
  }
  if (o.l2_normalize) out = l2_normalize(b, out, "/text/normalize");
  if (m.graph.nodes.back().outputs[0] != out) out = b.op("Identity", {out}, "/text/output/Identity");
  b.rename_last_output("text_embeds");
  m.graph.outputs.push_back(value_info("text_embeds", onnx::kFloat, {n, t.output_dim}));
  return m;
}

void check_exported(const onnx::Model& model, const std::string& what) {
  with_context(what, [&] { onnx::check_model(model); });
  ::onnx::ModelProto mp = onnx::to_proto(model, true);
  try {
    ::onnx::shape_inference::InferShapes(mp, ::onnx::OpSchemaRegistry::Instance(),
                                          ::onnx::ShapeInferenceOptions(true, 1, true));
  } catch (const std::exception& e) {
    fail("{}: ONNX shape inference (strict): {}", what, e.what());
  }
  for (const auto& out : mp.graph().output()) {
    const auto& declared = out.type().tensor_type().shape();
    const ::onnx::ValueInfoProto* inferred = nullptr;
    for (const auto& vi : mp.graph().value_info())
      if (vi.name() == out.name()) inferred = &vi;
    if (!inferred || !inferred->type().tensor_type().has_shape()) continue;
    const auto& s = inferred->type().tensor_type().shape();
    bool same = s.dim_size() == declared.dim_size();
    for (int i = 0; same && i < s.dim_size(); ++i)
      same = !s.dim(i).has_dim_value() || s.dim(i).dim_value() == declared.dim(i).dim_value();
    if (!same) fail("{}: output '{}' is inferred with another shape than declared (a medquant bug)", what, out.name());
  }
}

ExportResult export_biomedclip(const std::string& dir, const std::string& out_dir,
                               const ExportOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  auto lap = [last = start](const char* what) mutable {
    const auto now = std::chrono::steady_clock::now();
    core::log_verbose("{}: {:.3f} s", what, std::chrono::duration<double>(now - last).count());
    last = now;
  };
  check_batch(o.batch);
  if (o.opset != kDefaultOpset) new_model("", o.opset);  // the same message, before any work
  auto ckpt = BiomedClipCheckpoint::open(dir);
  lap("read and validate the checkpoint");
  const BiomedClipConfig& c = ckpt.config;
  const auto tok = read_tokenizer(dir, c.text.bert.vocab_size);
  core::log_info("{}: BiomedCLIP: ViT {}x{} (patch {}, {} px, {} heads: {}), BERT {}x{} ({} heads: {}), "
                 "embed {}",
                 dir, c.vision.depth, c.vision.width, c.vision.patch_size, c.vision.image_size,
                 c.vision.heads, c.vision.heads_rule, c.text.bert.layers, c.text.bert.hidden,
                 c.text.bert.heads, c.text.bert.heads_rule, c.embed_dim);
  check_output_dir(out_dir);
  // Hash the source while the graphs are built.
  auto hash = std::async(std::launch::async, [&] { return core::sha256_file(ckpt.weights_path); });
  const std::string config_sha = core::sha256_hex(core::read_text_file(ckpt.config_path));

  auto metadata = [&](onnx::Model& m, const char* tower, const std::string& source_sha) {
    m.set_metadata("model_family", "open_clip");
    m.set_metadata("model_name", model_name_from_dir(dir));
    m.set_metadata("tower", tower);
    m.set_metadata("source_file", fs::path(ckpt.weights_path).filename().string());
    m.set_metadata("source_sha256", source_sha);
    m.set_metadata("source_config_sha256", config_sha);
    m.set_metadata("exporter", fmt::format("medquant {}", MEDQUANT_VERSION));
    m.set_metadata("embed_dim", std::to_string(c.embed_dim));
    m.set_metadata("l2_normalized", o.l2_normalize ? "true" : "false");
    m.set_metadata("batch_size", std::to_string(o.batch));
    m.set_metadata("logit_scale", fmt::format("{:.9g}", ckpt.logit_scale));
    m.set_metadata("logit_scale_exp", fmt::format("{:.9g}", std::exp(static_cast<double>(ckpt.logit_scale))));
    if (ckpt.logit_bias) m.set_metadata("logit_bias", fmt::format("{:.9g}", *ckpt.logit_bias));
    m.set_metadata("image_size", std::to_string(c.preprocess.image_size));
    m.set_metadata("image_mean", json_numbers(c.preprocess.mean));
    m.set_metadata("image_std", json_numbers(c.preprocess.std));
    m.set_metadata("image_interpolation", c.preprocess.interpolation);
    m.set_metadata("image_resize_mode", c.preprocess.resize_mode);
    m.set_metadata("image_crop", "center");
    m.set_metadata("timm_model_name", c.vision.timm_model_name);
    m.set_metadata("vision_pool", std::string(to_string(c.vision.pool)));
    m.set_metadata("context_length", std::to_string(c.text.context_length));
    m.set_metadata("hf_model_name", c.text.hf_model_name);
    m.set_metadata("text_pool", std::string(to_string(c.text.pool)));
    m.set_metadata("text_proj", std::string(to_string(c.text.proj)));
    add_tokenizer_metadata(m, tok);
  };

  ExportResult result;
  const std::string vision_path = (fs::path(out_dir) / "biomedclip_vision.onnx").string();
  const std::string text_path = (fs::path(out_dir) / "biomedclip_text.onnx").string();
  // The whole checkpoint was validated against its description above; one
  // tower at a time is then built, checked and written (peak memory: one
  // tower's transposed weights). If the text tower fails, the vision file
  // is removed again, so a failed export leaves no file behind.
  {
    onnx::Model vision = build_vision_model(ckpt, o);
    lap("build vision graph");
    check_exported(vision, vision_path);
    lap("check vision graph");
    result.source_sha256 = hash.get();
    lap("hash the source (rest)");
    metadata(vision, "vision", result.source_sha256);
    onnx::save_model(vision, vision_path);
    lap("write vision model");
  }
  try {
    onnx::Model text = build_text_model(ckpt, o);
    lap("build text graph");
    check_exported(text, text_path);
    lap("check text graph");
    metadata(text, "text", result.source_sha256);
    onnx::save_model(text, text_path);
    lap("write text model");
  } catch (...) {
    std::error_code ec;
    fs::remove(vision_path, ec);
    throw;
  }
  result.files = {vision_path, text_path};
  result.seconds = seconds_since(start);
  return result;
}

// ---- plain BERT ------------------------------------------------------------------

ExportResult export_bert(const std::string& dir, const std::string& out_path, const BertExportOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  check_batch(o.batch);
  if (o.opset != kDefaultOpset) new_model("", o.opset);
  if (!fs::is_directory(dir)) fail("{}: not a folder (expected a Hugging Face BERT model folder)", dir);
  const fs::path d(dir);
  const std::string config_path = existing(d / "config.json");
  if (config_path.empty()) fail("{}: no config.json (not a Hugging Face model folder)", dir);
  const Json config = read_json(config_path);
  std::string weights_path = existing(d / "model.safetensors");
  if (weights_path.empty()) weights_path = existing(d / "model.safetensors.index.json");
  if (weights_path.empty()) weights_path = existing(d / "pytorch_model.bin");
  if (weights_path.empty()) fail("{}: no model.safetensors or pytorch_model.bin", dir);
  const auto weights = Weights::open(weights_path);
  const auto& shapes = weights->shapes();
  const std::string prefix = find_bert_prefix(shapes, weights_path);
  const BertConfig bc = describe_bert(&config, config_path, shapes, prefix, weights_path);
  with_context(weights_path, [&] {
    check_tensors(expected_bert_tensors(bc, false), shapes, "encoder");
    // Whatever else sits under the encoder's prefix must be something we know.
    std::set<std::string> used;
    for (const auto& t : expected_bert_tensors(bc, bc.has_pooler)) used.insert(t.name);
    std::vector<std::string> extra;
    for (const auto& [name, shape] : shapes) {
      if (used.count(name)) continue;
      if (!prefix.empty() && !name.starts_with(prefix)) continue;  // task heads (cls.*, classifier.*)
      const std::string_view rest = std::string_view(name).substr(prefix.size());
      if (rest == "embeddings.position_ids" || rest == "embeddings.token_type_ids") continue;
      if (prefix.empty() && (rest.starts_with("cls.") || rest.starts_with("classifier."))) continue;
      extra.push_back(name);
    }
    if (!extra.empty())
      fail("tensor '{}'{} is not part of a BERT encoder this exporter understands", extra[0],
           extra.size() > 1 ? fmt::format(" (and {} more)", extra.size() - 1) : "");
  });
  int64_t len = o.seq_len ? o.seq_len : std::min<int64_t>(bc.max_positions, 512);
  if (len < 1 || len > bc.max_positions)
    fail("--seq-len {}: must be between 1 and the model's {} positions", len, bc.max_positions);
  const auto tok = read_tokenizer(dir, bc.vocab_size);
  core::log_info("{}: BERT {} layers x {} ({} heads: {}), vocab {}, {} pooling, sequence {}", dir,
                 bc.layers, bc.hidden, bc.heads, bc.heads_rule, bc.vocab_size,
                 o.pooling == BertPooling::Cls ? "CLS" : "mean", len);
  const fs::path out(out_path);
  if (out.has_parent_path()) check_output_dir(out.parent_path().string());
  auto hash = std::async(std::launch::async, [&] { return core::sha256_file(weights_path); });

  onnx::Model m = new_model("bert_text", o.opset);
  Builder b(m, weights);
  const int64_t n = o.batch;
  m.graph.inputs.push_back(value_info("input_ids", onnx::kInt64, {n, len}));
  m.graph.inputs.push_back(value_info("attention_mask", onnx::kInt64, {n, len}));
  const auto enc = bert_encoder(b, bc, n, len, "input_ids", "attention_mask", "/bert", "bert.");
  std::string out_v = o.pooling == BertPooling::Cls
                          ? token0(b, enc.hidden, "/pooler/Gather")
                          : masked_mean(b, enc.hidden, enc.mask_float, 1e-9f, "/pooler");
  if (o.l2_normalize) out_v = l2_normalize(b, out_v, "/normalize");
  b.rename_last_output("text_embeds");
  m.graph.outputs.push_back(value_info("text_embeds", onnx::kFloat, {n, bc.hidden}));
  check_exported(m, out_path);

  ExportResult result;
  result.source_sha256 = hash.get();
  m.set_metadata("model_family", "bert");
  m.set_metadata("model_name", model_name_from_dir(dir));
  m.set_metadata("source_file", fs::path(weights_path).filename().string());
  m.set_metadata("source_sha256", result.source_sha256);
  m.set_metadata("source_config_sha256", core::sha256_hex(core::read_text_file(config_path)));
  m.set_metadata("exporter", fmt::format("medquant {}", MEDQUANT_VERSION));
  m.set_metadata("pooling", o.pooling == BertPooling::Cls ? "cls" : "mean");
  m.set_metadata("l2_normalized", o.l2_normalize ? "true" : "false");
  m.set_metadata("batch_size", std::to_string(n));
  m.set_metadata("context_length", std::to_string(len));
  m.set_metadata("embed_dim", std::to_string(bc.hidden));
  add_tokenizer_metadata(m, tok);
  onnx::save_model(m, out_path);
  result.files = {out_path};
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace medquant::models::biomedclip
