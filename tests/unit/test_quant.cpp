// quant/ against the pinned ggml itself: for every type we quantize, with and
// without an importance matrix, on many kinds of rows, our bytes must equal
// ggml_quantize_chunk's and our decoded floats must equal ggml's to_float,
// bit for bit; each SIMD kernel set must equal the portable one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "ggml-quants.h"  // for dequantize_row_q8_K, which is no type trait
#include "ggml.h"
#include "quant/kernels.h"
#include "quant/quant.h"

namespace medquant::quant {
namespace {

enum class Dist {
  Normal,
  Uniform,
  HeavyTail,
  Zero,
  Constant,
  NegConstant,
  Outlier,
  Tiny,
  Subnormal,
  Sparse,
  Positive,
  BlockScales,
  Denormal,
  NonFinite,
};
const Dist kDists[] = {Dist::Normal,    Dist::Uniform,     Dist::HeavyTail, Dist::Zero,
                       Dist::Constant,  Dist::NegConstant, Dist::Outlier,   Dist::Tiny,
                       Dist::Subnormal, Dist::Sparse,      Dist::Positive,  Dist::BlockScales,
                       Dist::Denormal,  Dist::NonFinite};

const char* dist_name(Dist d) {
  switch (d) {
    case Dist::Normal:
      return "normal";
    case Dist::Uniform:
      return "uniform";
    case Dist::HeavyTail:
      return "heavy-tailed";
    case Dist::Zero:
      return "all-zero";
    case Dist::Constant:
      return "constant";
    case Dist::NegConstant:
      return "negative-constant";
    case Dist::Outlier:
      return "one-huge-outlier";
    case Dist::Tiny:
      return "tiny";
    case Dist::Subnormal:
      return "fp16-subnormal";
    case Dist::Sparse:
      return "sparse";
    case Dist::Positive:
      return "positive";
    case Dist::BlockScales:
      return "per-block-scales";
    case Dist::Denormal:
      return "float-denormal";
    case Dist::NonFinite:
      return "with-nan-and-inf";
  }
  return "?";
}

std::vector<float> make_rows(Dist d, int64_t nrows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<float> x(nrows * n);
  for (int64_t r = 0; r < nrows; ++r) {
    float* row = x.data() + r * n;
    switch (d) {
      case Dist::Normal:
        for (int64_t i = 0; i < n; ++i) row[i] = 0.02f * normal(rng);
        break;
      case Dist::Uniform:
        for (int64_t i = 0; i < n; ++i) row[i] = uniform(rng);
        break;
      case Dist::HeavyTail:  // Student-t with 2 degrees of freedom
        for (int64_t i = 0; i < n; ++i) {
          float z = normal(rng), a = normal(rng), b = normal(rng);
          row[i] = 0.01f * z / std::sqrt((a * a + b * b) / 2 + 1e-12f);
        }
        break;
      case Dist::Zero:
        break;
      case Dist::Constant:
        for (int64_t i = 0; i < n; ++i) row[i] = 0.375f + r;
        break;
      case Dist::NegConstant:
        for (int64_t i = 0; i < n; ++i) row[i] = -0.3f - r;
        break;
      case Dist::Outlier:
        for (int64_t i = 0; i < n; ++i) row[i] = 0.02f * normal(rng);
        row[rng() % n] = (r % 2 ? -1 : 1) * 40.f;
        break;
      case Dist::Tiny:
        for (int64_t i = 0; i < n; ++i) row[i] = 1e-5f * normal(rng);
        break;
      case Dist::Subnormal:  // block scales fall into fp16's subnormal range or under it
        for (int64_t i = 0; i < n; ++i) row[i] = 3e-8f * normal(rng) * (1 + (i / 32) % 4);
        break;
      case Dist::Sparse:
        for (int64_t i = 0; i < n; ++i) row[i] = rng() % 8 == 0 ? normal(rng) : 0.f;
        break;
      case Dist::Positive:
        for (int64_t i = 0; i < n; ++i) row[i] = 0.5f + std::fabs(normal(rng));
        break;
      case Dist::BlockScales:
        for (int64_t i = 0; i < n; i += 16) {
          const float s = std::exp(3 * normal(rng)) * 0.01f;
          const float shift = rng() % 3 == 0 ? s * normal(rng) : 0.f;
          for (int64_t j = i; j < std::min(n, i + 16); ++j) row[j] = shift + s * normal(rng);
        }
        break;
      case Dist::NonFinite:  // garbage in, but the same garbage out as ggml
        for (int64_t i = 0; i < n; ++i) row[i] = 0.02f * normal(rng);
        row[rng() % n] = NAN;
        row[rng() % n] = r % 2 ? INFINITY : -INFINITY;
        break;
      case Dist::Denormal:  // scales whose inverse overflows to inf
        for (int64_t i = 0; i < n; ++i) row[i] = rng() % 2 ? 1e-39f * normal(rng) : 0.f;
        break;
    }
  }
  return x;
}

enum class Imatrix { None, Random, HugeEntries, SomeZero };
const Imatrix kImatrices[] = {Imatrix::None, Imatrix::Random, Imatrix::HugeEntries,
                              Imatrix::SomeZero};
const char* imatrix_name(Imatrix m) {
  switch (m) {
    case Imatrix::None:
      return "no imatrix";
    case Imatrix::Random:
      return "random imatrix";
    case Imatrix::HugeEntries:
      return "imatrix with huge entries";
    case Imatrix::SomeZero:
      return "imatrix with zeros";
  }
  return "?";
}

std::vector<float> make_imatrix(Imatrix m, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::exponential_distribution<float> expo(1.f);
  std::vector<float> w(n);
  for (auto& v : w) v = 0.01f + expo(rng);
  if (m == Imatrix::HugeEntries) {
    for (int k = 0; k < 1 + n / 200; ++k) w[rng() % n] = 1e6f * (1 + expo(rng));
  } else if (m == Imatrix::SomeZero) {
    for (auto& v : w) v = rng() % 4 == 0 ? 0.f : v;
  }
  return w;
}

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    s += buf;
  }
  return s;
}

// Empty if equal, else where and how the first differing block differs.
std::string first_difference(Type type, const std::vector<uint8_t>& ours,
                             const std::vector<uint8_t>& ref, int64_t n_per_row) {
  if (ours.size() != ref.size()) return "sizes differ";
  if (std::memcmp(ours.data(), ref.data(), ours.size()) == 0) return "";
  const size_t bs = traits(type).type_size;
  const int64_t blocks_per_row = n_per_row / traits(type).block_size;
  for (size_t b = 0; b * bs < ours.size(); ++b) {
    if (std::memcmp(ours.data() + b * bs, ref.data() + b * bs, bs) != 0) {
      return "row " + std::to_string(b / blocks_per_row) + " block " +
             std::to_string(b % blocks_per_row) + ":\n ours " + hex(ours.data() + b * bs, bs) +
             "\n ggml " + hex(ref.data() + b * bs, bs);
    }
  }
  return "?";
}

// ggml's decoder for a type (f32 has none: its rows are the floats).
void ggml_decode(Type type, const void* src, float* dst, int64_t n) {
  if (type == Type::F32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  ggml_get_type_traits(static_cast<ggml_type>(type))->to_float(src, dst, n);
}

const Type kCodecTypes[] = {Type::F32,  Type::F16,  Type::BF16, Type::Q4_0, Type::Q4_1,
                            Type::Q5_0, Type::Q5_1, Type::Q8_0, Type::Q2_K, Type::Q3_K,
                            Type::Q4_K, Type::Q5_K, Type::Q6_K};

std::vector<detail::Isa> available_isas() {
  std::vector<detail::Isa> isas{detail::Isa::Portable};
  if (detail::avx2_kernels()) isas.push_back(detail::Isa::Avx2);
  if (detail::avx512_kernels()) isas.push_back(detail::Isa::Avx512);
  return isas;
}

class QuantVsGgml : public ::testing::TestWithParam<Type> {
 protected:
  void TearDown() override {
    detail::set_isa(detail::Isa::Avx512) || detail::set_isa(detail::Isa::Avx2);
  }
};

TEST_P(QuantVsGgml, BytesAndDecodeMatch) {
  const Type type = GetParam();
  const auto gtype = static_cast<ggml_type>(type);
  const int64_t block = traits(type).block_size;
  std::vector<int64_t> lengths = {256, 512, 2560, 10240};
  if (block == 32 || block == 1) lengths.insert(lengths.end(), {32, 96, 160, 288, 800, 2592});
  const auto isas = available_isas();
  uint32_t seed = 1;
  int cases = 0;
  for (int64_t n : lengths) {
    const int64_t nrows = n >= 2560 ? 2 : 5;
    for (Dist dist : kDists) {
      const std::vector<float> x = make_rows(dist, nrows, n, seed++);
      for (Imatrix im : kImatrices) {
        const std::vector<float> w = make_imatrix(im, n, seed++);
        const float* imatrix = im == Imatrix::None ? nullptr : w.data();
        const std::string what = std::string(dist_name(dist)) + " rows of " + std::to_string(n) +
                                 ", " + imatrix_name(im);
        const size_t rs = row_size(type, n);
        ASSERT_EQ(rs, ggml_row_size(gtype, n));
        std::vector<uint8_t> ref(nrows * rs);
        ASSERT_EQ(ggml_quantize_chunk(gtype, x.data(), ref.data(), 0, nrows, n, imatrix),
                  ref.size());
        for (detail::Isa isa : isas) {
          ASSERT_TRUE(detail::set_isa(isa));
          std::vector<uint8_t> ours(nrows * rs, 0xAA);
          quantize_rows(type, x.data(), ours.data(), nrows, n, imatrix);
          const std::string diff = first_difference(type, ours, ref, n);
          ASSERT_EQ(diff, "") << type_name(type) << ", " << what << ", kernels "
                              << detail::kernels().isa;
        }
        // Decoding ggml's bytes.
        std::vector<float> ours_f(n), ref_f(n);
        for (int64_t r = 0; r < nrows; ++r) {
          dequantize_row(type, ref.data() + r * rs, ours_f.data(), n);
          ggml_decode(type, ref.data() + r * rs, ref_f.data(), n);
          ASSERT_EQ(std::memcmp(ours_f.data(), ref_f.data(), n * sizeof(float)), 0)
              << type_name(type) << " decode, " << what << ", row " << r;
        }
        ++cases;
      }
    }
  }
  EXPECT_GT(cases, 0);
}

TEST_P(QuantVsGgml, DecodesArbitraryBytesLikeGgml) {
  const Type type = GetParam();
  const int64_t n = 2560;
  std::mt19937 rng(42);
  std::vector<uint8_t> bytes(row_size(type, n));
  for (int trial = 0; trial < 20; ++trial) {
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    std::vector<float> ours(n), ref(n);
    dequantize_row(type, bytes.data(), ours.data(), n);
    ggml_decode(type, bytes.data(), ref.data(), n);
    // Same bits, except that a NaN may carry another payload (ggml's
    // compiler may swap the operands of a product).
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(ours[i]) && std::isnan(ref[i])) continue;
      ASSERT_EQ(core::float_bits(ours[i]), core::float_bits(ref[i]))
          << type_name(type) << " trial " << trial << " value " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, QuantVsGgml, ::testing::ValuesIn(kCodecTypes),
                         [](const ::testing::TestParamInfo<Type>& info) {
                           return std::string(type_name(info.param));
                         });

// Each SIMD kernel against the portable one on its own, with sub-block
// counts that leave partly filled vectors (the row codecs rarely do).
TEST(QuantKernels, SimdMatchesPortable) {
  const detail::SearchKernels& ref = detail::portable_kernels();
  std::vector<const detail::SearchKernels*> fast;
  if (detail::avx2_kernels()) fast.push_back(detail::avx2_kernels());
  if (detail::avx512_kernels()) fast.push_back(detail::avx512_kernels());
  if (fast.empty()) GTEST_SKIP() << "no SIMD kernels on this CPU";
  auto same_floats = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
  };
  uint32_t seed = 100;
  for (const detail::SearchKernels* k : fast) {
    for (int n : {16, 32}) {
      for (int64_t nsub : {1, 7, 16, 17, 33, 50}) {
        for (Dist dist : {Dist::Normal, Dist::BlockScales, Dist::Sparse, Dist::Outlier}) {
          const std::vector<float> x = make_rows(dist, 1, n * nsub, seed++);
          const std::vector<float> w = make_imatrix(Imatrix::Random, n * nsub, seed++);
          const std::string what = std::string(k->isa) + " n=" + std::to_string(n) +
                                   " nsub=" + std::to_string(nsub) + " " + dist_name(dist);
          for (bool qkx3 : {false, true}) {
            for (bool mad : {false, true}) {
              std::vector<uint8_t> La(n * nsub), Lb(n * nsub);
              std::vector<float> sa(nsub), sb(nsub), ma(nsub), mb(nsub);
              ref.qkx(n, nsub, 15, x.data(), w.data(), La.data(), sa.data(), ma.data(), -0.9f,
                      0.05f, 36, mad, qkx3);
              k->qkx(n, nsub, 15, x.data(), w.data(), Lb.data(), sb.data(), mb.data(), -0.9f, 0.05f,
                     36, mad, qkx3);
              ASSERT_EQ(La, Lb) << "qkx " << what;
              ASSERT_TRUE(same_floats(sa, sb) && same_floats(ma, mb)) << "qkx " << what;
            }
          }
          for (int nmax : {4, 8, 32}) {
            for (const float* qw :
                 {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
              std::vector<int8_t> La(n * nsub), Lb(n * nsub);
              std::vector<float> sa(nsub), sb(nsub);
              ref.qx(n, nsub, nmax, x.data(), qw, La.data(), sa.data());
              k->qx(n, nsub, nmax, x.data(), qw, Lb.data(), sb.data());
              ASSERT_EQ(La, Lb) << "qx nmax " << nmax << " " << what;
              ASSERT_TRUE(same_floats(sa, sb)) << "qx nmax " << nmax << " " << what;
            }
          }
          {
            std::vector<int8_t> La(n * nsub), Lb(n * nsub);
            std::vector<float> sa(nsub), sb(nsub);
            ref.q3(n, nsub, 4, x.data(), La.data(), sa.data());
            k->q3(n, nsub, 4, x.data(), Lb.data(), sb.data());
            ASSERT_EQ(La, Lb) << "q3 " << what;
            ASSERT_TRUE(same_floats(sa, sb)) << "q3 " << what;
          }
          if (nsub <= 16) {
            std::vector<float> d(nsub), dm(nsub);
            for (int64_t j = 0; j < nsub; ++j) {
              d[j] = j % 5 == 0 ? 0.f : 0.003f * (1 + j);
              dm[j] = 0.01f * j;
            }
            for (const float* m :
                 {static_cast<const float*>(nullptr), static_cast<const float*>(dm.data())}) {
              std::vector<uint8_t> La(n * nsub, 7), Lb(n * nsub, 7);
              ref.requant(n, nsub, x.data(), d.data(), m, -4, 3, 4, La.data());
              k->requant(n, nsub, x.data(), d.data(), m, -4, 3, 4, Lb.data());
              ASSERT_EQ(La, Lb) << "requant " << what;
            }
          }
        }
      }
    }
    for (int64_t nb : {1, 5, 17, 40}) {
      const std::vector<float> x = make_rows(Dist::BlockScales, 1, 32 * nb, seed++);
      for (auto kind : {detail::Legacy::Q4_0, detail::Legacy::Q4_1, detail::Legacy::Q5_0,
                        detail::Legacy::Q5_1, detail::Legacy::Q8_0}) {
        std::vector<uint8_t> a(36 * nb, 0), b(36 * nb, 0);
        ref.legacy_ref(kind, x.data(), a.data(), nb);
        k->legacy_ref(kind, x.data(), b.data(), nb);
        ASSERT_EQ(a, b) << k->isa << " legacy kind " << static_cast<int>(kind) << " nb " << nb;
      }
    }
  }
}

TEST(QuantTypes, TraitsMatchGgml) {
  for (uint32_t id = 0; id < kTypeIdCount; ++id) {
    const auto gtype = static_cast<ggml_type>(id);
    const auto type = type_from_id(id);
    const int64_t gblock = ggml_blck_size(gtype);
    if (!type) {
      EXPECT_EQ(gblock, 0) << "id " << id << " is a ggml type: " << ggml_type_name(gtype);
      continue;
    }
    const TypeTraits& t = traits(*type);
    EXPECT_EQ(t.name, ggml_type_name(gtype)) << id;
    EXPECT_EQ(t.block_size, gblock) << t.name;
    EXPECT_EQ(t.type_size, ggml_type_size(gtype)) << t.name;
    EXPECT_EQ(t.is_quantized, ggml_is_quantized(gtype)) << t.name;
    EXPECT_EQ(requires_imatrix(*type), ggml_quantize_requires_imatrix(gtype)) << t.name;
    EXPECT_EQ(row_size(*type, 4096 * gblock), ggml_row_size(gtype, 4096 * gblock)) << t.name;
    if (t.can_dequantize && *type != Type::Q8_K && *type != Type::F32) {
      EXPECT_NE(ggml_get_type_traits(gtype)->to_float, nullptr) << t.name;
    }
    EXPECT_EQ(parse_type(t.name), type);
  }
  EXPECT_EQ(parse_type("Q4_K"), Type::Q4_K);
  EXPECT_EQ(parse_type("BF16"), Type::BF16);
  EXPECT_EQ(parse_type("q4_k_m"), std::nullopt);
  EXPECT_EQ(type_from_id(4), std::nullopt);
  EXPECT_EQ(type_from_id(31), std::nullopt);
  EXPECT_EQ(type_from_id(kTypeIdCount), std::nullopt);
  EXPECT_FALSE(active_kernels().empty());
}

TEST(QuantTypes, DecodesQ8KLikeGgml) {
  const int64_t n = 2560;
  std::mt19937 rng(5);
  std::vector<uint8_t> bytes(row_size(Type::Q8_K, n));
  for (int trial = 0; trial < 20; ++trial) {
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    std::vector<float> ours(n), ref(n);
    dequantize_row(Type::Q8_K, bytes.data(), ours.data(), n);
    dequantize_row_q8_K(reinterpret_cast<const block_q8_K*>(bytes.data()), ref.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(ours[i]) && std::isnan(ref[i])) continue;
      ASSERT_EQ(core::float_bits(ours[i]), core::float_bits(ref[i])) << "value " << i;
    }
  }
}

TEST(QuantTypes, RejectsBadInput) {
  std::vector<float> x(300, 1.f);
  std::vector<uint8_t> y(1024);
  EXPECT_THROW(row_size(Type::Q4_K, 300), Error);
  EXPECT_THROW(row_size(Type::Q4_0, -32), Error);
  EXPECT_THROW(quantize_rows(Type::Q4_K, x.data(), y.data(), 1, 300, nullptr), Error);
  EXPECT_THROW(quantize_rows(Type::IQ2_XXS, x.data(), y.data(), 1, 256, nullptr), Error);
  EXPECT_THROW(dequantize_row(Type::IQ4_XS, y.data(), x.data(), 256), Error);
  EXPECT_THROW(traits(static_cast<Type>(5)), Error);
  EXPECT_THROW(traits(static_cast<Type>(1000)), Error);
}

// quantize_tensor: ggml's bytes at any thread count, from f32/f16/bf16, and
// an RMSE that agrees with one computed here from ggml's decoder.
TEST(QuantTensor, MatchesGgmlAtAnyThreadCount) {
  const int64_t nrows = 37, n = 2560;
  std::vector<float> x = make_rows(Dist::BlockScales, nrows, n, 7);
  std::vector<float> w = make_imatrix(Imatrix::Random, n, 8);
  std::vector<uint16_t> h(x.size()), b(x.size());
  core::fp32_to_fp16_row(x.data(), h.data(), x.size());
  core::fp32_to_bf16_row(x.data(), b.data(), x.size());
  std::vector<float> xh(x.size()), xb(x.size());
  ggml_fp16_to_fp32_row(reinterpret_cast<const ggml_fp16_t*>(h.data()), xh.data(), x.size());
  ggml_bf16_to_fp32_row(reinterpret_cast<const ggml_bf16_t*>(b.data()), xb.data(), x.size());
  core::ThreadPool pool1(1), pool3(3);
  for (Type type : {Type::Q4_K, Type::Q6_K, Type::Q8_0, Type::Q5_1, Type::F16}) {
    const auto gtype = static_cast<ggml_type>(type);
    const size_t rs = row_size(type, n);
    for (const float* imatrix :
         {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
      struct Src {
        core::DType dtype;
        const void* data;
        const float* f32;
      };
      for (Src src :
           {Src{core::DType::F32, x.data(), x.data()}, Src{core::DType::F16, h.data(), xh.data()},
            Src{core::DType::BF16, b.data(), xb.data()}}) {
        std::vector<uint8_t> ref(nrows * rs), a(nrows * rs), c(nrows * rs);
        ggml_quantize_chunk(gtype, src.f32, ref.data(), 0, nrows, n, imatrix);
        const TensorStats s1 =
            quantize_tensor(type, src.dtype, src.data, a.data(), nrows, n, imatrix, pool1);
        const TensorStats s3 =
            quantize_tensor(type, src.dtype, src.data, c.data(), nrows, n, imatrix, pool3);
        ASSERT_EQ(first_difference(type, a, ref, n), "") << type_name(type);
        ASSERT_EQ(a, c) << type_name(type);
        EXPECT_EQ(s1.rmse, s3.rmse);
        EXPECT_EQ(s1.max_abs_err, s3.max_abs_err);
        double se = 0, sx = 0, me = 0;
        std::vector<float> d(n);
        for (int64_t r = 0; r < nrows; ++r) {
          ggml_decode(type, ref.data() + r * rs, d.data(), n);
          for (int64_t i = 0; i < n; ++i) {
            const double e = static_cast<double>(d[i]) - src.f32[r * n + i];
            se += e * e;
            sx += static_cast<double>(src.f32[r * n + i]) * src.f32[r * n + i];
            me = std::max(me, std::fabs(e));
          }
        }
        EXPECT_NEAR(s1.rmse, std::sqrt(se / (nrows * n)), 1e-9 * std::sqrt(sx / (nrows * n)));
        EXPECT_NEAR(s1.rms_source, std::sqrt(sx / (nrows * n)), 1e-9 * std::sqrt(sx / (nrows * n)));
        EXPECT_EQ(s1.max_abs_err, me);
      }
    }
  }
}

TEST(QuantTensor, RejectsNonFiniteAndOverflow) {
  core::ThreadPool pool(2);
  const int64_t n = 256;
  std::vector<float> x(4 * n, 0.5f);
  std::vector<uint8_t> y(4 * row_size(Type::Q8_0, n));
  x[2 * n + 17] = NAN;
  try {
    quantize_tensor(Type::Q4_K, core::DType::F32, x.data(), y.data(), 4, n, nullptr, pool);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2, column 17"), std::string::npos) << e.what();
  }
  x[2 * n + 17] = 1e30f;  // finite, but its block scale is not a half
  EXPECT_THROW(
      quantize_tensor(Type::Q8_0, core::DType::F32, x.data(), y.data(), 4, n, nullptr, pool),
      Error);
  EXPECT_THROW(
      quantize_tensor(Type::Q4_K, core::DType::I32, x.data(), y.data(), 4, n, nullptr, pool),
      Error);
}

}  // namespace
}  // namespace medquant::quant
