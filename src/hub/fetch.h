// `medquant fetch`: a revision of a hub model repo into the huggingface_hub
// cache (see cache.h), optionally copied into a plain folder.
//
// 1. The revision's commit and file list come from the model-info endpoint
//    (or, offline, from refs/ and trees/ in the cache).
// 2. Files matching --include/--exclude whose blob isn't cached yet are
//    downloaded, several at once, from resolve/<commit>/<path> (redirects
//    followed), into blobs/<etag>.incomplete under the blob's lock, resumed
//    with Range after a dropped connection or an interrupted run, retried
//    with backoff on connection errors, 408/429/5xx (Retry-After honoured).
// 3. Each is hashed while it streams (sha256 for LFS files, git blob sha1 for
//    the others) and checked against its etag; only then is it renamed to
//    blobs/<etag> and linked from snapshots/<commit>/<path>. A mismatch is an
//    error and leaves nothing under a final name.
// 4. refs/<revision> and trees/<commit>.json are written when all succeeded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hub/api.h"

namespace medquant::hub {

struct FetchOptions {
  std::string repo_id;
  std::string revision = "main";
  std::vector<std::string> include;  // globs; empty = everything
  std::vector<std::string> exclude;
  std::optional<std::string> local_dir;  // also copy (or link) the files here
  bool local_dir_symlinks = false;       // link into the cache instead of copying
  size_t jobs = 4;                       // files downloaded at once
};

struct FetchedFile {
  std::string path;  // in the repo
  std::string etag;
  uint64_t size = 0;
  bool downloaded = false;  // false: it was already in the cache
};

struct FetchResult {
  std::string commit;
  std::string snapshot_dir;
  std::string local_dir;  // "" without --local-dir
  bool offline = false;   // served from the cache without asking the hub
  std::vector<FetchedFile> files;
  uint64_t bytes_downloaded = 0;
};

FetchResult fetch(const FetchOptions& options, const HubSettings& settings);

// Free bytes for new files in `dir` (the nearest existing parent is asked).
uint64_t free_disk_space(const std::string& dir);

}  // namespace medquant::hub
