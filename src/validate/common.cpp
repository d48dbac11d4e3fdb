#include "validate/common.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <random>

#include <stdlib.h>

#include "core/error.h"

namespace medquant::validate {

namespace fs = std::filesystem;

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

vision::Image synthetic_image(int index) {
  std::mt19937 rng(kSyntheticSeed + static_cast<uint32_t>(index) * 7919u);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  vision::Image img;
  img.width = static_cast<uint32_t>(uni(200, 320));
  img.height = static_cast<uint32_t>(uni(200, 320));
  img.mode = vision::Mode::RGB;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  const int c0[3] = {uni(0, 255), uni(0, 255), uni(0, 255)};
  const int c1[3] = {uni(0, 255), uni(0, 255), uni(0, 255)};
  const double angle = uni(0, 359) * std::numbers::pi / 180.0;
  const double ca = std::cos(angle), sa = std::sin(angle);
  const double w = img.width - 1.0, h = img.height - 1.0;
  const double lo = std::min({0.0, ca * w, sa * h, ca * w + sa * h});
  const double hi = std::max({0.0, ca * w, sa * h, ca * w + sa * h});
  for (uint32_t y = 0; y < img.height; ++y)
    for (uint32_t x = 0; x < img.width; ++x) {
      const double t = (ca * x + sa * y - lo) / std::max(hi - lo, 1.0);
      uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
      for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(std::lround(c0[c] + (c1[c] - c0[c]) * t));
    }
  const int shapes = uni(3, 7);
  for (int s = 0; s < shapes; ++s) {
    const int col[3] = {uni(0, 255), uni(0, 255), uni(0, 255)};
    const int cx = uni(0, static_cast<int>(img.width) - 1), cy = uni(0, static_cast<int>(img.height) - 1);
    const int r = uni(10, 70);
    const bool disc = uni(0, 1) == 1;
    for (int y = std::max(0, cy - r); y < std::min(static_cast<int>(img.height), cy + r); ++y)
      for (int x = std::max(0, cx - r); x < std::min(static_cast<int>(img.width), cx + r); ++x) {
        if (disc && (x - cx) * (x - cx) + (y - cy) * (y - cy) > r * r) continue;
        uint8_t* p = &img.pixels[(static_cast<size_t>(y) * img.width + x) * 3];
        for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(col[c]);
      }
  }
  for (auto& v : img.pixels) v = static_cast<uint8_t>(std::clamp(static_cast<int>(v) + uni(-8, 8), 0, 255));
  return img;
}

std::vector<std::string> image_files(const std::string& dir) {
  if (!fs::is_directory(dir)) fail("{}: not a folder", dir);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) fail("{}: no .png/.jpg/.jpeg images", dir);
  return files;
}

double cosine(std::span<const float> a, std::span<const float> b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  if (aa == 0 && bb == 0) return 1.0;
  if (aa == 0 || bb == 0) return 0.0;
  return ab / std::sqrt(aa * bb);
}

Json cosine_histogram(const std::vector<double>& cosines, const std::string& x_label,
                      const std::vector<Marker>& markers) {
  if (cosines.empty()) return Json::object();
  const double lo0 = *std::min_element(cosines.begin(), cosines.end());
  double lo = std::min(lo0, 1.0 - 1e-6), hi = 1.0;
  const int bins = 30;
  const double width = (hi - lo) / bins;
  lo -= width * 0.5;
  std::vector<double> edges(bins + 1), counts(bins, 0);
  for (int i = 0; i <= bins; ++i) edges[static_cast<size_t>(i)] = lo + (hi - lo) * i / bins;
  for (double c : cosines) {
    const int b = static_cast<int>((c - lo) / (hi - lo) * bins);
    counts[static_cast<size_t>(std::clamp(b, 0, bins - 1))] += 1;
  }
  Json m = Json::array();
  for (const auto& k : markers) m.push_back({{"label", k.label}, {"value", k.value}});
  return {{"x_label", x_label},
          {"log_x", false},
          {"edges", edges},
          {"series", Json::array({{{"name", "build vs reference"}, {"counts", counts}}})},
          {"markers", m}};
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "medquant-validate-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) fail("cannot create a temporary folder under {}", tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace medquant::validate
