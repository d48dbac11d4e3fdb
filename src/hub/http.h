// A small HTTP client over libcurl, and the header parsing the hub needs.
//
// One HttpClient per thread (it keeps one curl handle, so connections are
// reused). Proxies come from curl's usual variables (http_proxy,
// https_proxy, no_proxy, ...), which libcurl reads itself.
//
// perform() returns every HTTP answer, whatever its status; it throws
// TransportError only when no complete answer arrived (refused connection,
// dropped connection, timeout with no data), which callers may retry.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace medquant::hub {

// Failure below HTTP: no answer, or an answer cut short. `bytes_received`
// counts body bytes that reached the sink before the failure.
class TransportError : public Error {
 public:
  TransportError(const std::string& message, int curl_code, uint64_t bytes_received)
      : Error(message), curl_code_(curl_code), bytes_received_(bytes_received) {}
  int curl_code() const { return curl_code_; }
  uint64_t bytes_received() const { return bytes_received_; }
  // False for failures another attempt can't fix (bad URL, TLS certificate).
  bool transient() const;

 private:
  int curl_code_;
  uint64_t bytes_received_;
};

// Response header fields, in order; names compare case-insensitively.
class HttpHeaders {
 public:
  void add(std::string name, std::string value);
  std::optional<std::string> get(std::string_view name) const;  // first match
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

struct HttpRequest {
  std::string method = "GET";  // GET or HEAD
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  bool follow_redirects = false;     // curl drops our Authorization on a change of host
  // Body of a 2xx answer goes here when set (else into HttpResponse::body).
  // Return false to abort the transfer (TransportError).
  std::function<bool(const char* data, size_t size)> on_body;
  // Called once with the final answer's status and the headers of every
  // answer so far (redirects first) before its first body byte reaches
  // on_body (not called for an empty body). May throw to abort.
  std::function<bool(long status, const std::vector<HttpHeaders>& hops)> on_response;
  std::chrono::seconds connect_timeout{10};
  // Aborts when no byte arrives for this long (a stalled server), not on slow ones.
  std::chrono::seconds stall_timeout{30};
  size_t max_memory_body = 64u << 20;  // larger in-memory bodies are an error
};

struct HttpResponse {
  long status = 0;
  std::string url;                    // the last URL requested (after redirects)
  std::vector<HttpHeaders> hops;      // headers of each answer, first request first
  std::string body;                   // when no on_body, or when the status isn't 2xx
  const HttpHeaders& headers() const { return hops.back(); }  // of the final answer
  const HttpHeaders& first() const { return hops.front(); }   // before any redirect
};

class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  HttpResponse perform(const HttpRequest& request);

 private:
  void* curl_;  // CURL*
};

// "W/\"abc\"" -> "abc": the form huggingface_hub uses for blob names.
std::string normalize_etag(std::string_view etag);

// Retry-After as seconds from `now`: delta-seconds ("120") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT"); nullopt when unparseable. Past dates give 0.
std::optional<double> parse_retry_after(std::string_view value, std::time_t now);

// "bytes 100-199/1000" -> {100, 199, 1000}; the total may be "*" (nullopt).
struct ContentRange {
  uint64_t first = 0;
  uint64_t last = 0;
  std::optional<uint64_t> total;
};
std::optional<ContentRange> parse_content_range(std::string_view value);

// Percent-encodes everything but unreserved characters; with keep_slash,
// '/' stays (for paths inside a repo).
std::string url_encode(std::string_view s, bool keep_slash);

// "http://a.b:8080/x" -> "a.b:8080": for messages and host comparisons.
std::string url_host(std::string_view url);

}  // namespace medquant::hub
