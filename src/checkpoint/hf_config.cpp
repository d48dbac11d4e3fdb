#include "checkpoint/hf_config.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"

namespace medquant::checkpoint {
namespace {

namespace fs = std::filesystem;

std::string type_phrase(const Json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

}  // namespace

Json read_json_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{}: no such file", path);
  const std::string text = core::read_text_file(path);
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail("{}: not valid JSON (byte {}): {}", path, e.byte, e.what());
  }
}

JsonObject::JsonObject(const Json* object, std::string file, std::string where)
    : object_(object), file_(std::move(file)), where_(std::move(where)) {}

std::string JsonObject::name(std::string_view key) const {
  if (where_.empty()) return fmt::format("{}: {}", file_, key);
  return fmt::format("{}: {}.{}", file_, where_, key);
}

const Json* JsonObject::get(std::string_view key) const {
  if (!object_ || !object_->is_object()) return nullptr;
  auto it = object_->find(std::string(key));
  if (it == object_->end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonObject::has(std::string_view key) const { return get(key) != nullptr; }

std::optional<int64_t> JsonObject::get_int(std::string_view key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  // Past int64 (nlohmann keeps such a value unsigned) or past a float's exact
  // range: refused rather than wrapped (the cast would be undefined).
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{INT64_MAX})
    fail("{} is {}, out of the 64-bit integer range", name(key), v->dump());
  if (v->is_number_integer()) return v->get<int64_t>();
  // 4096.0 is an integer to Python's json too only if written without a point;
  // accept integral floats all the same (some exporters write them).
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (std::fabs(d) < 0x1p53 && d == std::trunc(d)) return static_cast<int64_t>(d);
  }
  fail("{} is {}, expected an integer", name(key), type_phrase(*v));
}

std::optional<double> JsonObject::get_number(std::string_view key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (v->is_number()) return v->get<double>();
  fail("{} is {}, expected a number", name(key), type_phrase(*v));
}

std::optional<bool> JsonObject::get_bool(std::string_view key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (v->is_boolean()) return v->get<bool>();
  fail("{} is {}, expected true or false", name(key), type_phrase(*v));
}

std::optional<std::string> JsonObject::get_string(std::string_view key) const {
  const Json* v = get(key);
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  fail("{} is {}, expected a string", name(key), type_phrase(*v));
}

JsonObject JsonObject::object(std::string_view key) const {
  const Json* v = get(key);
  const std::string where = where_.empty() ? std::string(key) : where_ + "." + std::string(key);
  if (!v) return JsonObject(nullptr, file_, where);
  if (!v->is_object()) fail("{} is {}, expected an object", name(key), type_phrase(*v));
  return JsonObject(v, file_, where);
}

HfConfig HfConfig::load(const std::string& model_dir) {
  HfConfig c;
  c.dir_ = model_dir;
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) fail("{}: not a folder (expected a Hugging Face model folder)", model_dir);
  c.path_ = (fs::path(model_dir) / "config.json").string();
  if (!fs::is_regular_file(c.path_, ec))
    fail("{}: no config.json: not a Hugging Face model folder", model_dir);
  c.json_ = read_json_file(c.path_);
  if (!c.json_.is_object()) fail("{}: expected a JSON object, got {}", c.path_, type_phrase(c.json_));
  return c;
}

std::string HfConfig::architecture() const {
  auto it = json_.find("architectures");
  if (it == json_.end() || it->is_null()) fail("{}: no \"architectures\" list: cannot tell the model class", path_);
  if (!it->is_array() || it->empty() || !(*it)[0].is_string())
    fail("{}: \"architectures\" must be a non-empty list of class names", path_);
  return (*it)[0].get<std::string>();
}

void HfConfig::require_architecture(std::span<const std::string_view> supported,
                                    std::string_view tool) const {
  const std::string arch = architecture();
  for (auto s : supported)
    if (arch == s) return;
  std::string list;
  for (auto s : supported) list += fmt::format("{}{}", list.empty() ? "" : ", ", s);
  fail("{}: architecture '{}' is not supported by {} (supported: {})", path_, arch, tool, list);
}

}  // namespace medquant::checkpoint
