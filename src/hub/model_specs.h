// The tensors a model's config implies, for `medquant verify`: every name,
// shape and dtype a checkpoint of that config must hold (and nothing else).
//
// Families, with the upstream code that defines the names:
//   Gemma 3 (transformers Gemma3ForConditionalGeneration / Gemma3ForCausalLM):
//     text "language_model.model.*" (as the hub ships MedGemma) or
//     "model.language_model.*" (transformers >= 4.52 layout) or "model.*"
//     (text-only), SigLIP vision tower "vision_tower.vision_model.*",
//     "multi_modal_projector.*"; lm_head only when embeddings are untied.
//     Missing config fields take transformers' defaults (Gemma3TextConfig,
//     SiglipVisionConfig), as MedGemma's config.json relies on them.
//   BERT (transformers BertModel / BertFor*): "[bert.]embeddings.*",
//     "[bert.]encoder.layer.N.*", optional pooler and pre-training heads.
//   BiomedCLIP (open_clip CustomTextCLIP with a timm ViT and an HF BERT):
//     "visual.trunk.*" (timm VisionTransformer), "visual.head.proj.weight",
//     "text.transformer.*" (BertModel without pooler), "text.proj.*",
//     "logit_scale".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace medquant::hub {

struct TensorSpec {
  std::vector<int64_t> shape;
  bool optional = false;             // may be absent (tied weights, buffers, optional heads)
  std::optional<core::DType> dtype;  // when fixed (e.g. I64 position ids); else float_dtype
};

struct ModelSpec {
  std::string description;  // "Gemma 3: text 34 layers x 2560, vision 27 layers x 1152"
  std::map<std::string, TensorSpec> tensors;
  std::optional<core::DType> float_dtype;  // every float tensor without its own dtype
  std::vector<std::string> assumptions;    // defaults taken for absent config fields
};

struct ActualTensor {
  core::DType dtype;
  std::vector<int64_t> shape;
};
using TensorTable = std::map<std::string, ActualTensor>;

// `names` are the checkpoint's tensor names (they pick the naming layout).
// Throw Error "config.json: ..." when the config lacks what the spec needs.
ModelSpec gemma3_spec(const nlohmann::json& config, const std::set<std::string>& names);
ModelSpec bert_spec(const nlohmann::json& config, const std::set<std::string>& names);
// text_config: the BERT config of the text tower if known (null otherwise:
// then only the known hub text models are understood).
ModelSpec biomedclip_spec(const nlohmann::json& open_clip_config, const nlohmann::json& text_config,
                          const nlohmann::json& vision_model_args);

// "bfloat16" / "float32" / "float16" (config's torch_dtype or dtype).
std::optional<core::DType> parse_torch_dtype(const std::string& name);

// The differences, one line each: missing tensors, unexpected ones, wrong
// shapes, wrong dtypes. Empty when the checkpoint matches.
std::vector<std::string> compare_tensors(const ModelSpec& spec, const TensorTable& actual);

}  // namespace medquant::hub
