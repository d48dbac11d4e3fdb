#include "core/npy.h"

#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"

namespace medquant::core {

namespace {

struct Descr {
  const char* text;
  DType type;
};
const Descr kDescrs[] = {
    {"<f4", DType::F32}, {"<f2", DType::F16}, {"<f8", DType::F64}, {"|i1", DType::I8},
    {"|u1", DType::U8},  {"<i2", DType::I16}, {"<i4", DType::I32}, {"<i8", DType::I64},
    {"|b1", DType::Bool}, {"<u2", DType::U16}, {"<u4", DType::U32}, {"<u8", DType::U64},
};

// The value after 'key': in the header dict, up to the matching delimiter.
std::string dict_value(const std::string& h, const std::string& key, const std::string& where) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) k = h.find("\"" + key + "\"");
  if (k == std::string::npos) fail("{}: .npy header has no '{}'", where, key);
  size_t c = h.find(':', k);
  if (c == std::string::npos) fail("{}: malformed .npy header", where);
  size_t b = c + 1;
  while (b < h.size() && h[b] == ' ') ++b;
  if (b >= h.size()) fail("{}: malformed .npy header", where);
  size_t e;
  if (h[b] == '(') e = h.find(')', b) + 1;
  else if (h[b] == '\'' || h[b] == '"') e = h.find(h[b], b + 1) + 1;
  else e = h.find_first_of(",}", b);
  if (e == std::string::npos || e == 0 || e > h.size()) fail("{}: malformed .npy header", where);
  return h.substr(b, e - b);
}

}  // namespace

int64_t NpyArray::element_count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

NpyArray parse_npy(const uint8_t* p, size_t size, const std::string& where) {
  if (size < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) fail("{}: not a .npy file", where);
  const int major = p[6];
  size_t header_len, start;
  if (major == 1) {
    header_len = p[8] | (p[9] << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail("{}: truncated .npy header", where);
    header_len = p[8] | (p[9] << 8) | (static_cast<size_t>(p[10]) << 16) | (static_cast<size_t>(p[11]) << 24);
    start = 12;
  } else {
    fail("{}: .npy version {} is not supported", where, major);
  }
  if (start + header_len > size) fail("{}: truncated .npy header", where);
  const std::string h(reinterpret_cast<const char*>(p + start), header_len);
  NpyArray a;
  std::string descr = dict_value(h, "descr", where);
  if (descr.size() < 2) fail("{}: bad descr", where);
  descr = descr.substr(1, descr.size() - 2);
  if (descr.size() == 3 && descr[0] == '=') descr[0] = '<';
  if (descr == "<i1" || descr == "<u1" || descr == "<b1") descr[0] = '|';
  bool found = false;
  for (const auto& d : kDescrs)
    if (descr == d.text) {
      a.dtype = d.type;
      found = true;
    }
  if (!found) fail("{}: .npy element type '{}' is not supported", where, descr);
  if (dict_value(h, "fortran_order", where).find("True") != std::string::npos)
    fail("{}: Fortran-order arrays are not supported (save with np.ascontiguousarray)", where);
  const std::string shape = dict_value(h, "shape", where);
  int64_t cur = -1;
  for (char ch : shape) {
    if (ch >= '0' && ch <= '9') {
      if (cur > (int64_t{1} << 40)) fail("{}: absurd .npy shape {}", where, shape);
      cur = (cur < 0 ? 0 : cur * 10) + (ch - '0');
    } else if (ch == ',' || ch == ')') {
      if (cur >= 0) a.shape.push_back(cur);
      cur = -1;
    } else if (ch != ' ' && ch != '(' && ch != 'L') {
      fail("{}: bad .npy shape {}", where, shape);
    }
  }
  int64_t n = 1;
  for (int64_t d : a.shape) {
    if (d != 0 && n > (int64_t{1} << 40) / d) fail("{}: absurd .npy shape {}", where, shape);
    n *= d;
  }
  const size_t bytes = static_cast<size_t>(n) * dtype_size(a.dtype);
  const size_t data_at = start + header_len;
  if (size - data_at < bytes) fail("{}: .npy data is {} bytes, its shape needs {}", where, size - data_at, bytes);
  a.data.assign(p + data_at, p + data_at + bytes);
  return a;
}

NpyArray read_npy(const std::string& path) {
  MappedFile f(path);
  return parse_npy(f.data(), f.size(), path);
}

std::string npy_bytes(const NpyArray& a) {
  const char* descr = nullptr;
  for (const auto& d : kDescrs)
    if (d.type == a.dtype) descr = d.text;
  if (!descr) fail(".npy: element type {} cannot be written", dtype_name(a.dtype));
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(a.shape[i]);
  shape += a.shape.size() == 1 ? ",)" : ")";
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shape);
  const bool v2 = header.size() + 11 > 65535;
  const size_t prefix = v2 ? 12 : 10;
  const size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const size_t len = header.size();
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (v2) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>((len >> 24) & 0xff);
  }
  out += header;
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  return out;
}

void write_npy(const std::string& path, const NpyArray& a) { write_file_atomic(path, npy_bytes(a)); }

}  // namespace medquant::core
