// core/: fp16/bf16 against independent references (exact arithmetic, the
// x86 conversion instructions, and ggml's own functions when linked), mmap
// bounds, atomic files (including a killed writer), sha256 vectors, thread pool,
// .npy files (round trip; broken and hostile headers refused naming the file).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <immintrin.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cfenv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/mapped_file.h"
#include "core/npy.h"
#include "core/sha256.h"
#include "core/thread_pool.h"

#ifdef MEDQUANT_HAVE_GGML
#include "ggml.h"
#endif

using namespace medquant;
using namespace medquant::core;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- references

// IEEE binary16 -> binary32 from the definition (exact: every half is a float).
uint32_t ref_fp16_to_fp32_bits(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  const int exp = (h >> 10) & 31;
  const uint32_t man = h & 1023;
  if (exp == 31)  // inf, or NaN: payload moved to the top of the float mantissa
    return sign | 0x7f800000u | (man << 13);
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -24)
                             : std::ldexp(static_cast<float>(man | 1024), exp - 25);
  return sign | float_bits(mag);
}

// binary32 -> binary16, round to nearest even, by exact double arithmetic.
// NaN maps to a NaN of the same sign (payload not modelled).
uint16_t ref_fp32_to_fp16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (std::isnan(f)) return sign | 0x7e00;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00;  // 65520 is the tie between 65504 and 2^16: even is inf
  if (a < std::ldexp(1.0, -14)) {          // subnormal range: units of 2^-24
    const double q = std::nearbyint(a * std::ldexp(1.0, 24));  // ties-to-even (default mode)
    return sign | static_cast<uint16_t>(q);  // q == 1024 is the smallest normal, same bits
  }
  int e = 0;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  e -= 1;             // a in [2^e, 2^(e+1))
  const double q = std::nearbyint(a * std::ldexp(1.0, 10 - e));  // in [1024, 2048]
  return sign | static_cast<uint16_t>(((e + 15) << 10) + static_cast<int>(q) - 1024);
}

// binary32 -> bfloat16, round to nearest even, by comparing the distances to
// the two neighbours in double (exact). NaN: same sign, quiet, payload kept.
uint16_t ref_fp32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  const uint32_t lo_bits = u & 0xffff0000u;  // toward zero
  const uint32_t hi_bits = lo_bits + 0x10000u;  // away from zero (may reach inf)
  if ((u & 0xffffu) == 0 || std::isinf(f)) return static_cast<uint16_t>(u >> 16);
  const double x = std::fabs(static_cast<double>(f));
  const double lo = std::fabs(static_cast<double>(bits_float(lo_bits)));
  const double hi = (hi_bits & 0x7fffffffu) == 0x7f800000u
                        ? std::ldexp(1.0, 128)  // the value "inf" rounds from
                        : std::fabs(static_cast<double>(bits_float(hi_bits)));
  const double dlo = x - lo, dhi = hi - x;
  bool up = dhi < dlo || (dhi == dlo && ((lo_bits >> 16) & 1));
  return static_cast<uint16_t>((up ? hi_bits : lo_bits) >> 16);
}

__attribute__((target("f16c"))) float hw_fp16_to_fp32(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t hw_fp32_to_fp16(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("avx512bf16,avx512vl"))) uint16_t hw_fp32_to_bf16(float f) {
  const __m128bh r = _mm_cvtneps_pbh(_mm_set_ss(f));
  return static_cast<uint16_t>(r[0]);
}
bool have_f16c() { return __builtin_cpu_supports("f16c"); }
bool have_avx512bf16() {
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
}

bool is_nan16(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }
bool is_nan_bf16(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0; }

// f32 patterns that exercise fp32 -> fp16 rounding: a sweep of 2^24 patterns
// over the whole space (low bits varied so every residue class appears),
// every half value, every rounding boundary (midpoint between neighbouring
// halves) and its f32 neighbours, both signs, plus specials.
std::vector<float> fp16_test_inputs() {
  std::vector<uint32_t> bits;
  bits.reserve((1u << 24) + 6 * 65536 + 64);
  for (uint32_t i = 0; i < (1u << 24); ++i) bits.push_back((i << 8) | ((i * 0x9E37u) & 0xff));
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float v = bits_float(ref_fp16_to_fp32_bits(static_cast<uint16_t>(h)));
    const float next = h + 1 < 0x7c00 ? bits_float(ref_fp16_to_fp32_bits(static_cast<uint16_t>(h + 1)))
                                      : 65536.0f;  // the value inf rounds from
    const float mid = (v + next) / 2;                // exact: halves have 11 bits
    for (float x : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      bits.push_back(float_bits(x));
      bits.push_back(float_bits(x) | 0x80000000u);
    }
  }
  for (uint32_t b : {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                     0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7fffffffu,
                     0xffffffffu, 0x7fa00000u, 0x00000001u, 0x807fffffu, 0x00800000u,
                     0x7f7fffffu, 0xff7fffffu})
    bits.push_back(b);
  for (float f : {65504.0f, 65519.0f, 65520.0f, std::nextafter(65520.0f, 0.0f),
                  std::nextafter(65520.0f, 1e30f), 65536.0f, 1e10f, std::ldexp(1.0f, -24),
                  std::ldexp(1.0f, -25), std::nextafter(std::ldexp(1.0f, -25), 1.0f),
                  std::nextafter(std::ldexp(1.0f, -25), 0.0f), 3 * std::ldexp(1.0f, -25),
                  5 * std::ldexp(1.0f, -25), std::ldexp(1.0f, -14), std::ldexp(1023.5f, -24),
                  std::ldexp(1.0f, -26)}) {
    bits.push_back(float_bits(f));
    bits.push_back(float_bits(-f));
  }
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bits_float(bits[i]);
  return out;
}

// Compares two halves; for NaN only NaN-ness and sign (payloads differ
// legitimately: ggml's software path and ours give the canonical 0x7e00, the
// F16C instruction keeps the top payload bits).
::testing::AssertionResult same_half(uint16_t got, uint16_t want, float input, const char* who) {
  if (is_nan16(want) ? (is_nan16(got) && (got & 0x8000) == (want & 0x8000)) : got == want)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << fmt::format("fp32_to_fp16({:#010x} = {}) = {:#06x}, {} says {:#06x}",
                        float_bits(input), input, got, who, want);
}

::testing::AssertionResult same_bf16(uint16_t got, uint16_t want, float input, const char* who) {
  if (is_nan_bf16(want) ? (is_nan_bf16(got) && (got & 0x8000) == (want & 0x8000)) : got == want)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << fmt::format("fp32_to_bf16({:#010x} = {}) = {:#06x}, {} says {:#06x}",
                        float_bits(input), input, got, who, want);
}

// Stops a sweep after a few failures instead of printing millions of lines.
#define EXPECT_SWEEP(cond, failures)      \
  do {                                    \
    auto _r = (cond);                     \
    if (!_r && ++(failures) <= 10) ADD_FAILURE() << _r.message(); \
  } while (0)

// A fresh folder per test, removed afterwards.
class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "medquant-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---------------------------------------------------------------- fp16

TEST(Half, Fp16ToFp32AllValuesMatchDefinition) {
  int failures = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t got = float_bits(fp16_to_fp32(static_cast<uint16_t>(h)));
    const uint32_t want = ref_fp16_to_fp32_bits(static_cast<uint16_t>(h));
    // NaN payloads: ours and the definition keep them; a quiet bit may be added.
    if (is_nan16(static_cast<uint16_t>(h))) {
      EXPECT_TRUE(std::isnan(bits_float(got))) << h;
      EXPECT_EQ(got >> 31, want >> 31) << h;
      EXPECT_EQ((got | 0x00400000u), (want | 0x00400000u)) << fmt::format("{:#06x}", h);
      continue;
    }
    if (got != want && ++failures <= 10)
      ADD_FAILURE() << fmt::format("fp16_to_fp32({:#06x}) = {:#010x}, want {:#010x}", h, got, want);
  }
  EXPECT_EQ(failures, 0);
}

TEST(Half, Fp16ToFp32AllValuesMatchF16C) {
  if (!have_f16c()) GTEST_SKIP() << "CPU has no F16C";
  int failures = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint32_t got = float_bits(fp16_to_fp32(static_cast<uint16_t>(h)));
    const uint32_t want = float_bits(hw_fp16_to_fp32(static_cast<uint16_t>(h)));
    if (got != want && ++failures <= 10)
      ADD_FAILURE() << fmt::format("fp16_to_fp32({:#06x}) = {:#010x}, F16C {:#010x}", h, got, want);
  }
  EXPECT_EQ(failures, 0);
}

TEST(Half, Fp16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
    if (is_nan16(static_cast<uint16_t>(h)))
      EXPECT_TRUE(is_nan16(back) && (back & 0x8000) == (h & 0x8000)) << h;
    else
      ASSERT_EQ(back, h) << fmt::format("{:#06x}", h);
  }
}

TEST(Half, Fp32ToFp16SweepMatchesExactRounding) {
  const auto inputs = fp16_test_inputs();
  int failures = 0;
  for (float f : inputs) EXPECT_SWEEP(same_half(fp32_to_fp16(f), ref_fp32_to_fp16(f), f, "exact"), failures);
  EXPECT_EQ(failures, 0) << "of " << inputs.size();
}

TEST(Half, Fp32ToFp16SweepMatchesF16C) {
  if (!have_f16c()) GTEST_SKIP() << "CPU has no F16C";
  const auto inputs = fp16_test_inputs();
  int failures = 0;
  for (float f : inputs) EXPECT_SWEEP(same_half(fp32_to_fp16(f), hw_fp32_to_fp16(f), f, "F16C"), failures);
  EXPECT_EQ(failures, 0) << "of " << inputs.size();
}

TEST(Half, Fp16Boundaries) {
  // Spelled out for the reader; the sweeps above check the same against references.
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-65520.0f), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even
  EXPECT_EQ(fp32_to_fp16(3 * std::ldexp(1.0f, -25)), 0x0002);  // tie to even
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_TRUE(is_nan16(fp32_to_fp16(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Half, RowsMatchScalar) {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
  std::vector<float> f(h.size());
  fp16_to_fp32_row(h.data(), f.data(), h.size());
  std::vector<uint16_t> back(h.size());
  fp32_to_fp16_row(f.data(), back.data(), f.size());
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(float_bits(f[i]), float_bits(fp16_to_fp32(h[i]))) << i;
    ASSERT_EQ(back[i], fp32_to_fp16(f[i])) << i;
  }
  bf16_to_fp32_row(h.data(), f.data(), h.size());
  fp32_to_bf16_row(f.data(), back.data(), f.size());
  for (uint32_t i = 0; i < 65536; ++i) {
    ASSERT_EQ(float_bits(f[i]), float_bits(bf16_to_fp32(h[i]))) << i;
    ASSERT_EQ(back[i], fp32_to_bf16(f[i])) << i;
  }
}

// ---------------------------------------------------------------- bf16

TEST(BFloat16, ToFp32AllValuesAreTheTopHalf) {
  // bfloat16 is by definition the top 16 bits of a binary32.
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(float_bits(bf16_to_fp32(static_cast<uint16_t>(h))), h << 16);
}

TEST(BFloat16, RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = fp32_to_bf16(bf16_to_fp32(static_cast<uint16_t>(h)));
    if (is_nan_bf16(static_cast<uint16_t>(h)))
      EXPECT_EQ(back, h | 0x40) << h;  // quietened, payload and sign kept
    else
      ASSERT_EQ(back, h);
  }
}

namespace {
// Every bf16 value with low halves 0, 1, 0x7fff, 0x8000 (the tie), 0x8001,
// 0xffff, and a stride through the rest: all boundary cases of the rounding.
std::vector<float> bf16_test_inputs() {
  std::vector<float> out;
  for (uint32_t h = 0; h < 65536; ++h)
    for (uint32_t low : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x4000u, 0xc000u})
      out.push_back(bits_float((h << 16) | low));
  for (uint32_t i = 0; i < (1u << 24); ++i) out.push_back(bits_float((i << 8) | ((i * 0x9E37u) & 0xff)));
  return out;
}
}  // namespace

TEST(BFloat16, FromFp32MatchesExactRounding) {
  const auto inputs = bf16_test_inputs();
  int failures = 0;
  for (float f : inputs) EXPECT_SWEEP(same_bf16(fp32_to_bf16(f), ref_fp32_to_bf16(f), f, "exact"), failures);
  EXPECT_EQ(failures, 0) << "of " << inputs.size();
  // Crafted ties, spelled out: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(fp32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie: even is 1.0
  EXPECT_EQ(fp32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie: even is up
  EXPECT_EQ(fp32_to_bf16(bits_float(0x7f7f8000u)), 0x7f80);  // tie above max: inf
  EXPECT_EQ(fp32_to_bf16(bits_float(0x7f7f7fffu)), 0x7f7f);
}

TEST(BFloat16, FromFp32MatchesAvx512Bf16) {
  if (!have_avx512bf16()) GTEST_SKIP() << "CPU has no AVX512-BF16";
  // VCVTNEPS2BF16 flushes subnormal inputs and outputs to zero (ggml and we
  // keep them), so only inputs with a normal, infinite or NaN exponent count.
  const auto inputs = bf16_test_inputs();
  int failures = 0, checked = 0;
  for (float f : inputs) {
    const uint32_t exp = (float_bits(f) >> 23) & 0xff;
    if (exp == 0) continue;
    const uint16_t want = hw_fp32_to_bf16(f);
    if ((want & 0x7f80) == 0 && (want & 0x7f)) continue;  // never: normal in, normal out
    ++checked;
    EXPECT_SWEEP(same_bf16(fp32_to_bf16(f), want, f, "VCVTNEPS2BF16"), failures);
  }
  EXPECT_EQ(failures, 0) << "of " << checked;
  EXPECT_GT(checked, 1000000);
}

#ifdef MEDQUANT_HAVE_GGML
// ggml is the reference the GGUF side must agree with bit for bit.
TEST(GgmlReference, Fp16ToFp32AllValues) {
  int failures = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = fp16_to_fp32(static_cast<uint16_t>(h));
    const float want = ggml_fp16_to_fp32(static_cast<ggml_fp16_t>(h));
    if (float_bits(got) != float_bits(want) && ++failures <= 10)
      ADD_FAILURE() << fmt::format("fp16_to_fp32({:#06x}) = {:#010x}, ggml {:#010x}", h,
                                   float_bits(got), float_bits(want));
  }
  EXPECT_EQ(failures, 0);
}

TEST(GgmlReference, Fp32ToFp16Sweep) {
  const auto inputs = fp16_test_inputs();
  int failures = 0;
  for (float f : inputs)
    EXPECT_SWEEP(same_half(fp32_to_fp16(f), ggml_fp32_to_fp16(f), f, "ggml"), failures);
  EXPECT_EQ(failures, 0) << "of " << inputs.size();
}

TEST(GgmlReference, Bf16BothWays) {
  for (uint32_t h = 0; h < 65536; ++h) {
    ggml_bf16_t b;
    b.bits = static_cast<uint16_t>(h);
    ASSERT_EQ(float_bits(bf16_to_fp32(static_cast<uint16_t>(h))), float_bits(ggml_bf16_to_fp32(b)));
  }
  const auto inputs = bf16_test_inputs();
  int failures = 0;
  for (float f : inputs)
    EXPECT_SWEEP(same_bf16(fp32_to_bf16(f), ggml_fp32_to_bf16(f).bits, f, "ggml"), failures);
  EXPECT_EQ(failures, 0) << "of " << inputs.size();
}
#endif

// ---------------------------------------------------------------- dtype

TEST(DType, NamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(DType::F8E5M2); ++i) {
    const auto t = static_cast<DType>(i);
    EXPECT_EQ(parse_dtype(dtype_name(t)), t) << dtype_name(t);
  }
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::U64), 8u);
  EXPECT_EQ(dtype_size(DType::F8E4M3), 1u);
  EXPECT_FALSE(parse_dtype("f128"));
}

// ---------------------------------------------------------------- MappedFile

using MappedFileTest = TempDir;

TEST_F(MappedFileTest, ViewsInsideAndAtTheEnd) {
  write_bytes(path("f"), "0123456789");
  MappedFile f(path("f"));
  ASSERT_EQ(f.size(), 10u);
  EXPECT_EQ(f.view(0, 10, "all").size(), 10u);
  auto last = f.view(9, 1, "last byte");
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0], '9');
  EXPECT_EQ(f.view(10, 0, "empty at end").size(), 0u);
  EXPECT_THAT(error_of([&] { f.view(10, 1, "one past"); }),
              HasSubstr("one past at offset 10 (1 bytes) runs past the end of the file (size 10)"));
  EXPECT_THAT(error_of([&] { f.view(11, 0, "beyond"); }), HasSubstr("runs past the end"));
  EXPECT_THAT(error_of([&] { f.view(5, 6, "tensor x"); }), HasSubstr(path("f") + ": tensor x"));
}

TEST_F(MappedFileTest, OffsetPlusLengthOverflowIsCaught) {
  write_bytes(path("f"), "0123456789");
  MappedFile f(path("f"));
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_THAT(error_of([&] { f.view(1, max, "huge"); }), HasSubstr("runs past the end"));
  EXPECT_THAT(error_of([&] { f.view(max, 2, "wrap"); }), HasSubstr("runs past the end"));
  EXPECT_THAT(error_of([&] { f.view(max - 4, 10, "wrap2"); }), HasSubstr("runs past the end"));
}

TEST_F(MappedFileTest, ZeroLengthFile) {
  write_bytes(path("empty"), "");
  MappedFile f(path("empty"));
  EXPECT_EQ(f.size(), 0u);
  EXPECT_EQ(f.view(0, 0, "nothing").size(), 0u);
  EXPECT_THAT(error_of([&] { f.view(0, 1, "a byte"); }), HasSubstr("runs past the end"));
}

TEST_F(MappedFileTest, MissingFileAndFolderAreNamed) {
  EXPECT_THAT(error_of([&] { MappedFile f(path("nope")); }),
              ::testing::AllOf(HasSubstr(path("nope")), HasSubstr("cannot open"),
                               HasSubstr("No such file")));
  EXPECT_THAT(error_of([&] { MappedFile f(dir_.string()); }),
              ::testing::AllOf(HasSubstr(dir_.string()), HasSubstr("not a regular file")));
}

TEST_F(MappedFileTest, MovesKeepTheMapping) {
  write_bytes(path("f"), "abc");
  MappedFile a(path("f"));
  MappedFile b(std::move(a));
  EXPECT_EQ(b.view(0, 3, "x")[2], 'c');
  MappedFile c(path("f"));
  c = std::move(b);
  EXPECT_EQ(c.size(), 3u);
  c.release(0, 3);  // advisory; the data stays readable
  EXPECT_EQ(c.view(0, 1, "x")[0], 'a');
  c.prefetch(0, 3);  // advisory too, and harmless past the end
  c.prefetch(2, 1000);
  c.prefetch(100, 5);
  EXPECT_EQ(c.view(0, 3, "x")[1], 'b');
}

// ---------------------------------------------------------------- AtomicFile

using AtomicFileTest = TempDir;

TEST_F(AtomicFileTest, CommitPutsTheFileInPlace) {
  {
    AtomicFile out(path("out.bin"));
    EXPECT_FALSE(fs::exists(path("out.bin")));
    out.write(std::string_view("hello "));
    out.write_zeros(3);
    out.write(std::string_view("world"));
    EXPECT_EQ(out.position(), 14u);
    out.commit();
  }
  EXPECT_EQ(read_bytes(path("out.bin")), std::string("hello \0\0\0world", 14));
  EXPECT_THAT(listing(), ::testing::ElementsAre("out.bin"));
}

TEST_F(AtomicFileTest, LargeWritesPassTheBuffer) {
  std::string big(9 << 20, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  {
    AtomicFile out(path("big"));
    out.write(std::string_view("head"));
    out.write(big);
    out.write(std::string_view("tail"));
    out.commit();
  }
  EXPECT_EQ(read_bytes(path("big")), "head" + big + "tail");
}

TEST_F(AtomicFileTest, DirectIoWritesTheSameBytes) {
  // Sizes that straddle the 4 KiB blocks and the 4 MiB staging buffer, zeros,
  // a write_at into flushed bytes and an unaligned tail.
  std::string expect;
  {
    AtomicFile out(path("direct"), /*direct_io=*/true);
    for (size_t n : {size_t{1}, size_t{4095}, size_t{4096}, size_t{5 << 20}, size_t{12345},
                     size_t{(4 << 20) - 3}, size_t{7}}) {
      std::string chunk(n, '\0');
      for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(i * 13 + n);
      out.write(chunk);
      expect += chunk;
    }
    out.write_zeros(100000);
    expect.append(100000, '\0');
    EXPECT_EQ(out.position(), expect.size());
    out.write_at(10, "XY", 2);
    expect[10] = 'X';
    expect[11] = 'Y';
    out.commit();
  }
  EXPECT_EQ(read_bytes(path("direct")), expect);
  EXPECT_THAT(listing(), ::testing::ElementsAre("direct"));
}

TEST_F(AtomicFileTest, ExceptionBeforeCommitLeavesNothing) {
  try {
    AtomicFile out(path("out.bin"));
    out.write(std::string(1 << 20, 'x'));
    throw std::runtime_error("interrupted");
  } catch (const std::runtime_error&) {
  }
  EXPECT_TRUE(listing().empty()) << ::testing::PrintToString(listing());
}

TEST_F(AtomicFileTest, ExistingFileIsReplacedOnlyAtCommit) {
  write_bytes(path("out.bin"), "old contents");
  {
    AtomicFile out(path("out.bin"));
    out.write(std::string_view("new"));
    out.write(std::string(5 << 20, 'n'));  // past the buffer: really on disk
    EXPECT_EQ(read_bytes(path("out.bin")), "old contents");
    out.commit();
  }
  EXPECT_EQ(read_bytes(path("out.bin")).substr(0, 3), "new");
  // An abandoned rewrite keeps the old file.
  write_bytes(path("keep.bin"), "keep me");
  { AtomicFile out(path("keep.bin")); out.write(std::string_view("lost")); }
  EXPECT_EQ(read_bytes(path("keep.bin")), "keep me");
  EXPECT_THAT(listing(), ::testing::ElementsAre("keep.bin", "out.bin"));
}

TEST_F(AtomicFileTest, KilledWriterLeavesNoFinalFile) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const std::string final_path = path("model.gguf");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    try {
      AtomicFile out(final_path);
      out.write(std::string(6 << 20, 'k'));  // more than the buffer: bytes on disk
      char c = 1;
      if (::write(ready[1], &c, 1) != 1) ::_exit(3);
      ::pause();  // killed here, before commit
      out.commit();
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(final_path));
  // The leftover temp is hidden and names the final file and the writer's pid.
  const std::string temp = fmt::format(".model.gguf.tmp.{}", child);
  EXPECT_THAT(listing(), ::testing::ElementsAre(temp));
  EXPECT_EQ(fs::file_size(path(temp)), 6u << 20);
}

TEST_F(AtomicFileTest, WriteAtFromManyThreads) {
  constexpr size_t kThreads = 8, kBlock = 100'003;
  {
    AtomicFile out(path("parallel.bin"));
    out.write(std::string_view("HDR!"));
    std::vector<std::thread> threads;
    for (size_t t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        std::string block(kBlock, static_cast<char>('a' + t));
        // Small pieces so the threads really interleave.
        for (size_t off = 0; off < kBlock; off += 4096)
          out.write_at(4 + t * kBlock + off, block.data() + off, std::min<size_t>(4096, kBlock - off));
      });
    for (auto& th : threads) th.join();
    out.commit();
  }
  const std::string got = read_bytes(path("parallel.bin"));
  ASSERT_EQ(got.size(), 4 + kThreads * kBlock);
  EXPECT_EQ(got.substr(0, 4), "HDR!");
  for (size_t t = 0; t < kThreads; ++t)
    EXPECT_EQ(got.substr(4 + t * kBlock, kBlock), std::string(kBlock, static_cast<char>('a' + t)));
}

TEST_F(AtomicFileTest, MissingFolderIsNamed) {
  EXPECT_THAT(error_of([&] { AtomicFile out(path("no/such/out.bin")); }),
              HasSubstr("output folder"));
}

TEST_F(AtomicFileTest, SmallFileHelpers) {
  write_file_atomic(path("a.txt"), "text\n");
  EXPECT_EQ(read_text_file(path("a.txt")), "text\n");
  EXPECT_THAT(error_of([&] { read_text_file(path("missing.txt")); }), HasSubstr("missing.txt"));
}

// ---------------------------------------------------------------- Sha256

TEST(Sha256, KnownVectors) {
  // FIPS 180-2 appendix B and the empty message.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingEqualsOneShot) {
  std::string msg(1'000'000, 'a');
  Sha256 h;
  for (size_t off = 0; off < msg.size(); off += 997) h.update(msg.substr(off, 997));
  EXPECT_EQ(h.hex_digest(), sha256_hex(msg));
  const uint8_t bytes[] = {0xde, 0xad, 0xbe, 0xef};
  EXPECT_EQ(to_hex(bytes, 4), "deadbeef");
}

using Sha256File = TempDir;

TEST_F(Sha256File, FileHashEqualsHashOfContents) {
  std::string data(3'000'001, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  write_bytes(path("blob"), data);
  EXPECT_EQ(sha256_file(path("blob")), sha256_hex(data));
  write_bytes(path("empty"), "");
  EXPECT_EQ(sha256_file(path("empty")), sha256_hex(""));
  EXPECT_THAT(error_of([&] { sha256_file(path("absent")); }), HasSubstr(path("absent")));
}

// ---------------------------------------------------------------- ThreadPool

TEST(ThreadPool, EveryIndexExactlyOnce) {
  for (size_t threads : {1u, 2u, 3u, 4u, 7u, 16u}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (size_t n : {0u, 1u, 2u, 3u, 5u, 15u, 16u, 17u, 100u, 1000u, 12345u}) {
      std::vector<std::atomic<int>> seen(n + 20);
      pool.parallel_for(10, 10 + n, [&](size_t i) { seen[i].fetch_add(1); });
      for (size_t i = 0; i < seen.size(); ++i)
        ASSERT_EQ(seen[i].load(), (i >= 10 && i < 10 + n) ? 1 : 0)
            << "threads " << threads << " n " << n << " i " << i;
    }
  }
}

TEST(ThreadPool, ChunksCoverTheRangeContiguously) {
  ThreadPool pool(4);
  std::mutex m;
  std::vector<std::pair<size_t, size_t>> chunks;
  pool.parallel_chunks(5, 1005, [&](size_t b, size_t e) {
    std::lock_guard<std::mutex> lock(m);
    chunks.emplace_back(b, e);
  });
  std::sort(chunks.begin(), chunks.end());
  ASSERT_LE(chunks.size(), 4u);
  EXPECT_EQ(chunks.front().first, 5u);
  EXPECT_EQ(chunks.back().second, 1005u);
  for (size_t i = 1; i < chunks.size(); ++i) EXPECT_EQ(chunks[i].first, chunks[i - 1].second);
}

TEST(ThreadPool, ExceptionPropagatesAndPoolStaysUsable) {
  ThreadPool pool(4);
  for (size_t bad : {0u, 500u, 999u}) {  // thrown on the caller's chunk and on workers'
    EXPECT_THROW(pool.parallel_for(0, 1000,
                                   [&](size_t i) {
                                     if (i == bad) throw Error("boom");
                                   }),
                 Error);
  }
  std::atomic<size_t> sum{0};
  pool.parallel_for(0, 1000, [&](size_t i) { sum += i; });
  EXPECT_EQ(sum.load(), 999u * 1000 / 2);
}

TEST(ThreadPool, SizeOneRunsOnTheCaller) {
  ThreadPool pool(1);
  const auto me = std::this_thread::get_id();
  size_t count = 0;  // no atomics needed: one thread
  pool.parallel_for(0, 100, [&](size_t) {
    EXPECT_EQ(std::this_thread::get_id(), me);
    ++count;
  });
  EXPECT_EQ(count, 100u);
  ThreadPool zero(0);  // clamped to 1
  EXPECT_EQ(zero.size(), 1u);
}

TEST(ThreadPool, ReusedAcrossManyCalls) {
  ThreadPool pool(3);
  std::atomic<uint64_t> total{0};
  for (int call = 0; call < 2000; ++call)
    pool.parallel_for(0, static_cast<size_t>(call % 7), [&](size_t i) { total += i + 1; });
  uint64_t want = 0;
  for (int call = 0; call < 2000; ++call) {
    const uint64_t n = static_cast<uint64_t>(call % 7);
    want += n * (n + 1) / 2;
  }
  EXPECT_EQ(total.load(), want);
}

TEST(ThreadPool, DefaultPoolFollowsSetting) {
  set_default_threads(3);
  EXPECT_EQ(default_threads(), 3u);
  EXPECT_EQ(default_pool().size(), 3u);
  set_default_threads(0);
  EXPECT_GE(default_threads(), 1u);
  std::atomic<int> n{0};
  default_pool().parallel_for(0, 50, [&](size_t) { ++n; });
  EXPECT_EQ(n.load(), 50);
  set_default_threads(0);  // leave no worker threads behind for fork() tests
}

// ---------------------------------------------------------------- npy

// A version 1.0 .npy file with this header dict and data, padded as numpy pads.
std::string npy_file(const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  const std::string len{static_cast<char>(h.size() & 0xff), static_cast<char>(h.size() >> 8)};
  return std::string("\x93NUMPY\x01\x00", 8) + len + h + data;
}

using NpyTest = TempDir;

TEST_F(NpyTest, RoundTripAndEveryTruncationIsNamed) {
  NpyArray a;
  a.dtype = DType::F32;
  a.shape = {2, 3};
  for (int i = 0; i < 6; ++i) {
    const float f = static_cast<float>(i) - 2.5f;
    const auto* b = reinterpret_cast<const uint8_t*>(&f);
    a.data.insert(a.data.end(), b, b + 4);
  }
  write_npy(path("a.npy"), a);
  const NpyArray back = read_npy(path("a.npy"));
  EXPECT_EQ(back.shape, a.shape);
  EXPECT_EQ(back.data, a.data);
  const std::string full = read_bytes(path("a.npy"));
  EXPECT_EQ(full, npy_bytes(a));
  for (size_t n = 0; n < full.size(); ++n) {
    write_bytes(path("cut.npy"), full.substr(0, n));
    EXPECT_THAT(error_of([&] { read_npy(path("cut.npy")); }), HasSubstr(path("cut.npy") + ": ")) << n;
  }
}

TEST_F(NpyTest, HostileHeadersAreRefused) {
  const std::string f4 = "'descr': '<f4', 'fortran_order': False, ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not a .npy file"},
      {"PK\x03\x04 this is a zip", "not a .npy file"},
      {std::string("\x93NUMPY\x09\x00\x10\x00", 10) + std::string(16, ' '), ".npy version 9 is not supported"},
      {npy_file("{" + f4 + "'shape': (-1, 2), }", ""), "bad .npy shape (-1, 2)"},
      {npy_file("{" + f4 + "'shape': (99999999999999999999,), }", ""), "absurd .npy shape"},
      {npy_file("{" + f4 + "'shape': (4000000, 4000000, 4000000), }", ""), "absurd .npy shape"},
      {npy_file("{" + f4 + "'shape': (1000,), }", "abcd"), ".npy data is 4 bytes, its shape needs 4000"},
      {npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, '\0')),
       "Fortran-order arrays are not supported"},
      {npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "abcd"),
       ".npy element type '>f4' is not supported"},
      {npy_file("{'descr': '<f4', 'shape': (1,), }", "abcd"), ".npy header has no 'fortran_order'"},
      {npy_file("{" + f4 + "'shape': (1, ", "abcd"), "malformed .npy header"},
  };
  for (const auto& [bytes, want] : cases) {
    write_bytes(path("bad.npy"), bytes);
    EXPECT_THAT(error_of([&] { read_npy(path("bad.npy")); }), HasSubstr(path("bad.npy") + ": " + want))
        << want;
  }
  EXPECT_THAT(error_of([&] { read_npy(path("missing.npy")); }), HasSubstr(path("missing.npy")));
}
