#include "hub/blob.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/sha256.h"

namespace medquant::hub {

bool is_hex(std::string_view s, size_t length) {
  return s.size() == length && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
         });
}

bool hash_kind_of(std::string_view etag, HashKind* kind) {
  if (is_sha256_hex(etag)) {
    *kind = HashKind::Sha256;
    return true;
  }
  if (is_sha1_hex(etag)) {
    *kind = HashKind::GitBlobSha1;
    return true;
  }
  return false;
}

BlobHasher::BlobHasher(HashKind kind, uint64_t total_size) : kind_(kind), ctx_(EVP_MD_CTX_new()) {
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_);
  const EVP_MD* md = kind == HashKind::Sha256 ? EVP_sha256() : EVP_sha1();
  if (!ctx || EVP_DigestInit_ex(ctx, md, nullptr) != 1) fail("hash: OpenSSL initialisation failed");
  if (kind == HashKind::GitBlobSha1) {
    std::string prefix = "blob " + std::to_string(total_size);
    update(prefix.c_str(), prefix.size() + 1);  // with the terminating NUL
  }
}

BlobHasher::~BlobHasher() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void BlobHasher::update(const void* data, size_t size) {
  if (EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size) != 1)
    fail("hash: OpenSSL update failed");
}

std::string BlobHasher::hex_digest() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), out, &len) != 1)
    fail("hash: OpenSSL final failed");
  return core::to_hex(out, len);
}

std::string git_blob_sha1(std::string_view content) {
  BlobHasher h(HashKind::GitBlobSha1, content.size());
  h.update(content.data(), content.size());
  return h.hex_digest();
}

std::string hash_file(const std::string& path, HashKind kind) {
  if (kind == HashKind::Sha256) return core::sha256_file(path);
  core::MappedFile file(path);
  BlobHasher h(kind, file.size());
  constexpr size_t kChunk = 64 << 20;
  for (size_t off = 0; off < file.size(); off += kChunk) {
    size_t n = std::min(kChunk, file.size() - off);
    h.update(file.data() + off, n);
    file.release(off, n);
  }
  return h.hex_digest();
}

}  // namespace medquant::hub
