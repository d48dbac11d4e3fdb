// An output file that appears under its final name only when complete:
// written to a temporary file in the same folder, fsynced, then renamed.
// If commit() is never reached (error, exception) the temporary is removed,
// so an interrupted run never leaves a half file under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::core {

class AtomicFile {
 public:
  // direct_io: sequential writes bypass the page cache (O_DIRECT, from an
  // aligned buffer), for multi-GB outputs: no second copy of the data in
  // memory and, on some systems, far faster than buffered writes. Falls back
  // to buffered writes where the file system refuses O_DIRECT.
  explicit AtomicFile(std::string final_path, bool direct_io = false);
  ~AtomicFile();  // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::span<const uint8_t> bytes) { write(bytes.data(), bytes.size()); }
  void write(std::string_view text) { write(text.data(), text.size()); }
  void write_zeros(size_t count);
  // Writes at an absolute offset without moving the sequential position
  // (safe to call from several threads on disjoint ranges).
  void write_at(uint64_t offset, const void* data, size_t size);
  uint64_t position() const { return position_ + buffer_.size() + direct_len_; }

  // Flushes, fsyncs, renames to the final path and fsyncs the folder.
  void commit();

  const std::string& final_path() const { return final_path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void flush_buffer();
  void flush_direct(bool all);  // writes the aligned part of direct_buf_ (all: the tail too)

  std::string final_path_;
  std::string temp_path_;
  int fd_ = -1;
  uint64_t position_ = 0;  // bytes written to fd_ so far (sequential part)
  std::vector<uint8_t> buffer_;
  int direct_fd_ = -1;                   // O_DIRECT descriptor of the temporary, if any
  uint8_t* direct_buf_ = nullptr;        // aligned staging buffer for direct_fd_
  size_t direct_len_ = 0;
  bool committed_ = false;
};

// Writes a whole small file atomically.
void write_file_atomic(const std::string& path, std::string_view contents);

// Reads a whole small file into a string; throws Error naming the path.
std::string read_text_file(const std::string& path);

}  // namespace medquant::core
