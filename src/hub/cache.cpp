#include "hub/cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "hub/blob.h"

namespace medquant::hub {
namespace fs = std::filesystem;
namespace {

void make_dirs(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create folder: {}", dir.string(), ec.message());
}

constexpr std::string_view kCacheDirTag =
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag (https://bford.info/cachedir/).\n"
    "# It marks the Hugging Face Hub cache, which can be downloaded again.\n";

}  // namespace

std::string repo_folder_name(std::string_view repo_id) {
  std::string out = "models--";
  for (char c : repo_id) {
    if (c == '/')
      out += "--";
    else
      out += c;
  }
  return out;
}

HubCache::HubCache(std::string cache_dir, std::string repo_id)
    : cache_dir_(std::move(cache_dir)),
      repo_id_(std::move(repo_id)),
      repo_dir_((fs::path(cache_dir_) / repo_folder_name(repo_id_)).string()) {}

std::string HubCache::blob_path(std::string_view etag) const {
  return (fs::path(repo_dir_) / "blobs" / std::string(etag)).string();
}

std::string HubCache::incomplete_path(std::string_view etag) const {
  return blob_path(etag) + ".incomplete";
}

std::string HubCache::lock_path(std::string_view etag) const {
  return (fs::path(cache_dir_) / ".locks" / repo_folder_name(repo_id_) /
          (std::string(etag) + ".lock"))
      .string();
}

std::string HubCache::snapshot_dir(std::string_view commit) const {
  return (fs::path(repo_dir_) / "snapshots" / std::string(commit)).string();
}

std::string HubCache::pointer_path(std::string_view commit, std::string_view path) const {
  return (fs::path(snapshot_dir(commit)) / std::string(path)).string();
}

void HubCache::ensure_layout() const {
  for (const char* sub : {"blobs", "snapshots", "refs"}) make_dirs(fs::path(repo_dir_) / sub);
  make_dirs(fs::path(cache_dir_) / ".locks" / repo_folder_name(repo_id_));
  fs::path tag = fs::path(cache_dir_) / "CACHEDIR.TAG";
  if (!fs::exists(tag)) core::write_file_atomic(tag.string(), kCacheDirTag);
}

std::optional<std::string> HubCache::read_ref(std::string_view revision) const {
  fs::path p = fs::path(repo_dir_) / "refs" / std::string(revision);
  if (!fs::is_regular_file(p)) return std::nullopt;
  std::string s = core::read_text_file(p.string());
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (!is_sha1_hex(s)) fail("{}: not a commit sha: '{}'", p.string(), s);
  return s;
}

void HubCache::write_ref(std::string_view revision, std::string_view commit) const {
  if (revision == commit) return;
  fs::path p = fs::path(repo_dir_) / "refs" / std::string(revision);
  make_dirs(p.parent_path());  // "refs/pr/1" nests, as in huggingface_hub
  if (auto cur = read_ref(revision); cur && *cur == commit) return;
  core::write_file_atomic(p.string(), commit);  // no newline, like huggingface_hub
}

std::optional<std::string> HubCache::resolve_offline(std::string_view revision) const {
  if (is_sha1_hex(revision) && fs::is_directory(snapshot_dir(revision))) return std::string(revision);
  auto ref = read_ref(revision);
  if (ref && fs::is_directory(snapshot_dir(*ref))) return ref;
  return std::nullopt;
}

void make_symlink_atomic(const std::string& target, const std::string& link) {
  fs::path link_path(link);
  make_dirs(link_path.parent_path());
  std::string tmp = fmt::format("{}.tmp.{}", link, ::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0)
    fail("{}: cannot create symlink: {}", tmp, std::strerror(errno));
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail("{}: cannot move symlink into place: {}", link, std::strerror(err));
  }
}

void HubCache::link_pointer(std::string_view commit, std::string_view path,
                            std::string_view etag) const {
  // snapshots/<commit>/a/b/file -> ../../../blobs/<etag>
  std::string target = "../../";
  for (char c : path)
    if (c == '/') target += "../";
  target += "blobs/" + std::string(etag);
  make_symlink_atomic(target, pointer_path(commit, path));
}

std::optional<std::string> HubCache::pointer_etag(std::string_view commit,
                                                  std::string_view path) const {
  fs::path p = pointer_path(commit, path);
  std::error_code ec;
  if (!fs::is_symlink(fs::symlink_status(p, ec))) return std::nullopt;
  fs::path target = fs::read_symlink(p, ec);
  if (ec) return std::nullopt;
  if (target.parent_path().filename() != "blobs") return std::nullopt;
  return target.filename().string();
}

std::vector<std::string> HubCache::snapshot_files(std::string_view commit) const {
  std::vector<std::string> out;
  fs::path root = snapshot_dir(commit);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code ec2;
    if (it->is_directory(ec2)) continue;
    out.push_back(it->path().lexically_relative(root).generic_string());  // no symlink resolution
  }
  std::sort(out.begin(), out.end());
  return out;
}

void HubCache::mark_no_exist(std::string_view commit, std::string_view path) const {
  fs::path p = fs::path(repo_dir_) / ".no_exist" / std::string(commit) / std::string(path);
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) return;  // only a hint for other tools; never worth failing over
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) ::close(fd);
}

std::optional<Tree> HubCache::read_tree(std::string_view commit) const {
  return hub::read_tree(repo_dir_, std::string(commit));
}

void HubCache::write_tree(std::string_view commit, const Tree& tree) const {
  hub::write_tree(repo_dir_, std::string(commit), tree);
}

void write_tree(const std::string& tree_dir, const std::string& commit, const Tree& tree) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& [path, e] : tree) {
    nlohmann::json j{{"size", e.size}, {"blob_id", e.blob_id}};
    if (e.lfs_sha256) {
      j["lfs_sha256"] = *e.lfs_sha256;
      j["lfs_size"] = e.lfs_size.value_or(e.size);
    }
    files[path] = std::move(j);
  }
  nlohmann::json doc{{"format_version", 1}, {"files", std::move(files)}};
  fs::path p = fs::path(tree_dir) / "trees" / (commit + ".json");
  make_dirs(p.parent_path());
  core::write_file_atomic(p.string(), doc.dump(1));
}

std::optional<Tree> read_tree(const std::string& tree_dir, const std::string& commit) {
  fs::path p = fs::path(tree_dir) / "trees" / (commit + ".json");
  if (!fs::is_regular_file(p)) return std::nullopt;
  auto j = nlohmann::json::parse(core::read_text_file(p.string()), nullptr, false);
  auto bad = [&](std::string_view why) -> std::optional<Tree> {
    fail("{}: not a huggingface_hub tree listing: {}", p.string(), why);
  };
  if (!j.is_object() || j.value("format_version", 0) != 1 || !j.contains("files") ||
      !j["files"].is_object())
    return bad("expected {\"format_version\": 1, \"files\": {...}}");
  Tree tree;
  for (const auto& [path, e] : j["files"].items()) {
    if (!is_safe_relative_path(path)) return bad(fmt::format("unsafe file name '{}'", path));
    if (!e.is_object() || !e.contains("size") || !e["size"].is_number_unsigned() ||
        !e.contains("blob_id") || !e["blob_id"].is_string())
      return bad(fmt::format("entry '{}' lacks size or blob_id", path));
    TreeEntry t;
    t.size = e["size"].get<uint64_t>();
    t.blob_id = e["blob_id"].get<std::string>();
    if (e.contains("lfs_sha256") && e["lfs_sha256"].is_string()) {
      t.lfs_sha256 = e["lfs_sha256"].get<std::string>();
      if (e.contains("lfs_size") && e["lfs_size"].is_number_unsigned())
        t.lfs_size = e["lfs_size"].get<uint64_t>();
    }
    tree[path] = std::move(t);
  }
  return tree;
}

std::optional<Tree> tree_from_siblings(const std::vector<Sibling>& siblings) {
  Tree tree;
  for (const auto& s : siblings) {
    if (s.blob_id.empty() || !s.file_size()) return std::nullopt;
    tree[s.path] = TreeEntry{*s.file_size(), s.blob_id, s.lfs_sha256, s.lfs_size};
  }
  return tree;
}

FileLock::FileLock(const std::string& path, const std::function<void()>& on_wait) {
  make_dirs(fs::path(path).parent_path());
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot open lock file: {}", path, std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  if (errno != EWOULDBLOCK) fail("{}: cannot lock: {}", path, std::strerror(errno));
  if (on_wait) on_wait();
  while (::flock(fd_, LOCK_EX) != 0)
    if (errno != EINTR) fail("{}: cannot lock: {}", path, std::strerror(errno));
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

namespace {
fs::path local_metadata_path(const std::string& local_dir, std::string_view path) {
  return fs::path(local_dir) / ".cache" / "huggingface" / "download" /
         (std::string(path) + ".metadata");
}
}  // namespace

void write_local_dir_metadata(const std::string& local_dir, std::string_view path,
                              std::string_view commit, std::string_view etag) {
  fs::path hf = fs::path(local_dir) / ".cache" / "huggingface";
  make_dirs(hf);
  if (!fs::exists(hf / ".gitignore")) core::write_file_atomic((hf / ".gitignore").string(), "*");
  fs::path p = local_metadata_path(local_dir, path);
  make_dirs(p.parent_path());
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  core::write_file_atomic(p.string(), fmt::format("{}\n{}\n{:.3f}\n", commit, etag, now));
}

std::optional<std::pair<std::string, std::string>> read_local_dir_metadata(
    const std::string& local_dir, std::string_view path) {
  fs::path p = local_metadata_path(local_dir, path);
  if (!fs::is_regular_file(p)) return std::nullopt;
  std::string s = core::read_text_file(p.string());
  auto nl1 = s.find('\n');
  if (nl1 == std::string::npos) return std::nullopt;
  auto nl2 = s.find('\n', nl1 + 1);
  if (nl2 == std::string::npos) return std::nullopt;
  std::string commit = s.substr(0, nl1), etag = s.substr(nl1 + 1, nl2 - nl1 - 1);
  if (!is_sha1_hex(commit) || etag.empty()) return std::nullopt;
  return std::make_pair(commit, etag);
}

}  // namespace medquant::hub
