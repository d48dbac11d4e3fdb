#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <exception>
#include <mutex>

namespace medquant::hub {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) fail("libcurl: global init failed");
  });
}

// State shared with the curl callbacks during one perform().
struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  uint64_t sunk = 0;  // bytes handed to on_body
  bool started = false;  // on_response called
  bool too_big = false;
  std::exception_ptr error;  // thrown by on_body; rethrown after curl returns
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    t->response->hops.emplace_back();
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    if (t->response->hops.empty()) t->response->hops.emplace_back();
    t->response->hops.back().add(std::string(trim(line.substr(0, colon))),
                                 std::string(trim(line.substr(colon + 1))));
  }
  return size * count;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 300 && status < 400 && t->request->follow_redirects) return n;  // redirect body
  if (status >= 200 && status < 300 && t->request->on_body) {
    try {
      if (!t->started) {
        t->started = true;
        if (t->response->hops.empty()) t->response->hops.emplace_back();
        if (t->request->on_response && !t->request->on_response(status, t->response->hops))
          return 0;
      }
      if (!t->request->on_body(data, n)) return 0;
    } catch (...) {
      t->error = std::current_exception();
      return 0;
    }
    t->sunk += n;
    return n;
  }
  if (t->response->body.size() + n > t->request->max_memory_body) {
    t->too_big = true;
    return 0;
  }
  t->response->body.append(data, n);
  return n;
}

}  // namespace

bool TransportError::transient() const {
  switch (static_cast<CURLcode>(curl_code_)) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_TOO_MANY_REDIRECTS:
      return false;
    default:
      return true;
  }
}

void HttpHeaders::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

std::optional<std::string> HttpHeaders::get(std::string_view name) const {
  for (const auto& [k, v] : fields_)
    if (iequals(k, name)) return v;
  return std::nullopt;
}

HttpClient::HttpClient() {
  global_init();
  curl_ = curl_easy_init();
  if (!curl_) fail("libcurl: cannot create a handle");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::perform(const HttpRequest& request) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);  // keeps the connection cache
  HttpResponse response;
  Transfer t;
  t.curl = curl;
  t.request = &request;
  t.response = &response;
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  struct SlistFree {
    curl_slist* l;
    ~SlistFree() { curl_slist_free_all(l); }
  } free_headers{headers};

  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // we run in several threads
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(request.connect_timeout.count()));
  // A stall (no byte for stall_timeout) aborts; a slow but moving transfer does not.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(request.stall_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  if (request.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    fail("{}: unsupported HTTP method {}", request.url, request.method);
  }

  CURLcode rc = curl_easy_perform(curl);
  char* effective = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &effective);
  response.url = effective ? effective : request.url;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  if (t.error) std::rethrow_exception(t.error);
  if (t.too_big)
    fail("{}: response body is larger than {} bytes", response.url, request.max_memory_body);
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc);
    throw TransportError(fmt::format("{}: {}", response.url, detail), static_cast<int>(rc), t.sunk);
  }
  if (response.hops.empty()) response.hops.emplace_back();
  return response;
}

std::string normalize_etag(std::string_view etag) {
  etag = trim(etag);
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  while (!etag.empty() && etag.front() == '"') etag.remove_prefix(1);
  while (!etag.empty() && etag.back() == '"') etag.remove_suffix(1);
  return std::string(etag);
}

std::optional<double> parse_retry_after(std::string_view value, std::time_t now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (auto secs = parse_u64(value)) return static_cast<double>(*secs);
  std::string copy(value);
  std::time_t when = curl_getdate(copy.c_str(), nullptr);
  if (when == -1) return std::nullopt;
  return when > now ? static_cast<double>(when - now) : 0.0;
}

std::optional<ContentRange> parse_content_range(std::string_view value) {
  value = trim(value);
  if (!value.starts_with("bytes ")) return std::nullopt;
  value.remove_prefix(6);
  auto dash = value.find('-');
  auto slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash)
    return std::nullopt;
  auto first = parse_u64(trim(value.substr(0, dash)));
  auto last = parse_u64(trim(value.substr(dash + 1, slash - dash - 1)));
  if (!first || !last || *last < *first) return std::nullopt;
  ContentRange r{*first, *last, std::nullopt};
  std::string_view total = trim(value.substr(slash + 1));
  if (total != "*") {
    r.total = parse_u64(total);
    if (!r.total || *r.total <= *last) return std::nullopt;
  }
  return r;
}

std::string url_encode(std::string_view s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string url_host(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
  auto end = url.find_first_of("/?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  if (auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  return std::string(url);
}

}  // namespace medquant::hub
