// The arithmetic of CLIP zero-shot classification, as open_clip does it:
//
//   class embedding   open_clip.zero_shot_classifier.build_zero_shot_classifier:
//                     per class, the text embeddings of all its prompts (one per
//                     template) are each L2-normalised (the model's forward uses
//                     encode_text(normalize=True)), averaged, and the mean is
//                     L2-normalised again.
//   logits            exp(logit_scale) * cos(image, class): open_clip's
//                     model.logit_scale holds the LOG of the multiplier and the
//                     model uses logit_scale.exp(); labels.json stores both.
//   probabilities     softmax over the classes (CLIP's zero-shot demo:
//                     (100 * image @ text.T).softmax(dim=-1)).
//
// L2 normalisation is torch's F.normalize: x / max(||x||, 1e-12). Sums are
// taken in double; embeddings are stored as float32.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "zeroshot/labels.h"

namespace medquant::zeroshot {

inline constexpr double kNormEps = 1e-12;

// x / max(||x||, 1e-12), in place; returns ||x||.
double l2_normalize(std::span<float> x);

// One class's embedding from its prompts' text embeddings (`prompts` rows of
// `dim` values each, row-major): normalise each row, mean, normalise.
std::vector<float> class_embedding(std::span<const float> rows, size_t prompts, size_t dim);

struct Prediction {
  size_t label = 0;          // index into LabelSet::labels
  double cosine = 0;         // cos(image, label)
  double logit = 0;          // logit_scale_exp * cosine
  double probability = 0;    // softmax over all labels
};

// Every label's prediction for one image embedding (normalised here; it may be
// raw or already unit length), in label order. Throws Error if the lengths
// differ from set.dim or the image embedding is zero or not finite.
std::vector<Prediction> predict(std::span<const float> image_embedding, const LabelSet& set);

// The k most probable (all if k == 0 or k > size), highest first; ties keep
// label order.
std::vector<Prediction> top_k(std::vector<Prediction> predictions, size_t k);

// Numerically stable softmax in double.
std::vector<double> softmax(std::span<const double> logits);

}  // namespace medquant::zeroshot
