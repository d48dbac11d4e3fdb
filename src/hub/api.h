// The Hugging Face Hub HTTP API, as far as downloading a model needs it.
//
//   GET  {endpoint}/api/models/{repo}/revision/{rev}?blobs=true
//        -> {"sha": "<40-hex commit>", "siblings": [{"rfilename": "config.json",
//            "size": 554, "blobId": "<git sha1>", "lfs": {"sha256": "<64-hex>",
//            "size": 123, "pointerSize": 134}}, ...]}   ("lfs" only for LFS files)
//   HEAD/GET {endpoint}/{repo}/resolve/{rev}/{path}
//        regular file: 200, ETag: "<git blob sha1>", X-Repo-Commit, Content-Length
//        LFS file:     302 to a CDN URL, X-Linked-Etag: "<sha256>", X-Linked-Size,
//                      X-Repo-Commit; the CDN answers Range requests (206)
//   errors: 401 (no/bad token: gated or private repo), 403 (token without
//        access: gated licence not accepted), 404 with X-Error-Code RepoNotFound /
//        RevisionNotFound / EntryNotFound; X-Error-Message carries the hub's words.
//
// Settings come from the environment as huggingface_hub reads them:
// HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_TOKEN_PATH, HF_HUB_OFFLINE,
// HF_HUB_DOWNLOAD_TIMEOUT.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "hub/http.h"

namespace medquant::hub {

inline constexpr std::string_view kDefaultEndpoint = "https://huggingface.co";

struct HubSettings {
  std::string endpoint{kDefaultEndpoint};  // no trailing '/'
  std::string cache_dir;                   // the "hub" folder: models--org--name/ inside
  std::optional<std::string> token;
  bool offline = false;
  std::chrono::seconds stall_timeout{30};
  int max_retries = 5;        // after the first attempt
  double backoff_base = 1.0;  // seconds; doubled per retry, capped at backoff_max
  double backoff_max = 30.0;
  double max_retry_after = 300.0;  // a longer Retry-After is reported, not waited for

  static HubSettings from_environment();
};

// Where huggingface_hub keeps its cache, from HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME / HOME.
std::string default_cache_dir();
bool env_truthy(const char* name);  // "1", "true", "yes", "on" (any case)

// "org/name" or "name", with the characters and rules the hub allows.
void validate_repo_id(std::string_view repo_id);
// A file name from a listing is used as a path under the cache: reject
// absolute paths, ".." and empty parts.
bool is_safe_relative_path(std::string_view path);

struct Sibling {
  std::string path;
  std::optional<uint64_t> size;
  std::string blob_id;                    // git blob sha1, "" if not listed
  std::optional<std::string> lfs_sha256;  // for LFS files
  std::optional<uint64_t> lfs_size;

  bool is_lfs() const { return lfs_sha256.has_value(); }
  // The name huggingface_hub gives the cache blob: sha256 for LFS, else the git blob id.
  std::string etag() const { return lfs_sha256 ? *lfs_sha256 : blob_id; }
  std::optional<uint64_t> file_size() const { return lfs_size ? lfs_size : size; }
};

struct RepoInfo {
  std::string sha;  // commit of the revision
  std::vector<Sibling> siblings;
};

// What a HEAD on resolve/ tells about one file.
struct FileMetadata {
  std::string commit;
  std::string etag;  // normalised: X-Linked-Etag, else ETag
  std::optional<uint64_t> size;
  bool lfs = false;  // answered with a redirect + X-Linked-Etag
};

// An HTTP status or transport failure that is worth another attempt.
class RetryableError : public Error {
 public:
  RetryableError(const std::string& message, std::optional<double> retry_after, bool progressed)
      : Error(message), retry_after_(retry_after), progressed_(progressed) {}
  std::optional<double> retry_after() const { return retry_after_; }
  bool progressed() const { return progressed_; }  // some bytes arrived: the count starts again

 private:
  std::optional<double> retry_after_;
  bool progressed_;
};

bool is_retryable_status(long status);  // 408, 429, 5xx

// Delay before retry number `retry` (1-based): Retry-After when given, else
// exponential backoff.
double retry_delay(const HubSettings& s, int retry, std::optional<double> retry_after);

class HubApi {
 public:
  explicit HubApi(HubSettings settings);
  const HubSettings& settings() const { return settings_; }

  std::string model_info_url(std::string_view repo_id, std::string_view revision) const;
  std::string resolve_url(std::string_view repo_id, std::string_view revision,
                          std::string_view path) const;
  // User-Agent, and Authorization when there is a token.
  std::vector<std::string> request_headers() const;

  RepoInfo model_info(HttpClient& http, const std::string& repo_id,
                      const std::string& revision) const;
  FileMetadata file_metadata(HttpClient& http, const std::string& repo_id,
                             const std::string& revision, const std::string& path) const;

  // Runs `attempt` until it returns, retrying RetryableError and TransportError
  // with backoff; `warn` hears about each retry. Other errors pass through.
  void with_retries(const std::string& what, const std::function<void()>& attempt,
                    const std::function<void(const std::string&)>& warn) const;

  // Throws the error a non-2xx answer means: a message for 401/403/404 that
  // says what to do, RetryableError for 408/429/5xx.
  [[noreturn]] void fail_status(const HttpResponse& r, std::string_view repo_id,
                                std::string_view revision, std::string_view path) const;

  std::function<void(const std::string&)> warn;  // retry notices (default: log_warning)

 private:
  HubSettings settings_;
};

}  // namespace medquant::hub
