// medquant inspect: one pair of functions per model format, each pair in its
// own cli/inspect_<format>.cpp and listed once in the table in inspect.cpp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::cli {

struct InspectOptions {
  std::string path;
  bool json = false;  // one JSON object on stdout instead of tables
  bool hash = false;  // add the sha256 of every tensor's bytes
};

// What the dispatcher knows about the path before choosing a format.
struct InspectProbe {
  const std::string& path;
  bool is_directory;
  std::span<const uint8_t> head;  // the file's first bytes (up to 64); empty for a folder
};

// Per format: "is this yours?" (by extension, magic or folder contents) and
// "print it" (returns the exit code; throws medquant::Error on a bad file).
bool is_safetensors(const InspectProbe& probe);
int inspect_safetensors(const InspectOptions& options);
bool is_gguf(const InspectProbe& probe);
int inspect_gguf(const InspectOptions& options);
bool is_onnx(const InspectProbe& probe);
int inspect_onnx(const InspectOptions& options);
bool is_torch(const InspectProbe& probe);
int inspect_torch(const InspectOptions& options);

// Shared by the format files (inspect.cpp).

// Separates thousands so big counts read at a glance: 4,300,079,472.
std::string grouped(uint64_t v);
// "[2, 3, 4]"
std::string dims_text(const std::vector<int64_t>& dims);

// sha256 of every tensor's bytes, tensors spread over the thread pool behind
// one progress bar of `total_bytes`. bytes(i, scratch) gives tensor i's bytes
// (a view of the mapping, or a copy it puts in scratch); release(i, off, n)
// is called after each 16 MiB of them, to drop their pages as we go so
// memory stays flat even for a 1 GiB embedding.
using TensorBytes = std::function<std::span<const uint8_t>(size_t i, std::vector<uint8_t>& scratch)>;
using ReleaseBytes = std::function<void(size_t i, uint64_t offset, uint64_t n)>;
std::vector<std::string> hash_tensors(size_t count, uint64_t total_bytes, const TensorBytes& bytes,
                                      const ReleaseBytes& release);

// Tensor, parameter and byte counts, overall and per type name.
struct TypeTotals {
  struct Row {
    uint64_t tensors = 0, parameters = 0, bytes = 0;
  };
  Row all;
  std::map<std::string, Row, std::less<>> by_type;

  void add(std::string_view type, uint64_t parameters, uint64_t bytes);
  // {"tensors", "parameters", "bytes"} of `all`, or the by_type object.
  nlohmann::ordered_json all_json() const;
  nlohmann::ordered_json by_type_json() const;
  // One line per type: "  <type>  N tensors, P parameters, B bytes (1.2 MiB)".
  void print_by_type(size_t type_width) const;
};

}  // namespace medquant::cli
