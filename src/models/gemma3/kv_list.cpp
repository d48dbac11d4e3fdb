#include "models/gemma3/kv_list.h"

#include <algorithm>

namespace medquant::models::gemma3 {

void KvList::set(std::string_view key, gguf::Value value) {
  for (auto& kv : kvs_)
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  kvs_.push_back({std::string(key), std::move(value)});
}

void KvList::remove(std::string_view key) {
  std::erase_if(kvs_, [&](const gguf::KeyValue& kv) { return kv.key == key; });
}

const gguf::Value* KvList::find(std::string_view key) const {
  for (const auto& kv : kvs_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

}  // namespace medquant::models::gemma3
