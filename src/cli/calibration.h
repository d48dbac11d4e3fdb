// Calibration for `quantize onnx --static`: the calibration folder read into
// model inputs, and activation ranges measured on medquant's own executor.
//
// --calib DIR holds one of:
//   images (.png/.jpg/.jpeg)  for a model with one float32 [N, 3, S, S]
//                             input: open_clip's preprocessing with the
//                             model's metadata (as classify/validate do), N
//                             images per sample (the last batch repeats its
//                             last image), in file-name order
//   .npy files                for a model with one input: one sample per file
//   one subfolder per input   named as the input, holding .npy files; the
//                             k-th file (name order) of every folder forms
//                             sample k, so all folders hold the same count
// Every array must have the input's element type and its shape (any size
// where the model leaves a dim symbolic).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "onnx/calibrate.h"
#include "onnx/graph.h"
#include "runtime/session.h"

namespace medquant::cli {

using Sample = std::vector<std::pair<std::string, runtime::Tensor>>;

// Reads at most `limit` samples (0 = all). Throws Error naming the file.
std::vector<Sample> read_calibration_dir(const std::string& dir, const onnx::Model& model,
                                         const std::vector<runtime::IoInfo>& inputs, size_t limit);

// The model's declared inputs (graph inputs that are not initializers).
std::vector<runtime::IoInfo> model_inputs(const onnx::Model& model);

// Runs `model` (with `tensors` made graph outputs) on every sample, once per
// calibrator pass, and returns the ranges.
std::map<std::string, onnx::TensorRange> calibrate(const onnx::Model& model, const std::vector<std::string>& tensors,
                                                   const std::vector<Sample>& samples,
                                                   const onnx::CalibrationOptions& options);

}  // namespace medquant::cli
