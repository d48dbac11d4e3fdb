#include "core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace medquant::core {
namespace {
constexpr size_t kBufferSize = 4 << 20;
constexpr size_t kDirectAlign = 4096;  // covers every logical block size in use

}  // namespace

AtomicFile::AtomicFile(std::string final_path, bool direct_io)
    : final_path_(std::move(final_path)) {
  namespace fs = std::filesystem;
  fs::path final_fs(final_path_);
  fs::path dir = final_fs.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir)) fail("{}: output folder {} does not exist", final_path_, dir.string());
  // Hidden name with the pid, so a killed run's leftover is recognisable.
  temp_path_ = (dir / fmt::format(".{}.tmp.{}", final_fs.filename().string(), ::getpid())).string();
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create: {}", temp_path_, std::strerror(errno));
  if (direct_io) {
    // A second descriptor for the sequential stream; fd_ stays buffered for
    // write_at() and the unaligned tail. No O_DIRECT (tmpfs): stay buffered.
    direct_fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT);
    if (direct_fd_ >= 0) {
      direct_buf_ = static_cast<uint8_t*>(std::aligned_alloc(kDirectAlign, kBufferSize));
      if (!direct_buf_) {
        ::close(direct_fd_);
        direct_fd_ = -1;
      }
    }
  }
  if (direct_fd_ < 0) buffer_.reserve(kBufferSize);
}

AtomicFile::~AtomicFile() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  std::free(direct_buf_);
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  if (direct_buf_) {
    while (size > 0) {
      const size_t n = std::min(size, kBufferSize - direct_len_);
      std::memcpy(direct_buf_ + direct_len_, p, n);
      direct_len_ += n;
      p += n;
      size -= n;
      if (direct_len_ == kBufferSize) flush_direct(false);
    }
    return;
  }
  if (buffer_.size() + size > kBufferSize) flush_buffer();
  if (size >= kBufferSize) {
    write_at(position_, p, size);
    position_ += size;
    return;
  }
  buffer_.insert(buffer_.end(), p, p + size);
}

void AtomicFile::write_zeros(size_t count) {
  static const uint8_t kZeros[4096] = {};
  while (count > 0) {
    size_t n = std::min(count, sizeof(kZeros));
    write(kZeros, n);
    count -= n;
  }
}

void AtomicFile::write_at(uint64_t offset, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t w = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: write at offset {} failed: {}", temp_path_, offset, std::strerror(errno));
    }
    p += w;
    offset += static_cast<uint64_t>(w);
    size -= static_cast<size_t>(w);
  }
}

void AtomicFile::flush_buffer() {
  if (buffer_.empty()) return;
  // pwrite at the sequential position so interleaved write_at calls can't move it.
  write_at(position_, buffer_.data(), buffer_.size());
  position_ += buffer_.size();
  buffer_.clear();
}

void AtomicFile::flush_direct(bool all) {
  if (!direct_buf_ || direct_len_ == 0) return;
  size_t n = direct_len_ / kDirectAlign * kDirectAlign;
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(direct_fd_, direct_buf_ + done, n - done,
                         static_cast<off_t>(position_ + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0 || static_cast<size_t>(w) % kDirectAlign != 0) {
      // Refused or misaligned short write: finish this and all later writes buffered.
      if (w > 0) done += static_cast<size_t>(w);
      write_at(position_ + done, direct_buf_ + done, direct_len_ - done);
      position_ += direct_len_;
      direct_len_ = 0;
      ::close(direct_fd_);
      direct_fd_ = -1;
      buffer_.reserve(kBufferSize);
      std::free(std::exchange(direct_buf_, nullptr));
      return;
    }
    done += static_cast<size_t>(w);
  }
  position_ += n;
  direct_len_ -= n;
  if (direct_len_ > 0) std::memmove(direct_buf_, direct_buf_ + n, direct_len_);
  if (all && direct_len_ > 0) {
    write_at(position_, direct_buf_, direct_len_);  // the unaligned tail, buffered
    position_ += direct_len_;
    direct_len_ = 0;
  }
}

void AtomicFile::commit() {
  if (committed_) return;
  flush_direct(true);
  flush_buffer();
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", temp_path_, std::strerror(errno));
  if (direct_fd_ >= 0) {
    ::close(direct_fd_);
    direct_fd_ = -1;
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("{}: close failed: {}", temp_path_, std::strerror(errno));
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0)
    fail("{}: cannot rename {} into place: {}", final_path_, temp_path_, std::strerror(errno));
  committed_ = true;
  std::filesystem::path dir = std::filesystem::path(final_path_).parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicFile out(path);
  out.write(contents);
  out.commit();
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read failed", path);
  return ss.str();
}

}  // namespace medquant::core
