// medquant quantize onnx <in.onnx> -o <out.onnx>: dynamic INT8 quantization
// with the semantics of onnxruntime.quantization.quantize_dynamic.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <map>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "onnx/model_io.h"
#include "onnx/passes.h"
#include "onnx/quantize_dynamic.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif

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
};

int run(const QuantizeOnnxOptions& o) {
  namespace fs = std::filesystem;
  if (o.is_static || !o.calib.empty())
    fail("--static: static (QDQ) quantization needs medquant's ONNX executor for calibration, "
         "which is not built yet; use dynamic quantization (the default)");
  std::error_code ec;
  if (fs::exists(o.output, ec) && fs::exists(o.input, ec) && fs::equivalent(o.input, o.output, ec))
    fail("{}: output would overwrite the input", o.output);
  const auto start = std::chrono::steady_clock::now();
  auto lap = [last = start](const char* what) mutable {
    const auto now = std::chrono::steady_clock::now();
    core::log_verbose("{}: {:.3f} s", what, std::chrono::duration<double>(now - last).count());
    last = now;
  };

  onnx::QuantizeOptions q;
  q.weight_type = o.weight_type == "quint8" ? onnx::QuantType::QUInt8 : onnx::QuantType::QInt8;
  q.per_channel = o.per_channel;
  q.reduce_range = o.reduce_range;
  q.op_types.insert(o.op_types.begin(), o.op_types.end());
  q.nodes_to_quantize.insert(o.include.begin(), o.include.end());
  q.nodes_to_exclude.insert(o.exclude.begin(), o.exclude.end());
  q.matmul_const_b_only = o.matmul_const_b_only;
  if (q.weight_type == onnx::QuantType::QInt8 && q.op_types.count("Conv"))
    core::log_warning(
        "Conv with qint8 weights becomes ConvInteger(uint8, int8), which ONNX Runtime before 1.17 "
        "cannot load; use --weight-type quint8 for such runtimes (docs/onnx.md)");

  onnx::Model model = onnx::load_model(o.input);
  lap("load");
  onnx::check_model(model);  // also refuses opsets newer than libonnx knows
  lap("check input");
  onnx::PassStats pre;
  if (!o.no_preprocess) pre = onnx::simplify(model.graph);
  lap("pre-process");
  onnx::infer_shapes(model);
  lap("shape inference");
  core::log_verbose("pre-processing: {} constants folded, {} nodes and {} initializers removed",
                    pre.constants_folded, pre.nodes_removed, pre.initializers_removed);

  onnx::QuantizeReport report = onnx::quantize_dynamic(model, q);
  lap("quantize");
  model.header.set_producer_name("medquant");
  model.header.set_producer_version(MEDQUANT_VERSION);
  with_context(o.output + ": the quantized graph failed its check (a medquant bug)",
               [&] { onnx::check_model(model); });
  lap("check output");

  onnx::SaveOptions save;
  if (o.external_data) save.external_data = onnx::SaveOptions::ExternalData::Always;
  onnx::save_model(model, o.output, save);
  lap("save");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Summary: what was quantized, what was skipped and why, sizes.
  std::map<std::string, std::pair<size_t, size_t>> per_op;  // op -> (quantized, skipped)
  for (const auto& e : report.entries) (e.quantized ? per_op[e.op_type].first : per_op[e.op_type].second)++;
  fmt::print("{} -> {}: {} nodes quantized ({}, {}{}{})\n", o.input, o.output, report.quantized_count(),
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
      "onnx", "Dynamic INT8 quantization of an ONNX model, like onnxruntime's quantize_dynamic");
  auto o = std::make_shared<QuantizeOnnxOptions>();
  app->add_option("input", o->input, "FP32 .onnx model")->required()->check(CLI::ExistingFile);
  app->add_option("-o,--output", o->output, "Quantized .onnx to write")->required();
  app->add_option("--weight-type", o->weight_type,
                  "qint8 (symmetric, zero point 0; default, as in ORT) or quint8 (asymmetric)")
      ->check(CLI::IsMember({"qint8", "quint8"}));
  app->add_flag("--per-channel", o->per_channel, "One scale per MatMul output column");
  app->add_flag("--reduce-range", o->reduce_range, "7-bit weights (for CPUs without VNNI)");
  app->add_option("--op-types", o->op_types,
                  "Op types to quantize (default: MatMul; also Conv, Gather, Transpose)")
      ->delimiter(',');
  app->add_option("--include", o->include, "Quantize only these nodes (by name)");
  app->add_option("--exclude", o->exclude, "Never quantize these nodes (by name)");
  app->add_option("--matmul-const-b-only", o->matmul_const_b_only,
                  "Quantize only MatMuls whose B is a constant (default true)");
  app->add_flag("--no-preprocess", o->no_preprocess,
                "Skip the clean-ups (constant folding, Identity/dead-node removal) run before");
  app->add_flag("--external-data", o->external_data,
                "Write weights to <output>.data beside the model (automatic past 2 GiB)");
  app->add_flag("--static", o->is_static, "Static QDQ quantization (not available yet)");
  app->add_option("--calib", o->calib, "Calibration folder for --static");
  commands.push_back({app, [o]() -> int { return run(*o); }});
}

}  // namespace medquant::cli
