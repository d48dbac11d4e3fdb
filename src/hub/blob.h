// How the hub names file contents, and hashing them.
//
// A file in a hub repo has a git blob id: sha1("blob <size>\0" + bytes).
// Files stored with Git LFS (weights) are also named by the sha256 of their
// bytes. huggingface_hub names cache blobs by the file's ETag: the sha256 for
// LFS files (X-Linked-Etag), the git blob sha1 for the others (ETag), so a
// blob's name says which hash checks it: 64 hex digits = sha256, 40 = git sha1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace medquant::hub {

enum class HashKind { Sha256, GitBlobSha1 };

bool is_hex(std::string_view s, size_t length);
inline bool is_sha256_hex(std::string_view s) { return is_hex(s, 64); }
inline bool is_sha1_hex(std::string_view s) { return is_hex(s, 40); }

// The hash an etag/blob name is (sha256 or git blob sha1); nullopt-like false
// when it is neither (then the content can't be checked against it).
bool hash_kind_of(std::string_view etag, HashKind* kind);

std::string git_blob_sha1(std::string_view content);

// Streaming hash of a file's content, of either kind. The git blob id needs
// the total size up front.
class BlobHasher {
 public:
  BlobHasher(HashKind kind, uint64_t total_size);
  ~BlobHasher();
  BlobHasher(const BlobHasher&) = delete;
  BlobHasher& operator=(const BlobHasher&) = delete;
  void update(const void* data, size_t size);
  std::string hex_digest();  // finishes
  HashKind kind() const { return kind_; }

 private:
  HashKind kind_;
  void* ctx_;  // EVP_MD_CTX*
};

// Hash of a whole file of the given kind (read through mmap).
std::string hash_file(const std::string& path, HashKind kind);

}  // namespace medquant::hub
