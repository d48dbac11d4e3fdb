// Per-tensor quantization error of a GGUF build against its reference: for
// every tensor present in both files with the same shape and a different
// type, both are decoded to float (ggml's to_float, quant::dequantize_row)
// and compared. With the F16/BF16/F32 file the build was quantized from as
// the reference, rmse and max_abs_err are the figures `medquant quantize
// gguf --json` reports for the tensor (its "stats").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace medquant::core {
class ThreadPool;
}

namespace medquant::validate {

struct TensorError {
  std::string name;
  std::string shape;        // "[256, 2048]"
  std::string ref_type;     // "f16"
  std::string cand_type;    // "q4_K"
  uint64_t elements = 0;
  uint64_t cand_bytes = 0;
  double rmse = 0;          // sqrt(mean((cand - ref)^2))
  double max_abs_err = 0;
  double rms_reference = 0;  // sqrt(mean(ref^2))
  double relative() const { return rms_reference > 0 ? rmse / rms_reference : 0; }
};

struct TensorErrors {
  std::vector<TensorError> tensors;   // in the candidate's order
  std::vector<std::string> skipped;   // "name: why" for tensors not compared
};

TensorErrors tensor_errors(const gguf::Reader& reference, const gguf::Reader& candidate,
                           core::ThreadPool& pool);

}  // namespace medquant::validate
