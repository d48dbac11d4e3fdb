#include "zeroshot/encoders.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "text/clean.h"
#include "vision/image.h"
#include "zeroshot/classifier.h"

namespace medquant::zeroshot {
namespace {

namespace fs = std::filesystem;

// The metadata_props of a loaded model.
struct Metadata {
  std::string path;
  std::vector<std::pair<std::string, std::string>> props;

  static Metadata of(const onnx::Model& model, const std::string& path) {
    Metadata m{path, {}};
    for (const auto& p : model.header.metadata_props()) m.props.emplace_back(p.key(), p.value());
    return m;
  }
  std::optional<std::string> get(std::string_view key) const {
    for (const auto& [k, v] : props)
      if (k == key) return v;
    return std::nullopt;
  }
  std::optional<int64_t> get_int(std::string_view key) const {
    auto v = get(key);
    if (!v) return std::nullopt;
    int64_t x = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), x);
    if (ec != std::errc() || p != v->data() + v->size())
      fail("{}: metadata '{}' = '{}' is not an integer", path, key, *v);
    return x;
  }
  std::optional<double> get_double(std::string_view key) const {
    auto v = get(key);
    if (!v) return std::nullopt;
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    if (v->empty() || end != v->c_str() + v->size() || !std::isfinite(x))
      fail("{}: metadata '{}' = '{}' is not a finite number", path, key, *v);
    return x;
  }
};

void read_common(const Metadata& md, TowerInfo& info) {
  info.path = md.path;
  info.model_name = md.get("model_name").value_or("");
  info.source_sha256 = md.get("source_sha256").value_or("");
  const auto log_scale = md.get_double("logit_scale");
  const auto exp_scale = md.get_double("logit_scale_exp");
  if (log_scale) {
    info.logit_scale = *log_scale;
    info.logit_scale_exp = std::exp(*log_scale);
    info.logit_scale_from_metadata = true;
    if (exp_scale && std::abs(*exp_scale - info.logit_scale_exp) > 1e-5 * info.logit_scale_exp)
      fail("{}: metadata logit_scale_exp {} is not exp(logit_scale) = exp({}) = {}", md.path, *exp_scale,
           *log_scale, info.logit_scale_exp);
  } else if (exp_scale) {
    if (!(*exp_scale > 0)) fail("{}: metadata logit_scale_exp {} is not positive", md.path, *exp_scale);
    info.logit_scale_exp = *exp_scale;
    info.logit_scale = std::log(*exp_scale);
    info.logit_scale_from_metadata = true;
  } else {
    info.logit_scale = kDefaultLogitScale;
    info.logit_scale_exp = std::exp(kDefaultLogitScale);
  }
}

// The output [N,E] float of a tower, checked against the batch and metadata.
void read_output(const runtime::Session& s, const Metadata& md, TowerInfo& info) {
  if (s.outputs().empty()) fail("{}: the model has no outputs", md.path);
  const runtime::IoInfo& o = s.outputs()[0];
  if (o.type != onnx::kFloat)
    fail("{}: output '{}' is {}, not float32 embeddings", md.path, o.name, onnx::elem_type_name(o.type));
  if (o.has_shape && o.shape.size() != 2)
    fail("{}: output '{}' has shape {}; an embedding model outputs [N, E]", md.path, o.name,
         runtime::shape_string(o.shape));
  const int64_t shape_dim = o.has_shape ? o.shape[1] : -1;
  const auto meta_dim = md.get_int("embed_dim");
  if (shape_dim > 0 && meta_dim && *meta_dim != shape_dim)
    fail("{}: metadata embed_dim {} contradicts output '{}' {}", md.path, *meta_dim, o.name,
         runtime::shape_string(o.shape));
  info.dim = shape_dim > 0 ? shape_dim : meta_dim.value_or(0);
  if (info.dim <= 0)
    fail("{}: the embedding size is unknown (output '{}' has no fixed width and no embed_dim metadata)",
         md.path, o.name);
}

void check_batch_metadata(const Metadata& md, int64_t batch) {
  const auto meta = md.get_int("batch_size");
  if (meta && batch > 0 && *meta != batch)
    fail("{}: metadata batch_size {} contradicts the input's batch {}", md.path, *meta, batch);
}

std::array<float, 3> read_triple(const Metadata& md, std::string_view key, std::array<float, 3> fallback,
                                 bool& missing) {
  const auto v = md.get(key);
  if (!v) {
    missing = true;
    return fallback;
  }
  try {
    const auto j = nlohmann::json::parse(*v);
    if (!j.is_array() || j.size() != 3) throw std::runtime_error("not 3 numbers");
    std::array<float, 3> out{};
    for (size_t i = 0; i < 3; ++i) {
      if (!j[i].is_number()) throw std::runtime_error("not 3 numbers");
      out[i] = static_cast<float>(j[i].get<double>());
    }
    return out;
  } catch (const std::exception&) {
    fail("{}: metadata '{}' = '{}' is not a list of 3 numbers", md.path, key, *v);
  }
}

void warn_default_scale(const TowerInfo& info) {
  if (!info.logit_scale_from_metadata)
    core::log_warning("{}: no logit_scale metadata; using BiomedCLIP's default ln(100) (x{:.6g})", info.path,
                      info.logit_scale_exp);
}

// Runs `inputs` (count rows of `row` elements each, built by fill(row index,
// dest)) through `session` in batches; returns the output rows.
template <typename Fill>
std::vector<std::vector<float>> run_batched(runtime::Session& session, const TowerInfo& info, size_t count,
                                            Fill&& fill, core::Progress* progress) {
  std::vector<std::vector<float>> out;
  out.reserve(count);
  const size_t batch = info.batch > 0 ? static_cast<size_t>(info.batch) : 1;
  for (size_t start = 0; start < count; start += batch) {
    const size_t n = std::min(batch, count - start);
    std::vector<std::pair<std::string, runtime::Tensor>> feeds = fill(start, n, batch);
    std::vector<runtime::Tensor> result = session.run(feeds);
    const runtime::Tensor& t = result.at(0);
    if (t.type() != onnx::kFloat || t.rank() != 2 || t.dim(0) != static_cast<int64_t>(batch) ||
        t.dim(1) != info.dim)
      fail("{}: output has shape {}, expected [{}, {}]", info.path, runtime::shape_string(t.shape()), batch,
           info.dim);
    const float* p = t.data<float>();
    for (size_t i = 0; i < n; ++i)
      out.emplace_back(p + i * static_cast<size_t>(info.dim), p + (i + 1) * static_cast<size_t>(info.dim));
    if (progress) progress->add(n);
  }
  return out;
}

}  // namespace

// ---- text ------------------------------------------------------------------------

TextEncoder::TextEncoder(const std::string& model_path, const std::string& vocab_path,
                         runtime::SessionOptions options)
    : tokenizer_(text::Vocab::parse(core::read_text_file(vocab_path), vocab_path)),
      session_(runtime::Session::load(model_path, options)) {
  const Metadata md = Metadata::of(session_.model(), model_path);
  read_common(md, info_);
  if (auto tower = md.get("tower"); tower && *tower != "text")
    fail("{}: this is the {} tower (metadata tower = '{}'); --text needs the text model", model_path, *tower,
         *tower);
  inputs_ = session_.inputs();
  const runtime::IoInfo* ids = nullptr;
  for (const auto& in : inputs_) {
    if (in.name == "input_ids") ids = &in;
    else if (in.name != "attention_mask" && in.name != "token_type_ids")
      fail("{}: input '{}' is not one a text encoder takes (input_ids, attention_mask, token_type_ids)",
           model_path, in.name);
    if (in.type != onnx::kInt64)
      fail("{}: input '{}' is {}, expected int64 token ids", model_path, in.name, onnx::elem_type_name(in.type));
    if (in.has_shape && in.shape.size() != 2)
      fail("{}: input '{}' has shape {}, expected [N, L]", model_path, in.name, runtime::shape_string(in.shape));
  }
  if (!ids) fail("{}: no input 'input_ids' (not a text encoder)", model_path);
  info_.batch = ids->has_shape && ids->shape[0] > 0 ? ids->shape[0] : 0;
  check_batch_metadata(md, info_.batch);
  read_output(session_, md, info_);

  const int64_t shape_len = ids->has_shape ? ids->shape[1] : -1;
  const auto meta_len = md.get_int("context_length");
  if (shape_len > 0 && meta_len && *meta_len != shape_len)
    fail("{}: metadata context_length {} contradicts input_ids {}", model_path, *meta_len,
         runtime::shape_string(ids->shape));
  context_length_ = shape_len > 0 ? shape_len : meta_len.value_or(0);
  if (context_length_ <= 0) {
    context_length_ = 256;
    core::log_warning("{}: context length unknown (no fixed input_ids length, no context_length metadata); "
                      "using BiomedCLIP's 256",
                      model_path);
  }
  if (context_length_ < 2) fail("{}: context length {} leaves no room for [CLS] and [SEP]", model_path, context_length_);

  const std::string vocab_text = core::read_text_file(vocab_path);
  if (auto want = md.get("tokenizer_vocab_sha256")) {
    const std::string have = core::sha256_hex(vocab_text);
    if (have != *want)
      fail("{}: this vocabulary (sha256 {}) is not the one {} was exported with (tokenizer_vocab_sha256 {})",
           vocab_path, have, model_path, *want);
  }
  if (auto lower = md.get("tokenizer_do_lower_case"); lower && *lower == "false")  // a cased vocabulary
    tokenizer_ = text::BertTokenizer(text::Vocab::parse(vocab_text, vocab_path), {.lowercase = false});
  pad_id_ = tokenizer_.pad_id();
  if (auto pad = md.get_int("pad_token_id"); pad && *pad != pad_id_)
    fail("{}: [PAD] is id {} here, but {} says pad_token_id {}", vocab_path, pad_id_, model_path, *pad);
  warn_default_scale(info_);
}

std::vector<std::vector<float>> TextEncoder::encode(const std::vector<std::string>& prompts, bool progress) {
  const size_t len = static_cast<size_t>(context_length_);
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string clean = with_context(fmt::format("prompt '{}'", prompts[i]),
                                           [&] { return text::open_clip_clean(prompts[i]); });
    ids.push_back(tokenizer_.encode_padded(clean, len));
  }
  auto fill = [&](size_t start, size_t n, size_t batch) {
    const int64_t b = static_cast<int64_t>(batch), l = context_length_;
    std::vector<std::pair<std::string, runtime::Tensor>> feeds;
    for (const auto& in : inputs_) {
      runtime::Tensor t(onnx::kInt64, {b, l});
      int64_t* p = t.data<int64_t>();
      for (size_t r = 0; r < batch; ++r) {
        const auto& row = ids[start + std::min(r, n - 1)];  // padding rows repeat the last prompt
        for (size_t c = 0; c < len; ++c) {
          int64_t v = 0;
          if (in.name == "input_ids") v = row[c];
          else if (in.name == "attention_mask") v = row[c] != pad_id_ ? 1 : 0;
          p[r * len + c] = v;  // token_type_ids: 0
        }
      }
      feeds.emplace_back(in.name, std::move(t));
    }
    return feeds;
  };
  std::unique_ptr<core::Progress> bar;
  if (progress) bar = std::make_unique<core::Progress>("embed-labels", prompts.size());
  return run_batched(session_, info_, prompts.size(), fill, bar.get());
}

// ---- vision ------------------------------------------------------------------------

namespace {

vision::PreprocessConfig preprocess_from_metadata(const Metadata& md, const runtime::IoInfo& in) {
  const std::string& model_path = md.path;
  vision::PreprocessConfig config;
  std::vector<std::string> missing;
  const auto meta_size = md.get_int("image_size");
  const int64_t shape_size = in.has_shape ? in.shape[2] : -1;
  if (in.has_shape && in.shape[2] != in.shape[3])
    fail("{}: input '{}' {} is not square", model_path, in.name, runtime::shape_string(in.shape));
  if (shape_size > 0 && meta_size && *meta_size != shape_size)
    fail("{}: metadata image_size {} contradicts input '{}' {}", model_path, *meta_size, in.name,
         runtime::shape_string(in.shape));
  const int64_t size = shape_size > 0 ? shape_size : meta_size.value_or(0);
  if (!meta_size) missing.push_back("image_size");
  if (size > 0) config.image_size = static_cast<uint32_t>(size);
  bool no_mean = false, no_std = false;
  config.mean = read_triple(md, "image_mean", config.mean, no_mean);
  config.std = read_triple(md, "image_std", config.std, no_std);
  if (no_mean) missing.push_back("image_mean");
  if (no_std) missing.push_back("image_std");
  for (float s : config.std)
    if (!(s > 0)) fail("{}: metadata image_std has a value {} that is not positive", model_path, s);
  if (auto v = md.get("image_interpolation"); v && *v != "bicubic")
    fail("{}: metadata image_interpolation '{}' is not supported (open_clip's bicubic only)", model_path, *v);
  if (auto v = md.get("image_resize_mode"); v && *v != "shortest")
    fail("{}: metadata image_resize_mode '{}' is not supported (open_clip's shortest only)", model_path, *v);
  if (auto v = md.get("image_crop"); v && *v != "center")
    fail("{}: metadata image_crop '{}' is not supported (center only)", model_path, *v);
  if (!missing.empty())
    core::log_warning("{}: no {} metadata; using BiomedCLIP's defaults ({} px, mean [{}], std [{}])", model_path,
                      fmt::join(missing, ", "), config.image_size, fmt::join(config.mean, ", "),
                      fmt::join(config.std, ", "));
  return config;
}

}  // namespace

vision::PreprocessConfig image_preprocess_config(const onnx::Model& model, const runtime::IoInfo& input) {
  return preprocess_from_metadata(Metadata::of(model, model.path), input);
}

ImageEncoder::ImageEncoder(const std::string& model_path, runtime::SessionOptions options)
    : session_(runtime::Session::load(model_path, options)) {
  const Metadata md = Metadata::of(session_.model(), model_path);
  read_common(md, info_);
  if (auto tower = md.get("tower"); tower && *tower != "vision")
    fail("{}: this is the {} tower (metadata tower = '{}'); --vision needs the vision model", model_path,
         *tower, *tower);
  if (session_.inputs().size() != 1)
    fail("{}: {} inputs; an image encoder takes one [N, 3, S, S] float32 input", model_path,
         session_.inputs().size());
  const runtime::IoInfo& in = session_.inputs()[0];
  input_name_ = in.name;
  if (in.type != onnx::kFloat)
    fail("{}: input '{}' is {}, expected float32 pixels", model_path, in.name, onnx::elem_type_name(in.type));
  if (in.has_shape && (in.shape.size() != 4 || (in.shape[1] > 0 && in.shape[1] != 3)))
    fail("{}: input '{}' has shape {}, expected [N, 3, S, S]", model_path, in.name, runtime::shape_string(in.shape));
  info_.batch = in.has_shape && in.shape[0] > 0 ? in.shape[0] : 0;
  check_batch_metadata(md, info_.batch);
  read_output(session_, md, info_);

  preprocess_ = preprocess_from_metadata(md, in);
}

std::vector<float> ImageEncoder::preprocess(const std::string& image_path) const {
  const vision::Image img = vision::load_image(image_path);
  return vision::preprocess(img, preprocess_);
}

std::vector<std::vector<float>> ImageEncoder::encode(const std::vector<std::vector<float>>& pixels) {
  const int64_t s = preprocess_.image_size;
  const size_t plane = static_cast<size_t>(3 * s * s);
  for (const auto& p : pixels)
    if (p.size() != plane) fail("{}: an image of {} values, expected 3 x {} x {}", info_.path, p.size(), s, s);
  auto fill = [&](size_t start, size_t n, size_t batch) {
    runtime::Tensor t(onnx::kFloat, {static_cast<int64_t>(batch), 3, s, s});
    float* d = t.data<float>();
    for (size_t r = 0; r < batch; ++r) {
      const auto& src = pixels[start + std::min(r, n - 1)];
      std::copy(src.begin(), src.end(), d + r * plane);
    }
    std::vector<std::pair<std::string, runtime::Tensor>> feeds;
    feeds.emplace_back(input_name_, std::move(t));
    return feeds;
  };
  return run_batched(session_, info_, pixels.size(), fill, nullptr);
}

// ---- embed-labels --------------------------------------------------------------------

LabelSet embed_labels(TextEncoder& encoder, const std::vector<std::string>& labels,
                      const std::vector<std::string>& templates, bool progress) {
  if (labels.empty()) fail("embed-labels: no labels");
  if (templates.empty()) fail("embed-labels: no templates");
  for (size_t i = 0; i < labels.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (labels[i] == labels[j]) fail("embed-labels: label '{}' is given twice", labels[i]);
  std::vector<std::string> prompts;
  prompts.reserve(labels.size() * templates.size());
  for (const auto& l : labels)
    for (const auto& t : templates) prompts.push_back(apply_template(t, l));
  const auto rows = encoder.encode(prompts, progress);

  const TowerInfo& info = encoder.info();
  LabelSet set;
  set.model_name = info.model_name;
  set.text_model_file = fs::path(info.path).filename().string();
  set.text_model_sha256 = core::sha256_file(info.path);
  set.source_sha256 = info.source_sha256;
  set.dim = info.dim;
  set.logit_scale = info.logit_scale;
  set.logit_scale_exp = info.logit_scale_exp;
  set.templates = templates;
  const size_t dim = static_cast<size_t>(info.dim);
  std::vector<float> block(templates.size() * dim);
  for (size_t l = 0; l < labels.size(); ++l) {
    for (size_t t = 0; t < templates.size(); ++t)
      std::copy(rows[l * templates.size() + t].begin(), rows[l * templates.size() + t].end(),
                block.begin() + static_cast<std::ptrdiff_t>(t * dim));
    set.labels.push_back({labels[l], class_embedding(block, templates.size(), dim)});
  }
  return set;
}

}  // namespace medquant::zeroshot
