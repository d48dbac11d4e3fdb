// Gemma 3 model configuration, as transformers reads config.json: the
// hyperparameters of the text decoder (Gemma3TextConfig), of the SigLIP
// vision tower (SiglipVisionConfig) and of the multimodal wrapper
// (Gemma3Config), with transformers' defaults for every key a file leaves
// out (the pinned tools venv, transformers 4.57: hub configs such as
// google/gemma-3-4b-it give only a handful of keys and rely on them).
//
// Two architectures are read:
//   Gemma3ForConditionalGeneration  text_config + vision_config (MedGemma 4B)
//   Gemma3ForCausalLM               the text keys at the top level (gemma-3-1b)
// Anything else is refused with the list of what is supported.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/hf_config.h"

namespace medquant::models::gemma3 {

inline constexpr std::array<std::string_view, 2> kArchitectures = {
    "Gemma3ForConditionalGeneration", "Gemma3ForCausalLM"};

struct TextConfig {
  int64_t vocab_size = 262208;
  int64_t hidden_size = 2304;
  int64_t intermediate_size = 9216;
  int64_t num_hidden_layers = 26;
  int64_t num_attention_heads = 8;
  int64_t num_key_value_heads = 4;
  int64_t head_dim = 256;
  int64_t max_position_embeddings = 131072;
  double rms_norm_eps = 1e-6;
  int64_t sliding_window = 4096;
  // As written in config.json (transformers keeps the key only if the file has it);
  // 1 means every layer is global, and then no sliding window is written.
  std::optional<int64_t> sliding_window_pattern;
  std::optional<double> final_logit_softcapping;
  std::optional<double> attn_logit_softcapping;  // must be unset for Gemma 3
  bool tie_word_embeddings = true;

  // RoPE as convert_hf_to_gguf.py resolves it (rope_parameters / rope_scaling,
  // rope_theta and the sliding layers' rope_local_base_freq).
  std::optional<std::string> rope_type;     // "linear", "yarn", ...
  std::optional<double> rope_factor;
  std::optional<int64_t> rope_original_max_position_embeddings;  // yarn
  std::optional<double> rope_yarn_ext_factor, rope_yarn_attn_factor, rope_yarn_beta_fast,
      rope_yarn_beta_slow;
  double rope_theta = 1e6;                  // global layers
  bool rope_theta_given = true;             // false: per-layer RoPE without a global theta
  std::optional<double> rope_theta_swa;     // sliding layers (transformers 4.x: 10000 by default)
};

struct VisionConfig {
  int64_t hidden_size = 768;
  int64_t intermediate_size = 3072;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t num_channels = 3;
  int64_t image_size = 224;
  int64_t patch_size = 16;
  double layer_norm_eps = 1e-6;
};

struct Config {
  std::string architecture;
  std::string path;             // config.json
  bool multimodal = false;      // Gemma3ForConditionalGeneration
  TextConfig text;
  VisionConfig vision;          // meaningful only if multimodal
  int64_t mm_tokens_per_image = 256;
};

// Reads and checks config.json (positive sizes, head counts that divide,
// known RoPE types). Throws Error naming the file and key.
Config read_config(const checkpoint::HfConfig& hf);

}  // namespace medquant::models::gemma3
