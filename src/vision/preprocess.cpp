#include "vision/preprocess.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "core/atomic_file.h"
#include "core/error.h"
#include "vision/resample.h"

namespace medquant::vision {
namespace {

// Python's round() of an integer divided by 2: halves go to the even neighbour.
uint32_t round_half_even_div2(uint32_t v) {
  const uint32_t q = v / 2;
  if (v % 2 == 0) return q;
  return q % 2 == 0 ? q : q + 1;  // q + 0.5: to the even one of q, q + 1
}

}  // namespace

PreprocessConfig PreprocessConfig::from_open_clip_config(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(core::read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  PreprocessConfig c;
  try {
    if (j.contains("model_cfg") && j["model_cfg"].contains("vision_cfg") &&
        j["model_cfg"]["vision_cfg"].contains("image_size")) {
      const auto& s = j["model_cfg"]["vision_cfg"]["image_size"];
      if (s.is_array()) {
        if (s.size() != 2 || s[0] != s[1])
          fail("{}: image_size {} is not square (only square inputs are supported)", path, s.dump());
        c.image_size = s[0].get<uint32_t>();
      } else {
        c.image_size = s.get<uint32_t>();
      }
    }
    if (j.contains("preprocess_cfg")) {
      const auto& p = j["preprocess_cfg"];
      for (const char* key : {"mean", "std"}) {
        if (!p.contains(key)) continue;
        const auto v = p[key].get<std::vector<double>>();
        if (v.size() != 3) fail("{}: preprocess_cfg.{} must have 3 values", path, key);
        auto& dst = std::string_view(key) == "mean" ? c.mean : c.std;
        for (size_t i = 0; i < 3; ++i) dst[i] = static_cast<float>(v[i]);
      }
      if (p.contains("interpolation") && p["interpolation"].get<std::string>() != "bicubic")
        fail("{}: preprocess_cfg.interpolation '{}' is not supported (only bicubic)", path,
             p["interpolation"].get<std::string>());
      if (p.contains("resize_mode") && p["resize_mode"].get<std::string>() != "shortest")
        fail("{}: preprocess_cfg.resize_mode '{}' is not supported (only shortest)", path,
             p["resize_mode"].get<std::string>());
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad preprocessing settings: {}", path, e.what());
  }
  if (c.image_size < 1 || c.image_size > 8192) fail("{}: image_size {} is out of range", path, c.image_size);
  for (float s : c.std)
    if (!(s > 0.0f) || !std::isfinite(s)) fail("{}: preprocess_cfg.std must be positive", path);
  return c;
}

Image resize_and_crop(const Image& img, uint32_t size) {
  // torchvision's _compute_resized_output_size for an int size.
  const bool portrait = img.width <= img.height;
  const uint32_t short_side = portrait ? img.width : img.height;
  const uint32_t long_side = portrait ? img.height : img.width;
  const auto new_long = static_cast<uint32_t>(static_cast<double>(uint64_t{size} * long_side) / short_side);
  const uint32_t w = portrait ? size : new_long;
  const uint32_t h = portrait ? new_long : size;
  const Image resized = resize_bicubic(img, w, h);
  // CenterCrop: the resized image is never smaller than the crop.
  const uint32_t top = round_half_even_div2(h - size);
  const uint32_t left = round_half_even_div2(w - size);
  return to_rgb(crop(resized, left, top, size, size));
}

std::vector<float> preprocess(const Image& img, const PreprocessConfig& config) {
  const uint32_t n = config.image_size;
  const Image rgb = resize_and_crop(img, n);
  const size_t plane = size_t{n} * n;
  std::vector<float> out(3 * plane);
  for (size_t i = 0; i < plane; ++i)
    for (size_t c = 0; c < 3; ++c) {
      const float x = static_cast<float>(rgb.pixels[3 * i + c]) / 255.0f;
      out[c * plane + i] = (x - config.mean[c]) / config.std[c];
    }
  return out;
}

}  // namespace medquant::vision
