// medquant convert gguf <hf-dir> -o <out.gguf> [--outtype T] [--mmproj <file>]:
// a Hugging Face Gemma 3 checkpoint (MedGemma) to the GGUF files llama.cpp
// loads, as its convert_hf_to_gguf.py (+ --mmproj) writes them; quantized
// output types are made in the same pass, as llama-quantize would make them.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <memory>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "models/gemma3/convert.h"

namespace medquant::cli {
namespace {

namespace g3 = models::gemma3;

struct Args {
  g3::ConvertOptions options;
  std::string model_name;
  std::string token_embedding_type, output_tensor_type;
  std::vector<std::string> tensor_types;
  bool json = false;
};

quant::Type parse_type_arg(const std::string& flag, const std::string& value) {
  const auto t = quant::parse_type(value);
  if (!t) fail("{} '{}': unknown ggml type", flag, value);
  return *t;
}

void print_table(const g3::ConvertResult& r, bool dry_run) {
  for (const auto& f : r.files) {
    size_t w_name = 6, w_shape = 5;
    for (const auto& t : f.tensors) {
      w_name = std::max(w_name, t.name.size());
      w_shape = std::max(w_shape, t.shape.size());
    }
    fmt::print("{} ({}, {}): {}\n", f.path, f.kind == "text" ? "gemma3" : "clip / gemma3 projector",
               f.outtype, dry_run ? "dry run" : fmt::format("{} bytes", f.file_size));
    fmt::print("{:<{}}  {:<{}}  {:<12}  {:>12}  {:>9}\n", "tensor", w_name, "shape", w_shape, "type",
               "bytes", "rmse/rms");
    for (const auto& t : f.tensors) {
      std::string line = fmt::format("{:<{}}  {:<{}}  {:<12}  {:>12}", t.name, w_name, t.shape, w_shape,
                                     fmt::format("{} -> {}", t.from, quant::type_name(t.to)), t.bytes);
      if (t.quantized && t.stats.rms_source > 0)
        line += fmt::format("  {:>9.5f}", t.stats.rmse / t.stats.rms_source);
      fmt::print("{}\n", line);
    }
    fmt::print("{} parameters, general.file_type {}\n", f.parameters, f.file_type);
  }
  fmt::print("{}: {:.2f} s\n", r.architecture, r.seconds);
}

void print_json(const g3::ConvertResult& r, bool dry_run) {
  using Json = nlohmann::ordered_json;
  Json out;
  out["architecture"] = r.architecture;
  out["dry_run"] = dry_run;
  out["files"] = Json::array();
  for (const auto& f : r.files) {
    Json jf = {{"path", f.path},     {"kind", f.kind},           {"outtype", f.outtype},
               {"file_type", f.file_type}, {"parameters", f.parameters}, {"file_size", f.file_size}};
    jf["tensors"] = Json::array();
    for (const auto& t : f.tensors) {
      Json jt = {{"name", t.name},   {"source", t.source}, {"shape", t.shape},
                 {"from", t.from},   {"to", std::string(quant::type_name(t.to))},
                 {"bytes", t.bytes}, {"quantized", t.quantized}};
      if (t.quantized && !dry_run)
        jt["stats"] = {{"rmse", t.stats.rmse},
                       {"max_abs_err", t.stats.max_abs_err},
                       {"rms_source", t.stats.rms_source}};
      jf["tensors"].push_back(std::move(jt));
    }
    out["files"].push_back(std::move(jf));
  }
  out["seconds"] = r.seconds;
  fmt::print("{}\n", out.dump());
}

int run(Args& a) {
  if (!a.model_name.empty()) a.options.model_name = a.model_name;
  if (!a.token_embedding_type.empty())
    a.options.plan.token_embedding_type = parse_type_arg("--token-embedding-type", a.token_embedding_type);
  if (!a.output_tensor_type.empty())
    a.options.plan.output_tensor_type = parse_type_arg("--output-tensor-type", a.output_tensor_type);
  for (const auto& s : a.tensor_types) a.options.plan.tensor_types.push_back(gguf::parse_tensor_type_override(s));
  const g3::ConvertResult r = g3::convert_gguf(a.options, core::default_pool());
  if (a.json) print_json(r, a.options.dry_run);
  else if (core::verbosity() >= core::Verbosity::Normal || a.options.dry_run)
    print_table(r, a.options.dry_run);
  return 0;
}

}  // namespace

void add_convert_gguf_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "convert", "Convert a published checkpoint (gguf)");
  auto* app = group->add_subcommand(
      "gguf",
      "Hugging Face Gemma 3 / MedGemma checkpoint to llama.cpp GGUF (text model and vision "
      "projector), as convert_hf_to_gguf.py writes them; quantized types in the same pass");
  auto a = std::make_shared<Args>();
  std::string types;
  for (const auto& t : g3::outtype_names()) types += (types.empty() ? "" : ", ") + t;
  app->add_option("model", a->options.model_dir,
                  "Model folder: config.json, *.safetensors (or an index + shards), "
                  "tokenizer.model, tokenizer_config.json, ...")
      ->required();
  app->add_option("-o,--output", a->options.output, "Text model GGUF to write");
  app->add_option("--outtype", a->options.outtype,
                  "Output type: " + types +
                      " (auto: bf16 for bf16 weights, else f16; quantized types are "
                      "llama-quantize's mixes of the checkpoint's own float type)")
      ->default_str("auto");
  app->add_option("--mmproj", a->options.mmproj,
                  "Also write the vision projector (mmproj, clip/gemma3) to this file");
  app->add_option("--mmproj-outtype", a->options.mmproj_outtype,
                  "Projector type: auto, f32, f16, bf16 or q8_0 (default: --outtype if it is "
                  "one of these, else f16)");
  app->add_option("--model-name", a->model_name, "general.name (default: from the model card / folder)");
  // llama-quantize's per-tensor options, for the quantized output types (as in quantize gguf).
  app->add_option("--tensor-type", a->tensor_types,
                  "REGEX=TYPE: type for tensors whose name matches (repeatable, first match wins)");
  app->add_option("--token-embedding-type", a->token_embedding_type, "Type for token_embd.weight");
  app->add_option("--output-tensor-type", a->output_tensor_type, "Type for output.weight");
  app->add_flag("--leave-output-tensor", a->options.plan.leave_output_tensor, "Leave output.weight unquantized");
  app->add_flag("--pure", a->options.plan.pure, "No per-tensor mix rules: every tensor gets the mix's type");
  app->add_option("--imatrix", a->options.imatrix,
                  "Importance matrix from llama-imatrix (GGUF or legacy .dat), for the quantized types");
  app->add_flag("--dry-run", a->options.dry_run, "Check and plan; print the tensors; write nothing");
  app->add_flag("--json", a->json, "Print the summary as one JSON object");
  commands.push_back({app, [a]() -> int { return run(*a); }});
}

}  // namespace medquant::cli
