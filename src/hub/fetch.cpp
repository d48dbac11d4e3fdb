#include "hub/fetch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mapped_file.h"
#include "core/progress_group.h"
#include "hub/blob.h"
#include "hub/cache.h"
#include "hub/glob.h"

namespace medquant::hub {
namespace fs = std::filesystem;
namespace {

// Keeps this much free beyond the files themselves.
constexpr uint64_t kDiskMargin = 64ull << 20;

struct Job {
  std::string path;
  std::string etag;
  HashKind kind = HashKind::Sha256;
  uint64_t size = 0;
  uint64_t partial = 0;  // bytes of an earlier attempt already on disk
};

std::string kind_name(HashKind k) { return k == HashKind::Sha256 ? "sha256" : "git blob sha1"; }

uint64_t file_size_or_zero(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size)
                                                                : 0;
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// An open blobs/<etag>.incomplete file and the hash of its content so far.
class PartialFile {
 public:
  PartialFile(std::string path, HashKind kind, uint64_t size)
      : path_(std::move(path)), kind_(kind), size_(size) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot open: {}", path_, std::strerror(errno));
    struct stat st;
    if (::fstat(fd_, &st) != 0) fail("{}: cannot stat: {}", path_, std::strerror(errno));
    have_ = static_cast<uint64_t>(st.st_size);
    if (have_ > size_) {
      restart();
      return;
    }
    hasher_ = std::make_unique<BlobHasher>(kind_, size_);
    // The earlier bytes are part of the hash: read them back once.
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < have_;) {
      ssize_t n = ::pread(fd_, buf.data(), std::min<uint64_t>(buf.size(), have_ - off),
                          static_cast<off_t>(off));
      if (n <= 0) fail("{}: read failed at offset {}: {}", path_, off, std::strerror(errno));
      hasher_->update(buf.data(), static_cast<size_t>(n));
      off += static_cast<uint64_t>(n);
    }
  }
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  uint64_t have() const { return have_; }
  void restart() {
    if (::ftruncate(fd_, 0) != 0) fail("{}: cannot truncate: {}", path_, std::strerror(errno));
    have_ = 0;
    hasher_ = std::make_unique<BlobHasher>(kind_, size_);
  }
  void append(const char* data, size_t n) {
    for (size_t done = 0; done < n;) {
      ssize_t w = ::pwrite(fd_, data + done, n - done, static_cast<off_t>(have_ + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("{}: write failed: {}", path_, std::strerror(errno));
      }
      done += static_cast<size_t>(w);
    }
    hasher_->update(data, n);
    have_ += n;
  }
  // fsyncs and closes; returns the content's hash.
  std::string finish() {
    if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
    return hasher_->hex_digest();
  }
  void discard() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }

 private:
  std::string path_;
  HashKind kind_;
  uint64_t size_;
  int fd_ = -1;
  uint64_t have_ = 0;
  std::unique_ptr<BlobHasher> hasher_;
};

class Fetcher {
 public:
  Fetcher(const FetchOptions& o, const HubApi& api, const HubCache& cache, std::string commit,
          core::ProgressGroup& progress)
      : o_(o), api_(api), cache_(cache), commit_(std::move(commit)), progress_(progress) {}

  // Downloads, checks and links one file. Returns the bytes that came over the wire.
  uint64_t download(const Job& job, HttpClient& http, size_t total_bar) {
    FileLock lock(cache_.lock_path(job.etag), [&] {
      progress_.message(fmt::format("{}: waiting for another process downloading the same blob",
                                    job.path));
    });
    const std::string blob = cache_.blob_path(job.etag);
    if (fs::exists(blob)) {  // another process finished it while we waited
      cache_.link_pointer(commit_, job.path, job.etag);
      return 0;
    }
    const std::string url = api_.resolve_url(o_.repo_id, commit_, job.path);
    auto part = std::make_unique<PartialFile>(cache_.incomplete_path(job.etag), job.kind, job.size);
    const bool resumed = part->have() > 0;
    const size_t bar = progress_.add(job.path, job.size);
    progress_.set_done(bar, part->have());
    uint64_t wire = 0;
    try {
      transfer(job, url, http, *part, bar, total_bar, wire);
      std::string got = part->finish();
      if (got != job.etag && resumed) {
        // The bytes kept from an earlier run may be what's wrong: once, start over.
        progress_.message(fmt::format("warning: {}: {} mismatch after resuming; downloading again "
                                      "from the start",
                                      job.path, kind_name(job.kind)));
        part->discard();
        part = std::make_unique<PartialFile>(cache_.incomplete_path(job.etag), job.kind, job.size);
        progress_.set_done(bar, 0);
        transfer(job, url, http, *part, bar, total_bar, wire);
        got = part->finish();
      }
      if (got != job.etag) {
        part->discard();
        fail("{}: {} mismatch: expected {}, got {} ({} bytes); the download was discarded", url,
             kind_name(job.kind), job.etag, got, job.size);
      }
    } catch (...) {
      progress_.remove(bar, false);
      throw;
    }
    if (::rename(cache_.incomplete_path(job.etag).c_str(), blob.c_str()) != 0)
      fail("{}: cannot move the download into place: {}", blob, std::strerror(errno));
    fsync_dir(fs::path(blob).parent_path().string());
    cache_.link_pointer(commit_, job.path, job.etag);
    progress_.remove(bar, true);
    return wire;
  }

 private:
  // Brings `part` to job.size bytes, resuming and retrying as needed.
  void transfer(const Job& job, const std::string& url, HttpClient& http, PartialFile& part,
                size_t bar, size_t total_bar, uint64_t& wire) {
    // An attempt that got the file further than ever before resets the retry
    // count; one that only repeats bytes (a server ignoring Range) does not.
    uint64_t high_water = part.have();
    auto advanced = [&] {
      bool a = part.have() > high_water;
      high_water = std::max(high_water, part.have());
      return a;
    };
    api_.with_retries(
        job.path,
        [&] {
          if (part.have() == job.size) return;
          HttpRequest req;
          req.url = url;
          req.follow_redirects = true;
          req.headers = api_.request_headers();
          req.stall_timeout = api_.settings().stall_timeout;
          const uint64_t asked_from = part.have();
          if (asked_from > 0) req.headers.push_back(fmt::format("Range: bytes={}-", asked_from));
          req.on_response = [&](long status, const std::vector<HttpHeaders>& hops) {
            check_headers(job, url, hops.front());
            if (status == 206) {
              auto range = parse_content_range(hops.back().get("Content-Range").value_or(""));
              if (!range || range->first != asked_from) {
                part.restart();  // not the bytes we asked for: start clean next time
                progress_.set_done(bar, 0);
                throw RetryableError(fmt::format("{}: 206 answer with Content-Range '{}' for a "
                                                 "request from byte {}",
                                                 url, hops.back().get("Content-Range").value_or(""),
                                                 asked_from),
                                     std::nullopt, false);
              }
            } else if (part.have() > 0) {
              part.restart();  // the server ignored Range: the whole file comes again
              progress_.set_done(bar, 0);
            }
            return true;
          };
          req.on_body = [&](const char* data, size_t n) {
            if (part.have() + n > job.size)
              fail("{}: the server sent more than the {} bytes the file list gives", url, job.size);
            part.append(data, n);
            wire += n;
            progress_.advance(bar, n);
            progress_.advance(total_bar, n);
            return true;
          };
          HttpResponse r;
          try {
            r = http.perform(req);
          } catch (const TransportError& e) {
            throw TransportError(e.what(), e.curl_code(), advanced() ? 1 : 0);
          }
          if (r.status == 416 && part.have() > 0) {
            part.restart();
            progress_.set_done(bar, 0);
            throw RetryableError(fmt::format("{}: 416 Range Not Satisfiable from byte {}", url,
                                             asked_from),
                                 std::nullopt, false);
          }
          if ((r.status == 401 || r.status == 403) && r.hops.size() > 1)
            // Refused by the file server after the hub's redirect: a signed link that
            // expired; the next attempt asks the hub for a fresh one.
            throw RetryableError(fmt::format("{}: HTTP {} from the file server (an expired download "
                                             "link?)",
                                             r.url, r.status),
                                 std::nullopt, false);
          if (r.status < 200 || r.status >= 300) api_.fail_status(r, o_.repo_id, commit_, job.path);
          check_headers(job, url, r.first());
          if (part.have() < job.size)
            throw RetryableError(fmt::format("{}: the body ended after {} of {} bytes", url,
                                             part.have(), job.size),
                                 std::nullopt, advanced());
        },
        [&](const std::string& m) { progress_.message("warning: " + m); });
  }

  // The resolve answer must describe the file the file list promised.
  void check_headers(const Job& job, const std::string& url, const HttpHeaders& h) const {
    if (auto c = h.get("X-Repo-Commit"); c && !c->empty() && *c != commit_)
      fail("{}: the server answered for commit {}, not {}", url, *c, commit_);
    if (auto linked = h.get("X-Linked-Etag")) {
      if (normalize_etag(*linked) != job.etag)
        fail("{}: X-Linked-Etag {} disagrees with the file list's {}", url, normalize_etag(*linked),
             job.etag);
    } else if (job.kind == HashKind::GitBlobSha1) {
      if (auto e = h.get("ETag"); e && is_sha1_hex(normalize_etag(*e)) && normalize_etag(*e) != job.etag)
        fail("{}: ETag {} disagrees with the file list's {}", url, normalize_etag(*e), job.etag);
    }
  }

  const FetchOptions& o_;
  const HubApi& api_;
  const HubCache& cache_;
  std::string commit_;
  core::ProgressGroup& progress_;
};

std::string list_names(const std::vector<std::string>& names, size_t max = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max) s += fmt::format(", ... ({} in all)", names.size());
  return s;
}

bool has_glob_chars(const std::string& p) {
  return p.find_first_of("*?[") != std::string::npos || (!p.empty() && p.back() == '/');
}

// Copies (or links) the fetched files into a plain folder, with the metadata
// huggingface_hub keeps for such folders.
void export_local_dir(const FetchOptions& o, const HubCache& cache, const std::string& commit,
                      const std::vector<FetchedFile>& files, const std::optional<Tree>& tree) {
  const std::string& dir = *o.local_dir;
  uint64_t need = 0;
  for (const auto& f : files) {
    auto meta = read_local_dir_metadata(dir, f.path);
    if (!(meta && meta->second == f.etag && fs::exists(fs::path(dir) / f.path)))
      need += o.local_dir_symlinks ? 0 : f.size;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create folder: {}", dir, ec.message());
  if (need > 0 && free_disk_space(dir) < need + kDiskMargin)
    fail("{}: not enough free disk space to copy the files: {} needed, {} free", dir,
         core::human_bytes(need), core::human_bytes(free_disk_space(dir)));
  core::Progress progress("copy to " + dir, need, core::ProgressUnit::Bytes);
  for (const auto& f : files) {
    fs::path dest = fs::path(dir) / f.path;
    auto meta = read_local_dir_metadata(dir, f.path);
    bool is_link = fs::is_symlink(fs::symlink_status(dest, ec));
    if (meta && meta->second == f.etag && fs::exists(dest) && is_link == o.local_dir_symlinks)
      continue;  // already there, same content
    fs::create_directories(dest.parent_path(), ec);
    if (ec) fail("{}: cannot create folder: {}", dest.parent_path().string(), ec.message());
    const std::string src = cache.pointer_path(commit, f.path);
    const fs::path blob = fs::canonical(src, ec);
    if (ec) fail("{}: cannot resolve the cached file: {}", src, ec.message());
    if (o.local_dir_symlinks) {
      make_symlink_atomic(blob.string(), dest.string());
    } else {
      core::MappedFile in(blob.string());
      core::AtomicFile out(dest.string());
      constexpr size_t kChunk = 16 << 20;
      for (size_t off = 0; off < in.size(); off += kChunk) {
        size_t n = std::min(kChunk, in.size() - off);
        out.write(in.data() + off, n);
        in.release(off, n);
        progress.add(n);
      }
      out.commit();
    }
    write_local_dir_metadata(dir, f.path, commit, f.etag);
  }
  if (tree) write_tree((fs::path(dir) / ".cache" / "huggingface").string(), commit, *tree);
}

FetchResult fetch_offline(const FetchOptions& o, const HubCache& cache, const std::string& why) {
  auto commit = cache.resolve_offline(o.revision);
  if (!commit)
    fail("{}@{}: not in the cache {} ({}); fetch it once with the hub reachable", o.repo_id,
         o.revision, cache.repo_dir(), why);
  FetchResult res;
  res.commit = *commit;
  res.snapshot_dir = cache.snapshot_dir(*commit);
  res.offline = true;
  auto tree = cache.read_tree(*commit);
  std::vector<std::string> candidates;
  if (tree) {
    for (const auto& [p, e] : *tree) candidates.push_back(p);
  } else {
    candidates = cache.snapshot_files(*commit);
  }
  std::vector<std::string> missing;
  for (const auto& p : candidates) {
    if (!path_selected(p, o.include, o.exclude)) continue;
    const std::string ptr = cache.pointer_path(*commit, p);
    if (!fs::exists(ptr)) {  // follows the symlink: a dangling one counts as missing
      missing.push_back(p);
      continue;
    }
    FetchedFile f;
    f.path = p;
    f.size = file_size_or_zero(ptr);
    if (auto e = cache.pointer_etag(*commit, p)) f.etag = *e;
    else if (tree) f.etag = tree->at(p).etag();
    res.files.push_back(std::move(f));
  }
  if (!missing.empty())
    fail("{}@{}: the cached snapshot {} lacks {} of the requested files ({}), and {}; fetch them "
         "with the hub reachable",
         o.repo_id, o.revision, res.snapshot_dir, missing.size(), list_names(missing), why);
  if (res.files.empty())
    fail("{}@{}: no file in the cached snapshot {} matches the --include/--exclude patterns ({})",
         o.repo_id, o.revision, res.snapshot_dir, why);
  if (o.local_dir) {
    export_local_dir(o, cache, *commit, res.files, tree);
    res.local_dir = *o.local_dir;
  }
  return res;
}

}  // namespace

uint64_t free_disk_space(const std::string& dir) {
  fs::path p = fs::absolute(dir);
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec) && p != p.parent_path()) p = p.parent_path();
  struct statvfs st;
  if (::statvfs(p.c_str(), &st) != 0) fail("{}: cannot read free disk space: {}", p.string(), std::strerror(errno));
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
}

FetchResult fetch(const FetchOptions& o, const HubSettings& settings) {
  validate_repo_id(o.repo_id);
  // A revision names a file under refs/: no way out of the cache folder.
  if (!is_safe_relative_path(o.revision))
    fail("{}: '{}' is not a valid revision (a branch, tag or commit sha)", o.repo_id, o.revision);
  HubCache cache(settings.cache_dir, o.repo_id);
  if (settings.offline) return fetch_offline(o, cache, "HF_HUB_OFFLINE is set");

  core::ProgressGroup progress;
  HubApi api(settings);
  api.warn = [&](const std::string& m) { progress.message("warning: " + m); };
  HttpClient http;
  RepoInfo info;
  try {
    info = api.model_info(http, o.repo_id, o.revision);
  } catch (const TransportError& e) {
    // The hub can't be reached at all: a cached snapshot still serves (as huggingface_hub does).
    if (!cache.resolve_offline(o.revision)) throw;
    progress.message(fmt::format("warning: {}; using the cached snapshot", e.what()));
    return fetch_offline(o, cache, "the hub could not be reached");
  } catch (const RetryableError& e) {
    if (!cache.resolve_offline(o.revision)) throw;
    progress.message(fmt::format("warning: {}; using the cached snapshot", e.what()));
    return fetch_offline(o, cache, "the hub did not answer");
  }

  FetchResult res;
  res.commit = info.sha;
  res.snapshot_dir = cache.snapshot_dir(info.sha);

  std::vector<const Sibling*> selected;
  for (const auto& s : info.siblings)
    if (path_selected(s.path, o.include, o.exclude)) selected.push_back(&s);
  cache.ensure_layout();
  for (const auto& pattern : o.include) {
    bool any = std::any_of(info.siblings.begin(), info.siblings.end(),
                           [&](const Sibling& s) { return glob_match(pattern, s.path); });
    if (any) continue;
    progress.message(fmt::format("warning: {}@{}: no file matches --include '{}'", o.repo_id,
                                 o.revision, pattern));
    if (!has_glob_chars(pattern) && is_safe_relative_path(pattern))
      cache.mark_no_exist(info.sha, pattern);  // as huggingface_hub records a 404
  }
  if (selected.empty()) {
    std::vector<std::string> names;
    for (const auto& s : info.siblings) names.push_back(s.path);
    fail("{}@{}: no file matches the --include/--exclude patterns (the repo has: {})", o.repo_id,
         o.revision, list_names(names));
  }

  // What each file is, and whether it is already cached.
  std::vector<Job> jobs;
  for (const Sibling* s : selected) {
    Job job;
    job.path = s->path;
    job.etag = s->etag();
    std::optional<uint64_t> size = s->file_size();
    if (job.etag.empty() || !size) {  // a listing without blob ids: ask the file itself
      FileMetadata m = api.file_metadata(http, o.repo_id, info.sha, s->path);
      job.etag = m.etag;
      size = m.size;
    }
    if (!size) fail("{}: {}: the hub gives no size for this file", o.repo_id, s->path);
    job.size = *size;
    if (!hash_kind_of(job.etag, &job.kind))
      fail("{}: {}: etag '{}' is neither a sha256 nor a git blob sha1, so the download can't be "
           "verified",
           o.repo_id, s->path, job.etag);
    FetchedFile f{job.path, job.etag, job.size, false};
    const bool have_blob = fs::exists(cache.blob_path(job.etag));
    if (have_blob) {
      if (cache.pointer_etag(info.sha, job.path) != job.etag)
        cache.link_pointer(info.sha, job.path, job.etag);
    } else {
      job.partial = std::min(job.size, file_size_or_zero(cache.incomplete_path(job.etag)));
      jobs.push_back(job);
      f.downloaded = true;
    }
    res.files.push_back(std::move(f));
  }

  uint64_t need = 0;
  for (const auto& j : jobs) need += j.size - j.partial;
  if (need > 0) {
    const std::string blobs = (fs::path(cache.repo_dir()) / "blobs").string();
    const uint64_t free_bytes = free_disk_space(blobs);
    if (free_bytes < need + kDiskMargin)
      fail("{}: not enough free disk space for {}@{}: {} to download, {} free", blobs, o.repo_id,
           o.revision, core::human_bytes(need), core::human_bytes(free_bytes));
  }

  if (!jobs.empty()) {
    // Biggest first, so the long downloads overlap with the many small ones.
    std::sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) { return a.size > b.size; });
    core::log_verbose("{}@{} ({}): downloading {} file(s), {}", o.repo_id, o.revision, info.sha,
                      jobs.size(), core::human_bytes(need));
    const size_t total_bar =
        progress.add(fmt::format("total ({} files)", jobs.size()), need, core::ProgressUnit::Bytes);
    Fetcher fetcher(o, api, cache, info.sha, progress);
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> wire{0};
    std::mutex errors_mutex;
    std::vector<std::string> errors;
    auto worker = [&] {
      std::unique_ptr<HttpClient> client;
      for (size_t i = next++; i < jobs.size(); i = next++) {
        try {
          if (!client) client = std::make_unique<HttpClient>();
          wire += fetcher.download(jobs[i], *client, total_bar);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(errors_mutex);
          errors.push_back(e.what());
        }
      }
    };
    const size_t n_threads = std::clamp<size_t>(o.jobs, 1, jobs.size());
    std::vector<std::thread> threads;
    for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    progress.remove(total_bar, true);
    res.bytes_downloaded = wire;
    if (errors.size() == 1) fail("{}", errors[0]);
    if (!errors.empty()) {
      std::string all;
      for (const auto& e : errors) all += "\n  " + e;
      fail("{}@{}: {} of {} downloads failed:{}", o.repo_id, o.revision, errors.size(),
           jobs.size(), all);
    }
  }

  // Recorded only now, so a ref never names a commit whose requested files failed.
  auto tree = tree_from_siblings(info.siblings);
  if (tree) cache.write_tree(info.sha, *tree);
  cache.write_ref(o.revision, info.sha);
  if (o.local_dir) {
    export_local_dir(o, cache, info.sha, res.files, tree);
    res.local_dir = *o.local_dir;
  }
  return res;
}

}  // namespace medquant::hub
