// Which type each tensor of a GGUF model gets when it is quantized to a
// llama.cpp file type ("mix", e.g. Q4_K_S): llama.cpp's per-tensor rules
// (src/llama-quant.cpp of the pinned llama.cpp: tensor_allows_quantization,
// llama_tensor_get_type, llama_tensor_get_type_impl, tensor_type_fallback),
// the tensor order and the metadata llama-quantize writes.
//
// In short: only 2-D and larger tensors whose name ends in "weight" are
// quantized, never norms, position / token-type embeddings, MoE routers and a
// list of small special tensors; output.weight (or token_embd.weight when the
// embeddings are tied) gets Q6_K in the k-quant mixes; attn_v and ffn_down
// get more bits in some layers (use_more_bits); rows whose length is not a
// multiple of the block size fall back to a type that fits; --tensor-type
// patterns, --token-embedding-type and --output-tensor-type override.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"
#include "quant/quant.h"

namespace medquant::gguf {

// llama.cpp's enum llama_ftype (the value of general.file_type).
enum class FileType : uint32_t {
  AllF32 = 0,
  MostlyF16 = 1,
  MostlyQ4_0 = 2,
  MostlyQ4_1 = 3,
  MostlyQ8_0 = 7,
  MostlyQ5_0 = 8,
  MostlyQ5_1 = 9,
  MostlyQ2_K = 10,
  MostlyQ3_K_S = 11,
  MostlyQ3_K_M = 12,
  MostlyQ3_K_L = 13,
  MostlyQ4_K_S = 14,
  MostlyQ4_K_M = 15,
  MostlyQ5_K_S = 16,
  MostlyQ5_K_M = 17,
  MostlyQ6_K = 18,
  MostlyBF16 = 32,
};

struct Mix {
  std::string_view name;     // as llama-quantize spells it: "Q4_K_S"
  FileType file_type;
  quant::Type default_type;  // llama_ftype_get_default_type
  std::string_view description;
};

// The mixes medquant makes, in llama-quantize's listing order.
const std::vector<Mix>& mixes();
// A mix by name, case-insensitive; also llama-quantize's aliases Q3_K, Q4_K
// and Q5_K (for the _M mixes) and the numeric file type ("15").
std::optional<Mix> parse_mix(std::string_view name);

// What the rules read from the model's metadata (llama.cpp's hparams).
struct ModelParams {
  std::string arch;          // general.architecture
  uint32_t n_layer = 0;      // <arch>.block_count (0 for "clip")
  uint32_t n_head = 0;       // <arch>.attention.head_count, layer 0
  uint32_t n_head_kv = 0;    // <arch>.attention.head_count_kv, default n_head
  uint32_t n_expert = 0;     // <arch>.expert_count
  bool is_70b = false;       // llama.cpp's LLM_TYPE_70B (only that size matters)

  uint32_t n_gqa() const { return n_head_kv == 0 ? 0 : n_head / n_head_kv; }
  static ModelParams from(const Header& header, const std::string& path);
};

struct TensorTypeOverride {
  std::string pattern;  // ECMAScript regex, searched in the tensor name
  quant::Type type;
};
// Parses "REGEX=TYPE" as llama-quantize does (the pattern is lower-cased).
TensorTypeOverride parse_tensor_type_override(std::string_view arg);

struct PlanOptions {
  Mix mix;
  std::optional<quant::Type> token_embedding_type;  // --token-embedding-type
  std::optional<quant::Type> output_tensor_type;    // --output-tensor-type
  std::vector<TensorTypeOverride> tensor_types;     // --tensor-type, first match wins
  bool leave_output_tensor = false;                 // --leave-output-tensor
  bool pure = false;                                // --pure
  bool has_imatrix = false;                         // --imatrix given
};

struct PlannedTensor {
  size_t source = 0;        // index into the input's tensors
  quant::Type type{};       // type in the output file
  bool quantize = false;    // type differs from the input's
  bool fallback = false;    // the rules' type did not fit the row length
};

struct Plan {
  std::vector<PlannedTensor> tensors;  // in output order
  int n_fallback = 0;
};

// llama.cpp's tensor order (llama_model_loader::weights_map): tensors that
// are not in a "blk.N." layer first, by name; then by layer N, then name.
std::vector<size_t> llama_tensor_order(const std::vector<TensorInfo>& tensors);

// The type of every tensor of `in`, in output order. Throws Error (naming
// `path` and the tensor) where llama-quantize would refuse: a forced type
// that does not fit a row, a MoE tensor without a layer number.
Plan plan_quantization(const Header& in, const PlanOptions& options, const std::string& path);

// What an imatrix adds to the metadata (llama-quantize's quantize.imatrix.*).
struct ImatrixMetadata {
  std::string file;                // the path as given
  std::optional<std::string> dataset;  // the first dataset, if any
  uint32_t entries = 0;
  int32_t chunks = 0;              // written when > 0
};

// The output metadata, in llama-quantize's order: the input's KVs, then
// general.quantization_version = 2 and general.file_type moved to the end,
// the split.* keys dropped, then the quantize.imatrix.* keys.
std::vector<KeyValue> quantized_kvs(const Header& in, FileType file_type,
                                    const ImatrixMetadata* imatrix);

}  // namespace medquant::gguf
