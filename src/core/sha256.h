// SHA-256 through OpenSSL's EVP interface, streaming.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace medquant::core {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::array<uint8_t, 32> digest();  // finishes; the object can't be updated after
  std::string hex_digest();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

std::string sha256_hex(std::string_view data);
// Hash of a whole file, read through mmap (shows a progress bar for big files).
std::string sha256_file(const std::string& path);
std::string to_hex(const uint8_t* data, size_t size);

}  // namespace medquant::core
