// How subcommands plug into the medquant command line: each cli/<verb>.cpp
// defines add_<verb>_command(), which declares its options on a CLI11
// subcommand and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace medquant::cli {

struct Command {
  CLI::App* app;              // the (sub)subcommand, e.g. "quantize gguf"
  std::function<int()> run;   // returns the process exit code
};

using Commands = std::vector<Command>;

// The subcommand `name` of `parent`, created on first use (for verbs with
// several targets, like "quantize onnx" and "quantize gguf").
CLI::App* verb_group(CLI::App& parent, const std::string& name, const std::string& description);

// One registration function per file; main.cpp calls them all.
void add_inspect_command(CLI::App& root, Commands& commands);
void add_tokenize_command(CLI::App& root, Commands& commands);
void add_fetch_command(CLI::App& root, Commands& commands);
void add_verify_command(CLI::App& root, Commands& commands);
void add_quantize_onnx_command(CLI::App& root, Commands& commands);
void add_run_command(CLI::App& root, Commands& commands);
void add_bench_command(CLI::App& root, Commands& commands);
void add_export_command(CLI::App& root, Commands& commands);
void add_embed_labels_command(CLI::App& root, Commands& commands);
void add_classify_command(CLI::App& root, Commands& commands);
void add_quantize_gguf_command(CLI::App& root, Commands& commands);
void add_convert_gguf_command(CLI::App& root, Commands& commands);
void add_validate_gguf_command(CLI::App& root, Commands& commands);
void add_validate_onnx_command(CLI::App& root, Commands& commands);
void add_test_all_command(CLI::App& root, Commands& commands);
void add_pipeline_command(CLI::App& root, Commands& commands);
void add_imatrix_command(CLI::App& root, Commands& commands);
void add_demo_command(CLI::App& root, Commands& commands);

}  // namespace medquant::cli
