// Tensors of the ONNX executor: an element type (ONNX TensorProto::DataType
// values, onnx::ElemType), a shape and 64-byte aligned bytes that are either
// owned (shared, reference counted) or borrowed (a view into someone else's
// buffer: the memory plan's arena, a user's input, a mapped initializer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "onnx/tensor.h"

namespace medquant::runtime {

using Shape = std::vector<int64_t>;
using onnx::ElemType;

// Element count of `shape`; throws Error naming `what` when a dim is negative
// or the count would pass kMaxElements (absurd dims in a broken model).
int64_t shape_size(const Shape& shape, std::string_view what = "tensor");
constexpr int64_t kMaxElements = int64_t{1} << 36;
std::string shape_string(const Shape& shape);  // "[1, 197, 768]"

template <typename T> constexpr int32_t elem_type_of();
template <> constexpr int32_t elem_type_of<float>() { return onnx::kFloat; }
template <> constexpr int32_t elem_type_of<double>() { return onnx::kDouble; }
template <> constexpr int32_t elem_type_of<int8_t>() { return onnx::kInt8; }
template <> constexpr int32_t elem_type_of<uint8_t>() { return onnx::kUint8; }
template <> constexpr int32_t elem_type_of<int16_t>() { return onnx::kInt16; }
template <> constexpr int32_t elem_type_of<uint16_t>() { return onnx::kUint16; }
template <> constexpr int32_t elem_type_of<int32_t>() { return onnx::kInt32; }
template <> constexpr int32_t elem_type_of<uint32_t>() { return onnx::kUint32; }
template <> constexpr int32_t elem_type_of<int64_t>() { return onnx::kInt64; }
template <> constexpr int32_t elem_type_of<uint64_t>() { return onnx::kUint64; }
template <> constexpr int32_t elem_type_of<bool>() { return onnx::kBool; }

// 64-byte aligned, uninitialised bytes (size rounded up); throws Error on failure.
std::shared_ptr<uint8_t[]> allocate_bytes(size_t bytes);

class Tensor {
 public:
  Tensor() = default;
  // Owned, uninitialised elements.
  Tensor(int32_t type, Shape shape);
  // A view of `data` (not owned; must outlive the tensor).
  static Tensor view(int32_t type, Shape shape, void* data);
  // Owned copy of `values` with `shape`.
  template <typename T>
  static Tensor from(Shape shape, std::span<const T> values);
  template <typename T>
  static Tensor scalar(T value) { return from<T>({}, std::span<const T>(&value, 1)); }
  // Copy of an initializer (element bytes of `t`).
  static Tensor from_onnx(const onnx::Tensor& t);

  bool empty() const { return type_ == onnx::kUndefined; }
  int32_t type() const { return type_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t size() const { return size_; }  // element count
  size_t bytes() const { return static_cast<size_t>(size_) * onnx::elem_size(type_); }
  bool owns() const { return owner_ != nullptr; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <typename T> T* data() { return static_cast<T*>(data_); }
  template <typename T> const T* data() const { return static_cast<const T*>(data_); }
  template <typename T> std::span<const T> values() const { return {data<T>(), static_cast<size_t>(size_)}; }

  // Same bytes, another shape of the same element count (a view that shares ownership).
  Tensor reshaped(Shape shape) const;
  // An owned deep copy.
  Tensor clone() const;
  // Elements converted to int64 (integer types only); for shape-like inputs.
  std::vector<int64_t> to_int64() const;
  double scalar_as_double() const;  // first element of any numeric type

 private:
  int32_t type_ = onnx::kUndefined;
  Shape shape_;
  int64_t size_ = 0;
  std::shared_ptr<uint8_t[]> owner_;
  void* data_ = nullptr;
};

template <typename T>
Tensor Tensor::from(Shape shape, std::span<const T> values) {
  Tensor t(elem_type_of<T>(), std::move(shape));
  for (size_t i = 0; i < values.size() && i < static_cast<size_t>(t.size()); ++i) t.data<T>()[i] = values[i];
  return t;
}

}  // namespace medquant::runtime
