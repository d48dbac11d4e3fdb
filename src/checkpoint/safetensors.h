// safetensors checkpoints (Hugging Face), read zero-copy through mmap.
//
// On-disk layout of one .safetensors file:
//
//   offset 0        8 bytes   N, the header length: unsigned 64-bit little-endian
//   offset 8        N bytes   the header: UTF-8 JSON text, one object. Writers
//                             may pad it at the end with spaces (0x20) so the
//                             data starts aligned.
//   offset 8 + N    the rest  the data buffer: raw tensor bytes, little-endian,
//                             row-major (C order), no padding inside a tensor.
//
// The header object maps each tensor name to
//
//   { "dtype": "<name>", "shape": [d0, d1, ...], "data_offsets": [begin, end] }
//
// where begin/end are byte offsets relative to the start of the data buffer
// (not the file), end exclusive, and end - begin = product(shape) * size(dtype)
// (a scalar has shape [] and one element; a zero dim gives zero bytes). dtype
// names: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2
// (sub-byte types F4/F6 and F8_E8M0 are not read). One optional extra key,
// "__metadata__", maps to an object of string -> string (e.g. "format": "pt").
//
// Everything is validated when a file is opened: header length (>= 2, inside
// the file, <= 100 MB), JSON syntax (errors give the byte position), field
// names and types, dtype names, dims, shape x dtype size = byte span with
// overflow checks, begin <= end <= buffer size, no two tensors overlapping,
// no duplicate names. The reference library is stricter in one way we don't
// copy: it also rejects gaps between tensors (data ranges must tile the buffer
// exactly); gaps are unambiguous, so we accept them.
//
// A sharded checkpoint is a JSON index, "model.safetensors.index.json":
//
//   { "metadata": { "total_size": 123, ... },
//     "weight_map": { "<tensor name>": "model-00001-of-00002.safetensors", ... } }
//
// with shard file names relative to the index's folder. Checkpoint opens a
// single file, an index, or a folder holding either, and checks the index and
// shards agree (every shard exists; every listed tensor is in its shard; no
// shard holds a tensor the index doesn't list for it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace medquant::checkpoint {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;  // as the reference library

// "F32", "BF16", ...: the dtype's name in safetensors headers.
std::string_view safetensors_dtype_name(core::DType t);
std::optional<core::DType> parse_safetensors_dtype(std::string_view name);

struct TensorInfo {
  std::string name;
  core::DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte range in the data buffer, as in the header
  uint64_t end = 0;
  uint64_t data_start = 0;  // file offset of the data buffer (8 + N)

  uint64_t nbytes() const { return end - begin; }
  uint64_t offset() const { return data_start + begin; }  // file offset of the first byte
  uint64_t num_elements() const;  // fits: validated against nbytes when read
};

// One .safetensors file, mapped and validated; tensors in file order.
class SafetensorsFile {
 public:
  // Throws Error "<path>: ..." naming the tensor or byte position at fault.
  explicit SafetensorsFile(std::string path);

  const std::string& path() const { return file_.path(); }
  uint64_t file_size() const { return file_.size(); }
  uint64_t header_size() const { return header_size_; }  // N
  uint64_t data_start() const { return 8 + header_size_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // by offset

  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  // The tensor's bytes, straight from the mapping (no copy).
  std::span<const uint8_t> data(const TensorInfo& t) const {
    return {file_.data() + t.offset(), static_cast<size_t>(t.nbytes())};
  }
  // Lets the kernel drop the tensor's pages once a stream is done with it.
  void release(const TensorInfo& t) const { file_.release(t.offset(), t.nbytes()); }
  const core::MappedFile& mapped() const { return file_; }

 private:
  core::MappedFile file_;
  uint64_t header_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> by_name_;  // views into tensors_
};

// A tensor of a checkpoint: which shard holds it, and where.
struct TensorRef {
  const SafetensorsFile* file;
  const TensorInfo* info;

  const std::string& name() const { return info->name; }
  std::span<const uint8_t> bytes() const { return file->data(*info); }
};

// A whole checkpoint: one file, or the shards of an index, kept mapped.
class Checkpoint {
 public:
  // path: a .safetensors file, a *.safetensors.index.json, or a folder with
  // exactly one index, or else one or more .safetensors files (all are read,
  // in name order; a name in two of them is an error).
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }
  bool sharded() const { return !index_path_.empty(); }
  const std::string& index_path() const { return index_path_; }  // "" if none
  // The index's "metadata" (values that aren't strings as their JSON text), or
  // the single file's "__metadata__"; merged over the files when several.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // Every tensor, in file order: files in name order, tensors by offset.
  const std::vector<TensorRef>& tensors() const { return tensors_; }

  const TensorRef* find(std::string_view name) const;  // nullptr if absent
  const TensorRef& at(std::string_view name) const;    // throws Error naming the tensor

 private:
  void add_file(std::unique_ptr<SafetensorsFile> file);
  void index_tensors();

  std::string path_;
  std::string index_path_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<TensorRef> tensors_;
  std::unordered_map<std::string_view, size_t> by_name_;
};

}  // namespace medquant::checkpoint
