// medquant embed-labels: zero-shot label embeddings from a CLIP text tower
// (biomedclip_text.onnx) into labels.json (src/zeroshot/labels.h,
// docs/labels-schema.md). Without --labels, the 30 built-in labels of
// data/biomedclip_labels.txt; without --template/--templates, the built-in
// data/biomedclip_templates.txt ("this is a photo of {}").
#include <fmt/format.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "zeroshot/encoders.h"
#include "zeroshot/labels.h"

namespace medquant::cli {
namespace {

struct EmbedLabelsOptions {
  std::string text_model, vocab, labels, templates_file, output;
  std::vector<std::string> templates;
};

int run_embed_labels(const EmbedLabelsOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> labels =
      o.labels.empty() ? zeroshot::default_labels() : zeroshot::read_list_file(o.labels);
  std::vector<std::string> templates = o.templates;
  if (!o.templates_file.empty())
    for (auto& t : zeroshot::read_list_file(o.templates_file)) templates.push_back(std::move(t));
  if (templates.empty()) templates = zeroshot::default_templates();
  for (size_t i = 0; i < templates.size(); ++i) {
    zeroshot::check_template(templates[i]);
    for (size_t j = 0; j < i; ++j)
      if (templates[i] == templates[j]) fail("template '{}' is given twice", templates[i]);
  }
  zeroshot::TextEncoder encoder(o.text_model, o.vocab, {.threads = core::default_threads()});
  const zeroshot::LabelSet set = zeroshot::embed_labels(encoder, labels, templates, true);
  zeroshot::write_labels_json(o.output, set);
  core::log_info("{}: {} labels x {} template{}, dim {}, logit_scale {:.6g} (x{:.6g}), {:.2f} s", o.output,
                 set.labels.size(), templates.size(), templates.size() == 1 ? "" : "s", set.dim,
                 set.logit_scale, set.logit_scale_exp,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace

void add_embed_labels_command(CLI::App& root, Commands& commands) {
  auto* app = root.add_subcommand(
      "embed-labels",
      "Zero-shot label embeddings from a CLIP text model: each label through each template, "
      "normalised, averaged and normalised again (open_clip's rule) -> labels.json");
  auto o = std::make_shared<EmbedLabelsOptions>();
  app->add_option("--text", o->text_model, "Text encoder (biomedclip_text.onnx from 'export biomedclip')")
      ->required();
  app->add_option("--vocab", o->vocab, "vocab.txt the text model was exported with")->required();
  app->add_option("--labels", o->labels,
                  "Label file, one label per line ('#' comments); default: the 30 built-in "
                  "medical labels (data/biomedclip_labels.txt)");
  app->add_option("--template", o->templates,
                  "Prompt template with '{}' for the label (repeatable; several are averaged); "
                  "default: \"this is a photo of {}\"");
  app->add_option("--templates", o->templates_file, "File of templates, one per line (added to --template)");
  app->add_option("-o,--output", o->output, "labels.json to write")->required();
  commands.push_back({app, [o]() -> int { return run_embed_labels(*o); }});
}

}  // namespace medquant::cli
