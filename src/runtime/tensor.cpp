#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace medquant::runtime {

int64_t shape_size(const Shape& shape, std::string_view what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("{}: negative dimension in shape {}", what, shape_string(shape));
    if (d != 0 && n > kMaxElements / d)
      fail("{}: shape {} has more than 2^36 elements", what, shape_string(shape));
    n *= d;
  }
  return n;
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::shared_ptr<uint8_t[]> allocate_bytes(size_t bytes) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail("out of memory allocating {} bytes", rounded);
  return std::shared_ptr<uint8_t[]>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

Tensor::Tensor(int32_t type, Shape shape) : type_(type), shape_(std::move(shape)) {
  size_ = shape_size(shape_);
  const size_t esize = onnx::elem_size(type);
  if (esize == 0) fail("tensors of type {} are not supported", onnx::elem_type_name(type));
  owner_ = allocate_bytes(static_cast<size_t>(size_) * esize);
  data_ = owner_.get();
}

Tensor Tensor::view(int32_t type, Shape shape, void* data) {
  Tensor t;
  t.type_ = type;
  t.shape_ = std::move(shape);
  t.size_ = shape_size(t.shape_);
  t.data_ = data;
  return t;
}

Tensor Tensor::from_onnx(const onnx::Tensor& src) {
  if (src.opaque() || onnx::elem_size(src.type) == 0)
    fail("initializer '{}': {} tensors are not supported by the runtime", src.name,
         onnx::elem_type_name(src.type));
  Tensor t(src.type, Shape(src.dims.begin(), src.dims.end()));
  auto b = src.bytes();
  if (b.size() != t.bytes())
    fail("initializer '{}' holds {} bytes, its shape needs {}", src.name, b.size(), t.bytes());
  if (!b.empty()) std::memcpy(t.raw(), b.data(), b.size());
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  Tensor t = *this;
  const int64_t n = shape_size(shape);
  if (n != size_) fail("cannot reshape {} to {}", shape_string(shape_), shape_string(shape));
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(type_, shape_);
  if (bytes()) std::memcpy(t.raw(), raw(), bytes());
  return t;
}

std::vector<int64_t> Tensor::to_int64() const {
  std::vector<int64_t> out(static_cast<size_t>(size_));
  for (int64_t i = 0; i < size_; ++i) {
    switch (type_) {
      case onnx::kInt64: out[i] = data<int64_t>()[i]; break;
      case onnx::kInt32: out[i] = data<int32_t>()[i]; break;
      case onnx::kInt16: out[i] = data<int16_t>()[i]; break;
      case onnx::kInt8: out[i] = data<int8_t>()[i]; break;
      case onnx::kUint8: out[i] = data<uint8_t>()[i]; break;
      case onnx::kUint16: out[i] = data<uint16_t>()[i]; break;
      case onnx::kUint32: out[i] = data<uint32_t>()[i]; break;
      case onnx::kUint64: out[i] = static_cast<int64_t>(data<uint64_t>()[i]); break;
      default: fail("expected an integer tensor, got {}", onnx::elem_type_name(type_));
    }
  }
  return out;
}

double Tensor::scalar_as_double() const {
  if (size_ < 1) fail("expected a scalar, got an empty tensor");
  switch (type_) {
    case onnx::kFloat: return data<float>()[0];
    case onnx::kDouble: return data<double>()[0];
    case onnx::kFloat16: return core::fp16_to_fp32(data<uint16_t>()[0]);
    case onnx::kBfloat16: return core::bf16_to_fp32(data<uint16_t>()[0]);
    case onnx::kBool: return data<bool>()[0] ? 1 : 0;
    default: return static_cast<double>(to_int64()[0]);
  }
}

}  // namespace medquant::runtime
