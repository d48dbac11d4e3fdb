// ONNX element types and the initializer tensor of the graph IR.
//
// An ONNX TensorProto stores its elements in one of three places: raw_data
// (little-endian bytes), a typed repeated field (float_data, int32_data, ...,
// where int8/uint8/int16/fp16 elements each take an int32 slot), or an
// external file named by external_data {location, offset, length}. A Tensor
// here always exposes the elements as little-endian bytes, whichever of these
// the file used; external data stays memory-mapped (no copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace onnx {
class TensorProto;
}

namespace medquant::onnx {

// ONNX TensorProto::DataType values (onnx.proto), kept as plain ints so that
// headers need no protobuf.
enum ElemType : int32_t {
  kUndefined = 0, kFloat = 1, kUint8 = 2, kInt8 = 3, kUint16 = 4, kInt16 = 5, kInt32 = 6,
  kInt64 = 7, kString = 8, kBool = 9, kFloat16 = 10, kDouble = 11, kUint32 = 12, kUint64 = 13,
  kComplex64 = 14, kComplex128 = 15, kBfloat16 = 16, kFloat8E4M3FN = 17, kFloat8E4M3FNUZ = 18,
  kFloat8E5M2 = 19, kFloat8E5M2FNUZ = 20, kUint4 = 21, kInt4 = 22, kFloat4E2M1 = 23,
};

// "float32", "int8", ... ("type<N>" for values this build does not know).
std::string elem_type_name(int32_t type);
// Bytes per element; 0 for string and sub-byte or unknown types.
size_t elem_size(int32_t type);
std::optional<core::DType> to_core_dtype(int32_t type);

// An initializer: name, type, shape and the element bytes.
class Tensor {
 public:
  // How save_model writes the elements: raw_data, or the typed field
  // (float_data / int32_data) that onnx.helper.make_tensor uses for small
  // values such as scales and zero points.
  enum class Storage { Raw, Typed };

  Tensor() = default;
  Tensor(std::string name, int32_t type, std::vector<int64_t> dims, std::string bytes,
         Storage storage = Storage::Raw);

  std::string name;
  int32_t type = kUndefined;
  std::vector<int64_t> dims;
  Storage storage = Storage::Raw;
  std::string doc_string;

  int64_t element_count() const;  // product of dims (1 for a scalar)
  std::span<const uint8_t> bytes() const {
    // Owned bytes are addressed afresh: a moved std::string may move its buffer (SSO).
    if (owner_) return {data_, size_};
    return {reinterpret_cast<const uint8_t*>(owned_.data()), owned_.size()};
  }
  // Bytes from an external data file (not from the .onnx file itself).
  bool is_external() const { return external_; }
  // Elements that have no raw byte form (strings, sub-byte types) are kept as
  // the original proto and written back unchanged.
  const ::onnx::TensorProto* opaque() const { return opaque_.get(); }

  void set_bytes(std::string bytes);
  // Points at bytes owned by someone else (a mapped external-data file).
  void set_view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                bool external = false);
  void set_opaque(std::shared_ptr<const ::onnx::TensorProto> proto);

  // Copies of the elements as float32 (from float32/float16/bfloat16/double).
  std::vector<float> to_floats() const;

 private:
  std::string owned_;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<const ::onnx::TensorProto> opaque_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool external_ = false;
};

// Reads the elements of `proto` into a Tensor (typed fields are converted to
// raw bytes; raw_data is moved out of `proto`, not copied). External data must
// already have been resolved by the caller. `where` names the file for errors.
Tensor tensor_from_proto(::onnx::TensorProto& proto, std::string_view where);
// The bytes t.dims need at `esize` bytes per element. Throws Error "<where>:
// initializer '<name>' ..." for a negative dimension, or a size past 2^62
// bytes (no file holds it, and the product would overflow).
uint64_t checked_byte_size(const Tensor& t, size_t esize, std::string_view where);

// Writes `tensor` into `proto` with its bytes inline (raw_data or typed field).
void tensor_to_proto(const Tensor& tensor, ::onnx::TensorProto& proto);

}  // namespace medquant::onnx
