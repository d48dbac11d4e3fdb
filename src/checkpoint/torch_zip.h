// PyTorch checkpoints written by torch.save (the zip format, torch >= 1.6),
// read zero-copy through mmap with a restricted unpickler: no code runs.
//
// On-disk layout. The file is a zip archive whose entries are all stored
// (method 0, never compressed); torch pads each entry's local-header extra
// field ("FB" id) so that data starts 64-byte aligned. Every entry name
// starts with one archive folder, <a>/, which is the first entry's name up
// to its first '/' (the file's stem when it was saved, or "archive"):
//
//   <a>/data.pkl         a pickle (protocol 2 by default) of the saved object
//   <a>/data/<key>       the raw bytes of one storage, little-endian
//   <a>/version          the format version in decimal text ("3\n"); newer
//                        writers may put it at <a>/.data/version instead
//   <a>/byteorder        "little" or "big" (absent before torch 1.13: little)
//   <a>/.format_version, <a>/.storage_alignment, <a>/.data/serialization_id
//                        bookkeeping, not needed to read tensors
//
// The zip structure, as read here (all integers little-endian):
//
//   end of central directory (EOCD), the last 22 + comment bytes:
//     "PK\5\6", disk numbers (2+2), entry counts (2+2), central directory
//     size (4) and offset (4), comment length (2), comment.
//   zip64: when a count, size or offset is saturated (0xFFFF / 0xFFFFFFFF)
//     the real values are in the zip64 EOCD record ("PK\6\6", 56+ bytes)
//     found through the zip64 locator ("PK\6\7", 20 bytes) just before the
//     EOCD; per entry, saturated sizes and offsets come from the zip64 extra
//     field (id 0x0001) of its central directory header, in the order
//     uncompressed size, compressed size, local header offset.
//   central directory: one 46-byte header per entry ("PK\1\2", flags,
//     method, crc, sizes, name/extra/comment lengths, local header offset)
//     followed by its name, extra field and comment.
//   local header: "PK\3\4", 30 bytes, then name and extra field, then the
//     entry's bytes. torch writes sizes and crc in the central directory and
//     a data descriptor after the data (flag bit 3), so the local header's
//     sizes are not used; its name must match the central one.
//
// The pickle. A state dict pickles as an OrderedDict (or dict) of name ->
// tensor, and each tensor as a call of a torch rebuild function:
//
//   torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//                                   requires_grad, backward_hooks[, metadata])
//   torch._utils._rebuild_tensor_v3(untyped storage, ..., dtype[, metadata])
//                                   (uint16/32/64 and float8 tensors)
//   torch._utils._rebuild_parameter(tensor, requires_grad, backward_hooks)
//   torch._utils._rebuild_parameter_with_state(..., state)   (state ignored)
//   torch._tensor._rebuild_from_type_v2(func, torch.Tensor or Parameter, args, state)
//
// where `storage` is a persistent id, ('storage', torch.<T>Storage, key,
// location, numel): the storage's element type, its record key under
// <a>/data/, the device it was saved from, and its size in elements (bytes
// for torch.UntypedStorage). Offsets and strides count elements of the
// tensor's dtype. Several tensors may share one storage (views, tied
// weights); a view may be non-contiguous (a transpose).
//
// Only these globals are accepted: collections.OrderedDict, the rebuild
// functions above, torch.<T>Storage and torch.UntypedStorage, the torch
// dtypes that map to core::DType, torch.Tensor and torch.nn.Parameter (as the
// type argument of _rebuild_from_type_v2). Anything else (os.system,
// builtins.eval, a pickled class) is refused by name before anything is
// called. The opcodes are those of protocols 2-5 that plain data needs.
//
// Nested dicts and lists are flattened into dotted names ("model.fc.weight",
// "layers.0"); non-tensor leaves (numbers, strings, None) are kept as
// metadata text. Everything is validated when the file is opened: zip
// structure and bounds, stored (uncompressed) entries, record sizes =
// numel x element size, every tensor's extent inside its storage, overflow.
// Not supported (clear error): the legacy pre-1.6 non-zip format, big-endian
// files, quantized, complex, sparse and sub-byte dtypes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace medquant::checkpoint {

// One stored entry of the zip archive.
struct ZipEntry {
  std::string name;
  uint64_t offset = 0;  // file offset of the entry's first data byte
  uint64_t size = 0;
  uint32_t crc32 = 0;  // as recorded in the central directory
};

// One storage of the checkpoint: the bytes of <a>/data/<key>.
struct TorchStorageInfo {
  std::string key;
  std::optional<core::DType> dtype;  // element type; none for torch.UntypedStorage
  std::string type_name;             // "FloatStorage", "UntypedStorage", ...
  std::string location;              // "cpu", "cuda:0", ...
  uint64_t numel = 0;                // elements of dtype (bytes if untyped)
  uint64_t offset = 0;               // file offset of the first byte
  uint64_t nbytes = 0;               // record size (= numel x element size)
};

// A tensor: a strided view of one storage.
struct TorchTensorInfo {
  std::string name;  // dotted path in the saved object
  core::DType dtype;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;  // in elements, one per dim
  uint64_t storage_offset = 0;  // in elements
  size_t storage = 0;           // index into TorchZipFile::storages()
  uint64_t storage_begin = 0;   // file offset of the storage's first byte
  bool is_parameter = false;    // saved as an nn.Parameter
  bool requires_grad = false;

  uint64_t num_elements() const;  // fits: validated against the storage when read
  uint64_t nbytes() const { return num_elements() * core::dtype_size(dtype); }
  // Row-major with no gaps (strides of size-1 dims don't matter, as in torch).
  bool contiguous() const;
  // File offset of the element at index 0 (meaningful for any view).
  uint64_t offset() const { return storage_begin + storage_offset * core::dtype_size(dtype); }
};

// One torch.save zip file, mapped and validated; tensors in pickle order.
class TorchZipFile {
 public:
  // Throws Error "<path>: ..." naming the entry, offset, tensor or global at fault.
  explicit TorchZipFile(std::string path);

  const std::string& path() const { return file_.path(); }
  uint64_t file_size() const { return file_.size(); }
  const std::string& archive_name() const { return archive_name_; }  // <a>
  const std::string& version() const { return version_; }            // "3"
  const std::vector<ZipEntry>& entries() const { return entries_; }  // in central directory order
  const std::vector<TorchStorageInfo>& storages() const { return storages_; }  // by first use
  const std::vector<TorchTensorInfo>& tensors() const { return tensors_; }
  // Non-tensor leaves of the saved object, name -> Python-like text ("5", "'adam'", "None").
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TorchTensorInfo* find(std::string_view name) const;  // nullptr if absent
  const TorchTensorInfo& at(std::string_view name) const;    // throws Error naming the tensor

  // The bytes of a contiguous tensor, straight from the mapping (no copy);
  // throws Error naming the tensor if it is not contiguous.
  std::span<const uint8_t> data(const TorchTensorInfo& t) const;
  // Any tensor's elements gathered in row-major order (a copy).
  std::vector<uint8_t> materialize(const TorchTensorInfo& t) const;
  // The whole storage's bytes.
  std::span<const uint8_t> storage_data(const TorchStorageInfo& s) const {
    return {file_.data() + s.offset, static_cast<size_t>(s.nbytes)};
  }
  // Lets the kernel drop the tensor's storage pages once a stream is done with it.
  void release(const TorchTensorInfo& t) const;
  const core::MappedFile& mapped() const { return file_; }

 private:
  void read_zip();
  void read_pickle();

  core::MappedFile file_;
  std::string archive_name_;
  std::string version_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> entry_by_name_;
  std::vector<TorchStorageInfo> storages_;
  std::vector<TorchTensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::unordered_map<std::string_view, size_t> by_name_;  // views into tensors_
};

// True if the bytes start like a zip archive ("PK\3\4"), as torch.save writes.
bool looks_like_torch_zip(std::span<const uint8_t> head);

}  // namespace medquant::checkpoint
