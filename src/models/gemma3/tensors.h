// Gemma 3 checkpoint tensors → GGUF tensors, as llama.cpp's
// convert_hf_to_gguf.py maps them (Gemma3Model, Gemma3VisionModel and the
// tables of gguf-py/gguf/tensor_mapping.py):
//
//   text model (arch gemma3)                      HF name (after layout fix-up)
//   token_embd.weight                             model.embed_tokens.weight  rows cut to the vocabulary
//   blk.N.attn_norm.weight                  +1    model.layers.N.input_layernorm.weight
//   blk.N.attn_q / attn_k / attn_v.weight         ...self_attn.q_proj / k_proj / v_proj.weight
//   blk.N.attn_output.weight                      ...self_attn.o_proj.weight
//   blk.N.attn_q_norm / attn_k_norm.weight  +1    ...self_attn.q_norm / k_norm.weight
//   blk.N.post_attention_norm.weight        +1    ...post_attention_layernorm.weight
//   blk.N.ffn_norm.weight                   +1    ...pre_feedforward_layernorm.weight
//   blk.N.ffn_gate / ffn_up / ffn_down.weight     ...mlp.gate_proj / up_proj / down_proj.weight
//   blk.N.post_ffw_norm.weight              +1    ...post_feedforward_layernorm.weight
//   output_norm.weight                      +1    model.norm.weight
//   output.weight                                 lm_head.weight (absent when tied)
//
//   mmproj (arch clip, projector gemma3)
//   mm.input_projection.weight      F16           multi_modal_projector.mm_input_projection_weight
//   mm.soft_emb_norm.weight         +1            multi_modal_projector.mm_soft_emb_norm.weight
//   v.patch_embd.weight / .bias     F32           vision_tower.vision_model.embeddings.patch_embedding.*
//   v.position_embd.weight          F32           ...embeddings.position_embedding.weight
//   v.blk.N.ln1 / ln2 .weight/.bias               ...encoder.layers.N.layer_norm1 / layer_norm2.*
//   v.blk.N.attn_q / attn_k / attn_v / attn_out   ...self_attn.q_proj / k_proj / v_proj / out_proj.*
//   v.blk.N.ffn_up / ffn_down .weight/.bias       ...mlp.fc1 / fc2.*
//   v.post_ln.weight / .bias                      ...post_layernorm.*
//
// "+1": Gemma's RMSNorm computes x * (1 + w); llama.cpp computes x * w, so the
// converter stores 1 + w. SigLIP's LayerNorms are ordinary and stay as they are.
//
// Both layouts found in the wild are read: the hub's (language_model.model.*,
// vision_tower.*, multi_modal_projector.*, as save_pretrained writes them up
// to transformers 4.x) and transformers' module names (model.language_model.*,
// model.vision_tower.*, model.multi_modal_projector.*, transformers 5); a
// text-only checkpoint has model.* and maybe lm_head.weight.
//
// Types (prepare_tensors): 1-D tensors, "*_norm.weight" and anything not named
// "*.weight" are F32; the mmproj forces F16 on the input projection and F32 on
// the embeddings; every other tensor gets the output type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "models/gemma3/config.h"
#include "quant/quant.h"

namespace medquant::models::gemma3 {

enum class Part { Text, Vision };

// What becomes of one checkpoint tensor in one GGUF file.
struct TensorRule {
  std::string gguf_name;
  bool add_one = false;                // store 1 + w (Gemma RMSNorm)
  std::optional<quant::Type> forced;   // type regardless of the output type
  std::vector<int64_t> shape;          // expected HF shape (outermost first)
  bool token_embd = false;             // rows beyond the vocabulary are dropped
  int layer = -1;
};

// The rule for tensor `name` of a checkpoint in the GGUF `part`; nullopt if the
// tensor belongs to the other part or is a buffer converters drop. Throws
// Error for a tensor that cannot be mapped (naming it), as the reference does.
std::optional<TensorRule> tensor_rule(std::string_view name, Part part, const Config& config);

// The GGUF names every complete model has (to report missing tensors).
std::vector<std::string> required_tensors(Part part, const Config& config);

// The output type of a tensor with this rule and `n_dims` dimensions whose
// rows have `ne0` values, for a conversion to `out` (F32, F16, BF16 or Q8_0;
// Q8_0 falls back to F16 when the row is not a multiple of 32, as the
// reference's QuantError does).
quant::Type tensor_type(const TensorRule& rule, size_t n_dims, int64_t ne0, quant::Type out);

}  // namespace medquant::models::gemma3
