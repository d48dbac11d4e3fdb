// Type table (ggml's type_traits) and the per-type dispatch of the row codecs.
#include "quant/quant.h"

#include <array>
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "core/half.h"
#include "quant/blocks.h"
#include "quant/kernels.h"

namespace medquant::quant {

namespace {

using detail::kQK;

struct Entry {
  TypeTraits traits;
  void (*quantize)(const float*, void*, int64_t, const float*);
  void (*dequantize)(const void*, float*, int64_t);
};

void quantize_f32(const float* x, void* y, int64_t n, const float*) {
  std::memcpy(y, x, n * sizeof(float));
}
void quantize_f16(const float* x, void* y, int64_t n, const float*) {
  core::fp32_to_fp16_row(x, static_cast<uint16_t*>(y), n);
}
void quantize_bf16(const float* x, void* y, int64_t n, const float*) {
  core::fp32_to_bf16_row(x, static_cast<uint16_t*>(y), n);
}
void dequantize_f32(const void* x, float* y, int64_t n) {
  std::memcpy(y, x, n * sizeof(float));
}
void dequantize_f16(const void* x, float* y, int64_t n) {
  core::fp16_to_fp32_row(static_cast<const uint16_t*>(x), y, n);
}
void dequantize_bf16(const void* x, float* y, int64_t n) {
  core::bf16_to_fp32_row(static_cast<const uint16_t*>(x), y, n);
}

// Types we only name and size (block size, bytes per block, is_quantized).
constexpr Entry plain(std::string_view name, int64_t block, size_t size, bool quantized) {
  return {{name, block, size, quantized, false, false}, nullptr, nullptr};
}
constexpr Entry codec(std::string_view name, int64_t block, size_t size, bool quantized,
                      void (*q)(const float*, void*, int64_t, const float*),
                      void (*dq)(const void*, float*, int64_t)) {
  return {{name, block, size, quantized, q != nullptr, dq != nullptr}, q, dq};
}

using namespace detail;

// Indexed by ggml type id; removed ids have an empty name.
const std::array<Entry, kTypeIdCount> kTable = [] {
  std::array<Entry, kTypeIdCount> t{};
  auto set = [&](Type type, Entry e) { t[static_cast<uint32_t>(type)] = e; };
  set(Type::F32, codec("f32", 1, 4, false, quantize_f32, dequantize_f32));
  set(Type::F16, codec("f16", 1, 2, false, quantize_f16, dequantize_f16));
  set(Type::Q4_0, codec("q4_0", 32, 18, true, quantize_row_q4_0, dequantize_row_q4_0));
  set(Type::Q4_1, codec("q4_1", 32, 20, true, quantize_row_q4_1, dequantize_row_q4_1));
  set(Type::Q5_0, codec("q5_0", 32, 22, true, quantize_row_q5_0, dequantize_row_q5_0));
  set(Type::Q5_1, codec("q5_1", 32, 24, true, quantize_row_q5_1, dequantize_row_q5_1));
  set(Type::Q8_0, codec("q8_0", 32, 34, true, quantize_row_q8_0, dequantize_row_q8_0));
  set(Type::Q8_1, plain("q8_1", 32, 36, true));
  set(Type::Q2_K, codec("q2_K", kQK, 84, true, quantize_row_q2_K, dequantize_row_q2_K));
  set(Type::Q3_K, codec("q3_K", kQK, 110, true, quantize_row_q3_K, dequantize_row_q3_K));
  set(Type::Q4_K, codec("q4_K", kQK, 144, true, quantize_row_q4_K, dequantize_row_q4_K));
  set(Type::Q5_K, codec("q5_K", kQK, 176, true, quantize_row_q5_K, dequantize_row_q5_K));
  set(Type::Q6_K, codec("q6_K", kQK, 210, true, quantize_row_q6_K, dequantize_row_q6_K));
  // ggml has a decoder for q8_K but doesn't list it as the type's to_float.
  set(Type::Q8_K, codec("q8_K", kQK, 292, true, nullptr, dequantize_row_q8_K));
  set(Type::IQ2_XXS, plain("iq2_xxs", kQK, 66, true));
  set(Type::IQ2_XS, plain("iq2_xs", kQK, 74, true));
  set(Type::IQ3_XXS, plain("iq3_xxs", kQK, 98, true));
  set(Type::IQ1_S, plain("iq1_s", kQK, 50, true));
  set(Type::IQ4_NL, plain("iq4_nl", 32, 18, true));
  set(Type::IQ3_S, plain("iq3_s", kQK, 110, true));
  set(Type::IQ2_S, plain("iq2_s", kQK, 82, true));
  set(Type::IQ4_XS, plain("iq4_xs", kQK, 136, true));
  set(Type::I8, plain("i8", 1, 1, false));
  set(Type::I16, plain("i16", 1, 2, false));
  set(Type::I32, plain("i32", 1, 4, false));
  set(Type::I64, plain("i64", 1, 8, false));
  set(Type::F64, plain("f64", 1, 8, false));
  set(Type::IQ1_M, plain("iq1_m", kQK, 56, true));
  set(Type::BF16, codec("bf16", 1, 2, false, quantize_bf16, dequantize_bf16));
  set(Type::TQ1_0, plain("tq1_0", kQK, 54, true));
  set(Type::TQ2_0, plain("tq2_0", kQK, 66, true));
  set(Type::MXFP4, plain("mxfp4", 32, 17, true));
  set(Type::NVFP4, plain("nvfp4", 64, 36, true));
  set(Type::Q1_0, plain("q1_0", 128, 18, true));
  set(Type::Q2_0, plain("q2_0", 64, 18, true));
  return t;
}();

const Entry& entry(Type type) {
  const auto id = static_cast<uint32_t>(type);
  if (id >= kTypeIdCount || kTable[id].traits.name.empty()) fail("unknown ggml type id {}", id);
  return kTable[id];
}

}  // namespace

std::optional<Type> type_from_id(uint32_t id) {
  if (id >= kTypeIdCount || kTable[id].traits.name.empty()) return std::nullopt;
  return static_cast<Type>(id);
}

std::optional<Type> parse_type(std::string_view name) {
  for (uint32_t id = 0; id < kTypeIdCount; ++id) {
    const std::string_view n = kTable[id].traits.name;
    if (n.empty() || n.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < n.size() && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(n[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) return static_cast<Type>(id);
  }
  return std::nullopt;
}

const TypeTraits& traits(Type type) {
  return entry(type).traits;
}

size_t row_size(Type type, int64_t n) {
  const TypeTraits& t = traits(type);
  if (n < 0 || n % t.block_size != 0) {
    fail("a row of {} values is not a whole number of {} blocks ({} values each)", n, t.name,
         t.block_size);
  }
  size_t bytes;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n / t.block_size), t.type_size, &bytes)) {
    fail("a row of {} values of {} is too large", n, t.name);
  }
  return bytes;
}

std::string_view active_kernels() {
  return detail::kernels().isa;
}

bool requires_imatrix(Type type) {
  return type == Type::IQ2_XXS || type == Type::IQ2_XS || type == Type::IQ1_S;
}

void quantize_rows(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                   const float* imatrix) {
  const Entry& e = entry(type);
  if (!e.quantize) fail("medquant can't quantize to {}", e.traits.name);
  if (nrows < 0) fail("quantize {}: negative row count {}", e.traits.name, nrows);
  if (requires_imatrix(type) && !imatrix) fail("{} needs an importance matrix", e.traits.name);
  const size_t rs = row_size(type, n_per_row);
  auto* out = static_cast<uint8_t*>(dst);
  // ggml passes imatrix to the float types too and ignores it there.
  for (int64_t r = 0; r < nrows; ++r) {
    e.quantize(src + r * n_per_row, out + r * rs, n_per_row,
               e.traits.is_quantized ? imatrix : nullptr);
  }
}

void dequantize_row(Type type, const void* src, float* dst, int64_t n) {
  const Entry& e = entry(type);
  if (!e.dequantize) fail("medquant can't decode {}", e.traits.name);
  row_size(type, n);  // validates n
  e.dequantize(src, dst, n);
}

}  // namespace medquant::quant
