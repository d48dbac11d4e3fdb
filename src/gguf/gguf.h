// GGUF, the model file format of ggml and llama.cpp: reading and writing.
//
// On disk, all integers little-endian (versions 2 and 3 share this layout;
// version 1, with 32-bit counts, is refused; we always write version 3):
//
//   1. Magic "GGUF" (4 bytes).
//   2. Version: u32.
//   3. Number of tensors: i64.
//   4. Number of key-value pairs: i64.
//   5. The key-value pairs, each:
//        key         string (not empty, unique in the file)
//        value type  i32 (ValueType below)
//        if the type is ARRAY: element type (i32, not ARRAY), element count
//        (u64), then the elements back to back; otherwise the value itself.
//      Values: u8 / i8 / bool 1 byte (bool 0 or 1), u16 / i16 2 bytes,
//      u32 / i32 / f32 4, u64 / i64 / f64 8; a string is its length (u64)
//      followed by that many bytes, no terminating NUL.
//   6. The tensor infos, each:
//        name        string (shorter than 64 bytes, unique in the file)
//        n_dims      u32 (at most 4)
//        ne          n_dims x i64, innermost first: ne[0] is the row length
//                    and must be a multiple of the type's block size; absent
//                    dimensions count as 1
//        type        i32, a ggml type id (quant::Type)
//        offset      u64, where the tensor's bytes start, counted from the
//                    start of the data section; a multiple of the alignment
//   7. Zero bytes up to a multiple of the alignment: the u32 value of
//      "general.alignment" (a power of two) if present, else 32.
//   8. The data section: each tensor's bytes at its offset, ne[1]*ne[2]*ne[3]
//      rows of quant::row_size(type, ne[0]) bytes. Writers (ggml's and ours)
//      put the tensors back to back in info order, each padded with zeros to
//      the alignment, and the file ends after the last tensor's padding.
//      Readers only require that tensors are inside the file and disjoint.
//
// Reader maps a file, validates everything a damaged or hostile file can get
// wrong (see parse()) and gives typed metadata and zero-copy tensor bytes.
// Writer streams a file: header first, then each tensor's bytes as they are
// produced, so a model never has to be in memory as a whole.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "core/mapped_file.h"
#include "quant/quant.h"

namespace medquant::gguf {

inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr size_t kMaxNameLength = 63;  // ggml's GGML_MAX_NAME - 1
inline constexpr int kMaxDims = 4;
inline constexpr std::string_view kKeyAlignment = "general.alignment";

// ggml's enum gguf_type, same ids.
enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
inline constexpr uint32_t kValueTypeCount = 13;

std::string_view value_type_name(ValueType type);  // "u32", "str", "arr", ...
size_t value_type_size(ValueType type);              // 0 for String and Array

// One metadata value: a scalar or an array of one element type. Numbers are
// kept as their little-endian bytes, strings as std::string.
class Value {
 public:
  Value() = default;

  template <typename T>
  static Value scalar(T v);  // T: uint8_t ... double, bool
  static Value string(std::string s);
  template <typename T>
  static Value array(std::span<const T> values);
  static Value string_array(std::vector<std::string> values);
  // An array or scalar of numeric type `type` from raw little-endian bytes.
  static Value raw(ValueType type, bool is_array, std::vector<uint8_t> bytes);

  ValueType type() const { return type_; }  // the element type for arrays
  bool is_array() const { return is_array_; }
  size_t count() const;  // number of elements (1 for a scalar)

  // Element i, checked: throws Error if the type differs or i is out of range.
  template <typename T>
  T get(size_t i = 0) const;
  const std::string& str(size_t i = 0) const;
  // Any integer type (u8 ... i64, bool) as int64; nullopt for other types or
  // a u64 above INT64_MAX.
  std::optional<int64_t> as_int(size_t i = 0) const;
  const std::vector<uint8_t>& bytes() const { return data_; }  // numeric types
  const std::vector<std::string>& strings() const { return strings_; }

  // Human-readable: 42, 1.5, "text", [1, 2, 3, ... (262144 values)];
  // arrays show at most max_elements elements.
  std::string to_string(size_t max_elements = 8) const;

  bool operator==(const Value& other) const = default;

 private:
  ValueType type_ = ValueType::U8;
  bool is_array_ = false;
  std::vector<uint8_t> data_;
  std::vector<std::string> strings_;
};

struct KeyValue {
  std::string key;
  Value value;
  bool operator==(const KeyValue& other) const = default;
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 1;
  std::array<int64_t, kMaxDims> ne{1, 1, 1, 1};  // unused dimensions are 1
  quant::Type type = quant::Type::F32;
  uint64_t offset = 0;  // from the start of the data section

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_bytes() const { return quant::row_size(type, ne[0]); }
  uint64_t n_bytes() const { return row_bytes() * static_cast<uint64_t>(n_rows()); }
  // ggml_n_dims: the number of dimensions without trailing 1s (at least 1).
  uint32_t effective_n_dims() const;
  std::string shape_string() const;  // "[2560, 262208]"
};

// Everything before the data section.
struct Header {
  uint32_t version = 3;
  std::vector<KeyValue> kvs;         // in file order
  std::vector<TensorInfo> tensors;   // in file order
  uint32_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;          // absolute offset of the data section

  const KeyValue* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;
  // The string / integer value of a key, or nullopt if absent or of another type.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
};

// Parses and validates the header of a GGUF file whose bytes are `file`
// (the whole file, so that tensor data can be checked against its size).
// `name` (usually the path) starts every error message. Checks: magic,
// version (2 or 3, and byte order), counts against the bytes left, string
// and array lengths, value types, empty or duplicate keys and tensor names,
// general.alignment (u32, power of two), n_dims <= 4, ne >= 0, element and
// byte counts without overflow, known ggml types, ne[0] a multiple of the
// block size, data offsets aligned, inside the file and disjoint.
Header parse(std::span<const uint8_t> file, const std::string& name);

// The bytes of the header (everything up to the data section, padding
// included) for these KVs and tensor infos, laid out as ggml's
// gguf_get_meta_data: version 3, each tensor with its n_dims as given (ggml
// itself writes effective_n_dims(); callers that must match it set that).
// The alignment comes from general.alignment in kvs (default 32).
std::vector<uint8_t> serialize_header(const std::vector<KeyValue>& kvs,
                                      const std::vector<TensorInfo>& tensors);

// The alignment the KVs ask for (general.alignment or 32); throws if the key
// has another type than u32 or is not a power of two.
uint32_t alignment_of(const std::vector<KeyValue>& kvs, const std::string& name);

// Gives tensors their offsets: back to back in order, each padded to alignment.
// Returns the size of the data section.
uint64_t assign_offsets(std::vector<TensorInfo>& tensors, uint32_t alignment);

// A GGUF file on disk, mapped and validated.
class Reader {
 public:
  explicit Reader(std::string path);

  const std::string& path() const { return file_.path(); }
  const Header& header() const { return header_; }
  const std::vector<KeyValue>& kvs() const { return header_.kvs; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  uint64_t file_size() const { return file_.size(); }

  // The bytes of a tensor of this file (bounds were checked by parse()).
  std::span<const uint8_t> tensor_data(const TensorInfo& tensor) const;
  // Lets the kernel drop the pages of bytes [begin, end) of a tensor's data.
  void release(const TensorInfo& tensor, uint64_t begin, uint64_t end) const;
  // Maps bytes [begin, end) of a tensor's data ahead of use (core::MappedFile::prefetch).
  void prefetch(const TensorInfo& tensor, uint64_t begin, uint64_t end) const;
  const core::MappedFile& mapped() const { return file_; }

 private:
  core::MappedFile file_;
  Header header_;
};

// Writes a GGUF file in one pass: the constructor writes the header (tensor
// offsets assigned back to back); then write() appends the bytes of the
// tensors in order, in as many pieces as convenient, padding each tensor to
// the alignment once its last byte is in; commit() checks that every tensor
// got exactly its size and renames the file into place. Data goes to disk
// with direct I/O (core::AtomicFile), so a multi-GB output does not also
// fill the page cache.
class Writer {
 public:
  Writer(std::string path, std::vector<KeyValue> kvs, std::vector<TensorInfo> tensors);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Index of the tensor the next write() continues (tensors().size() when done).
  size_t current_tensor() const { return current_; }
  void write(std::span<const uint8_t> bytes);
  void commit();
  uint64_t bytes_written() const { return out_.position(); }

 private:
  void advance_past_empty();

  std::string path_;
  core::AtomicFile out_;
  std::vector<TensorInfo> tensors_;
  uint32_t alignment_;
  size_t current_ = 0;
  uint64_t current_done_ = 0;  // bytes of tensors_[current_] written so far
};

}  // namespace medquant::gguf
