// Hugging Face Gemma 3 checkpoint → GGUF (`medquant convert gguf`): the text
// model (arch gemma3) and the vision projector (mmproj, arch clip), written
// byte for byte as llama.cpp's convert_hf_to_gguf.py (+ --mmproj) writes
// them, and — for the quantized output types — as llama-quantize (= medquant
// quantize gguf) writes that file quantized, in the same single pass.
//
// Output types:
//   f32, f16, bf16, q8_0 (mmproj)  the converter's own: tensors in checkpoint
//       order (shard by shard, names sorted), metadata in its order.
//   auto                           bf16 for a bf16 checkpoint, else f16 (as
//       the converter's "auto").
//   q8_0 (text), q4_0 ... q6_k     a llama.cpp mix (gguf/quantize_plan.h): the
//       text model is first described as converted to its checkpoint's own
//       float type (bf16, f16 or f32: no rounding on the way), then planned
//       and written exactly as `medquant quantize gguf` would write that file
//       — tensor order, types, metadata — without the intermediate file.
//       The mmproj stays at --mmproj-outtype (default f16).
//
// Pipeline: everything is read and checked before a byte is written (config,
// tokenizer, every tensor name, dtype and shape against the config); then
// tensors are streamed from the mapped safetensors a slab of rows at a time
// (converted / quantized on the thread pool, written, pages released), so
// memory stays near one slab whatever the model size. Files appear under
// their names only when complete (both, when two are written).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gguf/quantize_plan.h"
#include "quant/quant.h"

namespace medquant::core {
class ThreadPool;
}

namespace medquant::models::gemma3 {

struct ConvertOptions {
  std::string model_dir;
  std::string output;          // text model GGUF; empty: none
  std::string mmproj;          // mmproj GGUF; empty: none
  std::string outtype = "auto";
  std::string mmproj_outtype;  // empty: outtype if f32/f16/bf16/q8_0, else f16
  std::optional<std::string> model_name;  // general.name (--model-name)
  // For the mixes: llama-quantize's per-tensor options (--tensor-type,
  // --output-tensor-type, --token-embedding-type, --pure,
  // --leave-output-tensor); `mix` and `has_imatrix` are set here.
  gguf::PlanOptions plan;
  std::string imatrix;         // llama-imatrix output (GGUF or .dat), for the mixes
  bool dry_run = false;        // plan only, write nothing
  uint64_t slab_bytes = 64ull << 20;
};

struct ConvertedTensor {
  std::string name;            // GGUF name
  std::string source;          // checkpoint name
  std::string shape;           // GGUF order, "[256, 2048]"
  std::string from;            // checkpoint dtype: "bf16"
  quant::Type to{};
  uint64_t elements = 0;
  uint64_t bytes = 0;          // in the output
  bool quantized = false;      // to a block type
  quant::TensorStats stats;    // of quantized tensors vs their float values
};

struct ConvertedFile {
  std::string path;
  std::string kind;            // "text" or "mmproj"
  std::string outtype;         // "BF16", "Q8_0", "Q4_K_S", ...
  uint32_t file_type = 0;      // general.file_type
  uint64_t parameters = 0;
  uint64_t file_size = 0;      // 0 for a dry run
  std::vector<ConvertedTensor> tensors;  // in file order
};

struct ConvertResult {
  std::string architecture;
  std::vector<ConvertedFile> files;
  double seconds = 0;
};

// Output types accepted by --outtype (lower case), for help texts.
std::vector<std::string> outtype_names();

ConvertResult convert_gguf(const ConvertOptions& options, core::ThreadPool& pool);

}  // namespace medquant::models::gemma3
