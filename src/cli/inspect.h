// medquant inspect: one pair of functions per model format, each pair in its
// own cli/inspect_<format>.cpp and listed once in the table in inspect.cpp.
#pragma once

#include <cstdint>
#include <span>
#include <string>

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

}  // namespace medquant::cli
