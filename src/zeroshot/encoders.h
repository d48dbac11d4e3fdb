// The two CLIP towers as `medquant export biomedclip` writes them, run by
// medquant's executor (runtime::Session), with what they need to know read
// from the models' metadata_props (models/biomedclip/export.cpp):
//
//   both     model_name, source_sha256 (the checkpoint's weights),
//            embed_dim, l2_normalized, batch_size,
//            logit_scale (open_clip's parameter: the LOG) and
//            logit_scale_exp (the multiplier, exp(logit_scale))
//   vision   image_size, image_mean, image_std ("[r, g, b]"),
//            image_interpolation ("bicubic"), image_resize_mode ("shortest")
//   text     context_length, tokenizer_vocab_sha256, pad_token_id,
//            tokenizer_do_lower_case ("false": a cased vocabulary, not lower-cased)
//
// Shapes come from the graph first: the vision input [N,3,S,S] (pixel_values),
// the text inputs [N,L] int64 (input_ids, optional attention_mask and
// token_type_ids), the output [N,E]; metadata that contradicts them is an
// Error. Where a key is absent (a model exported by another tool) BiomedCLIP's
// defaults are used with a warning: 224 px, open_clip's OpenAI mean/std,
// context 256, logit_scale ln(100). A metadata value the preprocessing cannot
// honour (another interpolation or resize mode) is an Error.
//
// A static batch N is filled with up to N inputs per run (the last run padded
// with copies of its last input, whose outputs are dropped); a dynamic batch
// runs one input at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/session.h"
#include "text/wordpiece.h"
#include "vision/preprocess.h"
#include "zeroshot/labels.h"

namespace medquant::zeroshot {

struct TowerInfo {
  std::string path;
  std::string model_name;     // "" if absent
  std::string source_sha256;  // "" if absent
  int64_t batch = 0;          // static batch, 0 if dynamic
  int64_t dim = 0;            // output embedding size
  double logit_scale = 0;     // log
  double logit_scale_exp = 0; // multiplier
  bool logit_scale_from_metadata = false;
};

// BiomedCLIP's logit_scale when a model does not say (CLIP's clamp, ln 100).
inline constexpr double kDefaultLogitScale = 4.605170185988092;

class TextEncoder {
 public:
  // Throws Error naming the file: unreadable model, not a text tower (inputs),
  // vocab.txt that is not the one the model was exported with.
  TextEncoder(const std::string& model_path, const std::string& vocab_path,
              runtime::SessionOptions options = {});

  // One embedding row per prompt, as the model outputs it: open_clip's text
  // cleaning, [CLS] WordPiece [SEP] cut and [PAD]ded to the context length,
  // attention mask = ids != [PAD].
  std::vector<std::vector<float>> encode(const std::vector<std::string>& prompts, bool progress = false);

  const TowerInfo& info() const { return info_; }
  int64_t context_length() const { return context_length_; }
  const text::BertTokenizer& tokenizer() const { return tokenizer_; }

 private:
  TowerInfo info_;
  int64_t context_length_ = 0;
  text::BertTokenizer tokenizer_;
  int32_t pad_id_ = 0;
  std::vector<runtime::IoInfo> inputs_;
  runtime::Session session_;
};

// open_clip's eval transform a vision model asks for: image_size from its
// [N, 3, S, S] input (or metadata), image_mean/std from metadata (BiomedCLIP's
// when absent, with a warning). Throws Error naming the model for metadata
// that contradicts the input or that the preprocessing cannot do.
vision::PreprocessConfig image_preprocess_config(const onnx::Model& model, const runtime::IoInfo& input);

class ImageEncoder {
 public:
  explicit ImageEncoder(const std::string& model_path, runtime::SessionOptions options = {});

  // open_clip's eval transform of one image file: float32 [3,S,S]. Throws
  // Error naming the file for anything that is not a readable PNG/JPEG.
  std::vector<float> preprocess(const std::string& image_path) const;
  // Embedding rows of preprocessed images.
  std::vector<std::vector<float>> encode(const std::vector<std::vector<float>>& pixels);

  const TowerInfo& info() const { return info_; }
  const vision::PreprocessConfig& preprocess_config() const { return preprocess_; }

 private:
  TowerInfo info_;
  vision::PreprocessConfig preprocess_;
  std::string input_name_;
  runtime::Session session_;
};

// embed-labels: every label through every template, then open_clip's
// per-class rule (classifier.h). The set records the text model's file name,
// SHA-256, source_sha256, model name and logit scale.
LabelSet embed_labels(TextEncoder& encoder, const std::vector<std::string>& labels,
                      const std::vector<std::string>& templates, bool progress = false);

}  // namespace medquant::zeroshot
