#include "hub/api.h"

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/log.h"
#include "hub/blob.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif

namespace medquant::hub {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

std::string hf_home() {
  if (auto h = env("HF_HOME")) return *h;
  if (auto x = env("XDG_CACHE_HOME")) return *x + "/huggingface";
  if (auto home = env("HOME")) return *home + "/.cache/huggingface";
  return ".cache/huggingface";
}

// The hub's words about an error: X-Error-Message, else {"error": "..."} in the body.
std::string hub_detail(const HttpResponse& r) {
  std::string msg = r.headers().get("X-Error-Message").value_or("");
  if (msg.empty() && !r.body.empty()) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("error") && j["error"].is_string())
      msg = j["error"].get<std::string>();
  }
  if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
  return msg.empty() ? "" : " (hub: " + msg + ")";
}

}  // namespace

bool env_truthy(const char* name) {
  auto v = env(name);
  if (!v) return false;
  std::string s = trim(*v);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s == "1" || s == "true" || s == "yes" || s == "on";
}

std::string default_cache_dir() {
  if (auto c = env("HF_HUB_CACHE")) return *c;
  if (auto c = env("HUGGINGFACE_HUB_CACHE")) return *c;  // the older name
  return hf_home() + "/hub";
}

HubSettings HubSettings::from_environment() {
  HubSettings s;
  if (auto e = env("HF_ENDPOINT")) s.endpoint = *e;
  while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
  s.cache_dir = default_cache_dir();
  if (auto t = env("HF_TOKEN")) {
    s.token = trim(*t);
  } else if (auto t2 = env("HUGGING_FACE_HUB_TOKEN")) {
    s.token = trim(*t2);
  } else {
    std::string path = env("HF_TOKEN_PATH").value_or(hf_home() + "/token");
    std::ifstream in(path);
    std::string line;
    if (in && std::getline(in, line) && !trim(line).empty()) s.token = trim(line);
  }
  s.offline = env_truthy("HF_HUB_OFFLINE") || env_truthy("TRANSFORMERS_OFFLINE");
  if (auto t = env("HF_HUB_DOWNLOAD_TIMEOUT")) {
    char* end = nullptr;
    double secs = std::strtod(t->c_str(), &end);
    if (end == t->c_str() || secs <= 0) fail("HF_HUB_DOWNLOAD_TIMEOUT={}: not a number of seconds", *t);
    s.stall_timeout = std::chrono::seconds(std::max<long>(1, std::lround(secs)));
  }
  return s;
}

void validate_repo_id(std::string_view repo_id) {
  auto bad = [&](std::string_view why) {
    fail("'{}': not a hub repository id ({}); expected 'org/name', e.g. google/medgemma-4b-it",
         repo_id, why);
  };
  if (repo_id.empty()) bad("empty");
  auto slash = repo_id.find('/');
  if (slash != std::string_view::npos && repo_id.find('/', slash + 1) != std::string_view::npos)
    bad("more than one '/'");
  std::vector<std::string_view> parts{repo_id};
  if (slash != std::string_view::npos) parts = {repo_id.substr(0, slash), repo_id.substr(slash + 1)};
  for (std::string_view part : parts) {
    if (part.empty() || part.size() > 96) bad("a part is empty or longer than 96 characters");
    for (char c : part)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
        bad(fmt::format("character '{}' is not allowed", c));
    if (part.front() == '-' || part.front() == '.' || part.back() == '-' || part.back() == '.')
      bad("a part starts or ends with '-' or '.'");
  }
  if (repo_id.find("--") != std::string_view::npos || repo_id.find("..") != std::string_view::npos)
    bad("'--' and '..' are not allowed");
}

bool is_safe_relative_path(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.find('\\') != std::string_view::npos ||
      path.find('\0') != std::string_view::npos)
    return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

bool is_retryable_status(long status) { return status == 408 || status == 429 || status >= 500; }

double retry_delay(const HubSettings& s, int retry, std::optional<double> retry_after) {
  if (retry_after) return std::max(0.0, *retry_after);
  return std::min(s.backoff_max, s.backoff_base * std::pow(2.0, std::max(0, retry - 1)));
}

HubApi::HubApi(HubSettings settings) : settings_(std::move(settings)) {
  warn = [](const std::string& m) { core::log_warning("{}", m); };
}

std::string HubApi::model_info_url(std::string_view repo_id, std::string_view revision) const {
  return fmt::format("{}/api/models/{}/revision/{}?blobs=true", settings_.endpoint, repo_id,
                     url_encode(revision, false));
}

std::string HubApi::resolve_url(std::string_view repo_id, std::string_view revision,
                                std::string_view path) const {
  return fmt::format("{}/{}/resolve/{}/{}", settings_.endpoint, repo_id,
                     url_encode(revision, false), url_encode(path, true));
}

std::vector<std::string> HubApi::request_headers() const {
  std::vector<std::string> h{
      fmt::format("User-Agent: medquant/{}; {}", MEDQUANT_VERSION, curl_version())};
  if (settings_.token) h.push_back("Authorization: Bearer " + *settings_.token);
  return h;
}

void HubApi::fail_status(const HttpResponse& r, std::string_view repo_id, std::string_view revision,
                         std::string_view path) const {
  const std::string code = r.headers().get("X-Error-Code").value_or("");
  const std::string detail = hub_detail(r);
  const std::string page = fmt::format("{}/{}", settings_.endpoint, repo_id);
  const std::string token_hint =
      fmt::format("pass a read token with --token or the HF_TOKEN environment variable (create one "
                  "at {}/settings/tokens)",
                  settings_.endpoint);
  if (r.status == 401) {
    if (settings_.token)
      fail("{}: 401 Unauthorized{}: the token was refused. {} is gated or private: accept its "
           "licence at {} while logged in, and {}",
           r.url, detail, repo_id, page, token_hint);
    fail("{}: 401 Unauthorized{}: {} is gated or private and no token was sent: accept its licence "
         "at {} while logged in, then {}",
         r.url, detail, repo_id, page, token_hint);
  }
  if (r.status == 403)
    fail("{}: 403 Forbidden{}: the token has no access to {}. For a gated model (such as MedGemma) "
         "accept its licence at {} with the account the token belongs to, then try again",
         r.url, detail, repo_id, page);
  if (r.status == 404) {
    if (code == "RevisionNotFound")
      fail("{}: 404 Not Found{}: revision '{}' does not exist in {}", r.url, detail, revision,
           repo_id);
    if (code == "EntryNotFound")
      fail("{}: 404 Not Found{}: {} is not in {} at revision '{}'", r.url, detail, path, repo_id,
           revision);
    fail("{}: 404 Not Found{}: repository {} not found on {} (if it is private or gated, {})", r.url,
         detail, repo_id, settings_.endpoint, token_hint);
  }
  if (is_retryable_status(r.status)) {
    std::optional<double> after;
    if (auto ra = r.headers().get("Retry-After")) after = parse_retry_after(*ra, std::time(nullptr));
    throw RetryableError(fmt::format("{}: HTTP {}{}", r.url, r.status, detail), after, false);
  }
  fail("{}: unexpected HTTP status {}{}", r.url, r.status, detail);
}

void HubApi::with_retries(const std::string& what, const std::function<void()>& attempt,
                          const std::function<void(const std::string&)>& warn_fn) const {
  int retry = 0;
  for (;;) {
    std::optional<double> after;
    std::string message;
    bool progressed = false;
    int curl_code = -1;  // >= 0: the failure was below HTTP
    try {
      attempt();
      return;
    } catch (const RetryableError& e) {
      after = e.retry_after();
      message = e.what();
      progressed = e.progressed();
    } catch (const TransportError& e) {
      if (!e.transient()) throw;
      message = e.what();
      progressed = e.bytes_received() > 0;
      curl_code = e.curl_code();
    }
    // Bytes arrived before the failure: the server works, start counting again.
    retry = progressed ? 1 : retry + 1;
    std::string final_message;
    if (retry > settings_.max_retries)
      final_message = fmt::format("{} (gave up after {} attempts)", message, settings_.max_retries + 1);
    else if (after && *after > settings_.max_retry_after)
      final_message = fmt::format("{}: the server asks to retry after {:.0f} s; try again later",
                                  message, *after);
    if (!final_message.empty()) {
      // Same type as the cause, so callers can tell "unreachable" from a refusal.
      if (curl_code >= 0) throw TransportError(final_message, curl_code, 0);
      throw RetryableError(final_message, after, false);
    }
    double delay = retry_delay(settings_, retry, after);
    if (warn_fn)
      warn_fn(fmt::format("{}: {}; retry {}/{} in {:.1f} s", what, message, retry,
                          settings_.max_retries, delay));
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
  }
}

RepoInfo HubApi::model_info(HttpClient& http, const std::string& repo_id,
                            const std::string& revision) const {
  HttpRequest req;
  req.url = model_info_url(repo_id, revision);
  req.headers = request_headers();
  req.headers.push_back("Accept: application/json");
  req.stall_timeout = settings_.stall_timeout;
  HttpResponse r;
  with_retries(
      fmt::format("{}@{}: file list", repo_id, revision),
      [&] {
        r = http.perform(req);
        if (r.status < 200 || r.status >= 300) fail_status(r, repo_id, revision, "");
      },
      warn);

  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail("{}: the model info is not a JSON object", r.url);
  RepoInfo info;
  if (!j.contains("sha") || !j["sha"].is_string() || !is_sha1_hex(j["sha"].get<std::string>()))
    fail("{}: the model info has no commit sha (40 hex digits)", r.url);
  info.sha = j["sha"].get<std::string>();
  if (!j.contains("siblings") || !j["siblings"].is_array())
    fail("{}: the model info has no file list (\"siblings\")", r.url);
  for (const auto& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string())
      fail("{}: a file list entry has no \"rfilename\"", r.url);
    Sibling sib;
    sib.path = s["rfilename"].get<std::string>();
    if (!is_safe_relative_path(sib.path))
      fail("{}: unsafe file name '{}' in the file list", r.url, sib.path);
    if (s.contains("size") && s["size"].is_number_unsigned()) sib.size = s["size"].get<uint64_t>();
    if (s.contains("blobId") && s["blobId"].is_string()) {
      sib.blob_id = s["blobId"].get<std::string>();
      if (!is_sha1_hex(sib.blob_id))
        fail("{}: {}: blobId '{}' is not a git sha1", r.url, sib.path, sib.blob_id);
    }
    if (s.contains("lfs") && s["lfs"].is_object()) {
      const auto& lfs = s["lfs"];
      if (!lfs.contains("sha256") || !lfs["sha256"].is_string() ||
          !is_sha256_hex(lfs["sha256"].get<std::string>()))
        fail("{}: {}: LFS entry without a valid sha256", r.url, sib.path);
      sib.lfs_sha256 = lfs["sha256"].get<std::string>();
      if (lfs.contains("size") && lfs["size"].is_number_unsigned())
        sib.lfs_size = lfs["size"].get<uint64_t>();
    }
    info.siblings.push_back(std::move(sib));
  }
  return info;
}

FileMetadata HubApi::file_metadata(HttpClient& http, const std::string& repo_id,
                                   const std::string& revision, const std::string& path) const {
  HttpRequest req;
  req.method = "HEAD";
  req.url = resolve_url(repo_id, revision, path);
  req.headers = request_headers();
  req.headers.push_back("Accept-Encoding: identity");  // the real size, not a compressed one
  req.stall_timeout = settings_.stall_timeout;
  HttpResponse r;
  with_retries(
      fmt::format("{}: {}", repo_id, path),
      [&] {
        r = http.perform(req);
        // Relative redirects (a renamed repo) are followed; a CDN redirect is the answer.
        for (int hop = 0; hop < 5 && r.status >= 300 && r.status < 400; ++hop) {
          auto loc = r.headers().get("Location");
          if (!loc || loc->empty() || loc->front() != '/') break;
          HttpRequest next = req;
          next.url = settings_.endpoint + *loc;
          r = http.perform(next);
        }
        if (r.status >= 400) fail_status(r, repo_id, revision, path);
      },
      warn);
  FileMetadata m;
  const HttpHeaders& h = r.headers();
  m.commit = h.get("X-Repo-Commit").value_or("");
  if (m.commit.empty())
    fail("{}: no X-Repo-Commit header: {} does not answer like the Hugging Face Hub (check HF_ENDPOINT "
         "and proxy settings)",
         r.url, settings_.endpoint);
  auto linked = h.get("X-Linked-Etag");
  m.lfs = linked.has_value();
  m.etag = normalize_etag(linked ? *linked : h.get("ETag").value_or(""));
  if (m.etag.empty()) fail("{}: no ETag header, the file's content can't be checked", r.url);
  auto size = h.get("X-Linked-Size");
  if (!size && r.status < 300) size = h.get("Content-Length");
  if (size) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(size->c_str(), &end, 10);
    if (end != size->c_str()) m.size = v;
  }
  return m;
}

}  // namespace medquant::hub
