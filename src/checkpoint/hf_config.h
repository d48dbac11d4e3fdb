// Hugging Face model folders: config.json and the other JSON files beside the
// weights (generation_config.json, tokenizer_config.json, ...), read with
// errors that name the file and the key.
//
// config.json is one JSON object. The keys read here:
//
//   "architectures": ["Gemma3ForConditionalGeneration"]   the model class;
//                    the first entry is the one converters go by
//   "model_type":    "gemma3"                            the config class
//   "text_config", "vision_config": { ... }              sub-configs of
//                    multimodal models (absent for text-only models, whose
//                    keys are all at the top level)
//
// Values that a file leaves out take the defaults of the transformers config
// class; the model modules (models/<family>) know those defaults, this file
// only reads what is there. A key present with the value null counts as
// absent, as it does for transformers.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::checkpoint {

// Keys keep their file order (it matters where a converter iterates them).
using Json = nlohmann::ordered_json;

// Parses a JSON file; throws Error "<path>: ..." for a missing file or a syntax
// error (with its byte position).
Json read_json_file(const std::string& path);

// A JSON object with typed, checked lookups: errors read
// "<file>: <where>.<key> is a string, expected an integer".
class JsonObject {
 public:
  JsonObject(const Json* object, std::string file, std::string where);

  const std::string& file() const { return file_; }
  bool has(std::string_view key) const;  // present and not null
  const Json* get(std::string_view key) const;  // nullptr if absent or null

  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_number(std::string_view key) const;  // integer or float
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  // A sub-object (empty view if absent); Error if present but not an object.
  JsonObject object(std::string_view key) const;
  const Json* raw() const { return object_; }

  // "<file>: <where>.<key>" for messages.
  std::string name(std::string_view key) const;

 private:
  const Json* object_;  // nullptr: an empty object
  std::string file_;
  std::string where_;
};

// config.json of a model folder.
class HfConfig {
 public:
  // Reads <dir>/config.json; Error if missing, unreadable or not an object.
  static HfConfig load(const std::string& model_dir);

  const std::string& dir() const { return dir_; }
  const std::string& path() const { return path_; }
  const Json& json() const { return json_; }
  JsonObject root() const { return JsonObject(&json_, path_, ""); }

  // architectures[0]; Error naming the file if there is none.
  std::string architecture() const;
  // Throws Error "<path>: architecture 'X' is not supported by <tool> (supported: A, B)"
  // unless architecture() is one of `supported`.
  void require_architecture(std::span<const std::string_view> supported,
                            std::string_view tool) const;

 private:
  std::string dir_;
  std::string path_;
  Json json_;
};

}  // namespace medquant::checkpoint
