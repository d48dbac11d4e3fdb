// IEEE half and bfloat16 conversions, bit-identical to ggml's software paths
// (ggml_compute_fp32_to_fp16 / ggml_compute_fp16_to_fp32 and
// ggml_compute_fp32_to_bf16 / ggml_compute_bf16_to_fp32): round to nearest
// even, NaN stays NaN, denormals kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace medquant::core {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);

inline float bf16_to_fp32(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }
inline uint16_t fp32_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

void fp16_to_fp32_row(const uint16_t* src, float* dst, size_t n);
void fp32_to_fp16_row(const float* src, uint16_t* dst, size_t n);
void bf16_to_fp32_row(const uint16_t* src, float* dst, size_t n);
void fp32_to_bf16_row(const float* src, uint16_t* dst, size_t n);

}  // namespace medquant::core
