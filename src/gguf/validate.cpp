#include "gguf/validate.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

namespace medquant::gguf {
namespace {

using quant::Type;

// Exponent all ones: infinity or NaN.
inline bool fp16_bad(uint16_t h) { return (h & 0x7c00) == 0x7c00; }

std::string fp16_what(uint16_t h) { return (h & 0x03ff) ? "NaN" : "infinity"; }

// "Is any value's exponent all ones?" as an OR over the array, written so
// that it vectorises; a second pass finds the first bad value only when
// there is one. One portable body, also compiled for AVX2 and picked at run
// time.
template <typename U, U kExpMask>
__attribute__((always_inline)) inline bool any_exp_all_ones_body(const U* p, size_t n) {
  U acc = 0;
  for (size_t i = 0; i < n; ++i) acc |= static_cast<U>((p[i] & kExpMask) == kExpMask);
  return acc != 0;
}
template <typename U, U kExpMask>
bool any_exp_all_ones_portable(const U* p, size_t n) {
  return any_exp_all_ones_body<U, kExpMask>(p, n);
}
template <typename U, U kExpMask>
__attribute__((target("avx2"))) bool any_exp_all_ones_avx2(const U* p, size_t n) {
  return any_exp_all_ones_body<U, kExpMask>(p, n);
}
template <typename U, U kExpMask>
bool any_exp_all_ones(const uint8_t* bytes, size_t n) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  // GGUF tensor data is aligned to at least 32 bytes, but callers may pass any span.
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(U) != 0) {
    for (size_t i = 0; i < n; ++i) {
      U v;
      std::memcpy(&v, bytes + i * sizeof(U), sizeof(U));
      if ((v & kExpMask) == kExpMask) return true;
    }
    return false;
  }
  const U* p = reinterpret_cast<const U*>(bytes);
  return avx2 ? any_exp_all_ones_avx2<U, kExpMask>(p, n) : any_exp_all_ones_portable<U, kExpMask>(p, n);
}

template <typename U, U kExpMask>
std::optional<size_t> first_bad(const uint8_t* p, size_t n) {
  if (!any_exp_all_ones<U, kExpMask>(p, n)) return std::nullopt;
  for (size_t i = 0; i < n; ++i) {
    U v;
    std::memcpy(&v, p + i * sizeof(U), sizeof(U));
    if ((v & kExpMask) == kExpMask) return i;
  }
  return std::nullopt;
}

std::optional<std::string> check_half_fields(std::span<const uint8_t> bytes, size_t block_bytes,
                                             size_t offset_a, std::optional<size_t> offset_b) {
  const size_t nb = bytes.size() / block_bytes;
  auto half_at = [&](size_t block, size_t off) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + block * block_bytes + off, 2);
    return h;
  };
  bool any = false;
  for (size_t i = 0; i < nb; ++i) {
    any |= fp16_bad(half_at(i, offset_a));
    if (offset_b) any |= fp16_bad(half_at(i, *offset_b));
  }
  if (!any) return std::nullopt;
  for (size_t i = 0; i < nb; ++i)
    for (auto off : {std::optional<size_t>(offset_a), offset_b})
      if (off && fp16_bad(half_at(i, *off)))
        return fmt::format("{} scale in block {}", fp16_what(half_at(i, *off)), i);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> find_invalid_data(Type type, std::span<const uint8_t> bytes) {
  const auto& tr = quant::traits(type);
  if (bytes.size() % tr.type_size != 0)
    return fmt::format("{} bytes are not a whole number of {}-byte {} blocks", bytes.size(),
                       tr.type_size, tr.name);
  const uint8_t* p = bytes.data();
  switch (type) {
    case Type::F32: {
      auto i = first_bad<uint32_t, 0x7f800000u>(p, bytes.size() / 4);
      if (!i) return std::nullopt;
      float f;
      std::memcpy(&f, p + *i * 4, 4);
      return fmt::format("{} in value {}", std::isnan(f) ? "NaN" : "infinity", *i);
    }
    case Type::F16: {
      auto i = first_bad<uint16_t, uint16_t{0x7c00}>(p, bytes.size() / 2);
      if (!i) return std::nullopt;
      uint16_t h;
      std::memcpy(&h, p + *i * 2, 2);
      return fmt::format("{} in value {}", fp16_what(h), *i);
    }
    case Type::BF16: {
      auto i = first_bad<uint16_t, uint16_t{0x7f80}>(p, bytes.size() / 2);
      if (!i) return std::nullopt;
      uint16_t h;
      std::memcpy(&h, p + *i * 2, 2);
      return fmt::format("{} in value {}", (h & 0x7f) ? "NaN" : "infinity", *i);
    }
    case Type::F64: {
      const size_t n = bytes.size() / 8;
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + i * 8, 8);
        if (!std::isfinite(d)) return fmt::format("{} in value {}", std::isnan(d) ? "NaN" : "infinity", i);
      }
      return std::nullopt;
    }
    // Blocks with one half scale d first.
    case Type::Q4_0:
    case Type::Q5_0:
    case Type::Q8_0:
    case Type::Q1_0:
    case Type::Q2_0:
    case Type::IQ2_XXS:
    case Type::IQ2_XS:
    case Type::IQ2_S:
    case Type::IQ3_XXS:
    case Type::IQ3_S:
    case Type::IQ1_S:
    case Type::IQ4_NL:
    case Type::IQ4_XS: return check_half_fields(bytes, tr.type_size, 0, std::nullopt);
    // d then m (or dmin) first.
    case Type::Q4_1:
    case Type::Q5_1:
    case Type::Q4_K:
    case Type::Q5_K: return check_half_fields(bytes, tr.type_size, 0, size_t{2});
    // Scales at the end of the block.
    case Type::Q2_K: return check_half_fields(bytes, tr.type_size, 80, size_t{82});
    case Type::Q3_K:
    case Type::Q6_K:
    case Type::TQ1_0:
    case Type::TQ2_0: return check_half_fields(bytes, tr.type_size, tr.type_size - 2, std::nullopt);
    case Type::Q8_K: {
      const size_t nb = bytes.size() / tr.type_size;
      for (size_t i = 0; i < nb; ++i) {
        float d;
        std::memcpy(&d, p + i * tr.type_size, 4);
        if (!std::isfinite(d)) return fmt::format("{} scale in block {}", std::isnan(d) ? "NaN" : "infinity", i);
      }
      return std::nullopt;
    }
    case Type::MXFP4: {
      const size_t nb = bytes.size() / tr.type_size;
      for (size_t i = 0; i < nb; ++i)
        if (p[i * tr.type_size] == 0xff) return fmt::format("NaN exponent in block {}", i);
      return std::nullopt;
    }
    default: return std::nullopt;
  }
}

}  // namespace medquant::gguf
