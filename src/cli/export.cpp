// medquant export biomedclip <dir> -o <outdir>: open_clip BiomedCLIP -> ONNX FP32
// vision and text encoders; medquant export bert <dir> -o <file.onnx>: one HF
// BERT encoder. See src/models/biomedclip/export.h for the graphs.
#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "cli/command.h"
#include "core/log.h"
#include "models/biomedclip/export.h"

namespace medquant::cli {
namespace {

namespace mb = models::biomedclip;

struct ExportClipOptions {
  std::string dir, out_dir;
  int64_t batch = 1;
  bool no_l2norm = false;
  int64_t opset = mb::kDefaultOpset;
};

struct ExportBertOptions {
  std::string dir, out;
  int64_t batch = 1;
  int64_t seq_len = 0;
  std::string pooling = "cls";
  bool l2norm = false;
  int64_t opset = mb::kDefaultOpset;
};

void print_files(const mb::ExportResult& r) {
  for (const auto& f : r.files) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(f, ec);
    fmt::print("{} ({})\n", f, ec ? std::string("?") : core::human_bytes(size));
  }
  fmt::print("source sha256 {}, {:.2f} s\n", r.source_sha256, r.seconds);
}

}  // namespace

void add_export_command(CLI::App& root, Commands& commands) {
  CLI::App* group = verb_group(root, "export", "Export a checkpoint to ONNX FP32 encoders");

  auto* clip = group->add_subcommand(
      "biomedclip",
      "open_clip BiomedCLIP folder (open_clip_config.json + open_clip_pytorch_model.bin) -> "
      "biomedclip_vision.onnx and biomedclip_text.onnx");
  auto c = std::make_shared<ExportClipOptions>();
  clip->add_option("dir", c->dir, "Checkpoint folder")->required()->check(CLI::ExistingDirectory);
  clip->add_option("-o,--output", c->out_dir, "Output folder (created if missing)")->required();
  clip->add_option("--batch", c->batch, "Static batch size N of both models (default 1)");
  clip->add_flag("--no-l2norm", c->no_l2norm, "Output the embeddings without L2 normalisation");
  clip->add_option("--opset", c->opset, "ONNX opset (17)");
  commands.push_back({clip, [c]() -> int {
                        mb::ExportOptions o;
                        o.batch = c->batch;
                        o.l2_normalize = !c->no_l2norm;
                        o.opset = c->opset;
                        print_files(mb::export_biomedclip(c->dir, c->out_dir, o));
                        return 0;
                      }});

  auto* bert = group->add_subcommand(
      "bert", "Hugging Face BERT folder (config.json + model.safetensors or pytorch_model.bin) -> "
              "one text encoder .onnx");
  auto b = std::make_shared<ExportBertOptions>();
  bert->add_option("dir", b->dir, "Model folder")->required()->check(CLI::ExistingDirectory);
  bert->add_option("-o,--output", b->out, "Output .onnx file")->required();
  bert->add_option("--batch", b->batch, "Static batch size N (default 1)");
  bert->add_option("--seq-len", b->seq_len,
                   "Static sequence length L (default: max_position_embeddings, at most 512)");
  bert->add_option("--pooling", b->pooling, "cls (hidden state of token 0) or mean (masked mean)")
      ->check(CLI::IsMember({"cls", "mean"}));
  bert->add_flag("--l2norm", b->l2norm, "L2-normalise the embeddings");
  bert->add_option("--opset", b->opset, "ONNX opset (17)");
  commands.push_back({bert, [b]() -> int {
                        mb::BertExportOptions o;
                        o.batch = b->batch;
                        o.seq_len = b->seq_len;
                        o.pooling = b->pooling == "mean" ? mb::BertPooling::Mean : mb::BertPooling::Cls;
                        o.l2_normalize = b->l2norm;
                        o.opset = b->opset;
                        print_files(mb::export_bert(b->dir, b->out, o));
                        return 0;
                      }});
}

}  // namespace medquant::cli
