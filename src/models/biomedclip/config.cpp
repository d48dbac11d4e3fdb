#include "models/biomedclip/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/log.h"

namespace medquant::models::biomedclip {
namespace {

// ---- JSON access with messages naming file and key --------------------------

struct JsonView {
  const Json* object;  // nullptr: empty
  std::string file;
  std::string where;   // "model_cfg.vision_cfg"

  std::string name(std::string_view key) const {
    return where.empty() ? fmt::format("{}: {}", file, key) : fmt::format("{}: {}.{}", file, where, key);
  }
  const Json* get(std::string_view key) const {
    if (!object || !object->is_object()) return nullptr;
    auto it = object->find(std::string(key));
    if (it == object->end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool present(std::string_view key) const {  // present, even as null
    return object && object->is_object() && object->contains(std::string(key));
  }
  std::optional<int64_t> get_int(std::string_view key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
    }
    fail("{} is {}, expected an integer", name(key), v->dump());
  }
  std::optional<double> get_number(std::string_view key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail("{} is {}, expected a number", name(key), v->dump());
    return v->get<double>();
  }
  std::optional<bool> get_bool(std::string_view key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail("{} is {}, expected true or false", name(key), v->dump());
    return v->get<bool>();
  }
  std::optional<std::string> get_string(std::string_view key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail("{} is {}, expected a string", name(key), v->dump());
    return v->get<std::string>();
  }
  JsonView sub(std::string_view key) const {
    const Json* v = get(key);
    if (v && !v->is_object()) fail("{} is not an object", name(key));
    return {v, file, where.empty() ? std::string(key) : where + "." + std::string(key)};
  }
};

const std::vector<int64_t>* find_shape(const ShapeTable& shapes, const std::string& name) {
  auto it = shapes.find(name);
  return it == shapes.end() ? nullptr : &it->second;
}

const std::vector<int64_t>& need_shape(const ShapeTable& shapes, const std::string& name,
                                       const std::string& where, std::string_view hint) {
  const auto* s = find_shape(shapes, name);
  if (!s) fail("{}: tensor '{}' is missing{}", where, name, hint);
  return *s;
}

// Highest N + 1 over names "<prefix>N.<rest>"; 0 if none.
int64_t count_indexed(const ShapeTable& shapes, const std::string& prefix) {
  int64_t count = 0;
  for (auto it = shapes.lower_bound(prefix); it != shapes.end() && it->first.starts_with(prefix); ++it) {
    std::string_view rest = std::string_view(it->first).substr(prefix.size());
    int64_t n = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec == std::errc() && p != rest.data() && p < rest.data() + rest.size() && *p == '.')
      count = std::max(count, n + 1);
  }
  return count;
}

// A value stated by a config must equal the one the weights give.
void agree(std::optional<int64_t> stated, int64_t actual, const std::string& stated_name,
           const std::string& actual_what) {
  if (stated && *stated != actual)
    fail("shape mismatch between config and weights: {} is {}, but {} gives {}", stated_name,
         *stated, actual_what, actual);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Tensors that checkpoints carry but the forward pass does not use.
bool is_bert_buffer(std::string_view rest) {
  return rest == "embeddings.position_ids" || rest == "embeddings.token_type_ids";
}

void check_no_leftovers(const ShapeTable& shapes, const std::set<std::string>& used,
                        const std::function<bool(const std::string&)>& ignorable,
                        const std::string& where) {
  std::vector<std::string> extra;
  for (const auto& [name, shape] : shapes)
    if (!used.count(name) && !ignorable(name)) extra.push_back(fmt::format("'{}' {}", name, shape_string(shape)));
  if (extra.empty()) return;
  std::string list;
  for (size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", " : "") + extra[i];
  if (extra.size() > 5) list += fmt::format(" and {} more", extra.size() - 5);
  fail("{}: {} tensor{} not part of the model this exporter understands: {} (an unsupported "
       "variant, e.g. layer scale, register tokens or another head, would be exported wrong)",
       where, extra.size(), extra.size() == 1 ? " is" : "s are", list);
}

std::set<std::string> names_of(const std::vector<ExpectedTensor>& e) {
  std::set<std::string> s;
  for (const auto& t : e) s.insert(t.name);
  return s;
}

// ---- vision -----------------------------------------------------------------

// timm model_args that keep the plain ViT this exporter builds.
bool benign_timm_arg(const std::string& key, const Json& value) {
  static const std::set<std::string> kSizes = {"embed_dim", "depth", "num_heads", "mlp_ratio",
                                               "patch_size", "img_size"};
  static const std::set<std::string> kTraining = {
      "drop_rate",      "attn_drop_rate",  "drop_path_rate", "proj_drop_rate", "pos_drop_rate",
      "patch_drop_rate", "weight_init",    "num_classes",    "pretrained_cfg", "fix_init"};
  if (kSizes.count(key) || kTraining.count(key)) return true;
  if (key == "in_chans") return value == 3;
  if (key == "qkv_bias" || key == "class_token" || key == "final_norm") return value == true;
  if (key == "global_pool") return value == "token";
  if (key == "pre_norm" || key == "no_embed_class" || key == "qk_norm" || key == "dynamic_img_size" ||
      key == "dynamic_img_pad")
    return value == false;
  if (key == "reg_tokens") return value == 0;
  if (key == "init_values") return value.is_null();
  if (key == "fc_norm") return value.is_null() || value == false;
  return false;
}

VisionConfig describe_vision(const ConfigFiles& files, const JsonView& vc, int64_t embed_dim,
                             const ShapeTable& shapes, const std::string& where) {
  VisionConfig v;
  const auto timm_name = vc.get_string("timm_model_name");
  if (!timm_name)
    fail("{} is missing: only timm image towers are supported (BiomedCLIP's is the timm ViT "
         "vit_base_patch16_224)",
         vc.name("timm_model_name"));
  v.timm_model_name = *timm_name;

  // What timm builds: the architecture's sizes, then a local-dir config's model_args.
  std::optional<TimmVitName> arch;
  JsonView args{nullptr, files.timm_path, "model_args"};
  std::string size_source = fmt::format("timm model '{}'", *timm_name);
  if (timm_name->starts_with("local-dir:")) {
    if (!files.timm)
      fail("{}: '{}' names a timm config folder whose config.json was not found beside the "
           "checkpoint",
           vc.name("timm_model_name"), *timm_name);
    JsonView top{&*files.timm, files.timm_path, ""};
    const auto a = top.get_string("architecture");
    if (!a) fail("{}: no \"architecture\"", files.timm_path);
    arch = parse_timm_vit_name(*a);
    if (!arch)
      fail("{}: architecture '{}' is not a plain timm ViT (vit_<tiny|small|base|large|huge>_patch<P>_<size>); "
           "only those are supported",
           files.timm_path, *a);
    args = top.sub("model_args");
    if (args.object)
      for (const auto& [key, value] : args.object->items())
        if (!benign_timm_arg(key, value))
          fail("{}: {} = {} changes the ViT in a way the exporter does not support",
               files.timm_path, "model_args." + key, value.dump());
    size_source = fmt::format("{} (architecture {})", files.timm_path, *a);
  } else {
    arch = parse_timm_vit_name(*timm_name);
    if (!arch)
      fail("{} '{}' is not a plain timm ViT (vit_<tiny|small|base|large|huge>_patch<P>_<size>, "
           "optionally .tag): CLIP/SigLIP/DINOv2-style ViTs and other timm models have other "
           "blocks and are not supported",
           vc.name("timm_model_name"), *timm_name);
  }

  // Pooling and head, with open_clip's defaults (CLIPVisionCfg).
  std::string pool = "avg", proj = "linear";
  bool proj_null = false;
  if (vc.present("timm_pool")) pool = vc.get_string("timm_pool").value_or("");
  if (vc.present("timm_proj")) {
    const auto p = vc.get_string("timm_proj");
    proj = p.value_or("");
    proj_null = !p;
  }
  const bool proj_bias = vc.get_bool("timm_proj_bias").value_or(false);
  if (pool == "abs_attn" || pool == "rot_attn")
    fail("{} '{}': attention pooling heads are not supported (token, avg or \"\")",
         vc.name("timm_pool"), pool);
  if (pool != "" && pool != "token" && pool != "avg")
    fail("{} '{}' is not supported (\"\", token or avg)", vc.name("timm_pool"), pool);
  if (proj == "linear") {
    v.head = "visual.head.proj";
    v.head_bias = proj_bias;
  } else if (proj == "mlp") {
    fail("{} 'mlp' (an MLP head) is not supported (linear, none or \"\")", vc.name("timm_proj"));
  } else if (proj == "none" || proj.empty()) {
    if (pool.empty())
      fail("{} \"\" with {} '{}' gives per-token features, not an embedding; not supported",
           vc.name("timm_pool"), vc.name("timm_proj"), proj_null ? "null" : proj);
    if (proj.empty()) {  // timm's own classifier, num_classes = embed_dim
      v.head = "visual.trunk.head";
      v.head_bias = true;
    }
  } else {
    fail("{} '{}' is not supported (linear, none or \"\")", vc.name("timm_proj"), proj);
  }
  v.pool = pool == "avg" ? VisionPool::Avg : VisionPool::Token;

  // Sizes from the weights.
  const std::string p = v.prefix;
  const auto& pe = need_shape(shapes, p + "patch_embed.proj.weight", where,
                              " (not a timm ViT image tower?)");
  if (pe.size() != 4 || pe[1] != 3 || pe[2] != pe[3] || pe[2] <= 0)
    fail("{}: '{}patch_embed.proj.weight' is {}, expected [width, 3, patch, patch]", where, p,
         shape_string(pe));
  v.width = pe[0];
  v.patch_size = pe[2];
  const auto& pos = need_shape(shapes, p + "pos_embed", where, "");
  if (pos.size() != 3 || pos[0] != 1 || pos[2] != v.width || pos[1] < 2)
    fail("{}: '{}pos_embed' is {}, expected [1, 1 + grid*grid, {}]", where, p, shape_string(pos), v.width);
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(pos[1] - 1))));
  if (grid * grid != pos[1] - 1)
    fail("{}: '{}pos_embed' has {} positions, not 1 class token + a square grid of patches", where, p, pos[1]);
  v.image_size = grid * v.patch_size;
  v.depth = count_indexed(shapes, p + "blocks.");
  if (v.depth == 0) fail("{}: no '{}blocks.N.*' tensors", where, p);
  const auto& fc1 = need_shape(shapes, p + "blocks.0.mlp.fc1.weight", where, "");
  if (fc1.size() != 2) fail("{}: '{}blocks.0.mlp.fc1.weight' is {}, expected 2-D", where, p, shape_string(fc1));
  v.mlp_hidden = fc1[0];
  if (!v.head.empty()) {
    const auto& hw = need_shape(shapes, v.head + ".weight", where,
                                fmt::format(" (the {} head)", proj.empty() ? "timm classifier" : "linear"));
    if (hw.size() != 2 || hw[1] != v.width)
      fail("{}: '{}.weight' is {}, expected [embed_dim, {}]", where, v.head, shape_string(hw), v.width);
    v.output_dim = hw[0];
  } else {
    v.output_dim = v.width;
  }
  const std::string pe_what = fmt::format("'{}patch_embed.proj.weight' {}", p, shape_string(pe));
  const std::string pos_what = fmt::format("'{}pos_embed' {}", p, shape_string(pos));
  agree(embed_dim, v.output_dim, "model_cfg.embed_dim",
        v.head.empty() ? pe_what : fmt::format("'{}.weight'", v.head));

  // Sizes stated anywhere must match: the timm architecture (what open_clip
  // builds), local-dir model_args, and CLIPVisionCfg's fields.
  // timm merges model_args over the architecture's defaults.
  auto timm_size = [&](const char* key, int64_t arch_value, const char* what) {
    if (args.get(key)) return std::pair(args.get_int(key), args.name(key));
    return std::pair(std::optional<int64_t>(arch_value), fmt::format("{} {}", size_source, what));
  };
  {
    auto [w, wn] = timm_size("embed_dim", arch->width, "width");
    agree(w, v.width, wn, pe_what);
    auto [d, dn] = timm_size("depth", arch->depth, "depth");
    agree(d, v.depth, dn, "the blocks present");
    auto [ps, pn] = timm_size("patch_size", arch->patch, "patch size");
    agree(ps, v.patch_size, pn, pe_what);
  }
  {
    auto [is, in] = timm_size("img_size", arch->image, "image size");
    agree(is, v.image_size, in, pos_what);
  }
  agree(vc.get_int("width"), v.width, vc.name("width"), pe_what);
  agree(vc.get_int("layers"), v.depth, vc.name("layers"), "the blocks present");
  agree(vc.get_int("patch_size"), v.patch_size, vc.name("patch_size"), pe_what);
  agree(vc.get_int("image_size"), v.image_size, vc.name("image_size"), pos_what);
  double ratio = 4.0;
  std::string ratio_name = "timm's default mlp_ratio";
  if (auto r = args.get_number("mlp_ratio")) ratio = *r, ratio_name = args.name("mlp_ratio");
  else if (auto r2 = vc.get_number("mlp_ratio")) ratio = *r2, ratio_name = vc.name("mlp_ratio");
  agree(static_cast<int64_t>(static_cast<double>(v.width) * ratio), v.mlp_hidden,
        fmt::format("{} {} x width {}", ratio_name, ratio, v.width),
        fmt::format("'{}blocks.0.mlp.fc1.weight' {}", p, shape_string(fc1)));

  // Heads (see config.h).
  const auto head_width = vc.get_int("head_width");
  if (auto h = args.get_int("num_heads")) {
    v.heads = *h;
    v.heads_rule = args.name("num_heads");
  } else {  // timm merges model_args over the architecture's own, heads included
    v.heads = arch->heads;
    v.heads_rule = size_source;
  }
  if (head_width && (*head_width <= 0 || v.heads * *head_width != v.width))
    fail("shape mismatch between configs: {} is {}, but {} gives {} heads of width {}",
         vc.name("head_width"), *head_width, v.heads_rule, v.heads,
         v.heads > 0 ? v.width / v.heads : 0);
  if (v.heads <= 0 || v.width % v.heads != 0)
    fail("{}: width {} does not split into {} attention heads ({})", where, v.width, v.heads,
         v.heads_rule);
  return v;
}

}  // namespace

std::string_view to_string(VisionPool p) { return p == VisionPool::Token ? "token" : "avg"; }
std::string_view to_string(TextPool p) {
  switch (p) {
    case TextPool::Cls: return "cls_last_hidden_state";
    case TextPool::ClsPooler: return "cls_pooler";
    case TextPool::Mean: return "mean";
  }
  return "?";
}
std::string_view to_string(TextProj p) {
  switch (p) {
    case TextProj::None: return "none";
    case TextProj::Linear: return "linear";
    case TextProj::Mlp: return "mlp";
  }
  return "?";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string BertConfig::norm_param(const std::string& module, bool weight) const {
  if (legacy_norm_names) return module + (weight ? ".gamma" : ".beta");
  return module + (weight ? ".weight" : ".bias");
}

std::optional<TimmVitName> parse_timm_vit_name(std::string_view name) {
  // vit_<size>_patch<P>_<res>[.tag]; the pre-tag names (_in21k etc.) too.
  const size_t dot = name.find('.');
  std::string_view base = name.substr(0, dot);
  if (!base.starts_with("vit_")) return std::nullopt;
  base.remove_prefix(4);
  struct Size { std::string_view name; int64_t width, depth, heads; };
  static constexpr Size kSizes[] = {{"tiny", 192, 12, 3}, {"small", 384, 12, 6},
                                    {"base", 768, 12, 12}, {"large", 1024, 24, 16},
                                    {"huge", 1280, 32, 16}};
  const Size* size = nullptr;
  for (const auto& s : kSizes)
    if (base.starts_with(s.name) && base.substr(s.name.size()).starts_with("_patch")) size = &s;
  if (!size) return std::nullopt;
  base.remove_prefix(size->name.size() + 6);
  TimmVitName out{size->width, size->depth, size->heads, 0, 0};
  auto number = [&](int64_t& v) {
    auto [p, ec] = std::from_chars(base.data(), base.data() + base.size(), v);
    if (ec != std::errc() || p == base.data() || v <= 0) return false;
    base.remove_prefix(static_cast<size_t>(p - base.data()));
    return true;
  };
  if (!number(out.patch) || !base.starts_with("_")) return std::nullopt;
  base.remove_prefix(1);
  if (!number(out.image)) return std::nullopt;
  if (!base.empty() && base != "_in21k" && base != "_in1k" && base != "_miil" && base != "_miil_in21k")
    return std::nullopt;
  return out;
}

std::string find_bert_prefix(const ShapeTable& shapes, const std::string& where) {
  for (const char* p : {"", "bert.", "model.", "text.transformer."})
    if (shapes.count(std::string(p) + "embeddings.word_embeddings.weight")) return p;
  fail("{}: no 'embeddings.word_embeddings.weight' (nor 'bert.embeddings...'): not a BERT checkpoint",
       where);
}

BertConfig describe_bert(const Json* config, const std::string& config_path,
                         const ShapeTable& shapes, const std::string& prefix,
                         const std::string& where) {
  BertConfig b;
  b.prefix = prefix;
  const std::string& p = prefix;
  const auto& we = need_shape(shapes, p + "embeddings.word_embeddings.weight", where,
                              " (not an HF BERT text tower?)");
  if (we.size() != 2) fail("{}: '{}embeddings.word_embeddings.weight' is {}, expected 2-D", where, p, shape_string(we));
  b.vocab_size = we[0];
  b.hidden = we[1];
  const auto& pos = need_shape(shapes, p + "embeddings.position_embeddings.weight", where,
                               " (BERT with absolute positions expected)");
  const auto& type = need_shape(shapes, p + "embeddings.token_type_embeddings.weight", where, "");
  if (pos.size() != 2 || type.size() != 2)
    fail("{}: position / token type embeddings are {} / {}, expected 2-D", where, shape_string(pos),
         shape_string(type));
  b.max_positions = pos[0];
  b.type_vocab = type[0];
  if (b.type_vocab < 1) fail("{}: '{}embeddings.token_type_embeddings.weight' has no rows", where, p);
  b.layers = count_indexed(shapes, p + "encoder.layer.");
  if (b.layers == 0) fail("{}: no '{}encoder.layer.N.*' tensors", where, p);
  const auto& inter = need_shape(shapes, p + "encoder.layer.0.intermediate.dense.weight", where, "");
  if (inter.size() != 2) fail("{}: '{}encoder.layer.0.intermediate.dense.weight' is {}, expected 2-D", where, p, shape_string(inter));
  b.intermediate = inter[0];
  b.legacy_norm_names = !shapes.count(p + "embeddings.LayerNorm.weight") &&
                        shapes.count(p + "embeddings.LayerNorm.gamma");
  b.has_pooler = shapes.count(p + "pooler.dense.weight") > 0;

  JsonView c{config, config_path, ""};
  if (config && !config->is_object()) fail("{}: not a JSON object", config_path);
  if (auto t = c.get_string("model_type"); t && *t != "bert")
    fail("{}: model_type '{}' is not supported (bert only: other encoders differ in positions or "
         "normalisation)",
         c.name("model_type"), *t);
  const std::string we_what = fmt::format("'{}embeddings.word_embeddings.weight' {}", p, shape_string(we));
  agree(c.get_int("hidden_size"), b.hidden, c.name("hidden_size"), we_what);
  agree(c.get_int("vocab_size"), b.vocab_size, c.name("vocab_size"), we_what);
  agree(c.get_int("num_hidden_layers"), b.layers, c.name("num_hidden_layers"), "the layers present");
  agree(c.get_int("intermediate_size"), b.intermediate, c.name("intermediate_size"),
        fmt::format("'{}encoder.layer.0.intermediate.dense.weight' {}", p, shape_string(inter)));
  agree(c.get_int("max_position_embeddings"), b.max_positions, c.name("max_position_embeddings"),
        fmt::format("'{}embeddings.position_embeddings.weight' {}", p, shape_string(pos)));
  agree(c.get_int("type_vocab_size"), b.type_vocab, c.name("type_vocab_size"),
        fmt::format("'{}embeddings.token_type_embeddings.weight' {}", p, shape_string(type)));
  if (auto act = c.get_string("hidden_act"); act && *act != "gelu")
    fail("{} '{}' is not supported (gelu, the exact erf form, only)", c.name("hidden_act"), *act);
  if (auto pe = c.get_string("position_embedding_type"); pe && *pe != "absolute")
    fail("{} '{}' is not supported (absolute only)", c.name("position_embedding_type"), *pe);
  if (c.get_bool("is_decoder").value_or(false))
    fail("{}: is_decoder is true; only bidirectional encoders are supported", config_path);
  if (auto eps = c.get_number("layer_norm_eps")) b.layer_norm_eps = static_cast<float>(*eps);
  if (auto pad = c.get_int("pad_token_id")) b.pad_token_id = *pad;
  if (auto h = c.get_int("num_attention_heads")) {
    b.heads = *h;
    b.heads_rule = c.name("num_attention_heads");
  } else {
    b.heads = b.hidden / 64;
    b.heads_rule = config ? fmt::format("{} has no num_attention_heads: hidden / 64", config_path)
                          : "no BERT config: hidden / 64 (BERT's head width)";
  }
  if (b.heads <= 0 || b.hidden % b.heads != 0)
    fail("{}: hidden size {} does not split into {} attention heads ({})", where, b.hidden, b.heads,
         b.heads_rule);
  return b;
}

std::vector<ExpectedTensor> expected_vision_tensors(const VisionConfig& v) {
  std::vector<ExpectedTensor> e;
  const std::string& p = v.prefix;
  const int64_t w = v.width, m = v.mlp_hidden;
  e.push_back({p + "patch_embed.proj.weight", {w, 3, v.patch_size, v.patch_size}});
  e.push_back({p + "patch_embed.proj.bias", {w}});
  e.push_back({p + "cls_token", {1, 1, w}});
  e.push_back({p + "pos_embed", {1, v.tokens(), w}});
  for (int64_t i = 0; i < v.depth; ++i) {
    const std::string b = fmt::format("{}blocks.{}.", p, i);
    e.push_back({b + "norm1.weight", {w}});
    e.push_back({b + "norm1.bias", {w}});
    e.push_back({b + "attn.qkv.weight", {3 * w, w}});
    e.push_back({b + "attn.qkv.bias", {3 * w}});
    e.push_back({b + "attn.proj.weight", {w, w}});
    e.push_back({b + "attn.proj.bias", {w}});
    e.push_back({b + "norm2.weight", {w}});
    e.push_back({b + "norm2.bias", {w}});
    e.push_back({b + "mlp.fc1.weight", {m, w}});
    e.push_back({b + "mlp.fc1.bias", {m}});
    e.push_back({b + "mlp.fc2.weight", {w, m}});
    e.push_back({b + "mlp.fc2.bias", {w}});
  }
  e.push_back({p + "norm.weight", {w}});
  e.push_back({p + "norm.bias", {w}});
  if (!v.head.empty()) {
    e.push_back({v.head + ".weight", {v.output_dim, w}});
    if (v.head_bias) e.push_back({v.head + ".bias", {v.output_dim}});
  }
  return e;
}

std::vector<ExpectedTensor> expected_bert_tensors(const BertConfig& b, bool with_pooler) {
  std::vector<ExpectedTensor> e;
  const std::string& p = b.prefix;
  const int64_t h = b.hidden, f = b.intermediate;
  e.push_back({p + "embeddings.word_embeddings.weight", {b.vocab_size, h}});
  e.push_back({p + "embeddings.position_embeddings.weight", {b.max_positions, h}});
  e.push_back({p + "embeddings.token_type_embeddings.weight", {b.type_vocab, h}});
  e.push_back({b.norm_param(p + "embeddings.LayerNorm", true), {h}});
  e.push_back({b.norm_param(p + "embeddings.LayerNorm", false), {h}});
  for (int64_t i = 0; i < b.layers; ++i) {
    const std::string l = fmt::format("{}encoder.layer.{}.", p, i);
    for (const char* qkv : {"query", "key", "value"}) {
      e.push_back({l + "attention.self." + qkv + ".weight", {h, h}});
      e.push_back({l + "attention.self." + qkv + ".bias", {h}});
    }
    e.push_back({l + "attention.output.dense.weight", {h, h}});
    e.push_back({l + "attention.output.dense.bias", {h}});
    e.push_back({b.norm_param(l + "attention.output.LayerNorm", true), {h}});
    e.push_back({b.norm_param(l + "attention.output.LayerNorm", false), {h}});
    e.push_back({l + "intermediate.dense.weight", {f, h}});
    e.push_back({l + "intermediate.dense.bias", {f}});
    e.push_back({l + "output.dense.weight", {h, f}});
    e.push_back({l + "output.dense.bias", {h}});
    e.push_back({b.norm_param(l + "output.LayerNorm", true), {h}});
    e.push_back({b.norm_param(l + "output.LayerNorm", false), {h}});
  }
  if (with_pooler) {
    e.push_back({p + "pooler.dense.weight", {h, h}});
    e.push_back({p + "pooler.dense.bias", {h}});
  }
  return e;
}

std::vector<ExpectedTensor> expected_text_tensors(const TextConfig& t) {
  auto e = expected_bert_tensors(t.bert, t.pool == TextPool::ClsPooler);
  const int64_t h = t.bert.hidden;
  if (t.proj == TextProj::Mlp) {
    e.push_back({"text.proj.0.weight", {t.proj_hidden, h}});
    e.push_back({"text.proj.2.weight", {t.output_dim, t.proj_hidden}});
  } else if (t.proj == TextProj::Linear) {
    e.push_back({"text.proj.weight", {t.output_dim, h}});
  }
  return e;
}

void check_tensors(const std::vector<ExpectedTensor>& expected, const ShapeTable& shapes,
                   const std::string& where) {
  std::vector<std::string> missing;
  for (const auto& t : expected) {
    const auto* s = find_shape(shapes, t.name);
    if (!s) {
      missing.push_back(t.name);
      continue;
    }
    if (*s != t.shape)
      fail("{}: shape mismatch between config and weights: tensor '{}' is {}, the model described "
           "by the config needs {}",
           where, t.name, shape_string(*s), shape_string(t.shape));
  }
  if (missing.empty()) return;
  std::string list;
  for (size_t i = 0; i < missing.size() && i < 4; ++i) list += (i ? "', '" : "") + missing[i];
  fail("{}: {} tensor{} missing: '{}'{}", where, missing.size(), missing.size() == 1 ? " is" : "s are",
       list, missing.size() > 4 ? fmt::format(" and {} more", missing.size() - 4) : "");
}

BiomedClipConfig describe_biomedclip(const ConfigFiles& files, const ShapeTable& shapes) {
  const std::string& oc = files.open_clip_path;
  const std::string& where = files.weights_path;
  if (!files.open_clip.is_object()) fail("{}: not a JSON object", oc);
  JsonView root{&files.open_clip, oc, ""};
  JsonView mc = root.sub("model_cfg");
  if (!mc.object) fail("{}: no \"model_cfg\" object", oc);
  JsonView vc = mc.sub("vision_cfg");
  JsonView tc = mc.sub("text_cfg");
  if (!vc.object) fail("{}: model_cfg has no \"vision_cfg\"", oc);
  if (!tc.object) fail("{}: model_cfg has no \"text_cfg\"", oc);
  BiomedClipConfig c;
  const auto embed = mc.get_int("embed_dim");
  if (!embed || *embed <= 0) fail("{} is missing", mc.name("embed_dim"));
  c.embed_dim = *embed;

  c.vision = describe_vision(files, vc, c.embed_dim, shapes, where);

  // Text tower: an HF BERT under text.transformer.
  TextConfig& t = c.text;
  const auto hf = tc.get_string("hf_model_name");
  if (!hf)
    fail("{} is missing: only Hugging Face text towers are supported (BiomedCLIP's is "
         "BiomedBERT)",
         tc.name("hf_model_name"));
  t.hf_model_name = *hf;
  if (!shapes.count("text.transformer.embeddings.word_embeddings.weight"))
    fail("{}: tensor 'text.transformer.embeddings.word_embeddings.weight' is missing (not an HF "
         "BERT text tower?)",
         where);
  t.bert = describe_bert(files.text ? &*files.text : nullptr, files.text_path, shapes,
                         "text.transformer.", where);
  // open_clip's keys (older versions: "pooler_type", "proj"), with its defaults.
  auto text_option = [&](const char* key, const char* legacy, const char* fallback,
                         std::string& name) -> std::optional<std::string> {
    const char* k = tc.present(key) || !tc.present(legacy) ? key : legacy;
    name = tc.name(k);
    if (!tc.present(k)) return std::string(fallback);
    return tc.get_string(k);  // nullopt = null
  };
  std::string pool_name, proj_name;
  const auto pool = text_option("hf_pooler_type", "pooler_type", "mean_pooler", pool_name);
  const auto proj = text_option("hf_proj_type", "proj", "mlp", proj_name);
  if (!pool || *pool == "cls_pooler") {  // null: the architecture's default, BERT's is cls_pooler
    t.pool = TextPool::ClsPooler;
  } else if (*pool == "cls_last_hidden_state_pooler") {
    t.pool = TextPool::Cls;
  } else if (*pool == "mean_pooler") {
    t.pool = TextPool::Mean;
  } else {
    fail("{} '{}' is not supported (cls_last_hidden_state_pooler, cls_pooler, mean_pooler)",
         pool_name, *pool);
  }
  const int64_t h = t.bert.hidden;
  if (!proj || *proj == "none") {
    if (h != c.embed_dim)
      fail("{} is {}: no projection, but the text width {} differs from embed_dim {}", proj_name,
           proj ? "'none'" : "null", h, c.embed_dim);
    t.proj = TextProj::None;
    t.output_dim = h;
  } else if (*proj == "mlp") {
    t.proj = TextProj::Mlp;
    t.proj_hidden = (h + c.embed_dim) / 2;
    t.output_dim = c.embed_dim;
  } else if (*proj == "linear") {
    t.proj = TextProj::Linear;
    t.output_dim = c.embed_dim;
  } else {
    fail("{} '{}' is not supported (mlp, linear or null)", proj_name, *proj);
  }
  t.context_length = tc.get_int("context_length").value_or(77);
  if (t.context_length <= 0 || t.context_length > t.bert.max_positions)
    fail("{} is {}, but the text tower has {} positions", tc.name("context_length"),
         t.context_length, t.bert.max_positions);

  // Every tensor accounted for, with the shape the description needs.
  auto vision = expected_vision_tensors(c.vision);
  auto text = expected_text_tensors(t);
  check_tensors(vision, shapes, where);
  check_tensors(text, shapes, where);
  const auto* scale = find_shape(shapes, "logit_scale");
  if (!scale) fail("{}: tensor 'logit_scale' is missing", where);
  if (!(scale->empty() || *scale == std::vector<int64_t>{1}))
    fail("{}: tensor 'logit_scale' is {}, expected a scalar", where, shape_string(*scale));
  std::set<std::string> used = names_of(vision);
  used.merge(names_of(text));
  used.insert("logit_scale");
  const bool pooler_used = t.pool == TextPool::ClsPooler;
  check_no_leftovers(
      shapes, used,
      [&](const std::string& n) {
        if (n == "logit_bias") return true;  // SigLIP-style bias: metadata only
        if (!n.starts_with("text.transformer.")) return false;
        const std::string_view rest = std::string_view(n).substr(17);
        return is_bert_buffer(rest) || (!pooler_used && rest.starts_with("pooler.dense."));
      },
      where);

  // Preprocessing (open_clip PreprocessCfg defaults; image size = the tower's).
  PreprocessConfig& pp = c.preprocess;
  pp.image_size = c.vision.image_size;
  JsonView pc = root.sub("preprocess_cfg");
  auto triple = [&](const char* key, std::array<double, 3>& out) {
    const Json* v = pc.get(key);
    if (!v) return;
    if (v->is_number()) {
      out.fill(v->get<double>());
      return;
    }
    if (!v->is_array() || v->size() != 3)
      fail("{} is {}, expected 3 numbers", pc.name(key), v->dump());
    for (size_t i = 0; i < 3; ++i) {
      if (!(*v)[i].is_number()) fail("{} is {}, expected 3 numbers", pc.name(key), v->dump());
      out[i] = (*v)[i].get<double>();
    }
  };
  triple("mean", pp.mean);
  triple("std", pp.std);
  for (double s : pp.std)
    if (!(s > 0)) fail("{} has a value that is not positive", pc.name("std"));
  if (auto i = pc.get_string("interpolation")) pp.interpolation = lower(*i);
  if (auto r = pc.get_string("resize_mode")) pp.resize_mode = *r;
  if (auto size = pc.get_int("size"); size && *size != c.vision.image_size)
    fail("shape mismatch between config and weights: {} is {}, but the image tower takes {}",
         pc.name("size"), *size, c.vision.image_size);
  return c;
}

}  // namespace medquant::models::biomedclip
