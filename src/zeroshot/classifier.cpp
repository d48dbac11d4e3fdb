#include "zeroshot/classifier.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace medquant::zeroshot {

double l2_normalize(std::span<float> x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  const double norm = std::sqrt(s);
  const double d = std::max(norm, kNormEps);
  for (float& v : x) v = static_cast<float>(v / d);
  return norm;
}

std::vector<float> class_embedding(std::span<const float> rows, size_t prompts, size_t dim) {
  if (prompts == 0 || dim == 0 || rows.size() != prompts * dim)
    fail("class_embedding: {} values are not {} prompts x {} dims", rows.size(), prompts, dim);
  std::vector<double> mean(dim, 0.0);
  for (size_t p = 0; p < prompts; ++p) {
    const float* r = rows.data() + p * dim;
    double s = 0;
    for (size_t i = 0; i < dim; ++i) s += static_cast<double>(r[i]) * r[i];
    const double d = std::max(std::sqrt(s), kNormEps);
    for (size_t i = 0; i < dim; ++i) mean[i] += r[i] / d;
  }
  double s = 0;
  for (double& v : mean) {
    v /= static_cast<double>(prompts);
    s += v * v;
  }
  const double d = std::max(std::sqrt(s), kNormEps);
  std::vector<float> out(dim);
  for (size_t i = 0; i < dim; ++i) out[i] = static_cast<float>(mean[i] / d);
  return out;
}

std::vector<double> softmax(std::span<const double> logits) {
  std::vector<double> p(logits.begin(), logits.end());
  if (p.empty()) return p;
  const double m = *std::max_element(p.begin(), p.end());
  double sum = 0;
  for (double& v : p) {
    v = std::exp(v - m);
    sum += v;
  }
  for (double& v : p) v /= sum;
  return p;
}

std::vector<Prediction> predict(std::span<const float> image, const LabelSet& set) {
  const size_t dim = static_cast<size_t>(set.dim);
  if (image.size() != dim) fail("image embedding has {} values, the labels {}", image.size(), dim);
  double s = 0;
  for (float v : image) {
    if (!std::isfinite(v)) fail("image embedding is not finite");
    s += static_cast<double>(v) * v;
  }
  if (!(s > 0)) fail("image embedding is all zero");
  const double inorm = std::sqrt(s);

  std::vector<Prediction> out(set.labels.size());
  std::vector<double> logits(set.labels.size());
  for (size_t l = 0; l < set.labels.size(); ++l) {
    const auto& e = set.labels[l].embedding;
    if (e.size() != dim) fail("label '{}' has {} values, dim is {}", set.labels[l].name, e.size(), dim);
    double dot = 0, n2 = 0;
    for (size_t i = 0; i < dim; ++i) {
      dot += static_cast<double>(image[i]) * e[i];
      n2 += static_cast<double>(e[i]) * e[i];
    }
    out[l].label = l;
    out[l].cosine = dot / (inorm * std::max(std::sqrt(n2), kNormEps));
    out[l].logit = set.logit_scale_exp * out[l].cosine;
    logits[l] = out[l].logit;
  }
  const auto p = softmax(logits);
  for (size_t l = 0; l < out.size(); ++l) out[l].probability = p[l];
  return out;
}

std::vector<Prediction> top_k(std::vector<Prediction> predictions, size_t k) {
  std::stable_sort(predictions.begin(), predictions.end(),
                   [](const Prediction& a, const Prediction& b) { return a.probability > b.probability; });
  if (k != 0 && k < predictions.size()) predictions.resize(k);
  return predictions;
}

}  // namespace medquant::zeroshot
