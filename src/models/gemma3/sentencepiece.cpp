#include "models/gemma3/sentencepiece.h"

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace medquant::models::gemma3 {
namespace {

// A bounds-checked reader of protobuf wire format over [pos, end).
struct Wire {
  const uint8_t* base;
  size_t pos, end;
  const std::string& path;

  [[noreturn]] void bad(const char* what) const {
    fail("{}: not a SentencePiece model: {} at byte {}", path, what, pos);
  }
  bool done() const { return pos >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos >= end) bad("truncated varint");
      const uint8_t b = base[pos++];
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }
  // A length-delimited value: returns its [begin, end) and moves past it.
  std::pair<size_t, size_t> bytes() {
    const uint64_t n = varint();
    if (n > end - pos) bad("length runs past the end");
    const size_t b = pos;
    pos += static_cast<size_t>(n);
    return {b, pos};
  }
  void skip(uint32_t wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1:
        if (end - pos < 8) bad("truncated fixed64");
        pos += 8;
        break;
      case 2: bytes(); break;
      case 5:
        if (end - pos < 4) bad("truncated fixed32");
        pos += 4;
        break;
      default: bad("unknown wire type");  // groups (3, 4) are not used by SentencePiece
    }
  }
};

SentencePiece read_piece(const uint8_t* base, size_t b, size_t e, const std::string& path) {
  SentencePiece p;
  Wire w{base, b, e, path};
  while (!w.done()) {
    const uint64_t key = w.varint();
    const auto field = static_cast<uint32_t>(key >> 3);
    const auto wire_type = static_cast<uint32_t>(key & 7);
    if (field == 1 && wire_type == 2) {
      auto [s, t] = w.bytes();
      p.piece.assign(reinterpret_cast<const char*>(base + s), t - s);
    } else if (field == 2 && wire_type == 5) {
      if (w.end - w.pos < 4) w.bad("truncated score");
      std::memcpy(&p.score, base + w.pos, 4);  // little-endian, as x86 is
      w.pos += 4;
    } else if (field == 3 && wire_type == 0) {
      p.type = static_cast<int32_t>(w.varint());
    } else {
      w.skip(wire_type);
    }
  }
  return p;
}

}  // namespace

std::vector<SentencePiece> read_sentencepiece_model(const std::string& path) {
  const core::MappedFile file(path);
  std::vector<SentencePiece> pieces;
  Wire w{file.data(), 0, file.size(), path};
  while (!w.done()) {
    const uint64_t key = w.varint();
    const auto field = static_cast<uint32_t>(key >> 3);
    const auto wire_type = static_cast<uint32_t>(key & 7);
    if (field == 0) w.bad("field number 0");
    if (field == 1) {
      if (wire_type != 2) w.bad("pieces field with the wrong wire type");
      auto [b, e] = w.bytes();
      pieces.push_back(read_piece(file.data(), b, e, path));
    } else {
      w.skip(wire_type);
    }
  }
  if (pieces.empty()) fail("{}: not a SentencePiece model: no pieces", path);
  return pieces;
}

}  // namespace medquant::models::gemma3
