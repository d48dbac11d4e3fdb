// Element-type dispatch for the reference op implementations:
//   dispatch_numeric(type, where, [&](auto tag) { using T = decltype(tag); ... });
#pragma once

#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "onnx/tensor.h"

namespace medquant::runtime {

template <typename Fn>
decltype(auto) dispatch_numeric(int32_t type, std::string_view where, Fn&& fn) {
  switch (type) {
    case onnx::kFloat: return fn(float{});
    case onnx::kDouble: return fn(double{});
    case onnx::kInt8: return fn(int8_t{});
    case onnx::kUint8: return fn(uint8_t{});
    case onnx::kInt16: return fn(int16_t{});
    case onnx::kUint16: return fn(uint16_t{});
    case onnx::kInt32: return fn(int32_t{});
    case onnx::kUint32: return fn(uint32_t{});
    case onnx::kInt64: return fn(int64_t{});
    case onnx::kUint64: return fn(uint64_t{});
    default: fail("{}: element type {} is not supported", where, onnx::elem_type_name(type));
  }
}

template <typename Fn>
decltype(auto) dispatch_float(int32_t type, std::string_view where, Fn&& fn) {
  switch (type) {
    case onnx::kFloat: return fn(float{});
    case onnx::kDouble: return fn(double{});
    default: fail("{}: element type {} is not supported (float32 or float64 only)", where,
                  onnx::elem_type_name(type));
  }
}

// Any type with a fixed byte size, by its size (for data movement ops).
template <typename Fn>
decltype(auto) dispatch_bytes(size_t esize, std::string_view where, Fn&& fn) {
  switch (esize) {
    case 1: return fn(uint8_t{});
    case 2: return fn(uint16_t{});
    case 4: return fn(uint32_t{});
    case 8: return fn(uint64_t{});
    default: fail("{}: element size {} is not supported", where, esize);
  }
}

inline bool is_float_type(int32_t t) { return t == onnx::kFloat || t == onnx::kDouble; }
inline bool is_integer_type(int32_t t) {
  return t == onnx::kInt8 || t == onnx::kUint8 || t == onnx::kInt16 || t == onnx::kUint16 ||
         t == onnx::kInt32 || t == onnx::kUint32 || t == onnx::kInt64 || t == onnx::kUint64;
}

}  // namespace medquant::runtime
