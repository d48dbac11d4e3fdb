// medquant quantize gguf <in.gguf> -o <out.gguf> --type Q4_K_S [...]: an
// F32/F16/BF16 GGUF to a llama.cpp quantization mix, the same bytes as the
// pinned llama-quantize writes (options named as its are).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "gguf/quantize.h"

namespace medquant::cli {
namespace {

struct Args {
  std::string input, output, type, imatrix, token_embedding_type, output_tensor_type;
  std::string tensor_type_file;
  std::vector<std::string> tensor_types, include_weights, exclude_weights;
  bool leave_output_tensor = false, pure = false, allow_requantize = false, dry_run = false;
  bool json = false;
};

std::string mix_list() {
  std::string s;
  for (const auto& m : gguf::mixes()) s += fmt::format("{}{}", s.empty() ? "" : ", ", m.name);
  return s;
}

quant::Type parse_type_arg(const std::string& flag, const std::string& value) {
  const auto t = quant::parse_type(value);
  if (!t) fail("{} '{}': unknown ggml type", flag, value);
  return *t;
}

std::string mib(uint64_t bytes) { return fmt::format("{:.2f} MiB", bytes / 1048576.0); }

double bpw(uint64_t bytes, uint64_t elements) {
  return elements ? 8.0 * static_cast<double>(bytes) / static_cast<double>(elements) : 0.0;
}

void print_table(const gguf::QuantizeResult& r, bool dry_run) {
  size_t w_name = 6, w_shape = 5, w_types = 4;
  std::vector<std::string> types;
  for (const auto& t : r.tensors) {
    types.push_back(t.from == t.to ? std::string(quant::type_name(t.to))
                                   : fmt::format("{} -> {}", quant::type_name(t.from),
                                                 quant::type_name(t.to)));
    w_name = std::max(w_name, t.name.size());
    w_shape = std::max(w_shape, t.shape.size());
    w_types = std::max(w_types, types.back().size());
  }
  std::string head = fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>12}", "tensor", w_name, "shape",
                                 w_shape, "type", w_types, "bytes");
  if (!dry_run) head += fmt::format("  {:>10}  {:>9}", "rmse", "rmse/rms");
  fmt::print("{}\n", head);
  for (size_t i = 0; i < r.tensors.size(); ++i) {
    const auto& t = r.tensors[i];
    std::string line = fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>12}", t.name, w_name, t.shape,
                                   w_shape, types[i], w_types, t.bytes_out);
    if (!dry_run && t.quantized) {
      const double rel = t.stats.rms_source > 0 ? t.stats.rmse / t.stats.rms_source : 0.0;
      line += fmt::format("  {:>10.3e}  {:>9.5f}", t.stats.rmse, rel);
    }
    std::string notes;
    if (t.fallback) notes += " (fallback: row length)";
    if (t.imatrix) notes += " (imatrix)";
    fmt::print("{}{}\n", line, notes);
  }
  fmt::print("model size: {} ({:.2f} bpw)\n", mib(r.bytes_in), bpw(r.bytes_in, r.elements));
  fmt::print("quant size: {} ({:.2f} bpw){}\n", mib(r.bytes_out), bpw(r.bytes_out, r.elements),
             dry_run ? "" : fmt::format(", file {} bytes, {:.2f} s", r.file_size, r.seconds));
  if (r.n_fallback > 0)
    fmt::print("{} of {} tensors needed a fallback type (row length not a multiple of the "
               "block size)\n",
               r.n_fallback, r.tensors.size());
}

void print_json(const gguf::QuantizeResult& r, const gguf::QuantizeOptions& o) {
  using Json = nlohmann::ordered_json;
  Json out;
  out["input"] = o.input;
  out["output"] = o.dry_run ? Json(nullptr) : Json(o.output);
  out["type"] = std::string(o.plan.mix.name);
  out["dry_run"] = o.dry_run;
  out["tensors"] = Json::array();
  for (const auto& t : r.tensors) {
    Json j = {{"name", t.name},
              {"shape", t.shape},
              {"from", std::string(quant::type_name(t.from))},
              {"to", std::string(quant::type_name(t.to))},
              {"bytes_in", t.bytes_in},
              {"bytes_out", t.bytes_out},
              {"quantized", t.quantized},
              {"fallback", t.fallback},
              {"imatrix", t.imatrix}};
    if (t.quantized && !o.dry_run)
      j["stats"] = {{"rmse", t.stats.rmse},
                    {"max_abs_err", t.stats.max_abs_err},
                    {"rms_source", t.stats.rms_source}};
    out["tensors"].push_back(std::move(j));
  }
  out["elements"] = r.elements;
  out["bytes_in"] = r.bytes_in;
  out["bytes_out"] = r.bytes_out;
  out["bpw_in"] = bpw(r.bytes_in, r.elements);
  out["bpw_out"] = bpw(r.bytes_out, r.elements);
  out["file_size"] = r.file_size;
  out["n_fallback"] = r.n_fallback;
  out["imatrix_entries"] = r.imatrix_entries;
  out["seconds"] = r.seconds;
  fmt::print("{}\n", out.dump());
}

int run(const Args& a) {
  gguf::QuantizeOptions o;
  o.input = a.input;
  o.output = a.output;
  const auto mix = gguf::parse_mix(a.type);
  if (!mix) fail("--type '{}': unknown type (one of: {})", a.type, mix_list());
  o.plan.mix = *mix;
  if (!a.dry_run && o.output.empty()) fail("quantize gguf: -o/--output is required");
  if (!a.token_embedding_type.empty())
    o.plan.token_embedding_type = parse_type_arg("--token-embedding-type", a.token_embedding_type);
  if (!a.output_tensor_type.empty())
    o.plan.output_tensor_type = parse_type_arg("--output-tensor-type", a.output_tensor_type);
  for (const auto& s : a.tensor_types)
    o.plan.tensor_types.push_back(gguf::parse_tensor_type_override(s));
  if (!a.tensor_type_file.empty()) {
    std::ifstream in(a.tensor_type_file);
    if (!in) fail("{}: cannot open", a.tensor_type_file);
    std::string word;
    while (in >> word)
      o.plan.tensor_types.push_back(with_context(
          a.tensor_type_file, [&] { return gguf::parse_tensor_type_override(word); }));
  }
  o.plan.leave_output_tensor = a.leave_output_tensor;
  o.plan.pure = a.pure;
  o.imatrix = a.imatrix;
  o.include_weights = a.include_weights;
  o.exclude_weights = a.exclude_weights;
  o.allow_requantize = a.allow_requantize;
  o.dry_run = a.dry_run;

  const gguf::QuantizeResult r = gguf::quantize_gguf(o, core::default_pool());
  if (a.json) {
    print_json(r, o);
  } else {
    print_table(r, a.dry_run);
  }
  return 0;
}

}  // namespace

void add_quantize_gguf_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "quantize", "Quantize a model (onnx, gguf)");
  auto* app = group->add_subcommand(
      "gguf", "Quantize an F32/F16/BF16 GGUF to a llama.cpp mix (Q4_K_S, Q8_0, ...), bit-identical "
              "to llama-quantize");
  auto a = std::make_shared<Args>();
  app->add_option("input", a->input, "Input .gguf (F32, F16 or BF16 weights)")->required();
  app->add_option("-o,--output", a->output, "Output .gguf");
  app->add_option("--type", a->type, "Mix: " + mix_list())->required();
  app->add_option("--imatrix", a->imatrix,
                  "Importance matrix from llama-imatrix (GGUF or legacy .dat)");
  app->add_option("--include-weights", a->include_weights,
                  "Use the imatrix only for tensors whose name contains this (repeatable)");
  app->add_option("--exclude-weights", a->exclude_weights,
                  "Do not use the imatrix for tensors whose name contains this (repeatable)");
  app->add_option("--tensor-type", a->tensor_types,
                  "REGEX=TYPE: type for tensors whose name matches (repeatable, first match "
                  "wins)");
  app->add_option("--tensor-type-file", a->tensor_type_file,
                  "File of REGEX=TYPE entries separated by spaces or newlines");
  app->add_option("--token-embedding-type", a->token_embedding_type,
                  "Type for token_embd.weight");
  app->add_option("--output-tensor-type", a->output_tensor_type, "Type for output.weight");
  app->add_flag("--leave-output-tensor", a->leave_output_tensor,
                "Leave output.weight as it is");
  app->add_flag("--pure", a->pure, "No per-tensor mix rules: every tensor gets the --type's type");
  app->add_flag("--allow-requantize", a->allow_requantize,
                "Allow quantizing tensors that are already quantized (loses quality)");
  app->add_flag("--dry-run", a->dry_run,
                "Print the per-tensor plan and the final size; write nothing");
  app->add_flag("--json", a->json, "Print the summary as one JSON object");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
