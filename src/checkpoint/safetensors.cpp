#include "checkpoint/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"

namespace medquant::checkpoint {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

struct DTypeName {
  core::DType type;
  std::string_view name;
};
constexpr std::array<DTypeName, 15> kDTypeNames = {{
    {core::DType::F64, "F64"},
    {core::DType::F32, "F32"},
    {core::DType::F16, "F16"},
    {core::DType::BF16, "BF16"},
    {core::DType::I64, "I64"},
    {core::DType::I32, "I32"},
    {core::DType::I16, "I16"},
    {core::DType::I8, "I8"},
    {core::DType::U64, "U64"},
    {core::DType::U32, "U32"},
    {core::DType::U16, "U16"},
    {core::DType::U8, "U8"},
    {core::DType::Bool, "BOOL"},
    {core::DType::F8E4M3, "F8_E4M3"},
    {core::DType::F8E5M2, "F8_E5M2"},
}};

// Known to safetensors but with no byte-sized element (or no DType here).
constexpr std::array<std::string_view, 5> kUnsupportedDTypes = {"F4", "F6_E2M3", "F6_E3M2",
                                                                 "F8_E8M0", "C64"};

// Bytes from a broken file may be anything: keep messages printable text.
std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

// nlohmann keeps the last of two equal keys silently; a checkpoint with a
// duplicated tensor name is ambiguous, so duplicates are found while parsing.
struct DuplicateKey {
  std::string key;
};

// Parses JSON text; errors carry the byte position (relative to `base` in the
// file) and duplicate keys are rejected.
Json parse_json(std::string_view text, const std::string& path, const char* what,
                uint64_t base) {
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!keys.back().insert(parsed.get<std::string>()).second)
          throw DuplicateKey{parsed.get<std::string>()};
        break;
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback);
  } catch (const DuplicateKey& d) {
    fail("{}: {}: key \"{}\" appears twice", path, what, d.key);
  } catch (const Json::parse_error& e) {
    // e.byte counts from 1 and points just past the offending character.
    const uint64_t at = e.byte > 0 ? e.byte - 1 : 0;
    std::string msg = e.what();
    if (auto p = msg.find("]"); p != std::string::npos) msg = msg.substr(p + 2);
    fail("{}: {} is not valid JSON at byte {} (file offset {}): {}", path, what, at, base + at,
         printable(msg));
  } catch (const Json::exception& e) {
    fail("{}: {} is not valid JSON: {}", path, what, printable(e.what()));
  }
}

// A JSON number that is a non-negative integer fitting in uint64.
std::optional<uint64_t> as_count(const Json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  return std::nullopt;
}

std::string short_json(const Json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const Json& entry,
                       uint64_t data_start, uint64_t buffer_size) {
  if (!entry.is_object())
    fail("{}: tensor \"{}\": header entry is not an object (got {})", path, name,
         short_json(entry));
  auto field = [&](const char* key) -> const Json& {
    auto it = entry.find(key);
    if (it == entry.end()) fail("{}: tensor \"{}\": missing \"{}\"", path, name, key);
    return *it;
  };
  TensorInfo t;
  t.name = name;
  t.data_start = data_start;

  const Json& dtype = field("dtype");
  if (!dtype.is_string())
    fail("{}: tensor \"{}\": \"dtype\" is not a string (got {})", path, name, short_json(dtype));
  const auto& dtype_name = dtype.get_ref<const std::string&>();
  auto parsed = parse_safetensors_dtype(dtype_name);
  if (!parsed) {
    if (std::find(kUnsupportedDTypes.begin(), kUnsupportedDTypes.end(), dtype_name) !=
        kUnsupportedDTypes.end())
      fail("{}: tensor \"{}\": dtype \"{}\" is not supported", path, name, dtype_name);
    fail("{}: tensor \"{}\": unknown dtype \"{}\"", path, name, dtype_name);
  }
  t.dtype = *parsed;

  const Json& shape = field("shape");
  if (!shape.is_array())
    fail("{}: tensor \"{}\": \"shape\" is not an array (got {})", path, name, short_json(shape));
  uint64_t elements = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    const Json& d = shape[i];
    if (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0)
      fail("{}: tensor \"{}\": negative dimension {} at shape[{}]", path, name, d.get<int64_t>(),
           i);
    auto dim = as_count(d);
    if (!dim)
      fail("{}: tensor \"{}\": shape[{}] is not a non-negative integer (got {})", path, name, i,
           short_json(d));
    if (*dim > static_cast<uint64_t>(INT64_MAX))
      fail("{}: tensor \"{}\": dimension {} at shape[{}] is too large", path, name, *dim, i);
    t.shape.push_back(static_cast<int64_t>(*dim));
    overflow |= __builtin_mul_overflow(elements, *dim, &elements);
  }
  // A zero dim makes the product 0 even if an earlier partial product overflowed.
  if (std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end()) overflow = false, elements = 0;
  uint64_t expected = 0;
  if (overflow || __builtin_mul_overflow(elements, core::dtype_size(t.dtype), &expected))
    fail("{}: tensor \"{}\": shape {} of {} overflows 64-bit byte count", path, name,
         short_json(shape), dtype_name);

  const Json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    fail("{}: tensor \"{}\": \"data_offsets\" is not an array [begin, end] (got {})", path, name,
         short_json(offsets));
  auto begin = as_count(offsets[0]);
  auto end = as_count(offsets[1]);
  if (!begin || !end)
    fail("{}: tensor \"{}\": data_offsets {} are not non-negative integers", path, name,
         short_json(offsets));
  if (*begin > *end)
    fail("{}: tensor \"{}\": data_offsets begin {} > end {}", path, name, *begin, *end);
  if (*end > buffer_size)
    fail("{}: tensor \"{}\": data_offsets [{}, {}] out of range: the data buffer has {} bytes "
         "(file offsets {}..{}, file size {})",
         path, name, *begin, *end, buffer_size, data_start + *begin, data_start + *end,
         data_start + buffer_size);
  t.begin = *begin;
  t.end = *end;
  if (t.nbytes() != expected)
    fail("{}: tensor \"{}\": shape {} x {} ({} bytes each) = {} bytes, but data_offsets [{}, {}] "
         "span {} bytes",
         path, name, short_json(shape), dtype_name, core::dtype_size(t.dtype), expected, t.begin,
         t.end, t.nbytes());
  return t;
}


}  // namespace

std::string_view safetensors_dtype_name(core::DType t) {
  for (const auto& d : kDTypeNames)
    if (d.type == t) return d.name;
  return "?";
}

std::optional<core::DType> parse_safetensors_dtype(std::string_view name) {
  for (const auto& d : kDTypeNames)
    if (d.name == name) return d.type;
  return std::nullopt;
}

uint64_t TensorInfo::num_elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

SafetensorsFile::SafetensorsFile(std::string path) : file_(std::move(path)) {
  const std::string& p = file_.path();
  if (file_.size() < 8)
    fail("{}: truncated: {} bytes, too short for the 8-byte safetensors header length", p,
         file_.size());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file_.data()[i];  // little-endian on any host
  header_size_ = n;
  if (n < 2) fail("{}: bad header length {} (a JSON object needs at least 2 bytes)", p, n);
  if (n > kSafetensorsMaxHeader)
    fail("{}: bad header length {} (more than the {} byte limit; not a safetensors file?)", p, n,
         kSafetensorsMaxHeader);
  if (n > file_.size() - 8)
    fail("{}: header length {} runs past the end of the file (size {}; truncated?)", p, n,
         file_.size());

  auto header_bytes = file_.view(8, n, "safetensors header");
  std::string_view header(reinterpret_cast<const char*>(header_bytes.data()), header_bytes.size());
  // nlohmann stops at a NUL as if the text ended; valid JSON never holds one.
  if (auto z = header.find('\0'); z != std::string_view::npos)
    fail("{}: safetensors header is not valid JSON at byte {} (file offset {}): NUL byte", p, z,
         8 + z);
  Json json = parse_json(header, p, "safetensors header", 8);
  if (!json.is_object())
    fail("{}: safetensors header is not a JSON object (got {})", p, json.type_name());

  const uint64_t buffer_size = file_.size() - 8 - n;
  tensors_.reserve(json.size());
  for (const auto& [name, entry] : json.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail("{}: \"__metadata__\" is not an object (got {})", p, short_json(entry));
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail("{}: \"__metadata__\" value of \"{}\" is not a string (got {})", p, key,
               short_json(value));
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    tensors_.push_back(parse_entry(p, name, entry, 8 + n, buffer_size));
  }

  // File order; then any two neighbours must not overlap (empty tensors may
  // share an offset with anything).
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
  for (const TensorInfo& t : tensors_) {
    if (t.nbytes() == 0) continue;
    if (last && t.begin < last->end)
      fail("{}: tensors \"{}\" [{}, {}] and \"{}\" [{}, {}] overlap", p, last->name, last->begin,
           last->end, t.name, t.begin, t.end);
    last = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ck;
  ck.path_ = path;
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) fail("{}: no such file or directory", path);

  fs::path index;
  std::vector<fs::path> singles;
  if (fs::is_directory(status)) {
    std::vector<fs::path> indexes;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || name.starts_with(".")) continue;  // skips our own temps
      if (std::string_view(name).ends_with(".safetensors.index.json")) indexes.push_back(e.path());
      else if (std::string_view(name).ends_with(".safetensors")) singles.push_back(e.path());
    }
    if (ec) fail("{}: cannot list folder: {}", path, ec.message());
    std::sort(indexes.begin(), indexes.end());
    std::sort(singles.begin(), singles.end());
    if (indexes.size() > 1)
      fail("{}: folder holds {} safetensors indexes ({}, {}, ...); open one of them", path,
           indexes.size(), indexes[0].filename().string(), indexes[1].filename().string());
    if (indexes.size() == 1) index = indexes[0];
    else if (singles.empty())
      fail("{}: no .safetensors file or *.safetensors.index.json in this folder", path);
  } else if (std::string_view(path).ends_with(".json")) {
    index = path;
  } else {
    singles.push_back(path);
  }

  if (index.empty()) {
    for (const auto& f : singles) ck.add_file(std::make_unique<SafetensorsFile>(f.string()));
    if (ck.files_.size() == 1) ck.metadata_ = ck.files_[0]->metadata();
    else
      for (const auto& f : ck.files_) ck.metadata_.insert(f->metadata().begin(), f->metadata().end());
    ck.index_tensors();
    return ck;
  }

  // Sharded: the index names a shard for every tensor.
  ck.index_path_ = index.string();
  const std::string& ip = ck.index_path_;
  const std::string text = core::read_text_file(ip);
  Json json = parse_json(text, ip, "index", 0);
  if (!json.is_object()) fail("{}: index is not a JSON object (got {})", ip, json.type_name());
  if (auto it = json.find("metadata"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) fail("{}: index \"metadata\" is not an object", ip);
    for (const auto& [key, value] : it->items())
      ck.metadata_[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  auto wm = json.find("weight_map");
  if (wm == json.end()) fail("{}: index has no \"weight_map\"", ip);
  if (!wm->is_object()) fail("{}: index \"weight_map\" is not an object", ip);

  std::map<std::string, std::vector<std::string>> shard_tensors;  // shard -> names, shard order
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string())
      fail("{}: weight_map entry for tensor \"{}\" is not a file name (got {})", ip, name,
           short_json(shard));
    const auto& s = shard.get_ref<const std::string&>();
    fs::path sp(s);
    if (s.empty() || sp.is_absolute() ||
        std::any_of(sp.begin(), sp.end(), [](const fs::path& c) { return c == ".."; }))
      fail("{}: weight_map entry for tensor \"{}\": shard \"{}\" is not a file name inside the "
           "index's folder",
           ip, name, s);
    shard_tensors[s].push_back(name);
  }
  const fs::path dir = index.parent_path();
  for (const auto& [shard, names] : shard_tensors) {
    const fs::path shard_path = dir / shard;
    if (!fs::exists(shard_path, ec))
      fail("{}: shard \"{}\" (holding tensor \"{}\"{}) is missing: {} does not exist", ip, shard,
           names.front(), names.size() > 1 ? fmt::format(" and {} more", names.size() - 1) : "",
           shard_path.string());
    auto file = std::make_unique<SafetensorsFile>(shard_path.string());
    for (const auto& name : names)
      if (!file->find(name))
        fail("{}: tensor \"{}\" is listed for shard \"{}\" but {} does not hold it", ip, name,
             shard, file->path());
    if (file->tensors().size() != names.size()) {
      std::set<std::string_view> listed(names.begin(), names.end());
      for (const auto& t : file->tensors())
        if (!listed.count(t.name))
          fail("{}: shard {} holds tensor \"{}\" that the index does not list for it", ip,
               file->path(), t.name);
    }
    ck.add_file(std::move(file));
  }
  ck.index_tensors();
  return ck;
}

void Checkpoint::add_file(std::unique_ptr<SafetensorsFile> file) { files_.push_back(std::move(file)); }

void Checkpoint::index_tensors() {
  size_t total = 0;
  for (const auto& f : files_) total += f->tensors().size();
  tensors_.reserve(total);
  for (const auto& f : files_) {
    for (const TensorInfo& t : f->tensors()) {
      auto [it, inserted] = by_name_.emplace(t.name, tensors_.size());
      if (!inserted)
        fail("{}: tensor \"{}\" is in both {} and {}", path_, t.name,
             tensors_[it->second].file->path(), f->path());
      tensors_.push_back({f.get(), &t});
    }
  }
}

const TensorRef* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorRef& Checkpoint::at(std::string_view name) const {
  const TensorRef* t = find(name);
  if (!t) fail("{}: no tensor named \"{}\" in the checkpoint", path_, name);
  return *t;
}

}  // namespace medquant::checkpoint
