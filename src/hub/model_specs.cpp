#include "hub/model_specs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "core/error.h"

namespace medquant::hub {
namespace {

using nlohmann::json;
using Shape = std::vector<int64_t>;

// Reads config fields, taking (and noting) a default where one is given.
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string where, ModelSpec& spec)
      : j_(j), where_(std::move(where)), spec_(spec) {}

  int64_t get(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    if (j_.is_object() && j_.contains(key) && !j_[key].is_null()) {
      if (!j_[key].is_number_integer() || j_[key].get<int64_t>() < 0)
        fail("{}{}: not a non-negative integer", where_, key);
      return j_[key].get<int64_t>();
    }
    if (!fallback) fail("{}{} is missing", where_, key);
    spec_.assumptions.push_back(fmt::format("{}{} = {} (default)", where_, key, *fallback));
    return *fallback;
  }
  double get_double(const std::string& key, double fallback) const {
    if (j_.is_object() && j_.contains(key) && j_[key].is_number()) return j_[key].get<double>();
    return fallback;
  }
  bool get_bool(const std::string& key, bool fallback) const {
    if (j_.is_object() && j_.contains(key) && j_[key].is_boolean()) return j_[key].get<bool>();
    return fallback;
  }
  std::string get_string(const std::string& key, const std::string& fallback = "") const {
    if (j_.is_object() && j_.contains(key) && j_[key].is_string()) return j_[key].get<std::string>();
    return fallback;
  }

 private:
  const json& j_;
  std::string where_;
  ModelSpec& spec_;
};

std::optional<core::DType> config_dtype(const json& config) {
  for (const char* key : {"torch_dtype", "dtype"})
    if (config.is_object() && config.contains(key) && config[key].is_string())
      return parse_torch_dtype(config[key].get<std::string>());
  return std::nullopt;
}

void add(ModelSpec& s, const std::string& name, Shape shape, bool optional = false,
         std::optional<core::DType> dtype = std::nullopt) {
  s.tensors[name] = TensorSpec{std::move(shape), optional, dtype};
}

void add_siglip_vision(ModelSpec& s, const std::string& p, const json& vc) {
  ConfigReader c(vc, "config.json: vision_config.", s);
  const int64_t h = c.get("hidden_size", 768), inter = c.get("intermediate_size", 3072);
  const int64_t layers = c.get("num_hidden_layers", 12), ch = c.get("num_channels", 3);
  const int64_t image = c.get("image_size", 224), patch = c.get("patch_size", 16);
  if (patch == 0 || image % patch != 0)
    fail("config.json: vision_config.image_size {} is not a multiple of patch_size {}", image, patch);
  const int64_t positions = (image / patch) * (image / patch);
  add(s, p + "embeddings.patch_embedding.weight", {h, ch, patch, patch});
  add(s, p + "embeddings.patch_embedding.bias", {h});
  add(s, p + "embeddings.position_embedding.weight", {positions, h});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = fmt::format("{}encoder.layers.{}.", p, i);
    for (const char* n : {"layer_norm1", "layer_norm2"}) {
      add(s, l + n + ".weight", {h});
      add(s, l + n + ".bias", {h});
    }
    for (const char* n : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      add(s, l + "self_attn." + n + ".weight", {h, h});
      add(s, l + "self_attn." + n + ".bias", {h});
    }
    add(s, l + "mlp.fc1.weight", {inter, h});
    add(s, l + "mlp.fc1.bias", {inter});
    add(s, l + "mlp.fc2.weight", {h, inter});
    add(s, l + "mlp.fc2.bias", {h});
  }
  add(s, p + "post_layernorm.weight", {h});
  add(s, p + "post_layernorm.bias", {h});
  // SigLIP's attention-pooling head exists unless vision_use_head is false (as
  // in Gemma 3); transformers builds it when the key is absent.
  if (c.get_bool("vision_use_head", true)) {
    const std::string hd = p + "head.";
    add(s, hd + "probe", {1, 1, h});
    add(s, hd + "attention.in_proj_weight", {3 * h, h});
    add(s, hd + "attention.in_proj_bias", {3 * h});
    add(s, hd + "attention.out_proj.weight", {h, h});
    add(s, hd + "attention.out_proj.bias", {h});
    add(s, hd + "layernorm.weight", {h});
    add(s, hd + "layernorm.bias", {h});
    add(s, hd + "mlp.fc1.weight", {inter, h});
    add(s, hd + "mlp.fc1.bias", {inter});
    add(s, hd + "mlp.fc2.weight", {h, inter});
    add(s, hd + "mlp.fc2.bias", {h});
  }
}

// Gemma 3 text decoder under prefix p ("model." or "language_model.model.").
void add_gemma3_text(ModelSpec& s, const std::string& p, const json& tc, const std::string& where,
                     int64_t* hidden_out) {
  ConfigReader c(tc, where, s);
  const int64_t vocab = c.get("vocab_size", 262208), h = c.get("hidden_size", 2304);
  const int64_t inter = c.get("intermediate_size", 9216), layers = c.get("num_hidden_layers", 26);
  const int64_t heads = c.get("num_attention_heads", 8), kv = c.get("num_key_value_heads", 4);
  const int64_t hd = c.get("head_dim", 256);
  *hidden_out = h;
  add(s, p + "embed_tokens.weight", {vocab, h});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = fmt::format("{}layers.{}.", p, i);
    for (const char* n : {"input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                          "post_feedforward_layernorm"})
      add(s, l + n + ".weight", {h});
    add(s, l + "self_attn.q_proj.weight", {heads * hd, h});
    add(s, l + "self_attn.k_proj.weight", {kv * hd, h});
    add(s, l + "self_attn.v_proj.weight", {kv * hd, h});
    add(s, l + "self_attn.o_proj.weight", {h, heads * hd});
    add(s, l + "self_attn.q_norm.weight", {hd});
    add(s, l + "self_attn.k_norm.weight", {hd});
    add(s, l + "mlp.gate_proj.weight", {inter, h});
    add(s, l + "mlp.up_proj.weight", {inter, h});
    add(s, l + "mlp.down_proj.weight", {h, inter});
  }
  add(s, p + "norm.weight", {h});
  s.description += fmt::format("text {} layers x {} ({} heads, {} kv, vocab {})", layers, h, heads,
                               kv, vocab);
}

bool any_prefix(const std::set<std::string>& names, const std::string& prefix) {
  auto it = names.lower_bound(prefix);
  return it != names.end() && it->starts_with(prefix);
}

void add_bert_body(ModelSpec& s, const std::string& p, const json& config, const std::string& where,
                   bool pooler, bool pooler_optional) {
  ConfigReader c(config, where, s);
  const int64_t vocab = c.get("vocab_size"), h = c.get("hidden_size");
  const int64_t layers = c.get("num_hidden_layers"), inter = c.get("intermediate_size");
  const int64_t positions = c.get("max_position_embeddings", 512);
  const int64_t types = c.get("type_vocab_size", 2);
  add(s, p + "embeddings.word_embeddings.weight", {vocab, h});
  add(s, p + "embeddings.position_embeddings.weight", {positions, h});
  add(s, p + "embeddings.token_type_embeddings.weight", {types, h});
  add(s, p + "embeddings.LayerNorm.weight", {h});
  add(s, p + "embeddings.LayerNorm.bias", {h});
  // Buffers older transformers saved with the weights.
  add(s, p + "embeddings.position_ids", {1, positions}, true, core::DType::I64);
  add(s, p + "embeddings.token_type_ids", {1, positions}, true, core::DType::I64);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string l = fmt::format("{}encoder.layer.{}.", p, i);
    for (const char* n : {"query", "key", "value"}) {
      add(s, l + "attention.self." + n + ".weight", {h, h});
      add(s, l + "attention.self." + n + ".bias", {h});
    }
    add(s, l + "attention.output.dense.weight", {h, h});
    add(s, l + "attention.output.dense.bias", {h});
    add(s, l + "attention.output.LayerNorm.weight", {h});
    add(s, l + "attention.output.LayerNorm.bias", {h});
    add(s, l + "intermediate.dense.weight", {inter, h});
    add(s, l + "intermediate.dense.bias", {inter});
    add(s, l + "output.dense.weight", {h, inter});
    add(s, l + "output.dense.bias", {h});
    add(s, l + "output.LayerNorm.weight", {h});
    add(s, l + "output.LayerNorm.bias", {h});
  }
  if (pooler) {
    add(s, p + "pooler.dense.weight", {h, h}, pooler_optional);
    add(s, p + "pooler.dense.bias", {h}, pooler_optional);
  }
  s.description += fmt::format("BERT {} layers x {} (vocab {})", layers, h, vocab);
}

// Dimensions of timm ViTs by name, for open_clip configs that give only the name.
struct VitDims {
  int64_t width, layers, patch, image;
};
std::optional<VitDims> timm_vit_dims(const std::string& name) {
  static const std::map<std::string, VitDims> kKnown = {
      {"vit_tiny_patch16_224", {192, 12, 16, 224}},  {"vit_small_patch16_224", {384, 12, 16, 224}},
      {"vit_base_patch16_224", {768, 12, 16, 224}},  {"vit_base_patch32_224", {768, 12, 32, 224}},
      {"vit_base_patch16_384", {768, 12, 16, 384}},  {"vit_large_patch16_224", {1024, 24, 16, 224}},
      {"vit_large_patch14_224", {1024, 24, 14, 224}},
  };
  std::string base = name.substr(0, name.find('.'));  // "vit_base_patch16_224.augreg_in21k"
  auto it = kKnown.find(base);
  return it == kKnown.end() ? std::nullopt : std::optional(it->second);
}

// BERT configs of the text towers BiomedCLIP-style models name but don't ship.
json known_text_config(const std::string& hf_model_name) {
  if (hf_model_name.find("BiomedNLP-PubMedBERT-base") != std::string::npos ||
      hf_model_name.find("BiomedNLP-BiomedBERT-base") != std::string::npos ||
      hf_model_name == "bert-base-uncased" || hf_model_name == "google-bert/bert-base-uncased")
    return json{{"vocab_size", 30522},         {"hidden_size", 768},   {"num_hidden_layers", 12},
                {"intermediate_size", 3072},   {"max_position_embeddings", 512},
                {"type_vocab_size", 2}};
  return nullptr;
}

}  // namespace

std::optional<core::DType> parse_torch_dtype(const std::string& name) {
  std::string n = name.starts_with("torch.") ? name.substr(6) : name;
  if (n == "bfloat16") return core::DType::BF16;
  if (n == "float16" || n == "half") return core::DType::F16;
  if (n == "float32" || n == "float") return core::DType::F32;
  if (n == "float64" || n == "double") return core::DType::F64;
  return std::nullopt;
}

ModelSpec gemma3_spec(const json& config, const std::set<std::string>& names) {
  ModelSpec s;
  s.float_dtype = config_dtype(config);
  const std::string type = config.value("model_type", "");
  int64_t hidden = 0;
  if (type == "gemma3_text") {
    s.description = "Gemma 3 ";
    add_gemma3_text(s, "model.", config, "config.json: ", &hidden);
    if (!ConfigReader(config, "", s).get_bool("tie_word_embeddings", true))
      add(s, "lm_head.weight", {config.value("vocab_size", int64_t{262208}), hidden});
    return s;
  }
  if (type != "gemma3") fail("config.json: model_type '{}' is not a Gemma 3 model", type);
  const json& tc = config.contains("text_config") ? config["text_config"] : json::object();
  const json& vc = config.contains("vision_config") ? config["vision_config"] : json::object();
  if (!s.float_dtype) s.float_dtype = config_dtype(tc);
  // The hub's MedGemma files use the original layout; transformers >= 4.52 saves another.
  const bool new_layout = any_prefix(names, "model.language_model.");
  const std::string text = new_layout ? "model.language_model." : "language_model.model.";
  const std::string vision = new_layout ? "model.vision_tower.vision_model." : "vision_tower.vision_model.";
  const std::string proj = new_layout ? "model.multi_modal_projector." : "multi_modal_projector.";
  s.description = "Gemma 3: ";
  add_gemma3_text(s, text, tc, "config.json: text_config.", &hidden);
  add_siglip_vision(s, vision, vc);
  ConfigReader v(vc, "config.json: vision_config.", s);
  const int64_t vh = v.get("hidden_size", 768);
  s.description += fmt::format(", vision {} layers x {}", v.get("num_hidden_layers", 12), vh);
  add(s, proj + "mm_input_projection_weight", {vh, hidden});
  add(s, proj + "mm_soft_emb_norm.weight", {vh});
  if (!ConfigReader(tc, "", s).get_bool("tie_word_embeddings",
                                         ConfigReader(config, "", s).get_bool("tie_word_embeddings", true)))
    add(s, (new_layout ? "" : "language_model.") + std::string("lm_head.weight"),
        {tc.value("vocab_size", int64_t{262208}), hidden});
  return s;
}

ModelSpec bert_spec(const json& config, const std::set<std::string>& names) {
  ModelSpec s;
  s.float_dtype = config_dtype(config);
  const std::string p = any_prefix(names, "bert.") ? "bert." : "";
  add_bert_body(s, p, config, "config.json: ", true, true);
  if (!p.empty()) {
    // Pre-training / masked-LM heads of BertFor*: optional, but shaped by the config.
    ConfigReader c(config, "config.json: ", s);
    const int64_t h = c.get("hidden_size"), vocab = c.get("vocab_size");
    add(s, "cls.predictions.bias", {vocab}, true);
    add(s, "cls.predictions.transform.dense.weight", {h, h}, true);
    add(s, "cls.predictions.transform.dense.bias", {h}, true);
    add(s, "cls.predictions.transform.LayerNorm.weight", {h}, true);
    add(s, "cls.predictions.transform.LayerNorm.bias", {h}, true);
    add(s, "cls.predictions.decoder.weight", {vocab, h}, true);
    add(s, "cls.predictions.decoder.bias", {vocab}, true);
    add(s, "cls.seq_relationship.weight", {2, h}, true);
    add(s, "cls.seq_relationship.bias", {2}, true);
  }
  return s;
}

ModelSpec biomedclip_spec(const json& oc, const json& text_config, const json& vision_args) {
  ModelSpec s;
  if (!oc.is_object() || !oc.contains("model_cfg") || !oc["model_cfg"].is_object())
    fail("open_clip_config.json: no \"model_cfg\" object");
  const json& mc = oc["model_cfg"];
  const json& vc = mc.contains("vision_cfg") ? mc["vision_cfg"] : json::object();
  const json& tcfg = mc.contains("text_cfg") ? mc["text_cfg"] : json::object();
  ConfigReader m(mc, "open_clip_config.json: model_cfg.", s);
  ConfigReader v(vc, "open_clip_config.json: model_cfg.vision_cfg.", s);
  ConfigReader t(tcfg, "open_clip_config.json: model_cfg.text_cfg.", s);
  const int64_t embed = m.get("embed_dim");

  // Vision: timm ViT. vision_cfg's own numbers, else the local timm config, else the name.
  const std::string timm_name = v.get_string("timm_model_name");
  if (timm_name.empty()) fail("open_clip_config.json: only timm vision towers are understood (no timm_model_name)");
  auto dims = timm_vit_dims(timm_name);
  ConfigReader va(vision_args, "timm config: model_args.", s);
  auto dim = [&](const char* key, const char* arg_key, std::optional<int64_t> from_name) {
    if (vc.contains(key)) return v.get(key);
    if (vision_args.is_object() && vision_args.contains(arg_key)) return va.get(arg_key);
    if (from_name) return *from_name;
    fail("open_clip_config.json: vision_cfg.{} is missing and timm model '{}' is not known", key,
         timm_name);
  };
  const int64_t w = dim("width", "embed_dim", dims ? std::optional(dims->width) : std::nullopt);
  const int64_t layers = dim("layers", "depth", dims ? std::optional(dims->layers) : std::nullopt);
  const int64_t patch = dim("patch_size", "patch_size", dims ? std::optional(dims->patch) : std::nullopt);
  const int64_t image = dim("image_size", "img_size", dims ? std::optional(dims->image) : std::nullopt);
  double ratio = vc.contains("mlp_ratio") ? v.get_double("mlp_ratio", 4.0) : va.get_double("mlp_ratio", 4.0);
  const int64_t mlp = static_cast<int64_t>(static_cast<double>(w) * ratio);
  if (patch == 0 || image % patch != 0) fail("open_clip_config.json: image_size {} is not a multiple of patch_size {}", image, patch);
  const std::string vt = "visual.trunk.";
  add(s, vt + "cls_token", {1, 1, w});
  add(s, vt + "pos_embed", {1, (image / patch) * (image / patch) + 1, w});
  add(s, vt + "patch_embed.proj.weight", {w, 3, patch, patch});
  add(s, vt + "patch_embed.proj.bias", {w});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string b = fmt::format("{}blocks.{}.", vt, i);
    for (const char* n : {"norm1", "norm2"}) {
      add(s, b + n + ".weight", {w});
      add(s, b + n + ".bias", {w});
    }
    add(s, b + "attn.qkv.weight", {3 * w, w});
    add(s, b + "attn.qkv.bias", {3 * w});
    add(s, b + "attn.proj.weight", {w, w});
    add(s, b + "attn.proj.bias", {w});
    add(s, b + "mlp.fc1.weight", {mlp, w});
    add(s, b + "mlp.fc1.bias", {mlp});
    add(s, b + "mlp.fc2.weight", {w, mlp});
    add(s, b + "mlp.fc2.bias", {w});
  }
  add(s, vt + "norm.weight", {w});
  add(s, vt + "norm.bias", {w});
  const std::string timm_proj = v.get_string("timm_proj", "linear");
  if (timm_proj == "linear") {
    add(s, "visual.head.proj.weight", {embed, w});
    if (v.get_bool("timm_proj_bias", false)) add(s, "visual.head.proj.bias", {embed});
  } else if (timm_proj != "none") {
    fail("open_clip_config.json: vision_cfg.timm_proj '{}' is not understood (linear or none)", timm_proj);
  }
  s.description = fmt::format("BiomedCLIP (open_clip): vision ViT {} layers x {}, ", layers, w);

  // Text: an HF BERT under text.transformer, then the projection.
  const std::string hf_name = t.get_string("hf_model_name");
  json tc = text_config.is_object() ? text_config : known_text_config(hf_name);
  if (!tc.is_object())
    fail("open_clip_config.json: text_cfg.hf_model_name '{}': its config is not in the folder "
         "(text_config.json or {}/config.json) and not a known hub model",
         hf_name, hf_name.substr(hf_name.rfind('/') + 1));
  const std::string pooler = t.get_string("hf_pooler_type", "mean_pooler");
  // The BERT pooler is built only for cls_pooler; checkpoints saved before open_clip
  // dropped it for the other poolers may still carry it, harmlessly.
  add_bert_body(s, "text.transformer.", tc, "text config: ", true, pooler != "cls_pooler");
  const int64_t th = tc["hidden_size"].get<int64_t>();
  const std::string proj = t.get_string("hf_proj_type", "");
  if (proj == "mlp") {
    const int64_t mid = (th + embed) / 2;
    add(s, "text.proj.0.weight", {mid, th});
    add(s, "text.proj.2.weight", {embed, mid});
  } else if (proj == "linear") {
    add(s, "text.proj.weight", {embed, th});
  } else if (!(proj.empty() && th == embed)) {
    fail("open_clip_config.json: text_cfg.hf_proj_type '{}' is not understood (mlp or linear)", proj);
  }
  add(s, "logit_scale", {});
  add(s, "logit_bias", {}, true);
  s.description += fmt::format(", embed {}", embed);
  return s;
}

std::vector<std::string> compare_tensors(const ModelSpec& spec, const TensorTable& actual) {
  std::vector<std::string> missing, unexpected, shapes, dtypes;
  // Without a dtype in the config, the float tensors must at least agree with each other.
  std::optional<core::DType> float_dtype = spec.float_dtype;
  for (const auto& [name, want] : spec.tensors) {
    auto it = actual.find(name);
    if (!float_dtype && !want.dtype && it != actual.end()) float_dtype = it->second.dtype;
  }
  for (const auto& [name, want] : spec.tensors) {
    auto it = actual.find(name);
    if (it == actual.end()) {
      if (!want.optional) missing.push_back(name);
      continue;
    }
    if (it->second.shape != want.shape)
      shapes.push_back(fmt::format("{} is [{}], the config implies [{}]", name,
                                   fmt::join(it->second.shape, ", "), fmt::join(want.shape, ", ")));
    std::optional<core::DType> dt = want.dtype ? want.dtype : float_dtype;
    if (dt && it->second.dtype != *dt)
      dtypes.push_back(fmt::format("{} is {}, expected {}", name, core::dtype_name(it->second.dtype),
                                   core::dtype_name(*dt)));
  }
  for (const auto& [name, t] : actual)
    if (!spec.tensors.count(name)) unexpected.push_back(name);
  std::vector<std::string> out;
  auto report = [&](std::vector<std::string>& v, const char* what) {
    if (v.empty()) return;
    std::string line = fmt::format("{} {}: ", v.size(), what);
    for (size_t i = 0; i < v.size() && i < 5; ++i) line += (i ? "; " : "") + v[i];
    if (v.size() > 5) line += fmt::format("; ... ({} more)", v.size() - 5);
    out.push_back(line);
  };
  report(missing, "tensors the config implies are missing");
  report(unexpected, "tensors the config does not imply");
  report(shapes, "shapes disagree with the config");
  report(dtypes, "dtypes disagree with the config");
  return out;
}

}  // namespace medquant::hub
