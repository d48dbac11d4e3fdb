// Reading and writing .onnx files, and ONNX's own checker and shape inference.
//
// The file format (onnx.proto, protobuf binary):
//   A .onnx file is one serialized ModelProto: ir_version, opset_import
//   (domain, version) pairs, producer name/version, metadata_props (key/value
//   strings), and `graph`, a GraphProto: node (NodeProto: op_type, domain,
//   name, input/output value names, attributes), initializer (TensorProto:
//   name, data_type, dims, elements), input/output/value_info (name + type +
//   shape). Protobuf caps one message at 2 GiB, so bigger models keep tensor
//   bytes in external files: the TensorProto then has data_location=EXTERNAL
//   and external_data entries "location" (a path relative to the .onnx file's
//   folder), "offset" and "length" (decimal strings, bytes); its raw_data is
//   empty. Several tensors usually share one data file.
//
// What medquant does with it:
//   load_model maps the file and every external data file (tensor bytes stay
//   in the mapping, no copy) and checks each tensor's byte count against its
//   shape. save_model writes through core::AtomicFile; tensors go inline, or
//   with ExternalData::Always (or automatically past protobuf's 2 GiB limit)
//   into one data file "<model file name>.data" beside the model, each tensor
//   of at least `threshold` bytes at a 64-byte aligned offset.
//
// Checker and shape inference come from libonnx 1.12 (Debian), which knows
// ai.onnx opsets up to 17 and IR version 8: see require_checkable_opsets.
#pragma once

#include <cstdint>
#include <string>

#include "onnx/graph.h"

namespace medquant::onnx {

// Newest operator sets the linked libonnx has schemas for.
constexpr int64_t kMaxOnnxOpset = 17;
constexpr int64_t kMaxOnnxMlOpset = 3;
constexpr int64_t kMaxCheckerIrVersion = 8;

// Throws Error naming the file on: missing/unreadable file, not an ONNX model,
// truncated or corrupt protobuf, external data that is missing, escapes the
// model's folder, or is shorter than the tensor needs.
Model load_model(const std::string& path);

struct SaveOptions {
  enum class ExternalData { Auto, Always, Never };
  ExternalData external_data = ExternalData::Auto;
  size_t threshold = 1024;  // tensors smaller than this stay inline
};

// Writes `model` to `path` (and "<path filename>.data" when external). Nothing
// appears under either name unless everything was written.
void save_model(const Model& model, const std::string& path, const SaveOptions& options = {});

// The whole model as a ModelProto. With `placeholders`, initializers bigger
// than 64 KiB carry a one-byte stand-in instead of their elements: enough for
// the checker and shape inference (which read only small constant inputs such
// as Reshape's shape) without copying the weights.
::onnx::ModelProto to_proto(const Model& model, bool placeholders = false);

// Fails with a clear message when the model uses an ai.onnx / ai.onnx.ml
// opset newer than libonnx knows: its checker would judge newer operators by
// older schemas and give wrong answers.
void require_checkable_opsets(const Model& model);

// ONNX's checker (onnx::checker::check_model) plus our own checks of every
// initializer's size. Throws Error "<path>: ONNX checker: ...".
void check_model(const Model& model);

// ONNX shape inference (the same mode ORT's quantizer uses: no type checks,
// node errors ignored); replaces graph.value_info with what it infers and
// fills in graph output types it learns.
void infer_shapes(Model& model);

}  // namespace medquant::onnx
