// medquant quantize onnx <in.onnx> -o <out.onnx>: dynamic INT8 quantization
// with the semantics of onnxruntime.quantization.quantize_dynamic, or with
// --static --calib DIR static QDQ quantization like quantize_static.
#include <fmt/format.h>

#include <map>

#include "cli/calibration.h"
#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "onnx/quantize_dynamic.h"
#include "onnx/quantize_static.h"

namespace medquant::cli {
namespace {

struct QuantizeOnnxOptions {
  std::string input, output;
  std::string weight_type = "qint8";
  bool per_channel = false;
  bool reduce_range = false;
  std::vector<std::string> op_types, include, exclude;
  bool matmul_const_b_only = true;
  bool no_preprocess = false;
  bool external_data = false;
  bool is_static = false;
  std::string calib;
  std::string calib_method = "minmax";
  size_t calib_size = 0;
  std::string activation_type = "qint8";
  bool symmetric_activation = false;
  std::string symmetric_weight;  // "", "true", "false"
  double percentile = 99.999;
  size_t calib_bins = 0;
  std::string calib_symmetric;  // "", "true", "false"
};

onnx::QuantType quant_type(const std::string& s) {
  return s == "quint8" ? onnx::QuantType::QUInt8 : onnx::QuantType::QInt8;
}

int tri_state(const std::string& s) { return s.empty() ? -1 : s == "true" ? 1 : 0; }

// QDQ: calibrate on medquant's executor, then write QuantizeLinear/DequantizeLinear pairs.
onnx::QuantizeReport quantize_static(const QuantizeOnnxOptions& o, onnx::Model& model) {
  onnx::StaticQuantizeOptions q;
  q.activation_type = quant_type(o.activation_type);
  q.weight_type = quant_type(o.weight_type);
  q.per_channel = o.per_channel;
  q.reduce_range = o.reduce_range;
  q.activation_symmetric = o.symmetric_activation;
  q.weight_symmetric = tri_state(o.symmetric_weight);
  q.op_types.insert(o.op_types.begin(), o.op_types.end());
  q.nodes_to_quantize.insert(o.include.begin(), o.include.end());
  q.nodes_to_exclude.insert(o.exclude.begin(), o.exclude.end());
  if (q.activation_type == onnx::QuantType::QInt8 && q.weight_type == onnx::QuantType::QUInt8)
    fail("--activation-type qint8 with --weight-type quint8 is not supported (as in ONNX Runtime); use "
         "--activation-type quint8");

  // Read the calibration data first: bad data fails before any long work.
  const auto samples = read_calibration_dir(o.calib, model, model_inputs(model), o.calib_size);
  onnx::CalibrationOptions c;
  c.method = o.calib_method == "percentile" ? onnx::CalibrationMethod::Percentile
             : o.calib_method == "entropy"  ? onnx::CalibrationMethod::Entropy
                                            : onnx::CalibrationMethod::MinMax;
  c.symmetric = tri_state(o.calib_symmetric);
  c.percentile = o.percentile;
  c.num_bins = o.calib_bins;
  const auto tensors = onnx::tensors_to_calibrate(
      model.graph, q.op_types.empty() ? onnx::static_default_op_types() : q.op_types);
  core::log_info("calibrating {} tensors on {} sample{} ({})", tensors.size(), samples.size(),
                 samples.size() == 1 ? "" : "s", o.calib_method);
  const auto ranges = calibrate(model, tensors, samples, c);
  return onnx::quantize_static(model, ranges, q);
}

int run(const QuantizeOnnxOptions& o) {
  if (o.is_static && o.calib.empty()) fail("--static needs --calib DIR (calibration images or .npy inputs)");
  if (!o.is_static && !o.calib.empty()) fail("--calib is for --static quantization");
  onnx::QuantizeFileOptions f;
  onnx::QuantizeOptions& q = f.quantize;
  q.weight_type = o.weight_type == "quint8" ? onnx::QuantType::QUInt8 : onnx::QuantType::QInt8;
  q.per_channel = o.per_channel;
  q.reduce_range = o.reduce_range;
  q.op_types.insert(o.op_types.begin(), o.op_types.end());
  q.nodes_to_quantize.insert(o.include.begin(), o.include.end());
  q.nodes_to_exclude.insert(o.exclude.begin(), o.exclude.end());
  q.matmul_const_b_only = o.matmul_const_b_only;
  f.preprocess = !o.no_preprocess;
  f.external_data = o.external_data;
  if (o.is_static) {
    q.op_types.clear();  // the static quantizer reads its own op list (and warns about nothing Conv-specific)
    f.quantizer = [&o](onnx::Model& model) { return quantize_static(o, model); };
  }
  const onnx::QuantizeFileResult result = onnx::quantize_dynamic_file(o.input, o.output, f);
  const onnx::QuantizeReport& report = result.report;
  const double seconds = result.seconds;

  // Summary: what was quantized, what was skipped and why, sizes.
  std::map<std::string, std::pair<size_t, size_t>> per_op;  // op -> (quantized, skipped)
  for (const auto& e : report.entries) (e.quantized ? per_op[e.op_type].first : per_op[e.op_type].second)++;
  fmt::print("{} -> {}: {} nodes quantized ({}{}, {}{}{})\n", o.input, o.output, report.quantized_count(),
             o.is_static ? fmt::format("static QDQ, {} calibration, activations {}, weights ", o.calib_method,
                                       o.activation_type)
                         : std::string(),
             o.weight_type, o.per_channel ? "per-channel" : "per-tensor",
             o.reduce_range ? ", reduce-range" : "", o.no_preprocess ? ", no pre-processing" : "");
  for (const auto& [op, n] : per_op) fmt::print("  {:<10} {} quantized, {} skipped\n", op, n.first, n.second);
  std::map<std::string, size_t> reasons;
  for (const auto& e : report.entries)
    if (!e.quantized) reasons[e.op_type + ": " + e.reason]++;
  if (!reasons.empty()) {
    fmt::print("skipped:\n");
    for (const auto& [r, n] : reasons) fmt::print("  {} x {}\n", n, r);
  }
  if (core::verbosity() >= core::Verbosity::Verbose)
    for (const auto& e : report.entries)
      fmt::print("  {:<40} {:<8} {}\n", e.node, e.quantized ? "int8" : "float", e.reason);
  fmt::print("weights: {} -> {} ({:.1f}%), {:.2f} s\n", core::human_bytes(report.weight_bytes_before),
             core::human_bytes(report.weight_bytes_after),
             report.weight_bytes_before
                 ? 100.0 * static_cast<double>(report.weight_bytes_after) /
                       static_cast<double>(report.weight_bytes_before)
                 : 0.0,
             seconds);
  return 0;
}

}  // namespace

void add_quantize_onnx_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "quantize", "Quantize a model (onnx: INT8, gguf: k-quants)");
  auto* app = group->add_subcommand(
      "onnx", "INT8 quantization of an ONNX model, like onnxruntime's quantize_dynamic (default) or "
              "quantize_static (--static)");
  auto o = std::make_shared<QuantizeOnnxOptions>();
  app->add_option("input", o->input, "FP32 .onnx model")->required()->check(CLI::ExistingFile);
  app->add_option("-o,--output", o->output, "Quantized .onnx to write")->required();
  app->add_option("--weight-type", o->weight_type,
                  "qint8 (symmetric, zero point 0; default, as in ORT) or quint8 (asymmetric)")
      ->check(CLI::IsMember({"qint8", "quint8"}));
  app->add_flag("--per-channel", o->per_channel, "One scale per MatMul output column");
  app->add_flag("--reduce-range", o->reduce_range, "7-bit weights (for CPUs without VNNI)");
  app->add_option("--op-types", o->op_types,
                  "Op types to quantize (default: MatMul; also Conv, Gather, Transpose; --static: docs/onnx.md)")
      ->delimiter(',');
  app->add_option("--include", o->include, "Quantize only these nodes (by name)");
  app->add_option("--exclude", o->exclude, "Never quantize these nodes (by name)");
  app->add_option("--matmul-const-b-only", o->matmul_const_b_only,
                  "Quantize only MatMuls whose B is a constant (default true)");
  app->add_flag("--no-preprocess", o->no_preprocess,
                "Skip the clean-ups (constant folding, Identity/dead-node removal) run before");
  app->add_flag("--external-data", o->external_data,
                "Write weights to <output>.data beside the model (automatic past 2 GiB)");
  app->add_flag("--static", o->is_static,
                "Static QDQ quantization (like ORT's quantize_static), calibrated on --calib");
  app->add_option("--calib", o->calib,
                  "Calibration folder: images, .npy files (one input) or one subfolder of .npy per input");
  app->add_option("--calib-method", o->calib_method, "minmax (default), percentile or entropy")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}));
  app->add_option("--calib-size", o->calib_size, "Use only the first N calibration samples");
  app->add_option("--activation-type", o->activation_type, "--static: qint8 (default, as in ORT) or quint8")
      ->check(CLI::IsMember({"qint8", "quint8"}));
  app->add_flag("--symmetric-activation", o->symmetric_activation,
                "--static: symmetric activation ranges (ActivationSymmetric)");
  app->add_option("--symmetric-weight", o->symmetric_weight,
                  "--static: true/false (WeightSymmetric; default: symmetric for qint8)")
      ->check(CLI::IsMember({"true", "false"}));
  app->add_option("--calib-symmetric", o->calib_symmetric,
                  "true/false: symmetric calibrated ranges (CalibTensorRangeSymmetric; default false, "
                  "percentile true)")
      ->check(CLI::IsMember({"true", "false"}));
  app->add_option("--percentile", o->percentile, "Percentile calibration: the kept share (default 99.999)");
  app->add_option("--calib-bins", o->calib_bins,
                  "Histogram bins (default 2048 percentile, 128 entropy, as ORT's quantize_static)");
  commands.push_back({app, [o]() -> int { return run(*o); }});
}

}  // namespace medquant::cli
