// `medquant pipeline biomedclip|medgemma` and `medquant demo`: the existing
// steps (hub fetch/verify, export, quantize, embed labels, convert, validate)
// as lists of StepRunner steps writing the deployment layout:
//
//   <out>/models/biomedclip/biomedclip_vision.onnx        FP32, static batch 1, L2-normalised
//                           biomedclip_vision_int8.onnx   dynamic INT8 (quantize onnx defaults)
//                           biomedclip_text.onnx          FP32 text tower
//                           labels.json                   zero-shot labels (test-all reads it here)
//   <out>/models/medgemma/medgemma-4b-<type>.gguf         text model, one-pass mix
//                         mmproj-medgemma-4b-f16.gguf     vision projector
//   <out>/report/<biomedclip|medgemma>/report.{md,json,html}
//   <out>/.medquant/steps.json                            stamps (step_runner.h)
//   <out>/.medquant/work/medgemma-4b-reference.gguf       unquantized references for validation
//                         mmproj-medgemma-4b-f32.gguf     (test-all finds them there)
#pragma once

#include <string>
#include <vector>

#include "validate/gguf_validation.h"

namespace medquant::pipeline {

struct CommonOptions {
  std::string from;  // hub repo id ("org/name") or a local checkpoint folder
  std::string out;   // the deployment folder
  bool force = false;
};

struct BiomedClipOptions : CommonOptions {
  std::string labels;  // label list file; "" = the 30 built-in medical labels
  std::string images;  // folder for validation; "" = synthetic images
};

struct MedGemmaOptions : CommonOptions {
  std::string type = "Q4_K_S";  // a quantized mix of convert gguf
  std::string imatrix;          // an importance matrix file (llama-imatrix output), optional
  std::string imatrix_text;     // compute an importance matrix from this text (step "imatrix")
  int imatrix_ctx = 512;        // its chunk size (llama-imatrix -c)
  validate::GgufOptions validation;  // text, context, speed, thresholds (files set here)
};

struct PipelineResult {
  bool pass = false;             // validation passed
  std::string report_dir;
  std::vector<std::string> ran;  // steps that ran (the others were up to date)
};

// Names of the layout files.
std::string medgemma_file_name(const std::string& type);  // "medgemma-4b-q4_k_s.gguf"
inline constexpr const char* kMmprojFileName = "mmproj-medgemma-4b-f16.gguf";

// Throws Error for an unknown or unquantized --type, for both --imatrix and
// --imatrix-text, and for a missing file.
void check_medgemma_options(const MedGemmaOptions& options);

PipelineResult run_biomedclip(const BiomedClipOptions& options);
PipelineResult run_medgemma(const MedGemmaOptions& options);

// The bundled tiny fixtures (tests/fixtures): next to the binary's source
// tree (found upwards from the executable) or the compiled-in source path.
// Throws Error naming where it looked.
std::string find_fixtures_dir();

}  // namespace medquant::pipeline
