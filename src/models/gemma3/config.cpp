#include "models/gemma3/config.h"

#include "core/error.h"

namespace medquant::models::gemma3 {
namespace {

using checkpoint::Json;
using checkpoint::JsonObject;

// The text hyperparameters as convert_hf_to_gguf.py sees them: for a
// multimodal config, the top level with text_config merged over it.
struct Merged {
  JsonObject top;
  JsonObject text;  // == top for text-only configs
  bool nested;

  const Json* get(std::string_view key) const {
    if (const Json* v = text.get(key)) return v;
    return nested ? top.get(key) : nullptr;
  }
  const JsonObject& where(std::string_view key) const {
    return text.has(key) || !nested ? text : top;
  }
  std::optional<int64_t> get_int(std::string_view key) const { return where(key).get_int(key); }
  std::optional<double> get_number(std::string_view key) const {
    return where(key).get_number(key);
  }
  std::optional<bool> get_bool(std::string_view key) const { return where(key).get_bool(key); }
  std::optional<std::string> get_string(std::string_view key) const {
    return where(key).get_string(key);
  }
  std::string name(std::string_view key) const { return where(key).name(key); }
};

void positive(const Merged& m, std::string_view key, int64_t v) {
  if (v <= 0) fail("{} is {}, must be positive", m.name(key), v);
}

// The first of several alternative keys that is present (find_hparam).
std::optional<double> first_number(const Merged& m, std::initializer_list<std::string_view> keys) {
  for (auto k : keys)
    if (m.get(k)) return m.get_number(k);
  return std::nullopt;
}

void read_rope(const Merged& m, TextConfig& t) {
  // TextModel.__init__: rope_parameters (transformers 5) or rope_scaling (4.x).
  JsonObject params(nullptr, m.text.file(), "rope_scaling");
  if (m.get("rope_parameters")) {
    params = m.where("rope_parameters").object("rope_parameters");
  } else if (m.get("rope_scaling")) {
    params = m.where("rope_scaling").object("rope_scaling");
  }
  const std::optional<double> global_theta = first_number(
      m, {"global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta", "rotary_emb_base"});
  const std::optional<double> local_theta = first_number(
      m, {"local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
          "rope_local_base_freq"});

  JsonObject full = params;
  if (params.has("full_attention") || params.has("sliding_attention")) {
    // Per layer type (transformers 5 configs).
    if (params.has("full_attention")) full = params.object("full_attention");
    if (params.has("sliding_attention"))
      t.rope_theta_swa = params.object("sliding_attention").get_number("rope_theta");
    t.rope_theta_given = full.has("rope_theta");
    t.rope_theta = full.get_number("rope_theta").value_or(1e6);  // Gemma3Model's default
  } else {
    // transformers 4.x always has both (defaults 1e6 and 1e4).
    t.rope_theta_swa = local_theta.value_or(10000.0);
    t.rope_theta = params.has("rope_theta") ? *params.get_number("rope_theta")
                                            : global_theta.value_or(1e6);
  }
  t.rope_type = full.get_string("rope_type");
  if (!t.rope_type && !(params.has("full_attention") || params.has("sliding_attention")))
    t.rope_type = full.get_string("type");
  t.rope_factor = full.get_number("factor");
  t.rope_original_max_position_embeddings = full.get_int("original_max_position_embeddings");
  t.rope_yarn_ext_factor = full.get_number("extrapolation_factor");
  t.rope_yarn_attn_factor = full.has("attention_factor") ? full.get_number("attention_factor")
                                                         : full.get_number("attn_factor");
  t.rope_yarn_beta_fast = full.get_number("beta_fast");
  t.rope_yarn_beta_slow = full.get_number("beta_slow");
  if (t.rope_type && *t.rope_type == "yarn" && t.rope_factor && !t.rope_original_max_position_embeddings)
    fail("{}: yarn RoPE scaling needs original_max_position_embeddings", m.name("rope_scaling"));
  if (t.rope_theta <= 0) fail("{} must be positive", m.name("rope_theta"));
  if (t.rope_theta_swa && *t.rope_theta_swa <= 0)
    fail("{} must be positive", m.name("rope_local_base_freq"));
}

TextConfig read_text(const Merged& m) {
  TextConfig t;
  auto i = [&](std::string_view key, int64_t& field) {
    if (auto v = m.get_int(key)) field = *v;
    positive(m, key, field);
  };
  i("vocab_size", t.vocab_size);
  i("hidden_size", t.hidden_size);
  i("intermediate_size", t.intermediate_size);
  i("num_hidden_layers", t.num_hidden_layers);
  i("num_attention_heads", t.num_attention_heads);
  i("num_key_value_heads", t.num_key_value_heads);
  i("head_dim", t.head_dim);
  i("max_position_embeddings", t.max_position_embeddings);
  i("sliding_window", t.sliding_window);
  if (auto v = m.get_number("rms_norm_eps")) t.rms_norm_eps = *v;
  if (!(t.rms_norm_eps > 0)) fail("{} must be positive", m.name("rms_norm_eps"));
  t.sliding_window_pattern = m.get_int("sliding_window_pattern");
  t.final_logit_softcapping = m.get_number("final_logit_softcapping");
  t.attn_logit_softcapping = m.get_number("attn_logit_softcapping");
  if (auto v = m.get_bool("tie_word_embeddings")) t.tie_word_embeddings = *v;
  if (t.attn_logit_softcapping)
    fail("{} is set: Gemma 3 has no attention logit soft-capping (is this a Gemma 2 config?)",
         m.name("attn_logit_softcapping"));
  if (t.num_attention_heads % t.num_key_value_heads != 0)
    fail("{}: {} attention heads are not a multiple of {} key/value heads", m.text.file(),
         t.num_attention_heads, t.num_key_value_heads);
  read_rope(m, t);
  return t;
}

VisionConfig read_vision(const JsonObject& v) {
  VisionConfig c;
  auto i = [&](std::string_view key, int64_t& field) {
    if (auto x = v.get_int(key)) field = *x;
    if (field <= 0) fail("{} is {}, must be positive", v.name(key), field);
  };
  i("hidden_size", c.hidden_size);
  i("intermediate_size", c.intermediate_size);
  i("num_hidden_layers", c.num_hidden_layers);
  i("num_attention_heads", c.num_attention_heads);
  i("num_channels", c.num_channels);
  i("image_size", c.image_size);
  i("patch_size", c.patch_size);
  if (auto x = v.get_number("layer_norm_eps")) c.layer_norm_eps = *x;
  if (c.image_size % c.patch_size != 0)
    fail("{}: image_size {} is not a multiple of patch_size {}", v.file(), c.image_size,
         c.patch_size);
  if (c.hidden_size % c.num_attention_heads != 0)
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {}", v.file(), c.hidden_size,
         c.num_attention_heads);
  return c;
}

}  // namespace

Config read_config(const checkpoint::HfConfig& hf) {
  hf.require_architecture(kArchitectures, "medquant convert gguf");
  Config c;
  c.architecture = hf.architecture();
  c.path = hf.path();
  c.multimodal = c.architecture == "Gemma3ForConditionalGeneration";
  const JsonObject top = hf.root();
  if (c.multimodal) {
    const Merged m{top, top.object("text_config"), true};
    c.text = read_text(m);
    c.vision = read_vision(top.object("vision_config"));
    if (auto v = top.get_int("mm_tokens_per_image")) c.mm_tokens_per_image = *v;
  } else {
    const Merged m{top, top, false};
    c.text = read_text(m);
  }
  return c;
}

}  // namespace medquant::models::gemma3
