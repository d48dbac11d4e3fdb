// BiomedCLIP (open_clip) and plain BERT checkpoints -> ONNX FP32 encoders.
//
// medquant export biomedclip <dir> -o <outdir> writes
//   biomedclip_vision.onnx   pixel_values [N,3,S,S] float32 -> image_embeds [N,E]
//   biomedclip_text.onnx     input_ids, attention_mask [N,L] int64 -> text_embeds [N,E]
// (L2-normalised unless told not; static batch N; L = context_length), and
// medquant export bert <dir> -o <file.onnx> one BERT encoder with CLS or
// masked-mean pooling.
//
// The graphs use only standard ai.onnx operators (opset 17), laid out the way
// ONNX Runtime's fusions, medquant's executor and medquant's quantizer expect:
//   LayerNormalization (axis -1, the model's epsilon);
//   every Linear as MatMul(x, W) with W a float32 initializer already
//     transposed to [in, out] (+ Add(bias)), so `medquant quantize onnx`
//     quantizes it (constant B) and GEMM epilogues fuse the bias;
//   attention as separate Q/K/V MatMuls (the ViT's stacked qkv weight is split
//     at export) -> Reshape [N,T,h,d] -> Transpose -> MatMul(Q, K^T) ->
//     Div(sqrt d) [-> Add(additive key mask)] -> Softmax(-1) -> MatMul(., V) ->
//     Transpose -> Reshape [N,T,W] -> MatMul(out proj);
//   GELU as x * 0.5 * (1 + Erf(x / sqrt 2)) in torch's export order
//     (Div, Erf, Add, Mul, Mul), which ORT fuses into Gelu and the executor
//     folds into the GEMM;
//   the ViT patch embedding as Conv(kernel = stride = patch): quantize onnx
//     keeps Conv in FP32 by default (docs/onnx.md: ConvInteger does not load
//     in older ORT and has no fused kernel; 0.7 % of ViT-B's weights; the
//     first layer's error reaches every block), ORT and the executor run it
//     as one GEMM, and it needs no 6-D Transpose of the image;
//   the L2 normalisation as ReduceL2 -> Max(norm, 1e-12) -> Div, which is
//     torch's F.normalize (x / max(||x||, eps)).
// The BERT key mask is Unsqueeze -> Cast -> Sub(1, m) -> Mul(float32 min),
// as transformers builds it. Token pooling gathers token 0 before the final
// LayerNorm (per-token, so the same numbers for less work).
//
// Every model passes ONNX's checker and strict shape inference (the inferred
// output shape must be the declared one) before it is written; writing goes
// through core::AtomicFile, and nothing is written before the whole
// checkpoint has been validated against its description (config.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/biomedclip/config.h"
#include "models/biomedclip/weights.h"
#include "onnx/graph.h"

namespace medquant::models::biomedclip {

inline constexpr int64_t kDefaultOpset = 17;

struct ExportOptions {
  int64_t batch = 1;
  bool l2_normalize = true;
  int64_t opset = kDefaultOpset;
};

// A BiomedCLIP folder, read and validated: configs, description, weights.
struct BiomedClipCheckpoint {
  std::string dir;
  std::string config_path;   // open_clip_config.json
  std::string weights_path;  // open_clip_pytorch_model.bin / open_clip_model.safetensors
  std::string vocab_path;    // "" if the folder has no vocab.txt
  ConfigFiles files;
  BiomedClipConfig config;
  std::shared_ptr<const Weights> weights;
  float logit_scale = 0;
  std::optional<float> logit_bias;

  // Throws Error naming the file, key or tensor at fault.
  static BiomedClipCheckpoint open(const std::string& dir);
};

// The graphs, in memory (weights are views of the checkpoint where they need
// no change). `metadata` is written as the models' metadata_props.
onnx::Model build_vision_model(const BiomedClipCheckpoint& ckpt, const ExportOptions& options);
onnx::Model build_text_model(const BiomedClipCheckpoint& ckpt, const ExportOptions& options);

// ONNX's checker plus strict shape inference; Error naming `what` on failure.
void check_exported(const onnx::Model& model, const std::string& what);

struct ExportResult {
  std::vector<std::string> files;
  std::string source_sha256;
  double seconds = 0;
};

ExportResult export_biomedclip(const std::string& dir, const std::string& out_dir,
                               const ExportOptions& options);

// ---- plain Hugging Face BERT ------------------------------------------------

enum class BertPooling { Cls, Mean };

struct BertExportOptions {
  int64_t batch = 1;
  int64_t seq_len = 0;  // 0: max_position_embeddings, at most 512
  BertPooling pooling = BertPooling::Cls;
  bool l2_normalize = false;
  int64_t opset = kDefaultOpset;
};

// `dir` holds config.json and model.safetensors (or a sharded index) or
// pytorch_model.bin. Output: input_ids, attention_mask [N,L] int64 ->
// text_embeds [N,H]. CLS = last hidden state of token 0; mean = sum of the
// masked hidden states / max(mask count, 1e-9) (sentence-transformers').
ExportResult export_bert(const std::string& dir, const std::string& out_path,
                         const BertExportOptions& options);

}  // namespace medquant::models::biomedclip
