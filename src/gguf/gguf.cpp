#include "gguf/gguf.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <unordered_set>

#include "core/error.h"

namespace medquant::gguf {
namespace {

// ggml's limits (GGUF_MAX_STRING_LENGTH, GGUF_MAX_ARRAY_ELEMENTS): files
// beyond them would not load in llama.cpp, so they are refused here too.
constexpr uint64_t kMaxStringLength = 1ull << 30;
constexpr uint64_t kMaxArrayElements = 1ull << 30;

template <typename T>
constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return ValueType::U8;
  else if constexpr (std::is_same_v<T, int8_t>) return ValueType::I8;
  else if constexpr (std::is_same_v<T, uint16_t>) return ValueType::U16;
  else if constexpr (std::is_same_v<T, int16_t>) return ValueType::I16;
  else if constexpr (std::is_same_v<T, uint32_t>) return ValueType::U32;
  else if constexpr (std::is_same_v<T, int32_t>) return ValueType::I32;
  else if constexpr (std::is_same_v<T, float>) return ValueType::F32;
  else if constexpr (std::is_same_v<T, bool>) return ValueType::Bool;
  else if constexpr (std::is_same_v<T, uint64_t>) return ValueType::U64;
  else if constexpr (std::is_same_v<T, int64_t>) return ValueType::I64;
  else if constexpr (std::is_same_v<T, double>) return ValueType::F64;
  else static_assert(sizeof(T) == 0, "not a GGUF value type");
}

bool is_valid_value_type(uint32_t t) { return t < kValueTypeCount; }

std::string quote(std::string_view s, size_t max_chars = 120) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ == max_chars) {
      out += "...";
      break;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        else
          out += c;
    }
  }
  return out + "\"";
}

// Bounds-checked little-endian reads over the file bytes; every failure names
// the file, what was being read and the offset.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> file, const std::string& name) : file_(file), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return file_.size() - pos_; }

  const uint8_t* take(uint64_t n, std::string_view what) {
    if (n > remaining())
      fail("{}: truncated: {} at offset {} needs {} bytes but only {} are left", name_, what,
           pos_, n, remaining());
    const uint8_t* p = file_.data() + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T read(std::string_view what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }

  std::string read_string(std::string_view what) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > kMaxStringLength)
      fail("{}: {} at offset {} has length {}, more than the limit of {} bytes", name_, what, at,
           n, kMaxStringLength);
    if (n > remaining())
      fail("{}: truncated: {} at offset {} has length {} but only {} bytes are left", name_,
           what, at, n, remaining());
    const uint8_t* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  std::span<const uint8_t> file_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

Value read_value(Cursor& c, ValueType type, bool is_array, uint64_t count, const std::string& key,
                 const std::string& name) {
  if (type == ValueType::String) {
    std::vector<std::string> strings;
    // Each string needs at least its 8-byte length: no allocation beyond the file.
    if (count > c.remaining() / 8)
      fail("{}: truncated: key '{}' at offset {} claims {} strings but only {} bytes are left",
           name, key, c.pos(), count, c.remaining());
    strings.reserve(count);
    for (uint64_t i = 0; i < count; ++i)
      strings.push_back(c.read_string(is_array ? fmt::format("string {} of key '{}'", i, key)
                                               : fmt::format("value of key '{}'", key)));
    return is_array ? Value::string_array(std::move(strings)) : Value::string(std::move(strings[0]));
  }
  const size_t size = value_type_size(type);
  if (count > c.remaining() / size)
    fail("{}: truncated: key '{}' at offset {} claims {} values of {} bytes but only {} bytes "
         "are left",
         name, key, c.pos(), count, size, c.remaining());
  const uint8_t* p = c.take(count * size, fmt::format("value of key '{}'", key));
  std::vector<uint8_t> bytes(p, p + count * size);
  // ggml reads a bool as "byte != 0" and writes it back as 0 or 1.
  if (type == ValueType::Bool)
    for (auto& b : bytes) b = b != 0;
  return Value::raw(type, is_array, std::move(bytes));
}

bool checked_mul(uint64_t a, uint64_t b, uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

}  // namespace

// ---------------------------------------------------------------- values

std::string_view value_type_name(ValueType type) {
  static constexpr std::string_view kNames[] = {"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                                                "bool", "str", "arr", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(type);
  return i < kValueTypeCount ? kNames[i] : "invalid";
}

size_t value_type_size(ValueType type) {
  switch (type) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64: return 8;
    case ValueType::String:
    case ValueType::Array: return 0;
  }
  return 0;
}

template <typename T>
Value Value::scalar(T v) {
  Value out;
  out.type_ = value_type_of<T>();
  out.data_.resize(sizeof(T));
  if constexpr (std::is_same_v<T, bool>) {
    out.data_[0] = v ? 1 : 0;
  } else {
    std::memcpy(out.data_.data(), &v, sizeof(T));
  }
  return out;
}

Value Value::string(std::string s) {
  Value out;
  out.type_ = ValueType::String;
  out.strings_.push_back(std::move(s));
  return out;
}

template <typename T>
Value Value::array(std::span<const T> values) {
  Value out;
  out.type_ = value_type_of<T>();
  out.is_array_ = true;
  out.data_.resize(values.size() * sizeof(T));
  for (size_t i = 0; i < values.size(); ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      out.data_[i] = values[i] ? 1 : 0;
    } else {
      std::memcpy(out.data_.data() + i * sizeof(T), &values[i], sizeof(T));
    }
  }
  return out;
}

Value Value::string_array(std::vector<std::string> values) {
  Value out;
  out.type_ = ValueType::String;
  out.is_array_ = true;
  out.strings_ = std::move(values);
  return out;
}

Value Value::raw(ValueType type, bool is_array, std::vector<uint8_t> bytes) {
  const size_t size = value_type_size(type);
  if (size == 0) fail("gguf: Value::raw needs a numeric type, not {}", value_type_name(type));
  if (bytes.size() % size != 0 || (!is_array && bytes.size() != size))
    fail("gguf: {} bytes do not make a {} {}", bytes.size(), value_type_name(type),
         is_array ? "array" : "value");
  Value out;
  out.type_ = type;
  out.is_array_ = is_array;
  out.data_ = std::move(bytes);
  return out;
}

size_t Value::count() const {
  if (type_ == ValueType::String) return strings_.size();
  const size_t size = value_type_size(type_);
  return size ? data_.size() / size : 0;
}

template <typename T>
T Value::get(size_t i) const {
  if (type_ != value_type_of<T>())
    fail("gguf: value is {}, not {}", value_type_name(type_), value_type_name(value_type_of<T>()));
  if (i >= count()) fail("gguf: element {} of a {}-element value", i, count());
  if constexpr (std::is_same_v<T, bool>) {
    return data_[i] != 0;
  } else {
    T v;
    std::memcpy(&v, data_.data() + i * sizeof(T), sizeof(T));
    return v;
  }
}

const std::string& Value::str(size_t i) const {
  if (type_ != ValueType::String) fail("gguf: value is {}, not str", value_type_name(type_));
  if (i >= strings_.size()) fail("gguf: element {} of a {}-element value", i, strings_.size());
  return strings_[i];
}

std::optional<int64_t> Value::as_int(size_t i) const {
  if (i >= count()) return std::nullopt;
  switch (type_) {
    case ValueType::U8: return get<uint8_t>(i);
    case ValueType::I8: return get<int8_t>(i);
    case ValueType::U16: return get<uint16_t>(i);
    case ValueType::I16: return get<int16_t>(i);
    case ValueType::U32: return get<uint32_t>(i);
    case ValueType::I32: return get<int32_t>(i);
    case ValueType::Bool: return get<bool>(i) ? 1 : 0;
    case ValueType::I64: return get<int64_t>(i);
    case ValueType::U64: {
      const uint64_t v = get<uint64_t>(i);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(v);
    }
    default: return std::nullopt;
  }
}

std::string Value::to_string(size_t max_elements) const {
  auto element = [&](size_t i) -> std::string {
    switch (type_) {
      case ValueType::F32: return fmt::format("{}", get<float>(i));
      case ValueType::F64: return fmt::format("{}", get<double>(i));
      case ValueType::Bool: return get<bool>(i) ? "true" : "false";
      case ValueType::String: return quote(strings_[i]);
      case ValueType::U64: return fmt::format("{}", get<uint64_t>(i));
      default: return fmt::format("{}", *as_int(i));
    }
  };
  if (!is_array_) return element(0);
  const size_t n = count();
  std::string out = "[";
  for (size_t i = 0; i < n && i < max_elements; ++i) {
    if (i) out += ", ";
    out += element(i);
  }
  if (n > max_elements) out += fmt::format(", ... ({} values)", n);
  return out + "]";
}

#define MEDQUANT_GGUF_VALUE_TYPE(T)                       \
  template Value Value::scalar<T>(T);                     \
  template Value Value::array<T>(std::span<const T>);     \
  template T Value::get<T>(size_t) const;
MEDQUANT_GGUF_VALUE_TYPE(uint8_t)
MEDQUANT_GGUF_VALUE_TYPE(int8_t)
MEDQUANT_GGUF_VALUE_TYPE(uint16_t)
MEDQUANT_GGUF_VALUE_TYPE(int16_t)
MEDQUANT_GGUF_VALUE_TYPE(uint32_t)
MEDQUANT_GGUF_VALUE_TYPE(int32_t)
MEDQUANT_GGUF_VALUE_TYPE(float)
MEDQUANT_GGUF_VALUE_TYPE(bool)
MEDQUANT_GGUF_VALUE_TYPE(uint64_t)
MEDQUANT_GGUF_VALUE_TYPE(int64_t)
MEDQUANT_GGUF_VALUE_TYPE(double)
#undef MEDQUANT_GGUF_VALUE_TYPE

// ---------------------------------------------------------------- tensors

uint32_t TensorInfo::effective_n_dims() const {
  for (int i = kMaxDims - 1; i >= 1; --i)
    if (ne[i] > 1) return static_cast<uint32_t>(i + 1);
  return 1;
}

std::string TensorInfo::shape_string() const {
  std::string out = "[";
  for (uint32_t i = 0; i < std::max<uint32_t>(n_dims, 1); ++i) {
    if (i) out += ", ";
    out += fmt::format("{}", ne[i]);
  }
  return out + "]";
}

const KeyValue* Header::find(std::string_view key) const {
  for (const auto& kv : kvs)
    if (kv.key == key) return &kv;
  return nullptr;
}

const TensorInfo* Header::find_tensor(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::optional<std::string> Header::get_string(std::string_view key) const {
  const KeyValue* kv = find(key);
  if (!kv || kv->value.is_array() || kv->value.type() != ValueType::String) return std::nullopt;
  return kv->value.str();
}

std::optional<int64_t> Header::get_int(std::string_view key) const {
  const KeyValue* kv = find(key);
  if (!kv || kv->value.is_array()) return std::nullopt;
  return kv->value.as_int();
}

// ---------------------------------------------------------------- parsing

uint32_t alignment_of(const std::vector<KeyValue>& kvs, const std::string& name) {
  for (const auto& kv : kvs) {
    if (kv.key != kKeyAlignment) continue;
    if (kv.value.is_array() || kv.value.type() != ValueType::U32)
      fail("{}: key '{}' must be u32 but is {}{}", name, kKeyAlignment,
           kv.value.is_array() ? "an array of " : "", value_type_name(kv.value.type()));
    const uint32_t a = kv.value.get<uint32_t>();
    if (a == 0 || (a & (a - 1)) != 0)
      fail("{}: key '{}' is {}, not a power of two", name, kKeyAlignment, a);
    return a;
  }
  return kDefaultAlignment;
}

Header parse(std::span<const uint8_t> file, const std::string& name) {
  Header h;
  Cursor c(file, name);

  if (file.size() < 4)
    fail("{}: not a GGUF file: {} bytes, too short for the magic", name, file.size());
  const uint8_t* magic = c.take(4, "magic");
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    std::string shown;
    for (int i = 0; i < 4; ++i) shown += (magic[i] >= 0x20 && magic[i] < 0x7f) ? char(magic[i]) : '?';
    fail("{}: not a GGUF file: magic '{}' ({:02x} {:02x} {:02x} {:02x}) at offset 0, expected "
         "'GGUF'",
         name, shown, magic[0], magic[1], magic[2], magic[3]);
  }
  h.version = c.read<uint32_t>("version");
  if (h.version != 0 && (h.version & 0xffff) == 0)
    fail("{}: version field {:#x} at offset 4 looks byte-swapped: big-endian GGUF files are not "
         "supported",
         name, h.version);
  if (h.version == 1)
    fail("{}: GGUF version 1 (at offset 4) is not supported; convert it to version 3", name);
  if (h.version < 2 || h.version > 3)
    fail("{}: unsupported GGUF version {} at offset 4 (supported: 2 and 3)", name, h.version);

  const int64_t n_tensors = c.read<int64_t>("tensor count");
  const int64_t n_kv = c.read<int64_t>("key-value count");
  if (n_tensors < 0) fail("{}: tensor count {} at offset 8 is negative", name, n_tensors);
  if (n_kv < 0) fail("{}: key-value count {} at offset 16 is negative", name, n_kv);
  // A KV takes at least 14 bytes (8 length, 1 key byte, 4 type, 1 value) and a
  // tensor info at least 24 (8 length, 4 n_dims, 4 type, 8 offset).
  if (static_cast<uint64_t>(n_kv) > c.remaining() / 14)
    fail("{}: key-value count {} at offset 16 cannot fit in the {} bytes after the header", name,
         n_kv, c.remaining());
  if (static_cast<uint64_t>(n_tensors) > (c.remaining() - 14 * static_cast<uint64_t>(n_kv)) / 24)
    fail("{}: tensor count {} at offset 8 cannot fit in the {} bytes after the header", name,
         n_tensors, c.remaining());

  h.kvs.reserve(static_cast<size_t>(n_kv));
  std::unordered_set<std::string> keys;
  for (int64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key = c.read_string(fmt::format("key of key-value pair {}", i));
    if (key.empty()) fail("{}: key-value pair {} at offset {} has an empty key", name, i, at);
    if (!keys.insert(key).second)
      fail("{}: duplicate key '{}' (key-value pair {} at offset {})", name, key, i, at);
    const uint64_t type_at = c.pos();
    const uint32_t type = c.read<uint32_t>(fmt::format("type of key '{}'", key));
    if (!is_valid_value_type(type))
      fail("{}: key '{}' has unknown value type {} at offset {}", name, key,
           static_cast<int32_t>(type), type_at);
    Value value;
    if (static_cast<ValueType>(type) == ValueType::Array) {
      const uint64_t elem_at = c.pos();
      const uint32_t elem = c.read<uint32_t>(fmt::format("element type of key '{}'", key));
      if (!is_valid_value_type(elem) || static_cast<ValueType>(elem) == ValueType::Array)
        fail("{}: array key '{}' has invalid element type {} at offset {}", name, key,
             static_cast<int32_t>(elem), elem_at);
      const uint64_t count_at = c.pos();
      const uint64_t count = c.read<uint64_t>(fmt::format("element count of key '{}'", key));
      if (count > kMaxArrayElements)
        fail("{}: array key '{}' has {} elements (count at offset {}), more than the limit of {}",
             name, key, count, count_at, kMaxArrayElements);
      value = read_value(c, static_cast<ValueType>(elem), true, count, key, name);
    } else {
      value = read_value(c, static_cast<ValueType>(type), false, 1, key, name);
    }
    h.kvs.push_back({std::move(key), std::move(value)});
  }
  h.alignment = alignment_of(h.kvs, name);

  h.tensors.reserve(static_cast<size_t>(n_tensors));
  std::unordered_set<std::string> names;
  for (int64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    const uint64_t at = c.pos();
    t.name = c.read_string(fmt::format("name of tensor {}", i));
    if (t.name.size() > kMaxNameLength)
      fail("{}: tensor {} at offset {} has a {}-byte name, longer than ggml's limit of {}", name,
           i, at, t.name.size(), kMaxNameLength);
    if (!names.insert(t.name).second)
      fail("{}: duplicate tensor name '{}' (tensor {} at offset {})", name, t.name, i, at);
    const std::string what = fmt::format("tensor '{}'", t.name);
    const uint64_t dims_at = c.pos();
    t.n_dims = c.read<uint32_t>(what + " n_dims");
    if (t.n_dims > kMaxDims)
      fail("{}: {} has {} dimensions (at offset {}), more than {}", name, what, t.n_dims,
           dims_at, kMaxDims);
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      const uint64_t ne_at = c.pos();
      t.ne[d] = c.read<int64_t>(what + " shape");
      if (t.ne[d] < 0)
        fail("{}: {} dimension {} is {} (at offset {}), negative", name, what, d, t.ne[d], ne_at);
    }
    // Dimensions of 0 are allowed, so check the product of the others too:
    // row counts must fit as well as element counts.
    int64_t product = 1;
    for (int d = 0; d < kMaxDims; ++d)
      if (__builtin_mul_overflow(product, std::max<int64_t>(t.ne[d], 1), &product))
        fail("{}: {} shape {} has more elements than fit in 64 bits", name, what,
             t.shape_string());
    const int64_t elements = t.n_elements();
    const uint64_t type_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>(what + " type");
    const auto type = quant::type_from_id(type_id);
    if (!type)
      fail("{}: {} has unknown ggml type {} (at offset {})", name, what,
           static_cast<int32_t>(type_id), type_at);
    t.type = *type;
    const auto& tr = quant::traits(t.type);
    if (t.ne[0] % tr.block_size != 0)
      fail("{}: {} of type {} has rows of {} values, not a multiple of the block size {}", name,
           what, tr.name, t.ne[0], tr.block_size);
    uint64_t bytes = 0;
    if (!checked_mul(static_cast<uint64_t>(elements / tr.block_size), tr.type_size, bytes) ||
        bytes > std::numeric_limits<uint64_t>::max() / 2)
      fail("{}: {} shape {} of type {} has a size in bytes that does not fit in 64 bits", name,
           what, t.shape_string(), tr.name);
    t.offset = c.read<uint64_t>(what + " data offset");
    h.tensors.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (ggml only
  // pads when there are tensors).
  uint64_t data_offset = c.pos();
  if (n_tensors > 0) data_offset = (data_offset + h.alignment - 1) / h.alignment * h.alignment;
  if (data_offset > file.size())
    fail("{}: truncated: the data section should start at offset {} (header ends at {}, aligned "
         "to {}) but the file has {} bytes",
         name, data_offset, c.pos(), h.alignment, file.size());
  h.data_offset = data_offset;

  const uint64_t data_size = file.size() - data_offset;
  for (const auto& t : h.tensors) {
    if (t.offset % h.alignment != 0)
      fail("{}: tensor '{}' data offset {} is not a multiple of the alignment {}", name, t.name,
           t.offset, h.alignment);
    const uint64_t bytes = t.n_bytes();
    if (t.offset > data_size || bytes > data_size - t.offset)
      fail("{}: truncated: tensor '{}' data ({} bytes at offset {}) runs past the end of the file "
           "(size {})",
           name, t.name, bytes, data_offset + t.offset, file.size());
  }
  std::vector<size_t> order(h.tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return h.tensors[a].offset < h.tensors[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& prev = h.tensors[order[k - 1]];
    const TensorInfo& cur = h.tensors[order[k]];
    const uint64_t prev_bytes = prev.n_bytes();
    if (prev_bytes > 0 && cur.n_bytes() > 0 && prev.offset + prev_bytes > cur.offset)
      fail("{}: tensors '{}' (data offset {}, {} bytes) and '{}' (data offset {}) overlap", name,
           prev.name, prev.offset, prev_bytes, cur.name, cur.offset);
  }
  return h;
}

// ---------------------------------------------------------------- writing

namespace {

class Bytes {
 public:
  std::vector<uint8_t> out;
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
};

}  // namespace

std::vector<uint8_t> serialize_header(const std::vector<KeyValue>& kvs,
                                      const std::vector<TensorInfo>& tensors) {
  const uint32_t alignment = alignment_of(kvs, "gguf writer");
  Bytes b;
  b.out.insert(b.out.end(), {'G', 'G', 'U', 'F'});
  b.put<uint32_t>(3);
  b.put<int64_t>(static_cast<int64_t>(tensors.size()));
  b.put<int64_t>(static_cast<int64_t>(kvs.size()));
  for (const auto& kv : kvs) {
    if (kv.key.empty()) fail("gguf writer: empty key");
    b.put_string(kv.key);
    const Value& v = kv.value;
    if (v.is_array()) {
      b.put<uint32_t>(static_cast<uint32_t>(ValueType::Array));
      b.put<uint32_t>(static_cast<uint32_t>(v.type()));
      b.put<uint64_t>(v.count());
    } else {
      b.put<uint32_t>(static_cast<uint32_t>(v.type()));
    }
    if (v.type() == ValueType::String) {
      for (const auto& s : v.strings()) b.put_string(s);
    } else {
      b.out.insert(b.out.end(), v.bytes().begin(), v.bytes().end());
    }
  }
  for (const auto& t : tensors) {
    if (t.name.size() > kMaxNameLength)
      fail("gguf writer: tensor name '{}' is longer than {} bytes", t.name, kMaxNameLength);
    if (t.n_dims > kMaxDims || t.n_dims < t.effective_n_dims())
      fail("gguf writer: tensor '{}' with shape [{}, {}, {}, {}] cannot be written with {} "
           "dimensions",
           t.name, t.ne[0], t.ne[1], t.ne[2], t.ne[3], t.n_dims);
    b.put_string(t.name);
    b.put<uint32_t>(t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) b.put<int64_t>(t.ne[d]);
    b.put<uint32_t>(static_cast<uint32_t>(t.type));
    b.put<uint64_t>(t.offset);
  }
  b.out.resize((b.out.size() + alignment - 1) / alignment * alignment, 0);
  return std::move(b.out);
}

uint64_t assign_offsets(std::vector<TensorInfo>& tensors, uint32_t alignment) {
  uint64_t offset = 0;
  for (auto& t : tensors) {
    t.offset = offset;
    offset += (t.n_bytes() + alignment - 1) / alignment * alignment;
  }
  return offset;
}

Reader::Reader(std::string path) : file_(std::move(path)) {
  header_ = parse({file_.data(), file_.size()}, file_.path());
}

std::span<const uint8_t> Reader::tensor_data(const TensorInfo& tensor) const {
  return file_.view(header_.data_offset + tensor.offset, tensor.n_bytes(),
                    "tensor '" + tensor.name + "' data");
}

void Reader::release(const TensorInfo& tensor, uint64_t begin, uint64_t end) const {
  file_.release(header_.data_offset + tensor.offset + begin, end - begin);
}

void Reader::prefetch(const TensorInfo& tensor, uint64_t begin, uint64_t end) const {
  file_.prefetch(header_.data_offset + tensor.offset + begin, end - begin);
}

Writer::Writer(std::string path, std::vector<KeyValue> kvs, std::vector<TensorInfo> tensors)
      : path_(std::move(path)), out_(path_, /*direct_io=*/true), tensors_(std::move(tensors)) {
  alignment_ = alignment_of(kvs, path_);
  std::unordered_set<std::string_view> names;
  for (const auto& t : tensors_) {
    if (!names.insert(t.name).second) fail("{}: duplicate tensor name '{}'", path_, t.name);
    const auto& tr = quant::traits(t.type);
    if (t.ne[0] % tr.block_size != 0)
      fail("{}: tensor '{}' of type {} has rows of {} values, not a multiple of {}", path_, t.name,
           tr.name, t.ne[0], tr.block_size);
  }
  assign_offsets(tensors_, alignment_);
  out_.write(serialize_header(kvs, tensors_));
  advance_past_empty();
}

void Writer::advance_past_empty() {
  while (current_ < tensors_.size() && current_done_ == tensors_[current_].n_bytes()) {
    const uint64_t bytes = tensors_[current_].n_bytes();
    out_.write_zeros((bytes + alignment_ - 1) / alignment_ * alignment_ - bytes);
    ++current_;
    current_done_ = 0;
  }
}

void Writer::write(std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    if (current_ >= tensors_.size())
      fail("{}: {} bytes written after the last tensor", path_, bytes.size());
    const uint64_t left = tensors_[current_].n_bytes() - current_done_;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, bytes.size()));
    out_.write(bytes.first(n));
    current_done_ += n;
    bytes = bytes.subspan(n);
    advance_past_empty();
  }
}

void Writer::commit() {
  if (current_ < tensors_.size())
    fail("{}: tensor '{}' got {} of its {} bytes ({} of {} tensors complete)", path_,
         tensors_[current_].name, current_done_, tensors_[current_].n_bytes(), current_,
         tensors_.size());
  out_.commit();
}

}  // namespace medquant::gguf
