// The vision projector (mmproj) side of `medquant validate gguf`: a
// projector build (F16, Q8_0, ...) against its F32/BF16/F16 reference,
// both run by libmtmd (llm/projector.h) on the same images.
//
// Inputs: the PNG/JPEG files of --images, or synthetic images
//   (validate/common.h), given to libmtmd as 8-bit RGB; libmtmd resizes and
//   normalises them as the projector's type says. libmtmd needs the text
//   model's vocabulary and width: --model (only its header and vocabulary
//   are read).
// Accuracy: each image gives n_tokens rows of n_embd floats (256 x 2560 for
//   MedGemma 4B); per row the cosine of reference and build (in double):
//   mean, min and p1 over all rows, per image the mean and min; the largest
//   absolute difference and that over the reference's largest |value|.
// Speed and memory: each model in a child process of its own
//   (llm::run_isolated): load time, `warmup` encodes of the first image, then
//   every image encoded once and timed (median, p90); peak RSS.
// Thresholds: mean row cosine >= 0.999 and min row cosine >= 0.99 when the
//   build is a float type (F32/BF16/F16), >= 0.99 and >= 0.95 when it is
//   quantized; flags change them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "validate/common.h"
#include "validate/gguf_validation.h"
#include "validate/report.h"

namespace medquant::validate {

struct MmprojThresholds {
  std::optional<double> min_cosine_mean;  // default by the build's type, see above
  std::optional<double> min_cosine_min;
};

struct MmprojOptions {
  std::string reference;    // F32/BF16/F16 mmproj GGUF
  std::string candidate;    // the build
  std::string text_model;   // the text GGUF the projector belongs to
  std::string name;         // display name; default from the candidate's file name
  std::string images_dir;   // "" = synthetic images
  int synthetic_images = kSyntheticImages;
  int threads = 1;
  int warmup = 1;
  bool skip_speed = false;  // no timing (the encodes still run, in children)
  MmprojThresholds thresholds;
  std::string dump_dir;     // write reference.npy, candidate.npy [images, n_tokens, n_embd]
};

struct MmprojModelRun {
  GgufFacts facts;
  bool has_speed = false;
  double load_ms = 0;
  std::vector<double> encode_ms;  // one per image, in image order
  double median_ms = 0, p90_ms = 0;
  uint64_t peak_rss_bytes = 0;
};

struct MmprojResult {
  MmprojOptions options;
  std::string input_source;
  std::vector<std::string> input_names;
  size_t n_tokens = 0;  // per image
  int n_embd = 0;
  std::string system_info;
  std::vector<double> row_cosines;       // all images' rows, image after image
  std::vector<double> image_cosine_mean, image_cosine_min;
  double cosine_mean = 0, cosine_min = 0, cosine_p1 = 0;
  double max_abs_diff = 0, relative_max_diff = 0;
  double min_cosine_mean = 0, min_cosine_min = 0;  // the limits applied
  MmprojModelRun ref, cand;
  std::vector<Check> checks;
  double seconds = 0;
  bool pass() const;
};

// True for a GGUF that holds a vision projector (general.architecture "clip").
bool is_mmproj(const GgufFacts& facts);

// Throws Error naming the file for unreadable or mismatched projectors,
// images that cannot be read, a missing text model.
MmprojResult validate_mmproj(const MmprojOptions& options);

// The report entry (kind "mmproj"), with plots (latency, size, cosine_histogram).
Validation to_validation(const MmprojResult& result);

std::string format_text(const MmprojResult& result);

// "cosine 0.99998 (min 0.9998), 2.1 s/image, 1.9x smaller".
std::string headline(const MmprojResult& result);

}  // namespace medquant::validate
