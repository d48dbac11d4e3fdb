// Element types shared by the checkpoint, ONNX and runtime modules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace medquant::core {

enum class DType : uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "f16", "bf16", ...
std::optional<DType> parse_dtype(std::string_view name);  // inverse of dtype_name

}  // namespace medquant::core
