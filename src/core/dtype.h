// Element types shared by the checkpoint, ONNX and runtime modules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace medquant::core {

// Append only: values index tables. U16..F8E5M2 exist because safetensors
// (and ONNX) files may hold them; F8E4M3 is the "fn" variant (no infinities).
enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool,
  U16, U32, U64, F8E4M3, F8E5M2,
};

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "f16", "bf16", ...
std::optional<DType> parse_dtype(std::string_view name);  // inverse of dtype_name

}  // namespace medquant::core
