#include "checkpoint/torch_zip.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>

#include "core/error.h"

namespace medquant::checkpoint {
namespace {

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// Bytes from a broken file may be anything: keep messages printable text.
std::string printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

constexpr uint32_t kLocalHeaderSig = 0x04034b50;    // "PK\3\4"
constexpr uint32_t kCentralHeaderSig = 0x02014b50;  // "PK\1\2"
constexpr uint32_t kEocdSig = 0x06054b50;           // "PK\5\6"
constexpr uint32_t kZip64EocdSig = 0x06064b50;      // "PK\6\6"
constexpr uint32_t kZip64LocatorSig = 0x07064b50;   // "PK\6\7"
constexpr size_t kEocdSize = 22;
constexpr size_t kCentralHeaderSize = 46;
constexpr size_t kLocalHeaderSize = 30;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;

std::string_view zip_method_name(uint16_t m) {
  switch (m) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "unknown";
  }
}

// ---- storage types and dtypes named in the pickle ----------------------------

struct StorageType {
  std::string_view name;              // torch.<name>
  std::optional<core::DType> dtype;   // none: known to torch, not readable here
};
constexpr StorageType kStorageTypes[] = {
    {"DoubleStorage", core::DType::F64},   {"FloatStorage", core::DType::F32},
    {"HalfStorage", core::DType::F16},     {"BFloat16Storage", core::DType::BF16},
    {"LongStorage", core::DType::I64},     {"IntStorage", core::DType::I32},
    {"ShortStorage", core::DType::I16},    {"CharStorage", core::DType::I8},
    {"ByteStorage", core::DType::U8},      {"BoolStorage", core::DType::Bool},
    {"UntypedStorage", core::DType::U8},  // bytes; tensors on it name their dtype (v3)
    {"ComplexDoubleStorage", std::nullopt}, {"ComplexFloatStorage", std::nullopt},
    {"QInt8Storage", std::nullopt},        {"QInt32Storage", std::nullopt},
    {"QUInt8Storage", std::nullopt},       {"QUInt4x2Storage", std::nullopt},
    {"QUInt2x4Storage", std::nullopt},
};

struct TorchDType {
  std::string_view name;  // torch.<name>
  std::optional<core::DType> dtype;
};
constexpr TorchDType kTorchDTypes[] = {
    {"float64", core::DType::F64}, {"double", core::DType::F64},
    {"float32", core::DType::F32}, {"float", core::DType::F32},
    {"float16", core::DType::F16}, {"half", core::DType::F16},
    {"bfloat16", core::DType::BF16},
    {"int64", core::DType::I64},   {"long", core::DType::I64},
    {"int32", core::DType::I32},   {"int", core::DType::I32},
    {"int16", core::DType::I16},   {"short", core::DType::I16},
    {"int8", core::DType::I8},     {"uint8", core::DType::U8},
    {"bool", core::DType::Bool},
    {"uint16", core::DType::U16},  {"uint32", core::DType::U32},
    {"uint64", core::DType::U64},
    {"float8_e4m3fn", core::DType::F8E4M3}, {"float8_e5m2", core::DType::F8E5M2},
    {"float8_e4m3fnuz", std::nullopt}, {"float8_e5m2fnuz", std::nullopt},
    {"float8_e8m0fnu", std::nullopt},  {"float4_e2m1fn_x2", std::nullopt},
    {"complex32", std::nullopt},   {"complex64", std::nullopt},
    {"complex128", std::nullopt},  {"cfloat", std::nullopt},
    {"cdouble", std::nullopt},     {"qint8", std::nullopt},
    {"quint8", std::nullopt},      {"qint32", std::nullopt},
    {"quint4x2", std::nullopt},    {"quint2x4", std::nullopt},
    {"bits8", std::nullopt},       {"bits16", std::nullopt},
};

// ---- the restricted unpickler --------------------------------------------------

// What a global name refers to; nothing else can be named.
enum class GlobalKind : uint8_t {
  OrderedDict,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  RebuildParameterWithState,
  RebuildFromTypeV2,
  TensorType,     // torch.Tensor
  ParameterType,  // torch.nn.parameter.Parameter
  Storage,        // torch.<T>Storage; `index` into kStorageTypes
  DType,          // torch.<dtype>; `index` into kTorchDTypes
};

struct Global {
  GlobalKind kind;
  size_t index = 0;
  std::string text;  // "module.name", for messages
};

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor };

// A pickled value. Containers, strings, globals and tensors live in arenas
// owned by the unpickler and are referred to by index, so that the memo can
// alias them (as pickle requires) and no structure is ever freed recursively.
struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;     // Bool, Int
  double f = 0;      // Float
  uint32_t ref = 0;  // index into the arena of its kind
};

struct Container {
  std::vector<Value> items;                // Tuple, List
  std::vector<std::pair<Value, Value>> entries;  // Dict, in insertion order
  std::unordered_map<std::string, size_t> key_index;  // Dict: key text -> entry
  uint32_t depth = 1;
};

struct PendingTensor {
  core::DType dtype;
  std::vector<int64_t> shape, stride;
  int64_t storage_offset = 0;
  size_t storage = 0;
  bool is_parameter = false;
  bool requires_grad = false;
};

constexpr uint32_t kMaxDepth = 100;

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

class Unpickler {
 public:
  // resolve_storage(key) -> (file offset, size) of <a>/data/<key>; throws if absent.
  Unpickler(const std::string& path, std::span<const uint8_t> data, uint64_t file_offset,
            const std::function<const ZipEntry&(const std::string&)>& find_record,
            std::vector<TorchStorageInfo>& storages)
      : path_(path),
        data_(data),
        file_offset_(file_offset),
        find_record_(find_record),
        storages_(storages) {}

  Value run();

  // Flattens the unpickled object into named tensors and metadata.
  void flatten(const Value& v, const std::string& name, uint32_t depth,
               std::vector<TorchTensorInfo>& tensors, std::map<std::string, std::string>& metadata,
               std::unordered_map<std::string, int>& seen);

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail("{}: data.pkl (at file offset {}), byte {}: {}", path_, file_offset_, op_pos_, what);
  }
  const uint8_t* take(size_t n) {
    if (n > data_.size() - pos_) bad(fmt::format("pickle truncated (needs {} more bytes)", n));
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::string_view take_line() {
    const size_t start = pos_;
    while (pos_ < data_.size() && data_[pos_] != '\n') ++pos_;
    if (pos_ >= data_.size()) bad("pickle truncated inside a GLOBAL name");
    ++pos_;
    return {reinterpret_cast<const char*>(data_.data() + start), pos_ - start - 1};
  }
  Value pop() {
    if (stack_.size() <= stack_floor()) bad("pickle stack underflow");
    Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.size() <= stack_floor()) bad("pickle stack underflow");
    return stack_.back();
  }
  size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Value> pop_mark() {
    if (marks_.empty()) bad("pickle MARK missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void push(Value v) { stack_.push_back(v); }

  uint32_t depth_of(const Value& v) const {
    if (v.kind == Kind::Tuple || v.kind == Kind::List || v.kind == Kind::Dict)
      return containers_[v.ref].depth;
    return 0;
  }
  Value new_container(Kind kind, std::vector<Value> items = {}) {
    Container c;
    for (const Value& x : items) c.depth = std::max(c.depth, depth_of(x) + 1);
    if (c.depth > kMaxDepth) bad(fmt::format("objects nested deeper than {} levels", kMaxDepth));
    c.items = std::move(items);
    containers_.push_back(std::move(c));
    return Value{kind, 0, 0, static_cast<uint32_t>(containers_.size() - 1)};
  }
  void note_child(Container& c, const Value& child) {
    c.depth = std::max(c.depth, depth_of(child) + 1);
    if (c.depth > kMaxDepth) bad(fmt::format("objects nested deeper than {} levels", kMaxDepth));
  }
  Value new_str(std::string s) {
    strings_.push_back(std::move(s));
    return Value{Kind::Str, 0, 0, static_cast<uint32_t>(strings_.size() - 1)};
  }
  Value new_bytes(std::string s) {
    Value v = new_str(std::move(s));
    v.kind = Kind::Bytes;
    return v;
  }
  const std::string& str(const Value& v) const { return strings_[v.ref]; }
  std::string key_text(const Value& k) const;
  std::string repr(const Value& v, int budget = 200) const;

  void set_item(Value dict, const Value& key, const Value& value);
  Value resolve_global(std::string_view module, std::string_view name);
  Value persistent_load(const Value& pid);
  Value call(const Value& callable, const Value& args);
  Value rebuild_tensor(const std::vector<Value>& args, bool v3);
  Value mark_parameter(const std::vector<Value>& args, size_t nargs);
  const std::vector<Value>& tuple_items(const Value& v, std::string_view what) const {
    if (v.kind != Kind::Tuple) bad(fmt::format("{} is a {}, not a tuple", what, kind_name(v.kind)));
    return containers_[v.ref].items;
  }
  int64_t as_int(const Value& v, std::string_view what) const {
    if (v.kind != Kind::Int && v.kind != Kind::Bool)
      bad(fmt::format("{} is a {}, not an int", what, kind_name(v.kind)));
    return v.i;
  }
  std::vector<int64_t> int_tuple(const Value& v, std::string_view what) const {
    std::vector<int64_t> out;
    for (const Value& x : tuple_items(v, what)) out.push_back(as_int(x, what));
    return out;
  }

  const std::string& path_;
  std::span<const uint8_t> data_;
  uint64_t file_offset_;
  const std::function<const ZipEntry&(const std::string&)>& find_record_;
  std::vector<TorchStorageInfo>& storages_;
  std::unordered_map<std::string, size_t> storage_by_key_;

  size_t pos_ = 0;
  size_t op_pos_ = 0;
  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  std::vector<Container> containers_;
  std::vector<std::string> strings_;
  std::vector<Global> globals_;
  std::vector<PendingTensor> tensors_;
};

Value Unpickler::resolve_global(std::string_view module, std::string_view name) {
  Global g{GlobalKind::OrderedDict, 0, fmt::format("{}.{}", module, name)};
  bool ok = true;
  if (module == "collections" && name == "OrderedDict") {
    g.kind = GlobalKind::OrderedDict;
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    g.kind = GlobalKind::RebuildTensorV2;
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v3") {
    g.kind = GlobalKind::RebuildTensorV3;
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    g.kind = GlobalKind::RebuildParameter;
  } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
    g.kind = GlobalKind::RebuildParameterWithState;
  } else if (module == "torch._tensor" && name == "_rebuild_from_type_v2") {
    g.kind = GlobalKind::RebuildFromTypeV2;
  } else if ((module == "torch.storage" || module == "torch") && name == "UntypedStorage") {
    g.kind = GlobalKind::Storage;  // pickled under the class's own module
    for (size_t i = 0; i < std::size(kStorageTypes); ++i)
      if (kStorageTypes[i].name == name) g.index = i;
  } else if (module == "torch" && name == "Tensor") {
    g.kind = GlobalKind::TensorType;
  } else if (module == "torch.nn.parameter" && name == "Parameter") {
    g.kind = GlobalKind::ParameterType;
  } else if (module == "torch") {
    ok = false;
    for (size_t i = 0; i < std::size(kStorageTypes); ++i)
      if (kStorageTypes[i].name == name) {
        g.kind = GlobalKind::Storage;
        g.index = i;
        ok = true;
      }
    for (size_t i = 0; i < std::size(kTorchDTypes) && !ok; ++i)
      if (kTorchDTypes[i].name == name) {
        g.kind = GlobalKind::DType;
        g.index = i;
        ok = true;
      }
  } else {
    ok = false;
  }
  if (!ok)
    fail("{}: refusing to unpickle global '{}' (only torch state dicts are read)", path_,
         printable(g.text));
  globals_.push_back(std::move(g));
  return Value{Kind::Global, 0, 0, static_cast<uint32_t>(globals_.size() - 1)};
}

// ('storage', torch.<T>Storage, key, location, numel) -> one TorchStorageInfo per key.
Value Unpickler::persistent_load(const Value& pid) {
  const auto& t = tuple_items(pid, "persistent id");
  if (t.size() != 5 || t[0].kind != Kind::Str || str(t[0]) != "storage")
    bad(fmt::format("unsupported persistent id {} (expected ('storage', type, key, location, numel))",
                    repr(pid)));
  if (t[1].kind != Kind::Global || globals_[t[1].ref].kind != GlobalKind::Storage)
    bad(fmt::format("persistent id names {} where a torch storage type is expected", repr(t[1])));
  const StorageType& type = kStorageTypes[globals_[t[1].ref].index];
  if (t[2].kind != Kind::Str) bad(fmt::format("storage key {} is not a string", repr(t[2])));
  const std::string& key = str(t[2]);
  std::string location = t[3].kind == Kind::Str ? str(t[3]) : repr(t[3]);
  const int64_t numel = as_int(t[4], "storage numel");
  if (!type.dtype)
    bad(fmt::format("storage '{}' has type torch.{}, which is not supported (quantized or complex)",
                    printable(key), type.name));
  if (numel < 0) bad(fmt::format("storage '{}' has a negative size {}", printable(key), numel));

  if (auto it = storage_by_key_.find(key); it != storage_by_key_.end()) {
    const TorchStorageInfo& s = storages_[it->second];
    if (s.type_name != type.name || s.numel != static_cast<uint64_t>(numel))
      bad(fmt::format("storage '{}' is referenced as torch.{} of {} elements and as torch.{} of {}",
                      printable(key), s.type_name, s.numel, type.name, numel));
    return Value{Kind::Storage, 0, 0, static_cast<uint32_t>(it->second)};
  }
  const ZipEntry& record = find_record_(key);
  const uint64_t elem = core::dtype_size(*type.dtype);
  uint64_t want = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(numel), elem, &want) || want != record.size)
    fail("{}: storage '{}' ({}) holds {} bytes, but its torch.{} of {} elements needs {}", path_,
         printable(key), record.name, record.size, type.name, numel,
         want == 0 && numel != 0 ? std::string("more than 2^64") : std::to_string(want));
  TorchStorageInfo s;
  s.key = key;
  s.type_name = std::string(type.name);
  if (type.name != "UntypedStorage") s.dtype = type.dtype;
  s.location = location;
  s.numel = static_cast<uint64_t>(numel);
  s.offset = record.offset;
  s.nbytes = record.size;
  storages_.push_back(std::move(s));
  storage_by_key_.emplace(key, storages_.size() - 1);
  return Value{Kind::Storage, 0, 0, static_cast<uint32_t>(storages_.size() - 1)};
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
// _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
Value Unpickler::rebuild_tensor(const std::vector<Value>& args, bool v3) {
  const size_t min_args = v3 ? 7 : 6;
  if (args.size() < min_args || args.size() > min_args + 1)
    bad(fmt::format("_rebuild_tensor_{} called with {} arguments", v3 ? "v3" : "v2", args.size()));
  if (args[0].kind != Kind::Storage)
    bad(fmt::format("tensor storage is a {}, not a storage", kind_name(args[0].kind)));
  PendingTensor t;
  t.storage = args[0].ref;
  const TorchStorageInfo& s = storages_[t.storage];
  if (v3) {
    const Value& d = args[6];
    if (d.kind != Kind::Global || globals_[d.ref].kind != GlobalKind::DType)
      bad(fmt::format("tensor dtype {} is not a torch dtype", repr(d)));
    const TorchDType& td = kTorchDTypes[globals_[d.ref].index];
    if (!td.dtype) bad(fmt::format("tensor dtype torch.{} is not supported", td.name));
    t.dtype = *td.dtype;
    if (s.dtype && *s.dtype != t.dtype && s.dtype != core::DType::U8)
      bad(fmt::format("tensor of dtype torch.{} on a torch.{}", td.name, s.type_name));
  } else {
    if (!s.dtype)
      bad(fmt::format("_rebuild_tensor_v2 on storage '{}' of type torch.UntypedStorage (no dtype)",
                      printable(s.key)));
    t.dtype = *s.dtype;
  }
  t.storage_offset = as_int(args[1], "tensor storage_offset");
  t.shape = int_tuple(args[2], "tensor size");
  t.stride = int_tuple(args[3], "tensor stride");
  t.requires_grad = as_int(args[4], "tensor requires_grad") != 0;
  tensors_.push_back(std::move(t));
  return Value{Kind::Tensor, 0, 0, static_cast<uint32_t>(tensors_.size() - 1)};
}

// _rebuild_parameter(data, requires_grad, hooks[, state])
Value Unpickler::mark_parameter(const std::vector<Value>& args, size_t nargs) {
  if (args.size() != nargs)
    bad(fmt::format("_rebuild_parameter called with {} arguments", args.size()));
  if (args[0].kind != Kind::Tensor)
    bad(fmt::format("parameter data is a {}, not a tensor", kind_name(args[0].kind)));
  PendingTensor& t = tensors_[args[0].ref];
  t.is_parameter = true;
  t.requires_grad = as_int(args[1], "parameter requires_grad") != 0;
  return args[0];
}

Value Unpickler::call(const Value& callable, const Value& args_value) {
  if (callable.kind != Kind::Global)
    bad(fmt::format("REDUCE on a {} (only torch rebuild functions are called)",
                    kind_name(callable.kind)));
  const Global& g = globals_[callable.ref];
  const std::vector<Value> args = tuple_items(args_value, fmt::format("arguments of {}", g.text));
  switch (g.kind) {
    case GlobalKind::OrderedDict:
      if (!args.empty()) bad("collections.OrderedDict called with arguments");
      return new_container(Kind::Dict);
    case GlobalKind::RebuildTensorV2: return rebuild_tensor(args, false);
    case GlobalKind::RebuildTensorV3: return rebuild_tensor(args, true);
    case GlobalKind::RebuildParameter: return mark_parameter(args, 3);
    case GlobalKind::RebuildParameterWithState: return mark_parameter(args, 4);
    case GlobalKind::RebuildFromTypeV2: {
      // (func, new_type, args, state): a tensor with Python attributes or a subclass.
      if (args.size() != 4) bad("_rebuild_from_type_v2 called with a wrong number of arguments");
      if (args[1].kind != Kind::Global || (globals_[args[1].ref].kind != GlobalKind::TensorType &&
                                           globals_[args[1].ref].kind != GlobalKind::ParameterType))
        bad(fmt::format("_rebuild_from_type_v2 to type {} (only torch.Tensor and Parameter)",
                        repr(args[1])));
      Value t = call(args[0], args[2]);
      if (t.kind != Kind::Tensor) bad("_rebuild_from_type_v2 did not rebuild a tensor");
      if (globals_[args[1].ref].kind == GlobalKind::ParameterType)
        tensors_[t.ref].is_parameter = true;
      return t;
    }
    default:
      bad(fmt::format("refusing to call {} (only torch rebuild functions are called)", g.text));
  }
}

std::string Unpickler::key_text(const Value& k) const {
  switch (k.kind) {
    case Kind::Str: return str(k);
    case Kind::Int: return std::to_string(k.i);
    case Kind::Bool: return k.i ? "True" : "False";
    case Kind::None: return "None";
    default: bad(fmt::format("dict key of type {} (only str, int, bool, None)", kind_name(k.kind)));
  }
}

std::string Unpickler::repr(const Value& v, int budget) const {
  switch (v.kind) {
    case Kind::None: return "None";
    case Kind::Bool: return v.i ? "True" : "False";
    case Kind::Int: return std::to_string(v.i);
    case Kind::Float: return fmt::format("{}", v.f);
    case Kind::Str: return fmt::format("'{}'", printable(str(v), 100));
    case Kind::Bytes: return fmt::format("b'{}'", printable(str(v), 100));
    case Kind::Global: return printable(globals_[v.ref].text);
    case Kind::Storage: return fmt::format("<storage '{}'>", printable(storages_[v.ref].key));
    case Kind::Tensor: return "<tensor>";
    case Kind::Tuple:
    case Kind::List:
    case Kind::Dict: {
      const Container& c = containers_[v.ref];
      std::string out = v.kind == Kind::Tuple ? "(" : v.kind == Kind::List ? "[" : "{";
      const size_t n = v.kind == Kind::Dict ? c.entries.size() : c.items.size();
      for (size_t i = 0; i < n; ++i) {
        if (i) out += ", ";
        if (budget <= 0 || out.size() > 200) {
          out += "...";
          break;
        }
        if (v.kind == Kind::Dict)
          out += repr(c.entries[i].first, budget - 1) + ": " + repr(c.entries[i].second, budget - 1);
        else
          out += repr(c.items[i], budget - 1);
      }
      if (v.kind == Kind::Tuple && n == 1) out += ",";
      return out + (v.kind == Kind::Tuple ? ")" : v.kind == Kind::List ? "]" : "}");
    }
  }
  return "?";
}

void Unpickler::set_item(Value dict, const Value& key, const Value& value) {
  if (dict.kind != Kind::Dict) bad(fmt::format("SETITEM on a {}, not a dict", kind_name(dict.kind)));
  Container& c = containers_[dict.ref];
  // Python keeps the last value of a repeated key, in the first key's place.
  std::string k = std::string(kind_name(key.kind)) + ":" + key_text(key);
  note_child(c, value);
  if (auto it = c.key_index.find(k); it != c.key_index.end()) {
    c.entries[it->second].second = value;
    return;
  }
  c.key_index.emplace(std::move(k), c.entries.size());
  c.entries.emplace_back(key, value);
}

Value Unpickler::run() {
  // Opcodes of pickle protocols 0-5 that plain data and torch.save need.
  enum : uint8_t {
    MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', BININT = 'J', BININT1 = 'K',
    BININT2 = 'M', NONE = 'N', BINPERSID = 'Q', REDUCE = 'R', BINSTRING = 'T',
    SHORT_BINSTRING = 'U', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b', GLOBAL = 'c', DICT = 'd',
    EMPTY_DICT = '}', APPENDS = 'e', BINGET = 'h', LONG_BINGET = 'j', LIST = 'l', EMPTY_LIST = ']',
    BINPUT = 'q', LONG_BINPUT = 'r', SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u',
    BINFLOAT = 'G', BINBYTES = 'B', SHORT_BINBYTES = 'C',
    PROTO = 0x80, NEWOBJ = 0x81, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88,
    NEWFALSE = 0x89, LONG1 = 0x8a, SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e,
    STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
  };
  auto get_memo = [&](uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad(fmt::format("memo entry {} used before it was stored", idx));
    push(it->second);
  };
  auto put_memo = [&](uint64_t idx) { memo_[idx] = top(); };
  auto read_string = [&](uint64_t n, bool bytes) {
    if (n > data_.size() - pos_) bad(fmt::format("pickle truncated inside a {}-byte string", n));
    const uint8_t* p = take(static_cast<size_t>(n));
    std::string s(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    push(bytes ? new_bytes(std::move(s)) : new_str(std::move(s)));
  };

  while (true) {
    op_pos_ = pos_;
    if (pos_ >= data_.size()) bad("pickle ends without STOP (truncated)");
    const uint8_t op = *take(1);
    switch (op) {
      case PROTO: {
        const uint8_t v = *take(1);
        if (v > 5) bad(fmt::format("pickle protocol {} is newer than 5", v));
        break;
      }
      case FRAME: take(8); break;  // frames only group opcodes for buffered reading
      case STOP: {
        Value v = pop();
        return v;
      }
      case MARK: marks_.push_back(stack_.size()); break;
      case POP: pop(); break;
      case POP_MARK: pop_mark(); break;
      case DUP: push(top()); break;
      case NONE: push(Value{}); break;
      case NEWTRUE: push(Value{Kind::Bool, 1}); break;
      case NEWFALSE: push(Value{Kind::Bool, 0}); break;
      case BININT: push(Value{Kind::Int, static_cast<int32_t>(le32(take(4)))}); break;
      case BININT1: push(Value{Kind::Int, *take(1)}); break;
      case BININT2: push(Value{Kind::Int, le16(take(2))}); break;
      case LONG1: {
        const uint8_t n = *take(1);
        if (n > 8) bad(fmt::format("integer of {} bytes does not fit 64 bits", n));
        const uint8_t* p = take(n);
        uint64_t u = 0;
        for (int i = n - 1; i >= 0; --i) u = (u << 8) | p[i];
        if (n > 0 && n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t{0} << (8 * n);  // sign-extend
        push(Value{Kind::Int, static_cast<int64_t>(u)});
        break;
      }
      case BINFLOAT: {
        const uint8_t* p = take(8);
        uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];  // big-endian
        double d;
        std::memcpy(&d, &u, 8);
        push(Value{Kind::Float, 0, d});
        break;
      }
      case SHORT_BINUNICODE: read_string(*take(1), false); break;
      case BINUNICODE: read_string(le32(take(4)), false); break;
      case BINUNICODE8: read_string(le64(take(8)), false); break;
      case SHORT_BINSTRING: read_string(*take(1), false); break;  // Python 2 str
      case BINSTRING: read_string(le32(take(4)), false); break;
      case SHORT_BINBYTES: read_string(*take(1), true); break;
      case BINBYTES: read_string(le32(take(4)), true); break;
      case BINBYTES8: read_string(le64(take(8)), true); break;
      case EMPTY_TUPLE: push(new_container(Kind::Tuple)); break;
      case EMPTY_LIST: push(new_container(Kind::List)); break;
      case EMPTY_DICT: push(new_container(Kind::Dict)); break;
      case TUPLE1: {
        Value a = pop();
        push(new_container(Kind::Tuple, {a}));
        break;
      }
      case TUPLE2: {
        Value b = pop(), a = pop();
        push(new_container(Kind::Tuple, {a, b}));
        break;
      }
      case TUPLE3: {
        Value c = pop(), b = pop(), a = pop();
        push(new_container(Kind::Tuple, {a, b, c}));
        break;
      }
      case TUPLE: push(new_container(Kind::Tuple, pop_mark())); break;
      case LIST: push(new_container(Kind::List, pop_mark())); break;
      case DICT: {
        std::vector<Value> items = pop_mark();
        if (items.size() % 2) bad("DICT with an odd number of items");
        Value d = new_container(Kind::Dict);
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        push(d);
        break;
      }
      case APPEND: {
        Value item = pop();
        Value list = top();
        if (list.kind != Kind::List) bad(fmt::format("APPEND to a {}", kind_name(list.kind)));
        note_child(containers_[list.ref], item);
        containers_[list.ref].items.push_back(item);
        break;
      }
      case APPENDS: {
        std::vector<Value> items = pop_mark();
        Value list = top();
        if (list.kind != Kind::List) bad(fmt::format("APPENDS to a {}", kind_name(list.kind)));
        for (const Value& item : items) {
          note_child(containers_[list.ref], item);
          containers_[list.ref].items.push_back(item);
        }
        break;
      }
      case SETITEM: {
        Value value = pop(), key = pop();
        set_item(top(), key, value);
        break;
      }
      case SETITEMS: {
        std::vector<Value> items = pop_mark();
        if (items.size() % 2) bad("SETITEMS with an odd number of items");
        Value d = top();
        for (size_t i = 0; i < items.size(); i += 2) set_item(d, items[i], items[i + 1]);
        break;
      }
      case BINPUT: put_memo(*take(1)); break;
      case LONG_BINPUT: put_memo(le32(take(4))); break;
      case MEMOIZE: put_memo(memo_.size()); break;
      case BINGET: get_memo(*take(1)); break;
      case LONG_BINGET: get_memo(le32(take(4))); break;
      case GLOBAL: {
        std::string_view module = take_line();
        std::string_view name = take_line();
        push(resolve_global(module, name));
        break;
      }
      case STACK_GLOBAL: {
        Value name = pop(), module = pop();
        if (module.kind != Kind::Str || name.kind != Kind::Str)
          bad("STACK_GLOBAL with non-string module or name");
        push(resolve_global(str(module), str(name)));
        break;
      }
      case BINPERSID: {
        Value pid = pop();
        push(persistent_load(pid));
        break;
      }
      case REDUCE: {
        Value args = pop();
        Value callable = pop();
        push(call(callable, args));
        break;
      }
      case BUILD: {
        Value state = pop();
        const Value& inst = top();
        // An OrderedDict's attributes (a state dict's _metadata) and a
        // tensor's Python attributes carry nothing a reader needs.
        if (inst.kind != Kind::Dict && inst.kind != Kind::Tensor)
          bad(fmt::format("BUILD on a {} (only dicts and tensors)", kind_name(inst.kind)));
        (void)state;
        break;
      }
      case NEWOBJ: {
        pop();  // arguments
        Value cls = pop();
        bad(fmt::format("refusing NEWOBJ of {} (only torch state dicts are read)", repr(cls)));
      }
      default:
        bad(fmt::format("unsupported pickle opcode 0x{:02x}{} (only torch state dicts are read)", op,
                        op >= 0x20 && op < 0x7f ? fmt::format(" '{}'", static_cast<char>(op)) : ""));
    }
  }
}

void Unpickler::flatten(const Value& v, const std::string& name, uint32_t depth,
                        std::vector<TorchTensorInfo>& tensors,
                        std::map<std::string, std::string>& metadata,
                        std::unordered_map<std::string, int>& seen) {
  if (depth > kMaxDepth) fail("{}: saved object nested deeper than {} levels (a cycle?)", path_, kMaxDepth);
  auto child = [&](const std::string& part) { return name.empty() ? part : name + "." + part; };
  auto claim = [&](const std::string& n) {
    if (seen[n]++)
      fail("{}: name '{}' appears twice in the saved object (dots in dict keys?)", path_,
           printable(n));
  };
  switch (v.kind) {
    case Kind::Dict:
      for (const auto& [k, x] : containers_[v.ref].entries)
        flatten(x, child(key_text(k)), depth + 1, tensors, metadata, seen);
      return;
    case Kind::List:
    case Kind::Tuple: {
      const auto& items = containers_[v.ref].items;
      for (size_t i = 0; i < items.size(); ++i)
        flatten(items[i], child(std::to_string(i)), depth + 1, tensors, metadata, seen);
      return;
    }
    case Kind::Tensor: {
      claim(name);
      const PendingTensor& p = tensors_[v.ref];
      const TorchStorageInfo& s = storages_[p.storage];
      TorchTensorInfo t;
      t.name = name;
      t.dtype = p.dtype;
      t.shape = p.shape;
      t.stride = p.stride;
      t.storage = p.storage;
      t.storage_begin = s.offset;
      t.is_parameter = p.is_parameter;
      t.requires_grad = p.requires_grad;
      const std::string shown = printable(name);
      if (p.shape.size() != p.stride.size())
        fail("{}: tensor '{}' has {} dims but {} strides", path_, shown, p.shape.size(),
             p.stride.size());
      if (p.shape.size() > 64) fail("{}: tensor '{}' has {} dims", path_, shown, p.shape.size());
      if (p.storage_offset < 0)
        fail("{}: tensor '{}' has a negative storage offset {}", path_, shown, p.storage_offset);
      t.storage_offset = static_cast<uint64_t>(p.storage_offset);
      // Largest element index reached, and the element count, with overflow checks.
      uint64_t numel = 1, last = t.storage_offset;
      bool overflow = false;
      for (size_t d = 0; d < p.shape.size(); ++d) {
        if (p.shape[d] < 0 || p.stride[d] < 0)
          fail("{}: tensor '{}' has a negative size or stride (shape [{}], stride [{}])", path_,
               shown, fmt::join(p.shape, ", "), fmt::join(p.stride, ", "));
        overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(p.shape[d]), &numel);
      }
      for (size_t d = 0; d < p.shape.size() && numel > 0; ++d) {
        uint64_t reach = 0;
        overflow |= __builtin_mul_overflow(static_cast<uint64_t>(p.shape[d] - 1),
                                           static_cast<uint64_t>(p.stride[d]), &reach);
        overflow |= __builtin_add_overflow(last, reach, &last);
      }
      const uint64_t elem = core::dtype_size(t.dtype);
      uint64_t end_byte = 0;  // one past the last byte used
      overflow |= __builtin_add_overflow(last, numel > 0 ? 1 : 0, &end_byte);
      overflow |= __builtin_mul_overflow(end_byte, elem, &end_byte);
      if (overflow || end_byte > s.nbytes)
        fail("{}: tensor '{}' (shape [{}], stride [{}], offset {}) reaches past the end of its "
             "storage '{}' ({} bytes)",
             path_, shown, fmt::join(p.shape, ", "), fmt::join(p.stride, ", "), p.storage_offset,
             printable(s.key), s.nbytes);
      tensors.push_back(std::move(t));
      return;
    }
    default:
      claim(name);
      metadata[name] = repr(v);
      return;
  }
}

}  // namespace

// ---- tensor views --------------------------------------------------------------

uint64_t TorchTensorInfo::num_elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

bool TorchTensorInfo::contiguous() const {
  if (num_elements() == 0) return true;
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (stride[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

// ---- the zip archive -----------------------------------------------------------

bool looks_like_torch_zip(std::span<const uint8_t> head) {
  return head.size() >= 4 && le32(head.data()) == kLocalHeaderSig;
}

TorchZipFile::TorchZipFile(std::string path) : file_(std::move(path)) {
  read_zip();
  read_pickle();
}

void TorchZipFile::read_zip() {
  const std::string& p = file_.path();
  const uint8_t* base = file_.data();
  const uint64_t size = file_.size();
  if (size == 0) fail("{}: empty file (0 bytes), not a torch.save archive", p);
  // The pre-1.6 format is a bare pickle stream (magic number first), or a tar.
  if (size >= 2 && base[0] == 0x80 && base[1] <= 5 && !looks_like_torch_zip({base, size}))
    fail("{}: legacy torch.save format (a pickle stream, torch < 1.6) is not supported; load it "
         "with torch and save it again (torch >= 1.6 writes a zip archive)",
         p);
  if (size >= 262 && std::memcmp(base + 257, "ustar", 5) == 0)
    fail("{}: legacy torch.save tar format is not supported; load it with torch and save it again",
         p);
  if (size < kEocdSize) fail("{}: not a zip archive ({} bytes, too short)", p, size);

  // The EOCD is the last 22 bytes plus a comment of up to 65535 bytes.
  uint64_t eocd = UINT64_MAX;
  const uint64_t lowest = size > kEocdSize + 0xffff ? size - kEocdSize - 0xffff : 0;
  for (uint64_t at = size - kEocdSize + 1; at-- > lowest;) {
    if (le32(base + at) == kEocdSig && at + kEocdSize + le16(base + at + 20) <= size) {
      eocd = at;
      break;
    }
  }
  if (eocd == UINT64_MAX)
    fail("{}: not a zip archive (no end-of-central-directory record){}", p,
         looks_like_torch_zip({base, size}) ? "; the file looks truncated" : "");
  const uint8_t* e = base + eocd;
  uint64_t disk = le16(e + 4), cd_disk = le16(e + 6);
  uint64_t count_disk = le16(e + 8), count = le16(e + 10);
  uint64_t cd_size = le32(e + 12), cd_offset = le32(e + 16);
  uint64_t cd_limit = eocd;  // the central directory ends before this
  const bool saturated = count_disk == 0xffff || count == 0xffff || cd_size == 0xffffffff ||
                         cd_offset == 0xffffffff;
  if (eocd >= kZip64LocatorSize && le32(base + eocd - kZip64LocatorSize) == kZip64LocatorSig) {
    const uint8_t* loc = base + eocd - kZip64LocatorSize;
    const uint64_t rec = le64(loc + 8);
    if (le32(loc + 4) != 0 || le32(loc + 16) > 1)
      fail("{}: multi-disk zip archives are not supported", p);
    auto r = file_.view(rec, kZip64EocdSize, "zip64 end-of-central-directory record");
    if (le32(r.data()) != kZip64EocdSig || rec + kZip64EocdSize > eocd - kZip64LocatorSize)
      fail("{}: bad zip64 end-of-central-directory record at offset {}", p, rec);
    // torch writes both records; a value not saturated in the classic one must agree.
    auto take = [&](uint64_t& classic, uint64_t wide, uint64_t saturated, const char* what) {
      if (classic != saturated && classic != wide)
        fail("{}: zip end records disagree on the {} ({} vs {} in the zip64 record)", p, what,
             classic, wide);
      classic = wide;
    };
    take(disk, le32(r.data() + 16), 0xffff, "disk number");
    take(cd_disk, le32(r.data() + 20), 0xffff, "central directory disk");
    take(count_disk, le64(r.data() + 24), 0xffff, "entry count");
    take(count, le64(r.data() + 32), 0xffff, "entry count");
    take(cd_size, le64(r.data() + 40), 0xffffffff, "central directory size");
    take(cd_offset, le64(r.data() + 48), 0xffffffff, "central directory offset");
    cd_limit = rec;
  } else if (saturated) {
    fail("{}: zip end-of-central-directory record at offset {} needs a zip64 record, which is "
         "missing",
         p, eocd);
  }
  if (disk != 0 || cd_disk != 0 || count_disk != count)
    fail("{}: multi-disk zip archives are not supported", p);
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    fail("{}: zip central directory (offset {}, {} bytes) runs past its end record at offset {}", p,
         cd_offset, cd_size, cd_limit);
  if (count > cd_size / kCentralHeaderSize)
    fail("{}: zip central directory of {} bytes cannot hold {} entries", p, cd_size, count);

  struct Raw {
    ZipEntry entry;
    uint64_t header = 0;  // local header offset
  };
  std::vector<Raw> raw;
  raw.reserve(static_cast<size_t>(count));
  uint64_t at = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_end - at < kCentralHeaderSize || le32(base + at) != kCentralHeaderSig)
      fail("{}: zip central directory entry {} at offset {} is corrupt", p, i, at);
    const uint8_t* h = base + at;
    const uint16_t flags = le16(h + 8), method = le16(h + 10);
    const uint32_t crc = le32(h + 16);
    uint64_t csize = le32(h + 20), usize = le32(h + 24);
    const uint16_t name_len = le16(h + 28), extra_len = le16(h + 30), comment_len = le16(h + 32);
    uint64_t disk_start = le16(h + 34);
    uint64_t header = le32(h + 42);
    const uint64_t total = kCentralHeaderSize + name_len + extra_len + comment_len;
    if (total > cd_end - at)
      fail("{}: zip central directory entry {} at offset {} runs past the directory", p, i, at);
    std::string name(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);
    const std::string shown = printable(name);
    // zip64 extra field: the saturated values, in this order.
    const uint8_t* x = h + kCentralHeaderSize + name_len;
    for (uint64_t xo = 0; xo + 4 <= extra_len;) {
      const uint16_t id = le16(x + xo), len = le16(x + xo + 2);
      if (xo + 4 + len > extra_len)
        fail("{}: zip entry '{}' has a corrupt extra field", p, shown);
      if (id == 0x0001) {
        const uint8_t* f = x + xo + 4;
        uint64_t left = len;
        auto next = [&](uint64_t& v) {
          if (left < 8) fail("{}: zip entry '{}' has a short zip64 extra field", p, shown);
          v = le64(f);
          f += 8;
          left -= 8;
        };
        if (usize == 0xffffffff) next(usize);
        if (csize == 0xffffffff) next(csize);
        if (header == 0xffffffff) next(header);
        if (disk_start == 0xffff) {
          if (left < 4) fail("{}: zip entry '{}' has a short zip64 extra field", p, shown);
          disk_start = le32(f);
        }
      }
      xo += 4 + len;
    }
    if (name.empty()) fail("{}: zip entry {} has an empty name", p, i);
    if (disk_start != 0) fail("{}: multi-disk zip archives are not supported", p);
    if (flags & 0x1) fail("{}: zip entry '{}' is encrypted", p, shown);
    if (method != 0)
      fail("{}: zip entry '{}' is compressed (method {}, {}); torch.save stores entries "
           "uncompressed, so this file was re-zipped: unzip it and zip it again with -0, or "
           "re-save it with torch.save",
           p, shown, method, zip_method_name(method));
    if (csize != usize)
      fail("{}: zip entry '{}' is stored but its sizes differ ({} vs {})", p, shown, csize, usize);
    raw.push_back({ZipEntry{std::move(name), 0, usize, crc}, header});
    at += total;
  }

  // Local headers: where each entry's bytes begin; entries must not overlap.
  std::vector<size_t> order(raw.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return raw[a].header < raw[b].header; });
  for (size_t k = 0; k < order.size(); ++k) {
    Raw& r = raw[order[k]];
    const std::string shown = printable(r.entry.name);
    const uint64_t limit = k + 1 < order.size() ? raw[order[k + 1]].header : cd_offset;
    if (r.header > cd_offset || cd_offset - r.header < kLocalHeaderSize ||
        le32(base + r.header) != kLocalHeaderSig)
      fail("{}: zip entry '{}': no local header at offset {}", p, shown, r.header);
    if (limit - r.header < kLocalHeaderSize)
      fail("{}: zip entry '{}': local header offset {} is outside the data area (ends at {})", p,
           shown, r.header, cd_offset);
    const uint8_t* h = base + r.header;
    const uint16_t name_len = le16(h + 26), extra_len = le16(h + 28);
    const uint64_t data = r.header + kLocalHeaderSize + name_len + extra_len;
    if (data > limit || r.entry.size > limit - data)
      fail("{}: zip entry '{}' ({} bytes at offset {}) overlaps the next entry or the central "
           "directory (at offset {})",
           p, shown, r.entry.size, data, limit);
    if (name_len != r.entry.name.size() ||
        std::memcmp(h + kLocalHeaderSize, r.entry.name.data(), name_len) != 0)
      fail("{}: zip entry '{}': local header at offset {} names another file", p, shown, r.header);
    if (le16(h + 8) != 0)
      fail("{}: zip entry '{}' is compressed in its local header (method {})", p, shown,
           le16(h + 8));
    r.entry.offset = data;
  }
  for (Raw& r : raw) {
    if (!entry_by_name_.emplace(r.entry.name, entries_.size()).second)
      fail("{}: zip entry '{}' appears twice", p, printable(r.entry.name));
    entries_.push_back(std::move(r.entry));
  }

  // The archive folder: the first entry's name up to its first '/'.
  if (entries_.empty()) fail("{}: empty zip archive, not a torch.save file", p);
  const std::string& first = entries_.front().name;
  const size_t slash = first.find('/');
  if (slash == std::string::npos || slash == 0)
    fail("{}: zip archive is not a torch.save file (first entry '{}' is not in a folder)", p,
         printable(first));
  archive_name_ = first.substr(0, slash);
  auto find = [&](const std::string& rel) -> const ZipEntry* {
    auto it = entry_by_name_.find(archive_name_ + "/" + rel);
    return it == entry_by_name_.end() ? nullptr : &entries_[it->second];
  };
  if (!find("data.pkl"))
    fail("{}: zip archive is not a torch.save file (no {}/data.pkl)", p, printable(archive_name_));
  const ZipEntry* version = find("version");
  if (!version) version = find(".data/version");
  if (!version)
    fail("{}: zip archive is not a torch.save file (no {}/version)", p, printable(archive_name_));
  std::string_view v(reinterpret_cast<const char*>(base + version->offset),
                     static_cast<size_t>(std::min<uint64_t>(version->size, 32)));
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r' || v.back() == ' ')) v.remove_suffix(1);
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    fail("{}: {}: bad version '{}'", p, version->name, printable(v));
  version_ = std::string(v);
  if (const ZipEntry* order_entry = find("byteorder")) {
    std::string_view bo(reinterpret_cast<const char*>(base + order_entry->offset),
                        static_cast<size_t>(std::min<uint64_t>(order_entry->size, 16)));
    if (bo == "big")
      fail("{}: saved on a big-endian machine (byteorder 'big'); only little-endian files are read",
           p);
    if (bo != "little") fail("{}: {}: unknown byte order '{}'", p, order_entry->name, printable(bo));
  }
}

void TorchZipFile::read_pickle() {
  const std::string& p = file_.path();
  const ZipEntry& pkl = entries_[entry_by_name_.at(archive_name_ + "/data.pkl")];
  const std::function<const ZipEntry&(const std::string&)> find_record =
      [&](const std::string& key) -> const ZipEntry& {
    auto it = entry_by_name_.find(archive_name_ + "/data/" + key);
    if (it == entry_by_name_.end())
      fail("{}: storage '{}' has no record {}/data/{} in the archive", p, printable(key),
           printable(archive_name_), printable(key));
    return entries_[it->second];
  };
  Unpickler u(p, {file_.data() + pkl.offset, static_cast<size_t>(pkl.size)}, pkl.offset,
              find_record, storages_);
  const Value root = u.run();
  std::unordered_map<std::string, int> seen;
  u.flatten(root, "", 0, tensors_, metadata_, seen);
  for (size_t i = 0; i < tensors_.size(); ++i) by_name_.emplace(tensors_[i].name, i);
}

const TorchTensorInfo* TorchZipFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TorchTensorInfo& TorchZipFile::at(std::string_view name) const {
  const TorchTensorInfo* t = find(name);
  if (!t) fail("{}: no tensor named '{}'", path(), name);
  return *t;
}

std::span<const uint8_t> TorchZipFile::data(const TorchTensorInfo& t) const {
  if (!t.contiguous())
    fail("{}: tensor '{}' is a non-contiguous view (shape [{}], stride [{}]); materialize it to "
         "read its elements",
         path(), t.name, fmt::join(t.shape, ", "), fmt::join(t.stride, ", "));
  return {file_.data() + t.offset(), static_cast<size_t>(t.nbytes())};
}

std::vector<uint8_t> TorchZipFile::materialize(const TorchTensorInfo& t) const {
  const size_t elem = core::dtype_size(t.dtype);
  const uint64_t n = t.num_elements();
  std::vector<uint8_t> out(static_cast<size_t>(n * elem));
  if (n == 0) return out;
  if (t.contiguous()) {
    auto src = data(t);
    std::memcpy(out.data(), src.data(), src.size());
    return out;
  }
  // Odometer over all dims but the last; the last dim is copied as a run.
  const size_t nd = t.shape.size();
  const uint64_t inner = static_cast<uint64_t>(t.shape[nd - 1]);
  const uint64_t inner_stride = static_cast<uint64_t>(t.stride[nd - 1]) * elem;
  std::vector<int64_t> idx(nd, 0);
  const uint8_t* base = file_.data() + t.offset();
  uint8_t* dst = out.data();
  for (uint64_t done = 0; done < n; done += inner) {
    uint64_t off = 0;
    for (size_t d = 0; d + 1 < nd; ++d)
      off += static_cast<uint64_t>(idx[d]) * static_cast<uint64_t>(t.stride[d]) * elem;
    const uint8_t* src = base + off;
    if (inner_stride == elem) {
      std::memcpy(dst, src, inner * elem);
      dst += inner * elem;
    } else {
      for (uint64_t i = 0; i < inner; ++i, dst += elem) std::memcpy(dst, src + i * inner_stride, elem);
    }
    for (size_t d = nd - 1; d-- > 0;) {
      if (++idx[d] < t.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

void TorchZipFile::release(const TorchTensorInfo& t) const {
  const TorchStorageInfo& s = storages_[t.storage];
  file_.release(s.offset, s.nbytes);
}

}  // namespace medquant::checkpoint
