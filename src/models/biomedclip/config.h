// The open_clip model description of BiomedCLIP-style checkpoints (a timm
// ViT image tower + a Hugging Face BERT text tower), and of plain HF BERT
// encoders, worked out from the config files and the state dict's shapes.
//
// What a BiomedCLIP folder holds (the hub repo's layout):
//
//   open_clip_config.json   { "model_cfg": { "embed_dim": E,
//                               "vision_cfg": { "timm_model_name": "vit_base_patch16_224",
//                                               "timm_pool": "", "timm_proj": "linear",
//                                               "image_size": 224, ... },
//                               "text_cfg": { "hf_model_name": "...BiomedBERT...",
//                                             "hf_proj_type": "mlp",
//                                             "hf_pooler_type": "cls_last_hidden_state_pooler",
//                                             "context_length": 256 } },
//                             "preprocess_cfg": { "mean": [...], "std": [...] } }
//   open_clip_pytorch_model.bin   torch.save zip of the state dict (or
//                                 open_clip_model.safetensors)
//   vocab.txt, tokenizer_config.json, ...   the BERT WordPiece tokenizer
//
// The model (open_clip CustomTextCLIP with TimmModel + HFTextEncoder):
//
//   image [N,3,S,S] -> Conv(patch p, stride p) -> [N, g*g, W] (g = S/p)
//     -> prepend cls_token, add pos_embed [1, 1+g*g, W]
//     -> depth x pre-norm block:  x += proj(attn(LN1(x)));  x += fc2(GELU(fc1(LN2(x))))
//        (LayerNorm eps 1e-6, exact erf GELU, qkv = one Linear with bias, heads h)
//     -> final LN -> pool: token 0 ("token", or "" = timm's default for ViT)
//        or the mean of the patch tokens ("avg")
//     -> head: visual.head.proj Linear(W, E) without bias (timm_proj "linear";
//        timm_proj_bias adds one), or timm's own classifier visual.trunk.head
//        (timm_proj "" / "none") -> image features [N, E]
//   ids [N,L] -> word + token_type[0] + position[0..L) embeddings -> LN (eps 1e-12)
//     -> layers x post-norm BERT layer (absolute positions, additive key mask,
//        exact GELU) -> pool: hidden state of token 0 ("cls_last_hidden_state_pooler"),
//        BERT's pooler tanh(dense(h0)) ("cls_pooler"), or the masked mean
//        ("mean_pooler", open_clip's default)
//     -> proj: "mlp" = Linear(H, (H+E)/2, no bias) -> GELU -> Linear(.., E, no bias)
//        (open_clip's default), "linear" = Linear(H, E, no bias), none when H = E
//        and hf_proj_type is null -> text features [N, E]
//   logit_scale: a scalar; similarity = exp(logit_scale) * cos.
//
// Sizes come from the weights, because real BiomedCLIP's config leaves them
// out (open_clip builds the ViT from the timm model name): width and patch
// size from visual.trunk.patch_embed.proj.weight [W,3,p,p], image size from
// pos_embed [1, 1+g*g, W] (S = g*p), depth from the blocks present, MLP width
// from fc1, E from the head; BERT's vocabulary, hidden size, layers, FFN width,
// positions and token types from its embeddings and layers. Any size a config
// does state (vision_cfg width/layers/patch_size/image_size/mlp_ratio, the
// timm local-dir model_args, the BERT config, embed_dim) must agree with the
// weights, or the export fails naming both.
//
// Attention heads are not visible in the weights. The rule:
//   ViT:  1. num_heads of a timm "local-dir:" config's model_args;
//         2. otherwise the timm architecture's own (vit_tiny 3, vit_small 6,
//            vit_base 12, vit_large 16, vit_huge 16): timm merges model_args
//            over the architecture's defaults, so this is what open_clip builds.
//         vision_cfg.head_width (open_clip's CLIPVisionCfg field, which open_clip
//         ignores for timm towers) must agree: W / head_width = heads.
//   BERT: num_attention_heads of the BERT config (text_config.json,
//         <hf_model_name>/config.json or config.json), else H / 64 (every BERT
//         size from tiny to large uses 64-wide heads; BiomedBERT-base: 12).
//   W (or H) must divide by the heads.
//
// What is refused, with the reason: timm models other than plain ViTs
// (vit_<size>_patch<p>_<res>; CLIP/SigLIP/DINOv2 variants and non-ViTs have
// other blocks), attention pools and MLP heads, max pooling, projections other
// than mlp/linear, BERT configs with a non-"gelu" activation or non-absolute
// positions, and any tensor under visual./text. the description does not
// account for (layer scale, register tokens, ... would otherwise be dropped).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::models::biomedclip {

using Json = nlohmann::ordered_json;
// Tensor name -> shape, as the checkpoint has them.
using ShapeTable = std::map<std::string, std::vector<int64_t>, std::less<>>;

enum class VisionPool { Token, Avg };
enum class TextPool { Cls, ClsPooler, Mean };
enum class TextProj { None, Linear, Mlp };

std::string_view to_string(VisionPool p);
std::string_view to_string(TextPool p);
std::string_view to_string(TextProj p);

struct VisionConfig {
  std::string timm_model_name;
  std::string prefix = "visual.trunk.";  // trunk tensor names start with this
  int64_t image_size = 0;
  int64_t patch_size = 0;
  int64_t width = 0;
  int64_t depth = 0;
  int64_t heads = 0;
  int64_t mlp_hidden = 0;
  float layer_norm_eps = 1e-6f;
  VisionPool pool = VisionPool::Token;
  std::string head;        // "visual.head.proj", "visual.trunk.head", or "" (no head)
  bool head_bias = false;
  int64_t output_dim = 0;  // E (W without a head)
  std::string heads_rule;  // where `heads` came from, for logs and metadata

  int64_t grid() const { return image_size / patch_size; }
  int64_t tokens() const { return grid() * grid() + 1; }
  int64_t head_dim() const { return width / heads; }
};

struct BertConfig {
  std::string prefix;  // "text.transformer.", "bert." or ""
  int64_t vocab_size = 0;
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t intermediate = 0;
  int64_t max_positions = 0;
  int64_t type_vocab = 0;
  float layer_norm_eps = 1e-12f;
  int64_t pad_token_id = 0;
  bool has_pooler = false;          // <prefix>pooler.dense.* present
  bool legacy_norm_names = false;   // LayerNorm.gamma/.beta (old TF-converted files)
  std::string heads_rule;

  int64_t head_dim() const { return hidden / heads; }
  // Name of a LayerNorm parameter ("weight" or "bias") under `module`.
  std::string norm_param(const std::string& module, bool weight) const;
};

struct TextConfig {
  std::string hf_model_name;
  BertConfig bert;
  TextPool pool = TextPool::Cls;
  TextProj proj = TextProj::Mlp;
  int64_t proj_hidden = 0;  // mlp: (H + E) / 2
  int64_t output_dim = 0;   // E (H without a projection)
  int64_t context_length = 0;
};

// open_clip's eval transform constants (PreprocessCfg).
struct PreprocessConfig {
  int64_t image_size = 224;
  std::array<double, 3> mean = {0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> std = {0.26862954, 0.26130258, 0.27577711};
  std::string interpolation = "bicubic";
  std::string resize_mode = "shortest";
};

struct BiomedClipConfig {
  int64_t embed_dim = 0;
  VisionConfig vision;
  TextConfig text;
  PreprocessConfig preprocess;
};

// The JSON files a BiomedCLIP folder offers; only `open_clip` is required.
struct ConfigFiles {
  Json open_clip;
  std::string open_clip_path = "open_clip_config.json";
  std::optional<Json> timm;  // the "local-dir:" timm config.json (architecture, model_args)
  std::string timm_path;
  std::optional<Json> text;  // the BERT config.json
  std::string text_path;
  std::string weights_path = "checkpoint";  // names the state dict in messages
};

// Works out the whole model from the configs and the tensor shapes, checking
// every tensor's shape and that no tensor is left unexplained. Throws Error
// naming the file, key or tensor.
BiomedClipConfig describe_biomedclip(const ConfigFiles& files, const ShapeTable& shapes);

// A plain BERT encoder whose tensors start with `prefix` (sizes from the
// weights, checked against `config` if given). `where` names the checkpoint.
BertConfig describe_bert(const Json* config, const std::string& config_path,
                         const ShapeTable& shapes, const std::string& prefix,
                         const std::string& where);

// The BERT tensor prefix of an HF checkpoint: "" (BertModel) or "bert."
// (BertForMaskedLM, BertForPreTraining, ...); Error if neither is there.
std::string find_bert_prefix(const ShapeTable& shapes, const std::string& where);

// Every tensor the description reads, with its shape, in a fixed order.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_vision_tensors(const VisionConfig& v);
std::vector<ExpectedTensor> expected_bert_tensors(const BertConfig& b, bool with_pooler);
std::vector<ExpectedTensor> expected_text_tensors(const TextConfig& t);

// Checks `shapes` holds every expected tensor with its shape: Error listing
// the missing ones (up to a few) or naming the first mismatch.
void check_tensors(const std::vector<ExpectedTensor>& expected, const ShapeTable& shapes,
                   const std::string& where);

// The ViT size a timm model name implies, for plain ViTs only
// ("vit_base_patch16_224", optionally ".tag"); nullopt for anything else.
struct TimmVitName {
  int64_t width = 0, depth = 0, heads = 0, patch = 0, image = 0;
};
std::optional<TimmVitName> parse_timm_vit_name(std::string_view name);

// "[1, 197, 768]"
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace medquant::models::biomedclip
