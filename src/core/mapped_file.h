// A read-only memory-mapped file with bounds-checked views. Big checkpoints
// are read through this so that only the pages actually touched are loaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace medquant::core {

class MappedFile {
 public:
  // Maps the whole file read-only; throws Error naming the path on failure.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  const uint8_t* data() const { return data_; }

  // Bytes [offset, offset+length); throws Error "<path>: <what> at offset X
  // (N bytes) runs past the end of the file (size S)" when out of range.
  std::span<const uint8_t> view(uint64_t offset, uint64_t length, std::string_view what) const;

  // Tells the kernel we are done with a range (pages may be dropped).
  void release(uint64_t offset, uint64_t length) const;

  // Maps a range we are about to read in one call (MADV_POPULATE_READ, or a
  // read-ahead hint on older kernels), e.g. from a background thread, so
  // that the readers do not take one page fault per few pages.
  void prefetch(uint64_t offset, uint64_t length) const;

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace medquant::core
