// GGUF metadata built the way gguf-py's GGUFWriter builds it: a dictionary
// that keeps insertion order, where setting a key again replaces its value in
// place (convert_hf_to_gguf.py sets some Gemma 3 keys twice; the file has
// them where they were first set, with the last value).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/gguf.h"

namespace medquant::models::gemma3 {

class KvList {
 public:
  void set(std::string_view key, gguf::Value value);
  void remove(std::string_view key);
  const gguf::Value* find(std::string_view key) const;

  void set_string(std::string_view key, std::string v) { set(key, gguf::Value::string(std::move(v))); }
  void set_u32(std::string_view key, uint32_t v) { set(key, gguf::Value::scalar<uint32_t>(v)); }
  void set_i32(std::string_view key, int32_t v) { set(key, gguf::Value::scalar<int32_t>(v)); }
  void set_f32(std::string_view key, float v) { set(key, gguf::Value::scalar<float>(v)); }
  void set_bool(std::string_view key, bool v) { set(key, gguf::Value::scalar<bool>(v)); }
  void set_f32_array(std::string_view key, std::span<const float> v) {
    set(key, gguf::Value::array<float>(v));
  }

  const std::vector<gguf::KeyValue>& kvs() const { return kvs_; }
  std::vector<gguf::KeyValue> take() { return std::move(kvs_); }

 private:
  std::vector<gguf::KeyValue> kvs_;
};

}  // namespace medquant::models::gemma3
