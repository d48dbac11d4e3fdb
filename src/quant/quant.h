// GGUF tensor types and their block codecs, bit-identical to ggml's
// (the pinned llama.cpp: ggml/src/ggml-quants.c, ggml-common.h, ggml.c).
//
// A row of n values of a quantized type is n / block_size blocks stored back
// to back, no padding between blocks or rows; row_size(type, n) bytes. All
// multi-byte fields are little-endian; "half" is IEEE fp16. Per type, one
// block, fields in file order:
//
//   f32   1 value:  float.            f16 / bf16  1 value: half / bfloat16.
//   q4_0  32 values, 18 bytes: half d; 16 bytes qs. Value j (0..15) is the low
//         nibble of qs[j], value j+16 the high nibble; x = d * (q - 8).
//   q4_1  32 values, 20 bytes: half d; half m; 16 bytes qs (nibbles as q4_0);
//         x = d * q + m.
//   q5_0  32 values, 22 bytes: half d; 4 bytes qh (uint32: bit j = 5th bit of
//         value j); 16 bytes qs (low nibbles as q4_0); x = d * (q - 16).
//   q5_1  32 values, 24 bytes: half d; half m; 4 bytes qh; 16 bytes qs;
//         x = d * q + m.
//   q8_0  32 values, 34 bytes: half d; 32 int8 qs; x = d * q.
//   q8_1  32 values, 36 bytes: half d; half s (= d * sum q); 32 int8 qs.
//
//   The k-quants: a super-block of 256 values split in sub-blocks.
//   q2_K  256 values, 84 bytes: 16 bytes scales (per 16-value sub-block i:
//         low nibble = scale, high nibble = min); 64 bytes qs (2-bit quants,
//         byte k of each 32-byte half holds values k, k+32, k+64, k+96 of that
//         128-value half, lowest bits first); half d; half dmin;
//         x = d * scale * q - dmin * min.
//   q3_K  256 values, 110 bytes: 32 bytes hmask (high bit of value j is bit
//         j/32 of hmask[j%32]; set means q >= 0, clear means q - 4); 64 bytes
//         qs (low 2 bits, laid out as q2_K); 12 bytes scales (16 6-bit signed
//         scales, stored +32: low 4 bits in bytes 0..7, high 2 bits in bytes
//         8..11); half d; x = d * (scale - 32) * q, q in -4..3.
//   q4_K  256 values, 144 bytes: half d; half dmin; 12 bytes scales (8 6-bit
//         scales and 8 6-bit mins, packed: sub-blocks 0..3 in the low 6 bits
//         of bytes 0..3 (scales) and 4..7 (mins), sub-blocks 4..7 as nibbles
//         of bytes 8..11 plus their top 2 bits in the top bits of bytes
//         0..7); 128 bytes qs (each 32-byte run holds two 32-value sub-blocks:
//         low nibbles then high nibbles); x = d * scale * q - dmin * min.
//   q5_K  256 values, 176 bytes: half d; half dmin; 12 bytes scales (as
//         q4_K); 32 bytes qh (5th bit of value j is bit j/32 of qh[j%32]);
//         128 bytes qs (low 4 bits, as q4_K); x = d * scale * q - dmin * min.
//   q6_K  256 values, 210 bytes: 128 bytes ql (low 4 bits); 64 bytes qh (high
//         2 bits); 16 int8 scales (one per 16 values); half d;
//         x = d * scale * (q - 32). Per 128-value half h: value l+32*k (k=0..3,
//         l=0..31) has low bits in ql[64h + l + 32*(k&1)] (low nibble for k<2)
//         and high bits at bit 2k of qh[32h + l].
//   q8_K  256 values, 292 bytes: float d; 256 int8 qs; 16 int16 bsums.
//
// The other ids (iq*, tq*, mxfp4, nvfp4, q1_0, q2_0, integer and f64 types)
// are listed so that any GGUF file can be read and named; their sizes are
// known, but medquant cannot quantize them (see TypeTraits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/dtype.h"

namespace medquant::core {
class ThreadPool;
class Progress;
}  // namespace medquant::core

namespace medquant::quant {

// ggml's enum ggml_type, same numeric ids (the ids stored in GGUF files).
// Ids 4, 5, 31..33, 36..38 were removed from ggml and are not valid here.
enum class Type : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
};
inline constexpr uint32_t kTypeIdCount = 43;  // ggml's GGML_TYPE_COUNT

struct TypeTraits {
  std::string_view name;  // as ggml prints it: "f32", "q4_K", "iq2_xxs"
  int64_t block_size;     // values per block (1 for plain types)
  size_t type_size;       // bytes per block
  bool is_quantized;      // ggml's is_quantized
  bool can_quantize;      // quantize_rows() supports it
  bool can_dequantize;    // dequantize_row() supports it
};

// Type for a numeric id from a file; nullopt for ids that are not a type.
std::optional<Type> type_from_id(uint32_t id);
// Type for a name, case-insensitive ("q4_k", "Q4_K", "bf16"); nullopt if unknown.
std::optional<Type> parse_type(std::string_view name);

const TypeTraits& traits(Type type);
inline std::string_view type_name(Type type) {
  return traits(type).name;
}

// Bytes of a row of n values; throws Error if n is not a multiple of the
// block size.
size_t row_size(Type type, int64_t n);

// ggml_quantize_requires_imatrix: types that must not be made without one.
// (None of the types medquant quantizes require it.)
bool requires_imatrix(Type type);

// Quantizes nrows rows of n_per_row floats (contiguous) into dst
// (nrows * row_size(type, n_per_row) bytes), exactly as ggml_quantize_chunk:
// imatrix (nullable, n_per_row importance weights) selects ggml's
// importance-weighted path. Throws Error for an unsupported type or a row
// length that is not a multiple of the block size. Single-threaded; safe to
// call from several threads on disjoint rows.
void quantize_rows(Type type, const float* src, void* dst, int64_t nrows, int64_t n_per_row,
                   const float* imatrix);

// Decodes n values (a multiple of the block size) of one row, exactly as
// ggml's to_float for the type.
void dequantize_row(Type type, const void* src, float* dst, int64_t n);

// The instruction set the codecs run with: "avx512", "avx2" or "portable"
// (the environment variable MEDQUANT_KERNELS=portable|avx2 caps it). All of
// them give the same bytes; this is for logs and benchmarks.
std::string_view active_kernels();

// A whole tensor: nrows rows of n_per_row values of src_dtype (F32, F16 or
// BF16; converted to f32 a chunk of rows at a time) quantized into dst in
// parallel on pool, each chunk decoded again right away to measure the error.
// The bytes and the figures do not depend on the number of threads. Throws
// Error naming the row (and column) for a source value that is not finite
// or a block whose fp16 scale would overflow. progress, if given, is
// advanced by the number of values done.
struct TensorStats {
  double rmse = 0;         // sqrt(mean((dequantize(q) - x)^2)) over all values
  double max_abs_err = 0;  // largest |dequantize(q) - x|
  double rms_source = 0;   // sqrt(mean(x^2)), to put rmse in scale
};
// Running sums that merge the statistics of parts of a tensor (slabs, row
// ranges) into the whole tensor's.
struct TensorStatsSum {
  double sq_err = 0, sq_src = 0, max_abs = 0;
  uint64_t n = 0;
  void add(const TensorStats& part, uint64_t values);  // a part holding `values` values
  void merge(const TensorStatsSum& other);
  TensorStats result() const;
};
TensorStats quantize_tensor(Type type, core::DType src_dtype, const void* src, void* dst,
                            int64_t nrows, int64_t n_per_row, const float* imatrix,
                            core::ThreadPool& pool, core::Progress* progress = nullptr);

}  // namespace medquant::quant
