#include "onnx/tensor.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/half.h"

namespace medquant::onnx {

std::string elem_type_name(int32_t type) {
  switch (type) {
    case kFloat: return "float32";
    case kUint8: return "uint8";
    case kInt8: return "int8";
    case kUint16: return "uint16";
    case kInt16: return "int16";
    case kInt32: return "int32";
    case kInt64: return "int64";
    case kString: return "string";
    case kBool: return "bool";
    case kFloat16: return "float16";
    case kDouble: return "float64";
    case kUint32: return "uint32";
    case kUint64: return "uint64";
    case kComplex64: return "complex64";
    case kComplex128: return "complex128";
    case kBfloat16: return "bfloat16";
    case kFloat8E4M3FN: return "float8e4m3fn";
    case kFloat8E4M3FNUZ: return "float8e4m3fnuz";
    case kFloat8E5M2: return "float8e5m2";
    case kFloat8E5M2FNUZ: return "float8e5m2fnuz";
    case kUint4: return "uint4";
    case kInt4: return "int4";
    case kFloat4E2M1: return "float4e2m1";
    default: return fmt::format("type{}", type);
  }
}

size_t elem_size(int32_t type) {
  switch (type) {
    case kUint8: case kInt8: case kBool:
    case kFloat8E4M3FN: case kFloat8E4M3FNUZ: case kFloat8E5M2: case kFloat8E5M2FNUZ:
      return 1;
    case kUint16: case kInt16: case kFloat16: case kBfloat16: return 2;
    case kFloat: case kInt32: case kUint32: return 4;
    case kInt64: case kDouble: case kUint64: case kComplex64: return 8;
    case kComplex128: return 16;
    default: return 0;
  }
}

std::optional<core::DType> to_core_dtype(int32_t type) {
  using core::DType;
  switch (type) {
    case kFloat: return DType::F32;
    case kFloat16: return DType::F16;
    case kBfloat16: return DType::BF16;
    case kDouble: return DType::F64;
    case kInt8: return DType::I8;
    case kUint8: return DType::U8;
    case kInt16: return DType::I16;
    case kUint16: return DType::U16;
    case kInt32: return DType::I32;
    case kUint32: return DType::U32;
    case kInt64: return DType::I64;
    case kUint64: return DType::U64;
    case kBool: return DType::Bool;
    case kFloat8E4M3FN: return DType::F8E4M3;
    case kFloat8E5M2: return DType::F8E5M2;
    default: return std::nullopt;
  }
}

Tensor::Tensor(std::string name_, int32_t type_, std::vector<int64_t> dims_, std::string bytes,
               Storage storage_)
    : name(std::move(name_)), type(type_), dims(std::move(dims_)), storage(storage_) {
  set_bytes(std::move(bytes));
}

int64_t Tensor::element_count() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

void Tensor::set_bytes(std::string bytes) {
  owner_.reset();
  external_ = false;
  opaque_.reset();
  owned_ = std::move(bytes);
  data_ = reinterpret_cast<const uint8_t*>(owned_.data());
  size_ = owned_.size();
}

void Tensor::set_view(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                      bool external) {
  owned_.clear();
  external_ = external;
  opaque_.reset();
  owner_ = std::move(owner);
  data_ = data;
  size_ = size;
}

void Tensor::set_opaque(std::shared_ptr<const ::onnx::TensorProto> proto) {
  owned_.clear();
  owner_.reset();
  opaque_ = std::move(proto);
  external_ = false;
  data_ = nullptr;
  size_ = 0;
}

std::vector<float> Tensor::to_floats() const {
  const size_t n = static_cast<size_t>(element_count());
  std::vector<float> out(n);
  const uint8_t* p = bytes().data();
  if (bytes().size() != n * elem_size(type))
    fail("tensor '{}': {} bytes for {} elements of {}", name, bytes().size(), n, elem_type_name(type));
  switch (type) {
    case kFloat: std::memcpy(out.data(), p, n * 4); break;
    case kFloat16: core::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(p), out.data(), n); break;
    case kBfloat16: core::bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(p), out.data(), n); break;
    case kDouble:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    default: fail("tensor '{}': {} is not a float type", name, elem_type_name(type));
  }
  return out;
}

namespace {

template <typename Field>
std::string narrow_int32_field(const Field& field, size_t size) {
  // int8/uint8/int16/uint16/bool/fp16/bf16/fp8 elements each sit in an int32 slot.
  std::string out(static_cast<size_t>(field.size()) * size, '\0');
  for (int i = 0; i < field.size(); ++i) {
    const uint32_t v = static_cast<uint32_t>(field.Get(i));
    std::memcpy(out.data() + static_cast<size_t>(i) * size, &v, size);  // little-endian host
  }
  return out;
}

template <typename Field>
std::string copy_field(const Field& field) {
  using T = typename Field::value_type;
  std::string out(static_cast<size_t>(field.size()) * sizeof(T), '\0');
  if (field.size()) std::memcpy(out.data(), field.data(), out.size());
  return out;
}

}  // namespace

uint64_t checked_byte_size(const Tensor& t, size_t esize, std::string_view where) {
  constexpr uint64_t kLimit = uint64_t{1} << 62;
  uint64_t bytes = std::max<uint64_t>(esize, 1);
  for (int64_t d : t.dims) {
    if (d < 0) fail("{}: initializer '{}' has a negative dimension {}", where, t.name, d);
    if (d > 0 && bytes > kLimit / static_cast<uint64_t>(d))
      fail("{}: initializer '{}': shape {} is too large", where, t.name, fmt::join(t.dims, "x"));
    bytes *= static_cast<uint64_t>(d);
  }
  return esize == 0 ? 0 : bytes;
}

Tensor tensor_from_proto(::onnx::TensorProto& proto, std::string_view where) {
  Tensor t;
  t.name = proto.name();
  t.type = proto.data_type();
  t.dims.assign(proto.dims().begin(), proto.dims().end());
  t.doc_string = proto.doc_string();
  const size_t esize = elem_size(t.type);
  const uint64_t expected = checked_byte_size(t, esize, where);
  if (proto.has_segment()) fail("{}: initializer '{}' is segmented (not supported)", where, t.name);
  if (esize == 0) {
    // Strings and sub-byte types: kept as they are.
    t.set_opaque(std::make_shared<::onnx::TensorProto>(proto));
    return t;
  }
  std::string bytes;
  if (proto.has_raw_data()) {
    bytes.swap(*proto.mutable_raw_data());
  } else {
    switch (t.type) {
      case kFloat: case kComplex64: bytes = copy_field(proto.float_data()); break;
      case kDouble: case kComplex128: bytes = copy_field(proto.double_data()); break;
      case kInt64: bytes = copy_field(proto.int64_data()); break;
      case kInt32: bytes = copy_field(proto.int32_data()); break;
      case kUint32: {
        bytes.resize(static_cast<size_t>(proto.uint64_data_size()) * 4);
        for (int i = 0; i < proto.uint64_data_size(); ++i) {
          const uint32_t v = static_cast<uint32_t>(proto.uint64_data(i));
          std::memcpy(bytes.data() + 4 * static_cast<size_t>(i), &v, 4);
        }
        break;
      }
      case kUint64: bytes = copy_field(proto.uint64_data()); break;
      default: bytes = narrow_int32_field(proto.int32_data(), esize); break;
    }
    t.storage = Tensor::Storage::Typed;
  }
  if (bytes.size() != expected)
    fail("{}: initializer '{}' ({} {}) holds {} bytes, its shape needs {}", where, t.name,
         elem_type_name(t.type), fmt::join(t.dims, "x"), bytes.size(), expected);
  t.set_bytes(std::move(bytes));
  return t;
}

void tensor_to_proto(const Tensor& t, ::onnx::TensorProto& proto) {
  if (t.opaque()) {
    proto = *t.opaque();
    proto.set_name(t.name);
    return;
  }
  proto.Clear();
  proto.set_name(t.name);
  proto.set_data_type(t.type);
  for (int64_t d : t.dims) proto.add_dims(d);
  if (!t.doc_string.empty()) proto.set_doc_string(t.doc_string);
  const auto b = t.bytes();
  const size_t n = b.size();
  if (t.storage == Tensor::Storage::Typed) {
    switch (t.type) {
      case kFloat: {
        proto.mutable_float_data()->Resize(static_cast<int>(n / 4), 0.0f);
        std::memcpy(proto.mutable_float_data()->mutable_data(), b.data(), n);
        return;
      }
      case kInt64: {
        proto.mutable_int64_data()->Resize(static_cast<int>(n / 8), 0);
        std::memcpy(proto.mutable_int64_data()->mutable_data(), b.data(), n);
        return;
      }
      case kInt32: {
        proto.mutable_int32_data()->Resize(static_cast<int>(n / 4), 0);
        std::memcpy(proto.mutable_int32_data()->mutable_data(), b.data(), n);
        return;
      }
      case kInt8:
        for (size_t i = 0; i < n; ++i) proto.add_int32_data(static_cast<int8_t>(b[i]));
        return;
      case kUint8: case kBool:
        for (size_t i = 0; i < n; ++i) proto.add_int32_data(b[i]);
        return;
      default: break;  // everything else goes to raw_data
    }
  }
  proto.set_raw_data(b.data(), n);
}

}  // namespace medquant::onnx
