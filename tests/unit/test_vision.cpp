// vision/: decoding, Pillow's resize/crop/convert and open_clip's transform
// against what Pillow and open_clip produced: the tiny-biomedclip fixture
// images against its pixel_values.npy (open_clip's tensors), and the images
// of tests/fixtures/vision (tools/make_vision_fixtures.py) against the sha256
// of every intermediate Pillow made; broken files each give a clear Error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "vision/image.h"
#include "vision/preprocess.h"
#include "vision/resample.h"

using namespace medquant;
using namespace medquant::vision;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

const fs::path kFixtures = MEDQUANT_FIXTURES;
const fs::path kBiomedClip = kFixtures / "tiny-biomedclip";
const fs::path kDir = kFixtures / "vision";

// A .npy (format 1.0, little-endian, C order): shape and raw bytes.
struct Npy {
  std::string descr;
  std::vector<size_t> shape;
  std::string data;
};

Npy read_npy(const fs::path& p) {
  const std::string bytes = core::read_text_file(p.string());
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw std::runtime_error("not npy");
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  const std::string header = bytes.substr(10, header_len);
  Npy n;
  std::smatch m;
  if (std::regex_search(header, m, std::regex("'descr': '([^']+)'"))) n.descr = m[1];
  if (std::regex_search(header, m, std::regex("'shape': \\(([^)]*)\\)"))) {
    std::string dims = m[1];
    std::regex num("[0-9]+");
    for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
      n.shape.push_back(std::stoul(it->str()));
  }
  n.data = bytes.substr(10 + header_len);
  return n;
}

std::string sha(const void* p, size_t n) {
  return core::sha256_hex(std::string_view(static_cast<const char*>(p), n));
}

// The bytes np.asarray(pil_image) holds for our image.
std::string numpy_bytes(const Image& img) {
  if (img.mode == Mode::I16)
    return std::string(reinterpret_cast<const char*>(img.pixels16.data()), img.pixels16.size() * 2);
  // Mode "1" arrays are numpy bools holding 0x00 / 0xff, the same bytes.
  return std::string(img.pixels.begin(), img.pixels.end());
}

std::vector<size_t> numpy_shape(const Image& img) {
  std::vector<size_t> shape{img.height, img.width};
  if (img.channels() > 1) shape.push_back(img.channels());
  return shape;
}

// ---- the tiny-biomedclip fixture: open_clip's own tensors -----------------------

TEST(Vision, TinyBiomedClipImagesMatchOpenClip) {
  const Json ref = Json::parse(core::read_text_file((kBiomedClip / "reference" / "reference.json").string()));
  const auto config = PreprocessConfig::from_open_clip_config((kBiomedClip / "open_clip_config.json").string());
  EXPECT_EQ(config.image_size, 224u);
  const Npy pv = read_npy(kBiomedClip / "reference" / "pixel_values.npy");
  ASSERT_EQ(pv.descr, "<f4");
  ASSERT_EQ(pv.shape, (std::vector<size_t>{3, 3, 224, 224}));
  const auto images = ref["tensors"]["pixel_values"]["images"].get<std::vector<std::string>>();
  ASSERT_EQ(images.size(), 3u);
  const size_t per_image = 3 * 224 * 224;
  float max_diff = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const std::vector<float> got = preprocess(load_image((kBiomedClip / images[i]).string()), config);
    ASSERT_EQ(got.size(), per_image);
    const float* want = reinterpret_cast<const float*>(pv.data.data()) + i * per_image;
    float diff = 0;
    for (size_t k = 0; k < per_image; ++k) diff = std::max(diff, std::fabs(got[k] - want[k]));
    max_diff = std::max(max_diff, diff);
    // One 8-bit level after normalisation is 1/255/std; we aim for exact.
    EXPECT_EQ(std::memcmp(got.data(), want, per_image * 4), 0)
        << images[i] << ": max abs diff " << diff << " (one level is " << 1 / 255.0 / 0.2613 << ")";
  }
  RecordProperty("max_abs_diff", std::to_string(max_diff));
  std::printf("tiny-biomedclip images: max abs diff vs open_clip = %g\n", max_diff);
}

TEST(Vision, JpegDecodeMatchesPillow) {
  const Npy want = read_npy(kBiomedClip / "reference" / "jpeg_decoded_rgb.npy");
  const Image img = load_image((kBiomedClip / "images" / "rgb_260x180.jpg").string());
  EXPECT_EQ(img.mode, Mode::RGB);
  ASSERT_EQ(want.shape, numpy_shape(img));
  int max_diff = 0;
  for (size_t i = 0; i < want.data.size(); ++i)
    max_diff = std::max(max_diff, std::abs(static_cast<uint8_t>(want.data[i]) - img.pixels[i]));
  EXPECT_EQ(max_diff, 0) << "libjpeg-turbo here and Pillow's differ";
}

// ---- every image kind: each intermediate Pillow made ----------------------------

class VisionFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(VisionFixture, MatchesPillowAndOpenClip) {
  const Json expected = Json::parse(core::read_text_file((kDir / "expected.json").string()));
  const Json& e = expected["images"][GetParam()];
  const Image img = load_image((kDir / "images" / GetParam()).string());
  EXPECT_EQ(mode_name(img.mode), e["mode"].get<std::string>());
  EXPECT_EQ(img.width, e["size"][0].get<uint32_t>());
  EXPECT_EQ(img.height, e["size"][1].get<uint32_t>());
  if (img.mode == Mode::P) {
    std::string hex;
    for (uint8_t b : img.palette) hex += fmt::format("{:02x}", b);
    EXPECT_EQ(hex, e["palette"].get<std::string>());
  }
  auto check = [&](const char* what, const Image& got) {
    const Json& w = e[what];
    EXPECT_EQ(numpy_shape(got), w["shape"].get<std::vector<size_t>>()) << what;
    const std::string bytes = numpy_bytes(got);
    EXPECT_EQ(sha(bytes.data(), bytes.size()), w["sha256"].get<std::string>()) << what;
  };
  check("decoded", img);
  check("resize", resize_bicubic(img, e["resize_to"][0].get<uint32_t>(), e["resize_to"][1].get<uint32_t>()));
  const uint32_t n = expected["crop"].get<uint32_t>();
  check("crop", resize_and_crop(img, n));
  PreprocessConfig config;
  config.image_size = n;
  for (size_t c = 0; c < 3; ++c) {
    config.mean[c] = expected["mean"][c].get<float>();
    config.std[c] = expected["std"][c].get<float>();
  }
  const std::vector<float> tensor = preprocess(img, config);
  EXPECT_EQ(sha(tensor.data(), tensor.size() * 4), e["tensor"]["sha256"].get<std::string>());
}

std::vector<std::string> fixture_images() {
  const Json expected = Json::parse(core::read_text_file((kDir / "expected.json").string()));
  std::vector<std::string> names;
  for (const auto& [name, _] : expected["images"].items()) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Images, VisionFixture, ::testing::ValuesIn(fixture_images()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(Vision, BrokenFilesAreRefused) {
  const Json expected = Json::parse(core::read_text_file((kDir / "expected.json").string()));
  ASSERT_GE(expected["broken"].size(), 10u);
  for (const Json& b : expected["broken"]) {
    const std::string path = (kDir / "images" / b["file"].get<std::string>()).string();
    try {
      (void)load_image(path);
      ADD_FAILURE() << path << ": decoded without error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(b["error"].get<std::string>())) << path;
      EXPECT_THAT(e.what(), HasSubstr(path));
    }
  }
  EXPECT_THROW(load_image((kDir / "images" / "no_such_file.png").string()), Error);
}

// Cut a good file anywhere: an Error, never a crash.
TEST(Vision, EveryTruncationIsAnError) {
  for (const char* name : {"rgb_97x61.png", "rgb_444_77x63.jpg", "palette4_90x70.png"}) {
    const std::string good = core::read_text_file((kDir / "images" / name).string());
    for (size_t n = 0; n + 1 < good.size(); n += (n < 200 ? 1 : 13)) {
      const auto* p = reinterpret_cast<const uint8_t*>(good.data());
      EXPECT_THROW(decode_image({p, n}, name), Error) << name << " cut to " << n << " bytes";
    }
  }
}

// Flipped bytes: decoded or refused, never a crash.
TEST(Vision, CorruptBytesNeverCrash) {
  for (const char* name : {"rgb_97x61.png", "rgb_444_77x63.jpg", "rgb_progressive_77x63.jpg"}) {
    const std::string good = core::read_text_file((kDir / "images" / name).string());
    for (size_t pos = 0; pos < good.size(); pos += (pos < 400 ? 1 : 29)) {
      std::string bad = good;
      bad[pos] = static_cast<char>(bad[pos] ^ 0x5a);
      try {
        const Image img = decode_image({reinterpret_cast<const uint8_t*>(bad.data()), bad.size()}, name);
        EXPECT_EQ(img.pixels.size(), size_t{img.width} * img.height * img.channels());
      } catch (const Error&) {
      }
    }
  }
}

TEST(Vision, ConfigFromOpenClipJson) {
  const auto c = PreprocessConfig::from_open_clip_config((kBiomedClip / "open_clip_config.json").string());
  EXPECT_EQ(c.image_size, 224u);
  EXPECT_FLOAT_EQ(c.mean[0], 0.48145466f);
  EXPECT_FLOAT_EQ(c.std[2], 0.27577711f);
  EXPECT_THROW(PreprocessConfig::from_open_clip_config((kDir / "expected.json").string() + ".nope"), Error);
}

}  // namespace
