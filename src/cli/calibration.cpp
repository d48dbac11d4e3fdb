#include "cli/calibration.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>

#include "cli/run_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "runtime/tensor.h"
#include "validate/common.h"
#include "vision/image.h"
#include "zeroshot/encoders.h"

namespace medquant::cli {
namespace fs = std::filesystem;

namespace {

std::vector<std::string> files_with(const fs::path& dir, const std::vector<std::string>& exts) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(exts.begin(), exts.end(), ext) != exts.end()) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

runtime::Tensor read_input_npy(const std::string& path, const runtime::IoInfo& in) {
  runtime::Tensor t = tensor_from_npy(core::read_npy(path), path);
  if (t.type() != in.type)
    fail("{}: element type {}, but input '{}' takes {}", path, onnx::elem_type_name(t.type()), in.name,
         onnx::elem_type_name(in.type));
  bool ok = !in.has_shape || t.rank() == in.shape.size();
  for (size_t i = 0; ok && in.has_shape && i < in.shape.size(); ++i)
    ok = in.shape[i] < 0 || in.shape[i] == t.dim(i);
  if (!ok)
    fail("{}: shape {}, but input '{}' takes {} (-1: any size)", path, runtime::shape_string(t.shape()), in.name,
         runtime::shape_string(in.shape));
  return t;
}

std::vector<Sample> read_images(const std::string& dir, const onnx::Model& model,
                                const std::vector<runtime::IoInfo>& inputs, size_t limit) {
  if (inputs.size() != 1 || inputs[0].type != onnx::kFloat || inputs[0].shape.size() != 4)
    fail("{}: images calibrate a model with one float32 [N, 3, S, S] input; this model has {} input(s) "
         "(use .npy files)", dir, inputs.size());
  const vision::PreprocessConfig config = zeroshot::image_preprocess_config(model, inputs[0]);
  const std::vector<std::string> files = validate::image_files(dir);
  const int64_t s = config.image_size;
  const int64_t batch = inputs[0].shape[0] > 0 ? inputs[0].shape[0] : 1;
  size_t count = (files.size() + static_cast<size_t>(batch) - 1) / static_cast<size_t>(batch);
  if (limit) count = std::min(count, limit);
  const size_t plane = static_cast<size_t>(3 * s * s);
  std::vector<Sample> samples;
  core::Progress progress("preprocess", count);
  for (size_t k = 0; k < count; ++k) {
    runtime::Tensor t(onnx::kFloat, {batch, 3, s, s});
    for (int64_t r = 0; r < batch; ++r) {
      const size_t i = std::min(k * static_cast<size_t>(batch) + static_cast<size_t>(r), files.size() - 1);
      const std::vector<float> px = vision::preprocess(vision::load_image(files[i]), config);
      std::copy(px.begin(), px.end(), t.data<float>() + static_cast<size_t>(r) * plane);
    }
    Sample sample;
    sample.emplace_back(inputs[0].name, std::move(t));
    samples.push_back(std::move(sample));
    progress.add(1);
  }
  return samples;
}

}  // namespace

std::vector<runtime::IoInfo> model_inputs(const onnx::Model& model) {
  std::vector<runtime::IoInfo> out;
  for (const auto& vi : model.graph.inputs) {
    if (model.graph.find_initializer(vi.name())) continue;
    runtime::IoInfo info;
    info.name = vi.name();
    if (vi.type().has_tensor_type()) {
      const auto& tt = vi.type().tensor_type();
      info.type = tt.elem_type();
      info.has_shape = tt.has_shape();
      for (const auto& d : tt.shape().dim()) info.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<Sample> read_calibration_dir(const std::string& dir, const onnx::Model& model,
                                         const std::vector<runtime::IoInfo>& inputs, size_t limit) {
  const std::string& model_path = model.path;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail("{}: --calib is not a folder", dir);
  if (inputs.empty()) fail("{}: the model has no inputs to calibrate with", model_path);
  const auto images = files_with(dir, {".png", ".jpg", ".jpeg"});
  const auto npys = files_with(dir, {".npy"});
  if (!images.empty() && !npys.empty())
    fail("{}: holds both images and .npy files; use one kind of calibration data", dir);
  if (!images.empty()) return read_images(dir, model, inputs, limit);

  std::vector<std::vector<std::string>> per_input;
  if (!npys.empty()) {
    if (inputs.size() != 1)
      fail("{}: .npy files directly in the folder feed a model with one input; this one has {} (use one "
           "subfolder per input: {})", dir, inputs.size(), inputs[0].name + ", ...");
    per_input.push_back(npys);
  } else {
    for (const auto& in : inputs) {
      const fs::path sub = fs::path(dir) / in.name;
      if (!fs::is_directory(sub, ec))
        fail("{}: no calibration data: no images, no .npy files and no subfolder '{}' for input '{}'", dir,
             in.name, in.name);
      per_input.push_back(files_with(sub, {".npy"}));
      if (per_input.back().empty()) fail("{}: no .npy files for input '{}'", sub.string(), in.name);
      if (per_input.back().size() != per_input.front().size())
        fail("{}: {} .npy files, but {} has {}; every input needs one file per sample", sub.string(),
             per_input.back().size(), (fs::path(dir) / inputs[0].name).string(), per_input.front().size());
    }
  }
  size_t count = per_input.front().size();
  if (limit) count = std::min(count, limit);
  std::vector<Sample> samples(count);
  for (size_t k = 0; k < count; ++k)
    for (size_t i = 0; i < inputs.size(); ++i)
      samples[k].emplace_back(inputs[i].name, read_input_npy(per_input[i][k], inputs[i]));
  return samples;
}

std::map<std::string, onnx::TensorRange> calibrate(const onnx::Model& model, const std::vector<std::string>& tensors,
                                                   const std::vector<Sample>& samples,
                                                   const onnx::CalibrationOptions& options) {
  if (samples.empty()) fail("calibration: no samples");
  if (tensors.empty()) return {};  // nothing selected to quantize
  // augment_graph: every calibrated value that is not a graph input becomes a
  // graph output, on a copy of the model that lives as long as the session.
  auto augmented = std::make_shared<onnx::Model>(model);
  {
    std::set<std::string> present;
    for (const auto& o : augmented->graph.outputs) present.insert(o.name());
    for (const auto& in : augmented->graph.inputs) present.insert(in.name());
    for (const auto& t : tensors) {
      if (present.count(t)) continue;
      const auto* vi = model.graph.find_value_info(t);
      if (!vi) fail("calibration: '{}' has no type from shape inference", t);
      augmented->graph.outputs.push_back(*vi);
    }
  }
  // No fusion: ORT calibrates with graph optimizations off, and fused kernels
  // would round intermediate values differently.
  runtime::Session session = runtime::Session::from_model(std::move(augmented), {.fuse = false});

  onnx::Calibrator calibrator(options, tensors);
  const std::set<std::string> wanted(tensors.begin(), tensors.end());
  core::Progress progress("calibrate", samples.size() * static_cast<size_t>(calibrator.passes()));
  for (int pass = 0; pass < calibrator.passes(); ++pass) {
    calibrator.begin_pass(pass);
    for (const auto& sample : samples) {
      std::map<std::string, runtime::Tensor> feeds;
      for (const auto& [name, t] : sample) feeds.emplace(name, t);
      for (const auto& [name, t] : sample)
        if (wanted.count(name) && t.type() == onnx::kFloat)
          calibrator.observe(name, t.data<float>(), static_cast<size_t>(t.size()));
      const auto outputs = session.run_named(feeds);
      for (const auto& [name, t] : outputs) {
        if (!wanted.count(name)) continue;
        if (t.type() != onnx::kFloat)
          fail("calibration: '{}' is {}; only float32 activations can be calibrated", name,
               onnx::elem_type_name(t.type()));
        calibrator.observe(name, t.data<float>(), static_cast<size_t>(t.size()));
      }
      progress.add(1);
    }
  }
  progress.finish();
  return calibrator.compute();
}

}  // namespace medquant::cli
