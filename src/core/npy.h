// NumPy .npy files (format versions 1.0, 2.0 and 3.0), the exchange format
// of `medquant run`:
//
//   bytes 0-5   "\x93NUMPY"
//   bytes 6-7   major, minor version
//   then        header length: uint16 LE (v1) or uint32 LE (v2, v3)
//   then        the header: a Python dict literal, ASCII (v3: UTF-8), padded
//               with spaces and a final '\n' so the data starts 64-byte aligned:
//               {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }
//   then        the elements, C order, as `descr` says ('<' little-endian,
//               '|' byte-sized; kind f/i/u/b and the byte count).
//
// Supported: little-endian (or byte-sized) f2/f4/f8, i1-i8, u1-u8, b1; C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace medquant::core {

struct NpyArray {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // element bytes, C order
  int64_t element_count() const;
};

// Throws Error naming the file on anything malformed or unsupported.
NpyArray read_npy(const std::string& path);
// Version 1.0 (2.0 if the header needs it), written atomically.
void write_npy(const std::string& path, const NpyArray& array);
// The same in memory.
NpyArray parse_npy(const uint8_t* bytes, size_t size, const std::string& where);
std::string npy_bytes(const NpyArray& array);

}  // namespace medquant::core
