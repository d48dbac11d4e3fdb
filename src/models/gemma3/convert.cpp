#include "models/gemma3/convert.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "checkpoint/hf_config.h"
#include "checkpoint/safetensors.h"
#include "core/error.h"
#include "core/half.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/imatrix.h"
#include "gguf/quantize_plan.h"
#include "gguf/validate.h"
#include "models/gemma3/config.h"
#include "models/gemma3/kv_list.h"
#include "models/gemma3/metadata.h"
#include "models/gemma3/tensors.h"
#include "models/gemma3/vocab.h"

namespace medquant::models::gemma3 {
namespace {

namespace fs = std::filesystem;
using checkpoint::Json;
using quant::Type;

// ---------------------------------------------------------------- output types

struct OutType {
  std::string name;                 // as given, lower case ("bf16", "q4_k_s", "auto")
  std::optional<Type> plain;        // F32 / F16 / BF16 / Q8_0 written by the converter's rules
  std::optional<gguf::Mix> mix;     // a llama.cpp mix (text model only)
  bool automatic = false;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string_view v) {
  std::string s(v);
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

OutType parse_outtype(const std::string& given, bool text, const std::string& flag) {
  OutType o;
  o.name = lower(given);
  if (o.name == "auto") {
    o.automatic = true;
  } else if (o.name == "f32") {
    o.plain = Type::F32;
  } else if (o.name == "f16") {
    o.plain = Type::F16;
  } else if (o.name == "bf16") {
    o.plain = Type::BF16;
  } else if (o.name == "q8_0" && !text) {
    o.plain = Type::Q8_0;
  } else if (text) {
    auto mix = gguf::parse_mix(o.name);
    if (!mix || mix->file_type == gguf::FileType::AllF32 || mix->file_type == gguf::FileType::MostlyF16 ||
        mix->file_type == gguf::FileType::MostlyBF16)
      fail("{} '{}': unknown output type (one of: {})", flag, given, fmt::join(outtype_names(), ", "));
    o.mix = mix;
  } else {
    fail("{} '{}': the projector is written as f32, f16, bf16 or q8_0 (llama-quantize does not "
         "quantize projectors)",
         flag, given);
  }
  return o;
}

uint32_t plain_file_type(Type t) {
  switch (t) {
    case Type::F32: return 0;
    case Type::F16: return 1;
    case Type::BF16: return 32;
    case Type::Q8_0: return 7;
    default: fail("internal: no file type for {}", quant::type_name(t));
  }
}

std::optional<Type> float_type(core::DType d) {
  switch (d) {
    case core::DType::F32: return Type::F32;
    case core::DType::F16: return Type::F16;
    case core::DType::BF16: return Type::BF16;
    default: return std::nullopt;
  }
}

core::DType float_dtype(Type t) {
  switch (t) {
    case Type::F32: return core::DType::F32;
    case Type::F16: return core::DType::F16;
    case Type::BF16: return core::DType::BF16;
    default: fail("internal: {} is not a float type", quant::type_name(t));
  }
}

// ---------------------------------------------------------------- planning

// One tensor of an output file.
struct Item {
  const checkpoint::SafetensorsFile* file = nullptr;
  const checkpoint::TensorInfo* info = nullptr;
  TensorRule rule;
  std::vector<int64_t> shape;  // HF order, after cutting token_embd to the vocabulary
  core::DType dtype{};         // in the checkpoint
  Type type{};                 // written (plain) / before quantization (mix)
  int64_t rows = 0, ne0 = 0;

  uint64_t elements() const { return static_cast<uint64_t>(rows) * static_cast<uint64_t>(ne0); }
  uint64_t src_row_bytes() const { return static_cast<uint64_t>(ne0) * core::dtype_size(dtype); }
  gguf::TensorInfo gguf_info() const {
    gguf::TensorInfo t;
    t.name = rule.gguf_name;
    t.n_dims = static_cast<uint32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) t.ne[i] = shape[shape.size() - 1 - i];
    t.type = type;
    return t;
  }
};

std::string shape_string(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

// The tensors of one part, in the converter's order: shard by shard (shards
// in name order), tensors sorted by name within a shard.
std::vector<Item> collect(const checkpoint::Checkpoint& ck, Part part, const Config& config,
                          int64_t n_vocab) {
  std::vector<Item> items;
  std::map<std::string, std::string> seen;  // gguf name -> checkpoint name
  for (const auto& file : ck.files()) {
    std::vector<const checkpoint::TensorInfo*> sorted;
    for (const auto& t : file->tensors()) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
    for (const checkpoint::TensorInfo* t : sorted) {
      auto rule = with_context(file->path(), [&] { return tensor_rule(t->name, part, config); });
      if (!rule) continue;
      const std::string where = fmt::format("{}: tensor '{}'", file->path(), t->name);
      if (!float_type(t->dtype))
        fail("{} has dtype {}; medquant converts F32, F16 and BF16 weights", where,
             checkpoint::safetensors_dtype_name(t->dtype));
      if (auto [it, fresh] = seen.emplace(rule->gguf_name, t->name); !fresh)
        fail("{}: tensors '{}' and '{}' both map to '{}' (two layouts in one checkpoint?)", ck.path(),
             it->second, t->name, rule->gguf_name);
      Item it;
      it.file = file.get();
      it.info = t;
      it.dtype = t->dtype;
      it.shape = t->shape;
      const bool ok_rank = t->shape.size() == rule->shape.size();
      bool ok = ok_rank;
      for (size_t i = 0; ok && i < t->shape.size(); ++i) {
        if (rule->token_embd && i == 0) ok = t->shape[0] >= rule->shape[0];
        else ok = t->shape[i] == rule->shape[i];
      }
      if (!ok)
        fail("{} has shape {} but config.json implies {}{}", where, shape_string(t->shape),
             shape_string(rule->shape),
             rule->token_embd ? " (at least vocab_size rows)" : "");
      if (rule->token_embd && it.shape[0] > n_vocab) it.shape[0] = n_vocab;  // remove OOV rows
      it.ne0 = it.shape.empty() ? 1 : it.shape.back();
      it.rows = 1;
      for (size_t i = 0; i + 1 < it.shape.size(); ++i) it.rows *= it.shape[i];
      it.rule = std::move(*rule);
      items.push_back(std::move(it));
    }
  }
  std::vector<std::string> missing;
  for (const std::string& name : required_tensors(part, config))
    if (!seen.count(name)) missing.push_back(name);
  if (!missing.empty())
    fail("{}: the checkpoint lacks {} tensor{} the config calls for: {}{}", ck.path(), missing.size(),
         missing.size() == 1 ? "" : "s",
         fmt::join(missing.begin(), missing.begin() + std::min<size_t>(missing.size(), 5), ", "),
         missing.size() > 5 ? ", ..." : "");
  return items;
}

// The converter's --outtype auto: the dtype of the first tensor with 2+ dims.
Type auto_type(const std::vector<Item>& items, bool keep_f32) {
  for (const Item& it : items)
    if (it.info->shape.size() >= 2) {
      if (it.dtype == core::DType::BF16) return Type::BF16;
      if (it.dtype == core::DType::F16) return Type::F16;
      return keep_f32 ? Type::F32 : Type::F16;
    }
  return keep_f32 ? Type::F32 : Type::F16;
}

uint64_t parameter_count(const std::vector<Item>& items) {
  uint64_t n = 0;
  for (const Item& it : items) n += it.elements();
  return n;
}

// ---------------------------------------------------------------- metadata

void add_text_params(KvList& kv, const TextConfig& t, uint32_t file_type) {
  const std::string a = "gemma3.";
  // TextModel.set_gguf_parameters
  kv.set_u32(a + "block_count", static_cast<uint32_t>(t.num_hidden_layers));
  kv.set_u32(a + "context_length", static_cast<uint32_t>(t.max_position_embeddings));
  kv.set_u32(a + "embedding_length", static_cast<uint32_t>(t.hidden_size));
  kv.set_u32(a + "feed_forward_length", static_cast<uint32_t>(t.intermediate_size));
  kv.set_u32(a + "attention.head_count", static_cast<uint32_t>(t.num_attention_heads));
  kv.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(t.num_key_value_heads));
  if (t.rope_type) {
    const std::string& type = *t.rope_type;
    if (type == "linear" && t.rope_factor) {
      kv.set_string(a + "rope.scaling.type", "linear");
      kv.set_f32(a + "rope.scaling.factor", static_cast<float>(*t.rope_factor));
    } else if (type == "yarn" && t.rope_factor) {
      kv.set_string(a + "rope.scaling.type", "yarn");
      kv.set_f32(a + "rope.scaling.factor", static_cast<float>(*t.rope_factor));
      kv.set_u32(a + "rope.scaling.original_context_length",
                 static_cast<uint32_t>(*t.rope_original_max_position_embeddings));
      if (t.rope_yarn_ext_factor) kv.set_f32(a + "rope.scaling.yarn_ext_factor", static_cast<float>(*t.rope_yarn_ext_factor));
      if (t.rope_yarn_attn_factor) kv.set_f32(a + "rope.scaling.yarn_attn_factor", static_cast<float>(*t.rope_yarn_attn_factor));
      if (t.rope_yarn_beta_fast) kv.set_f32(a + "rope.scaling.yarn_beta_fast", static_cast<float>(*t.rope_yarn_beta_fast));
      if (t.rope_yarn_beta_slow) kv.set_f32(a + "rope.scaling.yarn_beta_slow", static_cast<float>(*t.rope_yarn_beta_slow));
    } else if (type == "su" || type == "longrope") {
      kv.set_string(a + "rope.scaling.type", "longrope");
    } else if (type == "dynamic" || lower(type) == "llama3" || type == "default") {
      // handled elsewhere by the reference (or nothing to write)
    } else {
      core::log_warning("{}: unknown RoPE type '{}' (no scaling written, as the reference)", "config.json", type);
    }
  }
  if (t.rope_theta_given) kv.set_f32(a + "rope.freq_base", static_cast<float>(t.rope_theta));
  if (t.rope_theta_swa) kv.set_f32(a + "rope.freq_base_swa", static_cast<float>(*t.rope_theta_swa));
  kv.set_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(t.rms_norm_eps));
  kv.set_u32(a + "attention.key_length", static_cast<uint32_t>(t.head_dim));
  kv.set_u32(a + "attention.value_length", static_cast<uint32_t>(t.head_dim));
  kv.set_u32("general.file_type", file_type);
  // Gemma3Model.set_gguf_parameters (keys set again keep their place)
  kv.set_u32(a + "context_length", static_cast<uint32_t>(t.max_position_embeddings));
  kv.set_u32(a + "attention.head_count", static_cast<uint32_t>(t.num_attention_heads));
  kv.set_f32(a + "attention.layer_norm_rms_epsilon", static_cast<float>(t.rms_norm_eps));
  kv.set_u32(a + "attention.key_length", static_cast<uint32_t>(t.head_dim));
  kv.set_u32(a + "attention.value_length", static_cast<uint32_t>(t.head_dim));
  kv.set_f32(a + "rope.freq_base", static_cast<float>(t.rope_theta));
  if (t.final_logit_softcapping && *t.final_logit_softcapping != 0)
    kv.set_f32(a + "final_logit_softcapping", static_cast<float>(*t.final_logit_softcapping));
  if (t.sliding_window_pattern != 1) kv.set_u32(a + "attention.sliding_window", static_cast<uint32_t>(t.sliding_window));
  kv.set_u32(a + "attention.head_count_kv", static_cast<uint32_t>(t.num_key_value_heads));
}

// preprocessor_config.json, then processor_config.json over it (MmprojModel).
Json preprocessor_config(const std::string& dir) {
  Json merged = Json::object();
  std::error_code ec;
  auto merge = [&](const char* file, const char* nested) {
    const fs::path p = fs::path(dir) / file;
    if (!fs::is_regular_file(p, ec)) return;
    Json cfg = checkpoint::read_json_file(p.string());
    if (!cfg.is_object()) fail("{}: expected a JSON object", p.string());
    if (auto it = cfg.find(nested); it != cfg.end() && it->is_object())
      for (const auto& [k, v] : it->items()) cfg[k] = v;
    for (const auto& [k, v] : cfg.items()) merged[k] = v;
  };
  merge("preprocessor_config.json", "media_proc_cfg");
  merge("processor_config.json", "image_processor");
  return merged;
}

// A list of numbers as gguf-py's add_array stores it (the first element's
// Python type decides: float -> f32, int -> i32).
gguf::Value number_array(const Json& v, const std::string& what) {
  if (!v.is_array() || v.empty()) fail("{} must be a non-empty list of numbers", what);
  const bool ints = v[0].is_number_integer();
  std::vector<float> f;
  std::vector<int32_t> i;
  for (const Json& x : v) {
    if (!x.is_number() || x.is_number_integer() != ints)
      fail("{}: all items must be numbers of one type (gguf-py refuses mixed arrays)", what);
    if (ints) i.push_back(static_cast<int32_t>(x.get<int64_t>()));
    else f.push_back(static_cast<float>(x.get<double>()));
  }
  return ints ? gguf::Value::array<int32_t>(i) : gguf::Value::array<float>(f);
}

void add_mmproj_params(KvList& kv, const Config& c, const std::string& dir, uint32_t file_type) {
  const VisionConfig& v = c.vision;
  const Json pre = preprocessor_config(dir);
  const std::string pre_name = (fs::path(dir) / "preprocessor_config.json").string();
  kv.set_u32("general.file_type", file_type);
  kv.set_bool("clip.has_vision_encoder", true);
  kv.set_u32("clip.vision.projection_dim", static_cast<uint32_t>(c.text.hidden_size));
  kv.set_u32("clip.vision.image_size", static_cast<uint32_t>(v.image_size));
  kv.set_u32("clip.vision.patch_size", static_cast<uint32_t>(v.patch_size));
  kv.set_u32("clip.vision.embedding_length", static_cast<uint32_t>(v.hidden_size));
  kv.set_u32("clip.vision.feed_forward_length", static_cast<uint32_t>(v.intermediate_size));
  kv.set_u32("clip.vision.block_count", static_cast<uint32_t>(v.num_hidden_layers));
  kv.set_u32("clip.vision.attention.head_count", static_cast<uint32_t>(v.num_attention_heads));
  for (const char* key : {"image_mean", "image_std"}) {
    auto it = pre.find(key);
    if (it == pre.end())
      fail("{}: no \"{}\": the image normalisation is needed for the projector", pre_name, key);
    kv.set(std::string("clip.vision.") + key, number_array(*it, pre_name + ": " + key));
  }
  kv.set_string("clip.projector_type", "gemma3");
  kv.set_f32("clip.vision.attention.layer_norm_epsilon", static_cast<float>(v.layer_norm_eps));
  kv.set_bool("clip.use_gelu", true);
  int64_t seq = 256;
  if (auto it = pre.find("image_seq_length"); it != pre.end() && !it->is_null()) {
    if (!it->is_number_integer()) fail("{}: image_seq_length must be an integer", pre_name);
    seq = it->get<int64_t>();
  }
  const auto per_side = static_cast<int64_t>(std::sqrt(static_cast<double>(seq)));
  if (per_side <= 0) fail("{}: image_seq_length {} gives no image tokens", pre_name, seq);
  const int64_t scale = (v.image_size / v.patch_size) / per_side;
  if (scale > 0 && scale != 4) kv.set_u32("clip.vision.projector.scale_factor", static_cast<uint32_t>(scale));
}

// ---------------------------------------------------------------- data

// Rows [r0, r0 + n) of `it` converted to `out` (F32, F16, BF16 or Q8_0) into
// dst, as the reference computes them: the checkpoint value as float32
// (float16 stays float16 in torch), + 1 for Gemma norms in that precision,
// then rounded to the output type (round to nearest even).
void convert_rows(const Item& it, int64_t r0, int64_t n, Type out, uint8_t* dst,
                  core::ThreadPool& pool) {
  const uint8_t* src = it.file->data(*it.info).data() + static_cast<uint64_t>(r0) * it.src_row_bytes();
  const int64_t ne0 = it.ne0;
  const size_t in_row = it.src_row_bytes();
  const size_t out_row = quant::row_size(out, ne0);
  pool.parallel_chunks(0, static_cast<size_t>(n), [&](size_t b, size_t e) {
    std::vector<float> x(static_cast<size_t>(ne0));
    for (size_t r = b; r < e; ++r) {
      const uint8_t* s = src + r * in_row;
      switch (it.dtype) {
        case core::DType::F32: std::memcpy(x.data(), s, x.size() * 4); break;
        case core::DType::F16:
          core::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(s), x.data(), x.size());
          break;
        case core::DType::BF16:
          core::bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(s), x.data(), x.size());
          break;
        default: break;
      }
      if (it.rule.add_one) {
        if (it.dtype == core::DType::F16) {
          for (float& v : x) v = core::fp16_to_fp32(core::fp32_to_fp16(v + 1.0f));
        } else {
          for (float& v : x) v += 1.0f;
        }
      }
      uint8_t* d = dst + r * out_row;
      switch (out) {
        case Type::F32: std::memcpy(d, x.data(), x.size() * 4); break;
        case Type::F16: core::fp32_to_fp16_row(x.data(), reinterpret_cast<uint16_t*>(d), x.size()); break;
        case Type::BF16: core::fp32_to_bf16_row(x.data(), reinterpret_cast<uint16_t*>(d), x.size()); break;
        default: quant::quantize_rows(out, x.data(), d, 1, ne0, nullptr); break;
      }
    }
  });
}

// find_invalid_data over whole rows, spread over the pool (as quantize gguf).
std::optional<std::string> find_invalid_rows(Type type, std::span<const uint8_t> bytes,
                                             uint64_t row_bytes, core::ThreadPool& pool) {
  const size_t rows = static_cast<size_t>(bytes.size() / row_bytes);
  std::mutex mutex;
  std::optional<std::pair<size_t, std::string>> first;
  pool.parallel_chunks(0, rows, [&](size_t b, size_t e) {
    auto bad = gguf::find_invalid_data(type, bytes.subspan(b * row_bytes, (e - b) * row_bytes));
    if (!bad) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (!first || b < first->first) first.emplace(b, *bad);
  });
  if (!first) return std::nullopt;
  return fmt::format("{} (counting from row {} of this slab)", first->second, first->first);
}

// One output file being written: its tensors (in file order) and, for a mix,
// their types after quantization.
struct Output {
  std::string path;
  std::string kind;
  std::string outtype;
  uint32_t file_type = 0;
  bool mix = false;                      // quantized as llama-quantize would
  std::vector<gguf::KeyValue> kvs;
  std::vector<const Item*> order;        // items in file order
  std::vector<Type> final_types;         // per order entry
  std::vector<bool> quantize;            // per order entry: quantized from item.type
  std::vector<const float*> imatrix;     // per order entry: importance weights or null
  std::vector<gguf::TensorInfo> infos;   // per order entry
  uint64_t parameters = 0;
  std::unique_ptr<gguf::Writer> writer;
  ConvertedFile result;
};

void stream(Output& o, const ConvertOptions& opt, core::ThreadPool& pool, core::Progress& progress) {
  std::vector<uint8_t> mid, dst;
  for (size_t k = 0; k < o.order.size(); ++k) {
    const Item& it = *o.order[k];
    ConvertedTensor& r = o.result.tensors[k];
    progress.set_label(it.rule.gguf_name);
    const Type mid_type = it.type;  // what the converter writes (plain) / quantizes from (mix)
    const Type out_type = o.final_types[k];
    const bool zero_copy = float_type(it.dtype) == mid_type && !it.rule.add_one;
    const uint64_t in_row = it.src_row_bytes();
    const uint64_t mid_row = quant::row_size(mid_type, it.ne0);
    const uint64_t out_row = quant::row_size(out_type, it.ne0);
    const int64_t per_slab = std::max<int64_t>(1, static_cast<int64_t>(opt.slab_bytes / std::max<uint64_t>(in_row, 1)));
    const uint64_t tensor_offset = it.info->offset();
    quant::TensorStatsSum stats;
    for (int64_t r0 = 0; r0 < it.rows; r0 += per_slab) {
      const int64_t n = std::min(per_slab, it.rows - r0);
      std::span<const uint8_t> bytes;
      if (zero_copy) {
        bytes = it.file->data(*it.info).subspan(static_cast<uint64_t>(r0) * in_row, static_cast<uint64_t>(n) * in_row);
      } else {
        mid.resize(static_cast<size_t>(n) * mid_row);
        convert_rows(it, r0, n, mid_type, mid.data(), pool);
        bytes = mid;
      }
      if (o.mix) {
        // A mix: llama-quantize validates every tensor it reads.
        if (auto bad = find_invalid_rows(mid_type, bytes, mid_row, pool))
          fail("{}: tensor '{}' has invalid data: {} (rows {} to {})", opt.model_dir, it.info->name, *bad,
               r0, r0 + n);
      }
      if (o.quantize[k]) {
        dst.resize(static_cast<size_t>(n) * out_row);
        const quant::TensorStats s = quant::quantize_tensor(out_type, float_dtype(mid_type), bytes.data(),
                                                            dst.data(), n, it.ne0, o.imatrix[k], pool, &progress);
        stats.add(s, static_cast<uint64_t>(n * it.ne0));
        if (auto bad = find_invalid_rows(out_type, dst, out_row, pool))
          fail("{}: tensor '{}': quantized data is invalid: {} (rows {} to {}); the source values are "
               "probably too large for {}",
               o.path, it.rule.gguf_name, *bad, r0, r0 + n, quant::type_name(out_type));
        o.writer->write(dst);
      } else {
        o.writer->write(bytes);
        progress.add(static_cast<uint64_t>(n * it.ne0));
      }
      it.file->mapped().release(tensor_offset + static_cast<uint64_t>(r0) * in_row, static_cast<uint64_t>(n) * in_row);
    }
    if (o.quantize[k]) r.stats = stats.result();
  }
}

}  // namespace

std::vector<std::string> outtype_names() {
  std::vector<std::string> out = {"auto", "f32", "f16", "bf16"};
  for (const auto& m : gguf::mixes())
    if (m.file_type != gguf::FileType::AllF32 && m.file_type != gguf::FileType::MostlyF16 &&
        m.file_type != gguf::FileType::MostlyBF16)
      out.push_back(lower(std::string(m.name)));
  return out;
}

ConvertResult convert_gguf(const ConvertOptions& opt, core::ThreadPool& pool) {
  const auto start = std::chrono::steady_clock::now();
  if (opt.output.empty() && opt.mmproj.empty())
    fail("convert gguf: nothing to write: give -o/--output and/or --mmproj");
  const checkpoint::HfConfig hf = checkpoint::HfConfig::load(opt.model_dir);
  const Config config = read_config(hf);
  if (!opt.mmproj.empty() && !config.multimodal)
    fail("{}: --mmproj: architecture '{}' has no vision tower (needs Gemma3ForConditionalGeneration)",
         hf.path(), config.architecture);
  const OutType text_out = parse_outtype(opt.outtype, true, "--outtype");
  if (!text_out.mix && (!opt.plan.tensor_types.empty() || opt.plan.output_tensor_type ||
                        opt.plan.token_embedding_type || opt.plan.pure || opt.plan.leave_output_tensor))
    fail("--tensor-type, --output-tensor-type, --token-embedding-type, --pure and "
         "--leave-output-tensor apply to the quantized output types (q4_k_s, ...), not to {}",
         opt.outtype);
  std::string mm_given = opt.mmproj_outtype;
  if (mm_given.empty())
    mm_given = (text_out.plain || text_out.automatic || text_out.name == "q8_0") ? text_out.name : "f16";
  const OutType mm_out = parse_outtype(mm_given, false, "--mmproj-outtype");

  const checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(opt.model_dir);

  // Importance matrix, read and normalised as quantize gguf reads it.
  gguf::Imatrix imatrix;
  gguf::ImatrixMetadata imatrix_meta;
  if (!opt.imatrix.empty()) {
    if (!text_out.mix) fail("--imatrix applies to the quantized output types (q4_k_s, ...), not to {}", opt.outtype);
    imatrix = gguf::load_imatrix(opt.imatrix);
    for (const auto& [name, values] : imatrix.entries)
      for (size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
          fail("{}: entry '{}' value {} is {}, not finite", opt.imatrix, name, i, values[i]);
    imatrix_meta.file = opt.imatrix;
    if (!imatrix.datasets.empty())
      imatrix_meta.dataset = imatrix.datasets[0].substr(0, imatrix.datasets[0].find('\0'));
    imatrix_meta.entries = static_cast<uint32_t>(imatrix.entries.size());
    imatrix_meta.chunks = imatrix.chunk_count;
  }

  ConvertResult result;
  result.architecture = config.architecture;
  std::vector<std::unique_ptr<Output>> outputs;
  std::vector<std::vector<Item>> item_store;
  item_store.reserve(2);

  if (!opt.output.empty()) {
    const Vocab vocab = read_vocab(opt.model_dir, config.text.vocab_size);
    item_store.push_back(collect(ck, Part::Text, config, static_cast<int64_t>(vocab.tokens.size())));
    std::vector<Item>& items = item_store.back();
    // The float type of the file as the converter writes it.
    const Type base = text_out.plain    ? *text_out.plain
                      : text_out.mix    ? auto_type(items, true)
                                        : auto_type(items, false);
    for (Item& it : items)
      it.type = tensor_type(it.rule, it.shape.size(), it.ne0, base);
    auto o = std::make_unique<Output>();
    o->path = opt.output;
    o->kind = "text";
    o->parameters = parameter_count(items);
    o->file_type = plain_file_type(base);
    KvList kv;
    kv.set_string("general.architecture", "gemma3");
    kv.set_string("general.type", "model");
    add_metadata_kvs(kv, load_metadata(opt.model_dir, opt.model_name, o->parameters));
    add_text_params(kv, config.text, o->file_type);
    kv.set_u32("general.quantization_version", 2);
    add_vocab_kvs(kv, opt.model_dir, vocab);

    gguf::Header header;
    header.kvs = kv.take();
    for (const Item& it : items) header.tensors.push_back(it.gguf_info());
    if (text_out.mix) {
      gguf::PlanOptions plan_options = opt.plan;
      plan_options.mix = *text_out.mix;
      plan_options.has_imatrix = !imatrix.entries.empty();
      const gguf::Plan plan = gguf::plan_quantization(header, plan_options, opt.model_dir);
      o->kvs = gguf::quantized_kvs(header, text_out.mix->file_type,
                                   imatrix.entries.empty() ? nullptr : &imatrix_meta);
      o->outtype = std::string(text_out.mix->name);
      o->mix = true;
      o->file_type = static_cast<uint32_t>(text_out.mix->file_type);
      for (const gguf::PlannedTensor& p : plan.tensors) {
        const Item& it = items[p.source];
        o->order.push_back(&it);
        o->final_types.push_back(p.type);
        o->quantize.push_back(p.quantize);
        // As quantize gguf: the entry of the tensor's name, if its size fits
        // (a token_embd entry of another size is ignored, as llama-quantize does).
        const float* weights = nullptr;
        if (p.quantize && !imatrix.entries.empty()) {
          auto e = imatrix.entries.find(it.rule.gguf_name);
          if (e == imatrix.entries.end()) {
            core::log_verbose("{}: no importance weights for {}", opt.imatrix, it.rule.gguf_name);
          } else if (e->second.size() == static_cast<size_t>(it.ne0)) {
            weights = e->second.data();
          } else if (!it.rule.token_embd) {
            fail("{}: entry '{}' has {} values but the tensor needs {}", opt.imatrix, e->first,
                 e->second.size(), it.ne0);
          }
        }
        o->imatrix.push_back(weights);
        gguf::TensorInfo info = header.tensors[p.source];
        info.n_dims = info.effective_n_dims();  // what ggml writes
        info.type = p.type;
        o->infos.push_back(info);
      }
    } else {
      o->kvs = header.kvs;
      o->outtype = upper(quant::type_name(base));
      for (size_t i = 0; i < items.size(); ++i) {
        o->order.push_back(&items[i]);
        o->final_types.push_back(items[i].type);
        o->quantize.push_back(false);
        o->imatrix.push_back(nullptr);
        o->infos.push_back(header.tensors[i]);
      }
    }
    outputs.push_back(std::move(o));
  }

  if (!opt.mmproj.empty()) {
    item_store.push_back(collect(ck, Part::Vision, config, 0));
    std::vector<Item>& items = item_store.back();
    const Type base = mm_out.plain ? *mm_out.plain : auto_type(items, false);
    for (Item& it : items) it.type = tensor_type(it.rule, it.shape.size(), it.ne0, base);
    auto o = std::make_unique<Output>();
    o->path = opt.mmproj;
    o->kind = "mmproj";
    o->outtype = upper(quant::type_name(base));
    o->parameters = parameter_count(items);
    o->file_type = plain_file_type(base);
    KvList kv;
    kv.set_string("general.architecture", "clip");
    kv.set_string("general.type", "mmproj");
    add_metadata_kvs(kv, load_metadata(opt.model_dir, opt.model_name, o->parameters));
    add_mmproj_params(kv, config, opt.model_dir, o->file_type);
    kv.set_u32("general.quantization_version", 2);
    o->kvs = kv.take();
    for (const Item& it : items) {
      o->order.push_back(&it);
      o->final_types.push_back(it.type);
      o->quantize.push_back(false);
      o->imatrix.push_back(nullptr);
      o->infos.push_back(it.gguf_info());
    }
    outputs.push_back(std::move(o));
  }

  if (!opt.output.empty() && !opt.mmproj.empty()) {
    std::error_code ec;
    if (fs::weakly_canonical(opt.output, ec) == fs::weakly_canonical(opt.mmproj, ec))
      fail("{}: the text model and the projector cannot be the same file", opt.output);
  }

  uint64_t total_elements = 0;
  for (auto& o : outputs) {
    o->result.path = o->path;
    o->result.kind = o->kind;
    o->result.outtype = o->outtype;
    o->result.file_type = o->file_type;
    o->result.parameters = o->parameters;
    for (size_t k = 0; k < o->order.size(); ++k) {
      const Item& it = *o->order[k];
      ConvertedTensor t;
      t.name = it.rule.gguf_name;
      t.source = it.info->name;
      t.shape = o->infos[k].shape_string();
      t.from = std::string(core::dtype_name(it.dtype));
      t.to = o->final_types[k];
      t.elements = it.elements();
      t.bytes = o->infos[k].n_bytes();
      t.quantized = quant::traits(t.to).is_quantized;
      o->result.tensors.push_back(std::move(t));
      total_elements += it.elements();
    }
  }

  if (!opt.dry_run) {
    core::Progress progress("converting", total_elements);
    for (auto& o : outputs) {
      o->writer = std::make_unique<gguf::Writer>(o->path, o->kvs, o->infos);
      stream(*o, opt, pool, progress);
    }
    for (auto& o : outputs) {
      o->writer->commit();
      o->result.file_size = o->writer->bytes_written();
    }
    progress.finish();
  }
  for (auto& o : outputs) result.files.push_back(std::move(o->result));
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace medquant::models::gemma3
