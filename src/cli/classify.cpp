// medquant classify: zero-shot classification of images with a CLIP vision
// tower (biomedclip_vision.onnx, FP32 or INT8) and labels.json from
// embed-labels: softmax over labels of logit_scale_exp x cos(image, label).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "zeroshot/classifier.h"
#include "zeroshot/encoders.h"
#include "zeroshot/labels.h"

namespace medquant::cli {
namespace {

struct ClassifyOptions {
  std::vector<std::string> images;
  std::string vision_model, labels;
  size_t top = 5;
  bool json = false;
  bool allow_mismatch = false;
};

int run_classify(const ClassifyOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  const auto t_start = Clock::now();
  const zeroshot::LabelSet set = zeroshot::read_labels_json(o.labels);
  zeroshot::ImageEncoder encoder(o.vision_model, {.threads = core::default_threads()});
  const zeroshot::TowerInfo& info = encoder.info();
  if (info.dim != set.dim)
    fail("{}: label embeddings have {} dimensions, but {} outputs {}-dimensional image embeddings (the labels "
         "were made for another model)",
         o.labels, set.dim, o.vision_model, info.dim);
  if (!set.source_sha256.empty() && !info.source_sha256.empty() && set.source_sha256 != info.source_sha256) {
    if (!o.allow_mismatch)
      fail("{} was made from checkpoint {} ({}), but {} from checkpoint {}: embeddings of different models "
           "are not comparable (--allow-model-mismatch to classify anyway)",
           o.labels, set.source_sha256, set.text_model_file, o.vision_model, info.source_sha256);
    core::log_warning("{} and {} come from different checkpoints", o.labels, o.vision_model);
  }
  if (info.logit_scale_from_metadata &&
      std::abs(info.logit_scale_exp - set.logit_scale_exp) > 1e-5 * set.logit_scale_exp)
    core::log_warning("{}: logit_scale_exp {} differs from {}'s {}; using the labels' value", o.labels,
                      set.logit_scale_exp, o.vision_model, info.logit_scale_exp);

  // Images are decoded and preprocessed one batch at a time; any error stops
  // the command before anything is printed.
  const double load_ms = ms_since(t_start);
  const size_t batch = info.batch > 0 ? static_cast<size_t>(info.batch) : 1;
  std::vector<std::vector<zeroshot::Prediction>> results;
  double preprocess_ms = 0, encode_ms = 0;
  for (size_t start = 0; start < o.images.size(); start += batch) {
    std::vector<std::vector<float>> pixels;
    auto t = Clock::now();
    for (size_t i = start; i < std::min(o.images.size(), start + batch); ++i)
      pixels.push_back(encoder.preprocess(o.images[i]));
    preprocess_ms += ms_since(t);
    t = Clock::now();
    const auto embeddings = encoder.encode(pixels);
    encode_ms += ms_since(t);
    for (size_t k = 0; k < embeddings.size(); ++k)
      results.push_back(with_context(o.images[start + k], [&] {
        return zeroshot::top_k(zeroshot::predict(embeddings[k], set), o.top);
      }));
  }

  core::log_verbose("load {:.1f} ms, decode + preprocess {:.1f} ms, encode {:.1f} ms ({} image{}), total {:.1f} ms",
                    load_ms, preprocess_ms, encode_ms, o.images.size(), o.images.size() == 1 ? "" : "s",
                    ms_since(t_start));
  if (o.json) {
    nlohmann::ordered_json out;
    out["vision_model"] = o.vision_model;
    out["labels"] = o.labels;
    out["logit_scale_exp"] = set.logit_scale_exp;
    out["images"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      nlohmann::ordered_json top = nlohmann::ordered_json::array();
      for (const auto& p : results[i])
        top.push_back({{"label", set.labels[p.label].name},
                       {"probability", p.probability},
                       {"logit", p.logit},
                       {"cosine", p.cosine}});
      out["images"].push_back({{"image", o.images[i]}, {"top", std::move(top)}});
    }
    out["timings_ms"] = {{"load", load_ms},
                         {"preprocess", preprocess_ms},
                         {"encode", encode_ms},
                         {"total", ms_since(t_start)}};
    fmt::print("{}\n", out.dump(1));
  } else {
    for (size_t i = 0; i < results.size(); ++i) {
      fmt::print("{}\n", o.images[i]);
      for (const auto& p : results[i]) fmt::print("  {:.4f}  {}\n", p.probability, set.labels[p.label].name);
    }
  }
  return 0;
}

}  // namespace

void add_classify_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "classify",
      "Zero-shot classification of PNG/JPEG images: softmax over the labels of logit_scale x cosine "
      "between the image embedding and each label embedding");
  auto o = std::make_shared<ClassifyOptions>();
  app->add_option("images", o->images, "PNG or JPEG files")->required();
  app->add_option("--vision", o->vision_model, "Vision encoder (biomedclip_vision.onnx, FP32 or INT8)")
      ->required();
  app->add_option("--labels", o->labels, "labels.json from 'medquant embed-labels'")->required();
  app->add_option("--top", o->top, "Labels to show per image, most probable first (0: all; default 5)");
  app->add_flag("--json", o->json, "Print JSON: per image the top labels with probability, logit, cosine");
  app->add_flag("--allow-model-mismatch", o->allow_mismatch,
                "Classify even if labels.json and the vision model come from different checkpoints");
  commands.push_back({app, [o]() -> int { return run_classify(*o); }});
}

}  // namespace medquant::cli
