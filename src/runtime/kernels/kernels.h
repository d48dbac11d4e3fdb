// Micro-kernels of the executor, XNNPACK style: each is named by data type,
// tile shape and instruction set (f32_gemm_12x32__avx512, qu8_gemm_12x32__avx512vnni,
// ...), and one table of them is chosen once at start-up from the CPU's
// features (__builtin_cpu_supports). Every table has the same entries; the
// portable table is plain C++ (also what ARM builds run) and is the
// reference the others are tested against (tests/unit/test_runtime_kernels.cpp).
//
// Packed weight layouts (made once at load, for the table in use):
//   f32: panels of NR columns; panel p holds B[k][p*NR + j] at [k*NR + j],
//        columns past N zero.
//   q8:  panels of NR columns, K padded to a multiple of 4 (zeros); panel p
//        holds int8 B[4*g + t][p*NR + j] at [(g*NR + j)*4 + t] — the operand
//        layout of VNNI's vpdpbusd (u8 x s8 -> s32, 4 products per lane).
//        uint8 weights are stored as w - 128 and corrected with row sums of A.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace medquant::runtime {
class Parallel;
}

namespace medquant::runtime::kernels {

enum class Activation : int { None = 0, Gelu = 1 };

// C tile [mr x nc] = A tile [mr x kc] (row stride a_stride, floats) x packed
// panel w [kc x NR]; plus bias[j] when bias; mr <= MR, nc <= NR.
using F32GemmUkernel = void (*)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride,
                                const float* w, float* c, size_t c_stride, const float* bias);
// Int32 tile [mr x nc] = sum over k of A[m][k] (uint8) * W[k][n] (int8) with
// a packed panel; kc a multiple of 4 (A readable up to kc bytes per row).
using Q8GemmUkernel = void (*)(size_t mr, size_t nc, size_t kc, const uint8_t* a, size_t a_stride,
                               const int8_t* w, int32_t* c, size_t c_stride);

// Per-column terms of the integer GEMM's dequantizing epilogue (nc values each,
// bias may be null): see Table::q8_dequantize.
struct Q8Dequant {
  const int32_t* dcol;
  const int32_t* ccol;
  const float* scale;
  const float* bias;
  Activation act;
};

struct Table {
  std::string name;  // "avx512", "avx2", "portable", ...
  size_t f32_mr, f32_nr;
  F32GemmUkernel f32_gemm;
  std::string f32_gemm_name;
  size_t q8_mr, q8_nr;
  Q8GemmUkernel q8_gemm;
  std::string q8_gemm_name;
  // Row functions (n elements, any n).
  void (*softmax)(const float* x, float* y, size_t n);
  // y = x * s, or x / s when divide (rounded as the Mul / Div operators round).
  void (*scale)(const float* x, float* y, size_t n, float s, bool divide);
  // Attention's score rows, in place (rows of n, ld apart): x * s (or x / s),
  // + mask[j] when mask is not null, then softmax — exactly the values scale,
  // an Add and softmax give one after another.
  void (*attention_softmax)(float* x, size_t ld, size_t rows, size_t n, float s, bool divide, const float* mask);
  // The packed f32 panels (layout above, nr columns) of B = src^T, where src
  // is n rows of k floats, ld apart: panel p holds src[p*nr + j][kk] at
  // [kk*nr + j], columns past n zero.
  void (*pack_f32_transposed)(const float* src, size_t n, size_t k, size_t ld, size_t nr, float* d);
  // y = (x - mean) / sqrt(var + eps) * scale + bias (bias may be null).
  void (*layernorm)(const float* x, float* y, size_t n, const float* scale, const float* bias, float eps);
  void (*gelu)(const float* x, float* y, size_t n);  // 0.5 x (1 + erf(x / sqrt 2))
  void (*erf)(const float* x, float* y, size_t n);
  void (*exp)(const float* x, float* y, size_t n);
  void (*minmax)(const float* x, size_t n, float* min, float* max);
  // y = saturate(round_half_even(x / scale) + zp) to [0, 255].
  void (*quantize_u8)(const float* x, uint8_t* y, size_t n, float scale, int32_t zp);
  // One tile of the integer GEMM's epilogue, from the accumulators (rows x nc,
  // acc_stride apart): out[r][j] = float(acc[r][j] + dcol[j] * row[r] - ccol[j])
  // * scale[j] + bias[j] (a product then a sum, no FMA), then act; the integer
  // terms wrap as two's complement; row null means zeros.
  void (*q8_dequantize)(const int32_t* acc, size_t acc_stride, size_t rows, size_t nc, const int32_t* row,
                        const Q8Dequant& d, float* out, size_t ldo);
};

// The table for this CPU (MEDQUANT_ISA=portable|avx2|avxvnni|avx512|avx512vnni
// in the environment picks a lower one, for tests and comparisons).
const Table& best();
// Every table this CPU can run, portable first.
std::vector<const Table*> available();

const Table& portable_table();
#if defined(__x86_64__)
const Table* avx2_table();        // nullptr when the CPU lacks AVX2+FMA
const Table* avxvnni_table();     // AVX2 + AVX-VNNI
const Table* avx512_table();      // AVX-512 F/BW/DQ/VL
const Table* avx512vnni_table();  // AVX-512 + VNNI
#endif

// ---- packed weights and the GEMM operators built on the micro-kernels ----

struct PackedF32 {
  size_t k = 0, n = 0, nr = 0;
  std::shared_ptr<float[]> data;
  std::vector<float> bias;  // n values (+ padding), empty if none
  const float* panel(size_t p) const { return data.get() + p * k * nr; }
};
PackedF32 pack_f32(const Table& t, const float* b, size_t k, size_t n, size_t ldb, bool transposed = false);
// The same layout into caller memory (ceil(n / nr) * k * nr floats): B (k x n,
// or n x k when transposed) in panels of nr columns, columns past n zero. For
// operands packed on every run (attention's V) without an allocation each time.
void pack_f32_panels(const float* b, size_t k, size_t n, size_t ldb, bool transposed, size_t nr, float* d);

// C[M x N] = A[M x K] x B (+ bias) (then activation); rows of A lda apart, of C ldc apart.
void f32_gemm(const Table& t, size_t m, const float* a, size_t lda, const PackedF32& b, float* c,
              size_t ldc, Activation act, Parallel* pool);
// Unpacked B (row-major, ldb): packs on the fly (small K x N, batched MatMul).
void f32_gemm_unpacked(const Table& t, size_t m, size_t n, size_t k, const float* a, size_t lda,
                       const float* b, size_t ldb, bool b_transposed, float* c, size_t ldc);

struct PackedQ8 {
  size_t k = 0, kp = 0, n = 0, nr = 0;  // kp: k rounded up to 4
  bool unsigned_weights = false;        // stored as w - 128
  std::shared_ptr<int8_t[]> data;
  std::vector<int32_t> zero_point;      // per column (n)
  std::vector<int32_t> column_sum;      // sum over k of the stored (signed) values, per column
  const int8_t* panel(size_t p) const { return data.get() + p * kp * nr; }
};
// w: K x N row-major (int8 or uint8 bytes), zero points per column or one.
PackedQ8 pack_q8(const Table& t, const uint8_t* w, size_t k, size_t n, bool unsigned_weights,
                 const int32_t* zero_points, size_t zero_point_count);

// The integer product with zero points: acc[m][n] = sum_k (a - a_zp)(w - w_zp).
// Then either out_i32 = acc, or out_f32 = float(acc) * scale[n] (+ bias[n]) (then act).
struct Q8Output {
  int32_t* i32 = nullptr;
  float* f32 = nullptr;
  size_t ldc = 0;
  const float* scale = nullptr;  // per column
  bool scale_per_column = false;
  const float* bias = nullptr;   // per column, may be null
  Activation act = Activation::None;
};
// a: M rows of K uint8 values, rows lda apart, readable up to kp bytes (pad otherwise).
void q8_gemm(const Table& t, size_t m, const uint8_t* a, size_t lda, int32_t a_zero_point,
             const PackedQ8& b, const Q8Output& out, Parallel* pool);

}  // namespace medquant::runtime::kernels
