#include "gguf/imatrix.h"

#include <cmath>
#include <cstring>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/mapped_file.h"
#include "gguf/gguf.h"

namespace medquant::gguf {
namespace {

// The raw entry before normalisation (llama.cpp's common_imatrix_entry).
struct RawEntry {
  std::vector<float> sums;
  std::vector<int64_t> counts;
};

std::string until_nul(const char* p, size_t n) {
  const void* nul = std::memchr(p, 0, n);
  return std::string(p, nul ? static_cast<const char*>(nul) - p : n);
}

Imatrix load_legacy(const std::string& path, std::span<const uint8_t> bytes) {
  size_t pos = 0;
  auto read_i32 = [&](std::string_view what) -> int32_t {
    if (bytes.size() - pos < 4)
      fail("{}: truncated legacy imatrix: {} at offset {} runs past the end (size {})", path, what,
           pos, bytes.size());
    int32_t v;
    std::memcpy(&v, bytes.data() + pos, 4);
    pos += 4;
    return v;
  };
  const int32_t n_entries = read_i32("entry count");
  if (n_entries < 1)
    fail("{}: not an imatrix: no GGUF magic, and as a legacy .dat file its entry count is {}",
         path, n_entries);

  std::map<std::string, RawEntry> raw;
  for (int32_t i = 0; i < n_entries; ++i) {
    const size_t at = pos;
    const int32_t len = read_i32("name length");
    if (len < 0 || static_cast<size_t>(len) > bytes.size() - pos)
      fail("{}: legacy imatrix entry {} at offset {}: bad name length {}", path, i, at, len);
    std::string name = until_nul(reinterpret_cast<const char*>(bytes.data() + pos), len);
    pos += static_cast<size_t>(len);
    const int32_t ncall = read_i32("call count");
    const int32_t nval = read_i32("value count");
    if (nval < 1)
      fail("{}: legacy imatrix entry {} ('{}') at offset {}: value count {}", path, i, name, at,
           nval);
    if (static_cast<size_t>(nval) > (bytes.size() - pos) / 4)
      fail("{}: truncated legacy imatrix: entry '{}' at offset {} has {} values but only {} bytes "
           "are left",
           path, name, at, nval, bytes.size() - pos);
    RawEntry& e = raw[name];  // a repeated name replaces the earlier entry, as in llama.cpp
    e.sums.resize(static_cast<size_t>(nval));
    std::memcpy(e.sums.data(), bytes.data() + pos, static_cast<size_t>(nval) * 4);
    pos += static_cast<size_t>(nval) * 4;
    e.counts.assign(1, ncall);
  }

  Imatrix out;
  out.legacy = true;
  // Optional trailer: chunk count, then the dataset name.
  if (pos < bytes.size()) {
    int32_t n_calls = 0;
    const size_t n = std::min<size_t>(4, bytes.size() - pos);
    std::memcpy(&n_calls, bytes.data() + pos, n);  // a short read keeps what it got, as ifstream
    pos += n;
    out.chunk_count = n_calls;
    if (n == 4 && bytes.size() - pos >= 4) {
      const int32_t len = read_i32("dataset name length");
      if (len > 0 && static_cast<size_t>(len) <= bytes.size() - pos)
        out.datasets.push_back(until_nul(reinterpret_cast<const char*>(bytes.data() + pos), len));
    }
  }
  for (auto& [name, e] : raw) {
    std::vector<float>& v = out.entries[name];
    v.resize(e.sums.size());
    const int64_t ncall = e.counts[0];
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = ncall > 0 ? e.sums[i] / static_cast<float>(ncall) : e.sums[i];
  }
  return out;
}

Imatrix load_gguf(const std::string& path) {
  Reader r(path);
  const Header& h = r.header();
  if (h.tensors.empty()) fail("{}: imatrix has no tensors", path);

  Imatrix out;
  const KeyValue* datasets = h.find("imatrix.datasets");
  const KeyValue* chunk_count = h.find("imatrix.chunk_count");
  const KeyValue* chunk_size = h.find("imatrix.chunk_size");
  if (!datasets || !chunk_count || !chunk_size)
    fail("{}: imatrix metadata missing (needs imatrix.datasets, imatrix.chunk_count and "
         "imatrix.chunk_size)",
         path);
  if (datasets->value.is_array() && datasets->value.type() == ValueType::String)
    out.datasets = datasets->value.strings();
  for (const KeyValue* kv : {chunk_count, chunk_size})
    if (kv->value.is_array() || kv->value.type() != ValueType::U32)
      fail("{}: key '{}' must be u32 but is {}", path, kv->key, value_type_name(kv->value.type()));
  out.chunk_count = static_cast<int32_t>(chunk_count->value.get<uint32_t>());

  std::map<std::string, std::pair<const TensorInfo*, const TensorInfo*>> pairs;
  auto strip = [](const std::string& name, std::string_view suffix, std::string& base) {
    if (name.size() < suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(),
                                                    suffix) != 0)
      return false;
    base = name.substr(0, name.size() - suffix.size());
    return true;
  };
  for (const auto& t : h.tensors) {
    std::string base;
    if (t.name.empty()) continue;
    if (strip(t.name, ".in_sum2", base)) pairs[base].first = &t;
    else if (strip(t.name, ".counts", base)) pairs[base].second = &t;
  }
  for (const auto& [name, pair] : pairs) {
    const auto [sums_t, counts_t] = pair;
    if (!sums_t || !counts_t)
      fail("{}: imatrix entry '{}' has {} but no {}", path, name,
           sums_t ? "in_sum2" : "counts", sums_t ? "counts" : "in_sum2");
    if (sums_t->type != quant::Type::F32 || counts_t->type != quant::Type::F32)
      fail("{}: imatrix entry '{}': in_sum2 and counts must be f32", path, name);
    const auto sums_bytes = r.tensor_data(*sums_t);
    const auto counts_bytes = r.tensor_data(*counts_t);
    const size_t nval = sums_bytes.size() / 4, ncounts = counts_bytes.size() / 4;
    if (ncounts == 0) fail("{}: imatrix entry '{}' has no counts", path, name);
    std::vector<float> sums(nval), counts_f(ncounts);
    std::memcpy(sums.data(), sums_bytes.data(), nval * 4);
    std::memcpy(counts_f.data(), counts_bytes.data(), ncounts * 4);

    // Normalised as llama-quantize: counts rounded to integers, then sums / count per expert.
    std::vector<float>& e = out.entries[name];
    e.assign(nval, 0.0f);
    const size_t ne0 = nval / ncounts;
    for (size_t j = 0; j < ncounts; ++j) {
      const float count = static_cast<float>(std::lround(counts_f[j]));
      for (size_t i = 0; i < ne0; ++i)
        e[j * ne0 + i] = count > 0.0f ? sums[j * ne0 + i] / count : 1.0f;
    }
  }
  return out;
}

}  // namespace

void write_imatrix(const std::string& path, const ImatrixSums& data) {
  if (data.entries.empty()) fail("{}: no imatrix entries to write", path);
  std::vector<KeyValue> kvs = {
      {"general.type", Value::string("imatrix")},
      {"imatrix.datasets", Value::string_array(data.datasets)},
      {"imatrix.chunk_count", Value::scalar<uint32_t>(data.chunk_count)},
      {"imatrix.chunk_size", Value::scalar<uint32_t>(data.chunk_size)},
  };
  std::vector<TensorInfo> infos;
  std::vector<std::vector<float>> payloads;
  for (const auto& [name, e] : data.entries) {
    const int64_t nmat = static_cast<int64_t>(e.counts.size());
    if (nmat == 0 || e.sums.empty() || e.sums.size() % e.counts.size() != 0)
      fail("{}: imatrix entry '{}' has {} sums for {} counts", path, name, e.sums.size(), nmat);
    TensorInfo sums;
    sums.name = name + ".in_sum2";
    sums.ne = {static_cast<int64_t>(e.sums.size()) / nmat, nmat, 1, 1};
    TensorInfo counts;
    counts.name = name + ".counts";
    counts.ne = {1, nmat, 1, 1};
    for (TensorInfo* t : {&sums, &counts}) {
      t->type = quant::Type::F32;
      t->n_dims = t->effective_n_dims();  // as ggml writes them
      infos.push_back(*t);
    }
    payloads.push_back(e.sums);
    payloads.emplace_back(e.counts.begin(), e.counts.end());
  }
  Writer w(path, std::move(kvs), std::move(infos));
  for (const auto& p : payloads)
    w.write({reinterpret_cast<const uint8_t*>(p.data()), p.size() * sizeof(float)});
  w.commit();
}

Imatrix load_imatrix(const std::string& path) {
  std::optional<core::MappedFile> file;
  file.emplace(path);
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) {
    file.reset();
    return load_gguf(path);
  }
  return load_legacy(path, {file->data(), file->size()});
}

}  // namespace medquant::gguf
