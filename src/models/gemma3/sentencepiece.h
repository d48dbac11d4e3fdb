// The vocabulary of a SentencePiece model file (tokenizer.model).
//
// The file is one protobuf message, sentencepiece.ModelProto, in the
// protobuf wire format: a sequence of fields, each a varint key
// (field number << 3 | wire type) followed by its value — a varint (type 0),
// 8 bytes (1), a length-prefixed byte string (2) or 4 bytes (5). What a GGUF
// vocabulary needs is field 1, `repeated SentencePiece pieces`, each piece a
// nested message:
//
//   1  piece   string   the token text (UTF-8; U+2581 stands for a space)
//   2  score   float    (4 bytes, little-endian; default 0)
//   3  type    enum     NORMAL 1 (default), UNKNOWN 2, CONTROL 3,
//                       USER_DEFINED 4, UNUSED 5, BYTE 6
//
// The other fields (trainer_spec 2, normalizer_spec 3, self_test_data 4,
// denormalizer_spec 5) are skipped. Pieces are ids in file order.
//
// Read here rather than through libsentencepiece: Debian's libsentencepiece
// carries its own copy of protobuf-lite with exported symbols, and a process
// that also loads libprotobuf (ONNX, in the medquant binary) crashes at start
// up when both are linked. The unit test holds this reader against
// libsentencepiece itself (ids, pieces, scores, types).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace medquant::models::gemma3 {

struct SentencePiece {
  std::string piece;
  float score = 0.0f;
  int32_t type = 1;  // NORMAL
};

// Throws Error naming the file and byte offset for a malformed file.
std::vector<SentencePiece> read_sentencepiece_model(const std::string& path);

}  // namespace medquant::models::gemma3
