// Finite-value checks on tensor data, as llama.cpp's ggml_validate_row_data:
// float types must hold no NaN or infinity, quantized blocks no NaN or
// infinite scale (d, and m / dmin where the type has one). llama.cpp runs it
// on every tensor it reads for quantization and on every block it writes, so
// medquant refuses the same inputs and never writes a block llama.cpp would
// reject.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "quant/quant.h"

namespace medquant::gguf {

// nullopt if the data is valid, otherwise what is wrong and where
// ("NaN in value 12", "infinite scale in block 3"). bytes must be a whole
// number of blocks. Types without a known scale position (iq1_m, nvfp4,
// q8_1) and integer types are not checked.
std::optional<std::string> find_invalid_data(quant::Type type, std::span<const uint8_t> bytes);

}  // namespace medquant::gguf
