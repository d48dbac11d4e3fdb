#include "core/sha256.h"

#include <openssl/evp.h>

#include <algorithm>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"

namespace medquant::core {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (!ctx_ || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1)
    fail("sha256: OpenSSL initialisation failed");
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::update(const void* data, size_t size) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size) != 1)
    fail("sha256: OpenSSL update failed");
}

std::array<uint8_t, 32> Sha256::digest() {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out.data(), &len) != 1 || len != 32)
    fail("sha256: OpenSSL final failed");
  return out;
}

std::string Sha256::hex_digest() {
  auto d = digest();
  return to_hex(d.data(), d.size());
}

std::string to_hex(const uint8_t* data, size_t size) {
  static const char* kDigits = "0123456789abcdef";
  std::string s(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    s[2 * i] = kDigits[data[i] >> 4];
    s[2 * i + 1] = kDigits[data[i] & 15];
  }
  return s;
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.hex_digest();
}

std::string sha256_file(const std::string& path) {
  MappedFile file(path);
  Sha256 h;
  constexpr size_t kChunk = 64 << 20;
  Progress progress("sha256 " + path, file.size(), ProgressUnit::Bytes);
  for (size_t off = 0; off < file.size(); off += kChunk) {
    size_t n = std::min(kChunk, file.size() - off);
    h.update(file.data() + off, n);
    file.release(off, n);
    progress.add(n);
  }
  return h.hex_digest();
}

}  // namespace medquant::core
