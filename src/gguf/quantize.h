// `medquant quantize gguf`: an F32/F16/BF16 GGUF model to a llama.cpp mix
// (Q4_K_S, Q8_0, ...), byte for byte what the pinned llama-quantize writes.
//
// The plan (quantize_plan.h) fixes every tensor's type and size first, so the
// header goes out before any data; then tensors are streamed in llama.cpp's
// order, a slab of rows at a time: source pages are read through the map,
// converted and quantized on the thread pool, written, and released, so peak
// memory stays near one slab whatever the model size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/quantize_plan.h"
#include "quant/quant.h"

namespace medquant::core {
class ThreadPool;
}

namespace medquant::gguf {

struct QuantizeOptions {
  std::string input;
  std::string output;
  PlanOptions plan;
  std::string imatrix;                       // path, empty for none
  std::vector<std::string> include_weights;  // keep only imatrix entries containing one
  std::vector<std::string> exclude_weights;  // drop imatrix entries containing one
  bool allow_requantize = false;
  bool dry_run = false;       // plan and sizes only, write nothing
  uint64_t slab_bytes = 64ull << 20;  // source bytes converted per step
};

struct TensorResult {
  std::string name;
  std::string shape;
  quant::Type from{};
  quant::Type to{};
  uint64_t elements = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  bool quantized = false;      // converted (not copied)
  bool fallback = false;       // row length forced another type
  bool imatrix = false;        // importance weights were used
  quant::TensorStats stats;    // of the dequantized result vs the source (quantized only)
};

struct QuantizeResult {
  std::vector<TensorResult> tensors;  // in output order
  uint64_t elements = 0;
  uint64_t bytes_in = 0;              // tensor data in the input
  uint64_t bytes_out = 0;             // tensor data in the output
  uint64_t file_size = 0;             // of the output (0 for a dry run)
  int n_fallback = 0;
  size_t imatrix_entries = 0;
  double seconds = 0;
};

QuantizeResult quantize_gguf(const QuantizeOptions& options, core::ThreadPool& pool);

}  // namespace medquant::gguf
