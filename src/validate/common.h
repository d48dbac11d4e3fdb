// What the validations share: the image inputs of the embedding validations
// (`validate onnx`, the mmproj side of `validate gguf`), the statistics of a
// reference-vs-build comparison, and a private temporary folder.
//
// Images: the PNG/JPEG files of a folder (sorted by name), or without one
// kSyntheticImages deterministic images (seeded gradients, rectangles, discs
// and a little noise; 200-320 pixels a side), the same on every machine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "validate/report.h"
#include "vision/image.h"

namespace medquant::validate {

// "b.gguf" of "a/b.gguf"; bytes in MiB.
std::string file_name(const std::string& path);
inline double mib(uint64_t bytes) { return static_cast<double>(bytes) / 1048576.0; }

inline constexpr int kSyntheticImages = 16;
inline constexpr uint32_t kSyntheticSeed = 20240613;

// Synthetic image number `index` (RGB).
vision::Image synthetic_image(int index);

// The .png/.jpg/.jpeg files of dir, sorted; Error if it is not a folder or has none.
std::vector<std::string> image_files(const std::string& dir);

// numpy.percentile's default (linear interpolation between closest ranks); NaN if empty.
double percentile(std::vector<double> values, double q);

// Cosine of two vectors in double (1 if both are zero, 0 if one is).
double cosine(std::span<const float> a, std::span<const float> b);

struct Marker {
  std::string label;
  double value;
};
// Histogram plot data (docs/report-schema.md) of cosines: 30 bins from just
// below the smallest value to 1.
Json cosine_histogram(const std::vector<double>& cosines, const std::string& x_label,
                      const std::vector<Marker>& markers);

// A private temporary folder (mkdtemp under the system's temp folder),
// removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace medquant::validate
