#include "models/gemma3/tensors.h"

#include <fmt/format.h>

#include <charconv>

#include "core/error.h"

namespace medquant::models::gemma3 {
namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// "12.rest" -> 12 and "rest"; nullopt if no number.
std::optional<std::pair<int, std::string_view>> layer_prefix(std::string_view s) {
  int n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p == s.data() || p == s.data() + s.size() || *p != '.') return std::nullopt;
  return std::pair{n, s.substr(static_cast<size_t>(p - s.data()) + 1)};
}

// Splits "<module>.weight" / "<module>.bias".
std::pair<std::string_view, std::string_view> split_suffix(std::string_view s) {
  for (std::string_view suffix : {".weight", ".bias"})
    if (std::string_view(s).ends_with(suffix)) return {s.substr(0, s.size() - suffix.size()), suffix};
  return {s, ""};
}

// Names that every converter drops (ModelBase.prepare_tensors).
bool dropped(std::string_view name) {
  return std::string_view(name).ends_with(".attention.masked_bias") || std::string_view(name).ends_with(".attention.bias") ||
         std::string_view(name).ends_with(".rotary_emb.inv_freq");
}

std::optional<TensorRule> text(std::string_view original, const Config& c) {
  // TextModel.filter_tensors: multimodal tensors are not part of the text model.
  std::string name(original);
  for (std::string_view p : {"vision_tower.", "multi_modal_projector.", "multimodal_projector.",
                             "vision_model.", "model.vision_tower.", "model.multi_modal_projector."})
    if (starts_with(name, p)) return std::nullopt;
  if (name.find("vision_") != std::string::npos || name.find("projector.") != std::string::npos ||
      name.find("vision.") != std::string::npos)
    return std::nullopt;
  // ModelBase.filter_tensors: "language_model." goes, wherever it is.
  for (size_t pos; (pos = name.find("language_model.")) != std::string::npos;)
    name.erase(pos, std::string_view("language_model.").size());
  if (dropped(name)) return std::nullopt;

  const TextConfig& t = c.text;
  const int64_t hidden = t.hidden_size, hd = t.head_dim, ff = t.intermediate_size;
  TensorRule r;
  auto [module, suffix] = split_suffix(name);
  const bool weight = suffix == ".weight";
  auto fail_map = [&]() -> std::optional<TensorRule> {
    fail("tensor '{}' has no GGUF name in a Gemma 3 text model (convert_hf_to_gguf.py: "
         "\"Can not map tensor\")",
         original);
  };
  if (suffix.empty()) return fail_map();

  if (module == "model.embed_tokens" && weight) {
    r.gguf_name = "token_embd.weight";
    r.shape = {t.vocab_size, hidden};
    r.token_embd = true;
  } else if (module == "model.norm" && weight) {
    r.gguf_name = "output_norm.weight";
    r.shape = {hidden};
  } else if (module == "lm_head" && weight) {
    r.gguf_name = "output.weight";
    r.shape = {t.vocab_size, hidden};
  } else if (starts_with(module, "model.layers.")) {
    auto lp = layer_prefix(module.substr(std::string_view("model.layers.").size()));
    if (!lp || lp->first < 0 || lp->first >= t.num_hidden_layers) {
      if (lp)
        fail("tensor '{}' is in layer {} but the config has {} layers (num_hidden_layers)",
             original, lp->first, t.num_hidden_layers);
      return fail_map();
    }
    const int n = lp->first;
    const std::string_view rest = lp->second;
    struct Entry {
      std::string_view hf, gguf;
      std::vector<int64_t> shape;
    };
    const Entry entries[] = {
        {"input_layernorm", "attn_norm", {hidden}},
        {"self_attn.q_proj", "attn_q", {t.num_attention_heads * hd, hidden}},
        {"self_attn.k_proj", "attn_k", {t.num_key_value_heads * hd, hidden}},
        {"self_attn.v_proj", "attn_v", {t.num_key_value_heads * hd, hidden}},
        {"self_attn.o_proj", "attn_output", {hidden, t.num_attention_heads * hd}},
        {"self_attn.q_norm", "attn_q_norm", {hd}},
        {"self_attn.k_norm", "attn_k_norm", {hd}},
        {"post_attention_layernorm", "post_attention_norm", {hidden}},
        {"pre_feedforward_layernorm", "ffn_norm", {hidden}},
        {"post_feedforward_layernorm", "post_ffw_norm", {hidden}},
        {"mlp.gate_proj", "ffn_gate", {ff, hidden}},
        {"mlp.up_proj", "ffn_up", {ff, hidden}},
        {"mlp.down_proj", "ffn_down", {hidden, ff}},
    };
    const Entry* e = nullptr;
    for (const auto& x : entries)
      if (rest == x.hf) e = &x;
    if (!e) return fail_map();
    const bool is_norm = std::string_view(e->gguf).ends_with("norm");
    if (is_norm && !weight) return fail_map();
    r.gguf_name = fmt::format("blk.{}.{}{}", n, e->gguf, suffix);
    r.layer = n;
    r.shape = weight ? e->shape : std::vector<int64_t>{e->shape[0]};
  } else {
    return fail_map();
  }
  // Gemma3Model.modify_tensors: norm_shift on every "*norm.weight".
  r.add_one = std::string_view(name).ends_with("norm.weight");
  return r;
}

std::optional<TensorRule> vision(std::string_view original, const Config& c) {
  std::string name(original);
  if (starts_with(name, "model.vision_tower.") || starts_with(name, "model.multi_modal_projector."))
    name.erase(0, std::string_view("model.").size());
  if (name.find("language_model.") != std::string::npos) return std::nullopt;
  // Gemma3VisionModel.filter_tensors.
  if (name.find("vision_model.head.") != std::string::npos) return std::nullopt;
  if (!(starts_with(name, "multi_modal_projector.") || starts_with(name, "vision_tower.") ||
        starts_with(name, "multimodal_projector.") || starts_with(name, "vision_model.")))
    return std::nullopt;
  if (dropped(name)) return std::nullopt;
  const std::string hf_name = name;  // what tensor_force_quant sees (before _weight -> .weight)
  for (size_t pos; (pos = name.find("_weight")) != std::string::npos;) name.replace(pos, 7, ".weight");

  const VisionConfig& v = c.vision;
  const int64_t h = v.hidden_size;
  auto fail_map = [&]() -> std::optional<TensorRule> {
    fail("tensor '{}' has no GGUF name in a Gemma 3 vision projector (convert_hf_to_gguf.py: "
         "\"Can not map tensor\")",
         original);
  };
  auto [module, suffix] = split_suffix(name);
  if (suffix.empty()) return fail_map();
  const bool weight = suffix == ".weight";
  TensorRule r;
  std::string_view m = module;
  for (std::string_view p : {"multi_modal_projector.", "multimodal_projector."})
    if (starts_with(m, p)) {
      m.remove_prefix(p.size());
      if (m == "mm_input_projection" && weight) {
        r.gguf_name = "mm.input_projection.weight";
        r.shape = {h, c.text.hidden_size};
      } else if (m == "mm_soft_emb_norm" && weight) {
        r.gguf_name = "mm.soft_emb_norm.weight";
        r.shape = {h};
        r.add_one = true;
      } else {
        return fail_map();
      }
      m = {};
      break;
    }
  if (r.gguf_name.empty()) {
    if (starts_with(m, "vision_tower.")) m.remove_prefix(std::string_view("vision_tower.").size());
    if (!starts_with(m, "vision_model.")) return fail_map();
    m.remove_prefix(std::string_view("vision_model.").size());
    const int64_t side = v.image_size / v.patch_size;
    if (m == "embeddings.patch_embedding") {
      r.gguf_name = fmt::format("v.patch_embd{}", suffix);
      r.shape = weight ? std::vector<int64_t>{h, v.num_channels, v.patch_size, v.patch_size}
                       : std::vector<int64_t>{h};
    } else if (m == "embeddings.position_embedding" && weight) {
      r.gguf_name = "v.position_embd.weight";
      r.shape = {side * side, h};
    } else if (m == "post_layernorm") {
      r.gguf_name = fmt::format("v.post_ln{}", suffix);
      r.shape = {h};
    } else if (starts_with(m, "encoder.layers.")) {
      auto lp = layer_prefix(m.substr(std::string_view("encoder.layers.").size()));
      if (!lp || lp->first < 0 || lp->first >= v.num_hidden_layers) {
        if (lp)
          fail("tensor '{}' is in layer {} but vision_config has {} layers (num_hidden_layers)",
               original, lp->first, v.num_hidden_layers);
        return fail_map();
      }
      struct Entry {
        std::string_view hf, gguf;
        int64_t out, in;  // in 0: a norm
      };
      const Entry entries[] = {
          {"layer_norm1", "ln1", h, 0},          {"layer_norm2", "ln2", h, 0},
          {"self_attn.q_proj", "attn_q", h, h},  {"self_attn.k_proj", "attn_k", h, h},
          {"self_attn.v_proj", "attn_v", h, h},  {"self_attn.out_proj", "attn_out", h, h},
          {"mlp.fc1", "ffn_up", v.intermediate_size, h},
          {"mlp.fc2", "ffn_down", h, v.intermediate_size},
      };
      const Entry* e = nullptr;
      for (const auto& x : entries)
        if (lp->second == x.hf) e = &x;
      if (!e) return fail_map();
      r.gguf_name = fmt::format("v.blk.{}.{}{}", lp->first, e->gguf, suffix);
      r.layer = lp->first;
      r.shape = (weight && e->in) ? std::vector<int64_t>{e->out, e->in} : std::vector<int64_t>{e->out};
    } else {
      return fail_map();
    }
  }
  // Gemma3VisionModel.tensor_force_quant (on the HF name).
  if (hf_name.find("input_projection") != std::string::npos) r.forced = quant::Type::F16;
  else if (hf_name.find(".embeddings.") != std::string::npos) r.forced = quant::Type::F32;
  return r;
}

}  // namespace

std::optional<TensorRule> tensor_rule(std::string_view name, Part part, const Config& config) {
  if (part == Part::Text) return text(name, config);
  if (!config.multimodal) return std::nullopt;
  return vision(name, config);
}

std::vector<std::string> required_tensors(Part part, const Config& c) {
  std::vector<std::string> out;
  if (part == Part::Text) {
    out = {"token_embd.weight", "output_norm.weight"};
    for (int64_t n = 0; n < c.text.num_hidden_layers; ++n)
      for (std::string_view s :
           {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
            "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"})
        out.push_back(fmt::format("blk.{}.{}.weight", n, s));
    if (!c.text.tie_word_embeddings) out.push_back("output.weight");
    return out;
  }
  out = {"mm.input_projection.weight", "mm.soft_emb_norm.weight", "v.patch_embd.weight",
         "v.patch_embd.bias", "v.position_embd.weight", "v.post_ln.weight", "v.post_ln.bias"};
  for (int64_t n = 0; n < c.vision.num_hidden_layers; ++n)
    for (std::string_view s :
         {"ln1", "ln2", "attn_q", "attn_k", "attn_v", "attn_out", "ffn_up", "ffn_down"})
      for (std::string_view suffix : {".weight", ".bias"})
        out.push_back(fmt::format("v.blk.{}.{}{}", n, s, suffix));
  return out;
}

quant::Type tensor_type(const TensorRule& rule, size_t n_dims, int64_t ne0, quant::Type out) {
  std::optional<quant::Type> t = rule.forced;
  if (n_dims <= 1 || std::string_view(rule.gguf_name).ends_with("_norm.weight")) t = quant::Type::F32;
  if (!t && !std::string_view(rule.gguf_name).ends_with(".weight")) t = quant::Type::F32;
  if (t) return *t;
  if (out == quant::Type::Q8_0 && ne0 % 32 != 0) return quant::Type::F16;  // QuantError fallback
  return out;
}

}  // namespace medquant::models::gemma3
