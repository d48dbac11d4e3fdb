// The huggingface_hub cache, laid out exactly as huggingface_hub lays it out
// so either tool finds what the other fetched:
//
//   <cache>/                                   ($HF_HUB_CACHE, default $HF_HOME/hub)
//     CACHEDIR.TAG
//     .locks/models--org--name/<etag>.lock     flock()ed while a blob is written
//     models--org--name/
//       blobs/<etag>                           file contents, named by hash:
//                                              sha256 (LFS) or git blob sha1 (others)
//       blobs/<etag>.incomplete                a download in progress (resumable; only
//                                              written under the lock)
//       snapshots/<commit>/<path>              relative symlink -> ../../blobs/<etag>
//       refs/<revision>                        text file: the commit a branch/tag pointed to
//       trees/<commit>.json                    the commit's full file list with hashes
//                                              (huggingface_hub's tree cache, format 1)
//       .no_exist/<commit>/<path>              empty file: <path> is not in that commit
//
// A blob appears under its final name only after its hash was checked; a
// snapshot entry appears only after its blob. A plain --local-dir copy is
// described by <dir>/.cache/huggingface/download/<path>.metadata
// ("<commit>\n<etag>\n<unix time>\n") and <dir>/.cache/huggingface/trees/.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hub/api.h"

namespace medquant::hub {

// "google/medgemma-4b-it" -> "models--google--medgemma-4b-it"
std::string repo_folder_name(std::string_view repo_id);

// One entry of trees/<commit>.json.
struct TreeEntry {
  uint64_t size = 0;
  std::string blob_id;
  std::optional<std::string> lfs_sha256;
  std::optional<uint64_t> lfs_size;
  std::string etag() const { return lfs_sha256 ? *lfs_sha256 : blob_id; }
};
using Tree = std::map<std::string, TreeEntry>;  // by path in the repo

// Tree file I/O (tree_dir holds trees/): atomic write; nullopt when absent.
void write_tree(const std::string& tree_dir, const std::string& commit, const Tree& tree);
std::optional<Tree> read_tree(const std::string& tree_dir, const std::string& commit);
// The tree of a file list; nullopt when the list lacks the blob ids or sizes.
std::optional<Tree> tree_from_siblings(const std::vector<Sibling>& siblings);

class HubCache {
 public:
  HubCache(std::string cache_dir, std::string repo_id);

  const std::string& cache_dir() const { return cache_dir_; }
  const std::string& repo_dir() const { return repo_dir_; }
  std::string blob_path(std::string_view etag) const;
  std::string incomplete_path(std::string_view etag) const;
  std::string lock_path(std::string_view etag) const;
  std::string snapshot_dir(std::string_view commit) const;
  std::string pointer_path(std::string_view commit, std::string_view path) const;

  // Creates blobs/, snapshots/, refs/ and CACHEDIR.TAG as needed.
  void ensure_layout() const;

  std::optional<std::string> read_ref(std::string_view revision) const;
  void write_ref(std::string_view revision, std::string_view commit) const;  // atomic
  // The commit a revision means without asking the hub: a cached commit sha
  // itself, or what refs/<revision> says.
  std::optional<std::string> resolve_offline(std::string_view revision) const;

  // snapshots/<commit>/<path> -> ../../blobs/<etag> (one more ../ per folder
  // level of path), replacing any previous entry atomically.
  void link_pointer(std::string_view commit, std::string_view path, std::string_view etag) const;
  // The blob a snapshot entry points at (its name), if it is such a symlink.
  std::optional<std::string> pointer_etag(std::string_view commit, std::string_view path) const;
  // Files under snapshots/<commit>, as repo paths, sorted.
  std::vector<std::string> snapshot_files(std::string_view commit) const;

  void mark_no_exist(std::string_view commit, std::string_view path) const;

  std::optional<Tree> read_tree(std::string_view commit) const;
  void write_tree(std::string_view commit, const Tree& tree) const;

 private:
  std::string cache_dir_;
  std::string repo_id_;
  std::string repo_dir_;
};

// flock() on a lock file (the same lock huggingface_hub's filelock takes), held
// for the object's life. Waits, telling `on_wait` once, if another process holds it.
class FileLock {
 public:
  explicit FileLock(const std::string& path, const std::function<void()>& on_wait = {});
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Atomically creates (or replaces) a symlink at `link` pointing to `target`.
void make_symlink_atomic(const std::string& target, const std::string& link);

// Writes the local-dir metadata huggingface_hub reads for `path` under `local_dir`.
void write_local_dir_metadata(const std::string& local_dir, std::string_view path,
                              std::string_view commit, std::string_view etag);
// Reads it back: {commit, etag}; nullopt when absent or malformed.
std::optional<std::pair<std::string, std::string>> read_local_dir_metadata(
    const std::string& local_dir, std::string_view path);

}  // namespace medquant::hub
