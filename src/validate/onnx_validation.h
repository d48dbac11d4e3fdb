// `medquant validate onnx`: an ONNX encoder build (the candidate, e.g. the
// INT8 file of `medquant quantize onnx`) against its FP32 reference, both run
// by medquant's executor (runtime::Session, through zeroshot's encoders).
//
// Inputs, the same for both models:
//   vision  the PNG/JPEG files of --images (sorted by name), preprocessed as
//           the reference's metadata says (zeroshot::ImageEncoder); without a
//           folder, synthetic_images (default 16) deterministic images (seeded gradients,
//           rectangles, discs and a little noise), preprocessed the same way;
//   text    kMedicalPrompts, tokenized with --vocab (zeroshot::TextEncoder).
// Accuracy: per input, the cosine of the two embeddings (in double); mean,
//   min and p1 (1st percentile, linear interpolation as numpy.percentile).
//   With labels.json (vision): each embedding's zero-shot prediction
//   (zeroshot::predict): top-1 agreement (same top label), top-5 agreement
//   (the reference's top label is among the build's 5 most probable) and the
//   mean KL(P_reference || P_build) of the label probabilities.
// Speed and memory: each model in a child process of its own
//   (llm::run_isolated): load time, `warmup` runs, then `runs` timed runs of
//   one input (median, p90, p99), peak RSS of that process; file sizes.
// Thresholds: mean cosine >= 0.999, min cosine >= 0.99, top-1 agreement
//   >= 0.98 (when labels are given); optional top-5 and KLD limits.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "validate/common.h"
#include "validate/report.h"

namespace medquant::validate {

// The deterministic prompts text models are validated with.
const std::vector<std::string>& medical_prompts();

struct OnnxThresholds {
  double min_cosine_mean = 0.999;
  double min_cosine_min = 0.99;
  double min_top1 = 0.98;
  std::optional<double> min_top5;
  std::optional<double> max_kld_mean;
};

struct OnnxOptions {
  std::string reference;   // FP32 .onnx
  std::string candidate;   // the build (.onnx)
  std::string name;        // display name; default from the candidate's file name
  std::string images_dir;  // "" = synthetic images (vision)
  int synthetic_images = kSyntheticImages;
  std::string labels_path; // "" = no zero-shot figures
  std::string vocab_path;  // text models: vocab.txt ("" = vocab.txt beside the reference)
  size_t threads = 0;      // 0 = all cores
  int runs = 20;           // timed runs per model
  int warmup = 2;
  bool skip_speed = false;
  OnnxThresholds thresholds;
  std::string dump_dir;    // write inputs.npy, reference.npy, candidate.npy here
};

struct OnnxModelFacts {
  std::string path;
  uint64_t file_size = 0;
  bool has_speed = false;
  double load_ms = 0;
  std::vector<double> latency_ms;  // timed runs, in run order
  double median_ms = 0, p90_ms = 0, p99_ms = 0;
  uint64_t peak_rss_bytes = 0;
};

struct OnnxResult {
  OnnxOptions options;
  std::string tower;         // "vision" or "text"
  std::string input_source;  // "16 synthetic images (seed ...)", "images/ (12 files)", ...
  std::vector<std::string> input_names;  // file names / prompts / "synthetic-00"
  int64_t dim = 0;
  size_t threads = 1;
  std::vector<double> cosines;  // per input
  double cosine_mean = 0, cosine_min = 0, cosine_p1 = 0;
  bool has_labels = false;
  std::vector<std::string> label_names;
  std::vector<size_t> ref_top1, cand_top1;  // per input, label index
  double top1_agreement = 0, top5_agreement = 0, kld_mean = 0, kld_max = 0;
  OnnxModelFacts ref, cand;
  std::vector<Check> checks;
  double seconds = 0;
  bool pass() const;
};

// Throws Error naming the file for unreadable models, models of different
// kinds or shapes, images that cannot be read, labels of another width.
OnnxResult validate_onnx(const OnnxOptions& options);

// The report entry, with plots (latency, size, cosine_histogram,
// zero_shot_confusion).
Validation to_validation(const OnnxResult& result);

// The human-readable result the CLI prints.
std::string format_text(const OnnxResult& result);

// "cosine 0.9995 (min 0.998), top-1 100%, 2.1x faster, 3.9x smaller".
std::string headline(const OnnxResult& result);

}  // namespace medquant::validate
