// Zero-shot label sets: the label and template lists `medquant embed-labels`
// reads, and labels.json, the file it writes and `medquant classify` reads.
//
// labels.json, schema version 1 (docs/labels-schema.md), UTF-8 JSON:
//
//   {
//     "schema": "medquant.labels",       fixed: what kind of file this is
//     "schema_version": 1,               readers refuse versions they do not know
//     "model_name": "...",               the text model's model_name metadata ("" if none)
//     "text_model": {                    the ONNX file the embeddings came from
//       "file": "biomedclip_text.onnx",  its file name (no folder)
//       "sha256": "<64 hex>",            SHA-256 of that file
//       "source_sha256": "<64 hex>"      its source_sha256 metadata: the checkpoint's
//     },                                 weights ("" if absent); classify compares it
//                                        with the vision model's
//     "dim": 512,                        length of every embedding
//     "logit_scale": 4.6052,             open_clip's model.logit_scale parameter: the LOG
//     "logit_scale_exp": 100.0,          exp(logit_scale): what cosines are multiplied by
//     "templates": ["this is a photo of {}"],
//     "labels": [ { "name": "chest X-ray", "embedding": [512 numbers] }, ... ]
//   }
//
// Each embedding is L2-normalised float32 (written as the shortest decimal
// that reads back to the same float32). Unknown keys are ignored, so later
// versions may add keys without a version bump as long as these keep their
// meaning.
//
// Label list files (--labels) and template files: UTF-8 text, one entry per
// line; lines are trimmed of surrounding whitespace (and a "\r"); blank lines
// and lines whose first character is '#' are skipped. Templates use Python
// str.format with one argument: "{}" or "{0}" is the label, "{{" and "}}" are
// literal braces; anything else in braces is an error, as it is in Python
// (where it would be an IndexError or KeyError).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::zeroshot {

inline constexpr std::string_view kLabelsSchema = "medquant.labels";
inline constexpr int64_t kLabelsSchemaVersion = 1;

struct Label {
  std::string name;
  std::vector<float> embedding;  // L2-normalised, `dim` values
};

struct LabelSet {
  std::string model_name;
  std::string text_model_file;
  std::string text_model_sha256;
  std::string source_sha256;
  int64_t dim = 0;
  double logit_scale = 0;      // log (open_clip's parameter)
  double logit_scale_exp = 0;  // exp(logit_scale), the multiplier
  std::vector<std::string> templates;
  std::vector<Label> labels;
};

// labels.json text (2-space indented; one embedding per line).
std::string labels_to_json(const LabelSet& set);
// Parses and checks labels.json text; throws Error "<where>: ..." naming the
// key or label at fault (corrupt JSON, other schema, newer version, missing or
// mistyped keys, embeddings of the wrong length or not finite or zero,
// duplicate names, logit_scale_exp != exp(logit_scale)).
LabelSet parse_labels_json(std::string_view text, const std::string& where);
LabelSet read_labels_json(const std::string& path);
// Writes through core::AtomicFile.
void write_labels_json(const std::string& path, const LabelSet& set);

// Entries of a label or template file (rules above). Throws Error naming
// `where` (and the line) on invalid UTF-8, an empty list or a repeated entry.
std::vector<std::string> parse_list(std::string_view text, const std::string& where);
std::vector<std::string> read_list_file(const std::string& path);

// Python's template.format(label) for the templates described above; throws
// Error naming the template when it has no placeholder or another field.
std::string apply_template(std::string_view tmpl, std::string_view label);
// Checks a template without a label (same errors as apply_template).
void check_template(std::string_view tmpl);

// The lists built into the binary (data/biomedclip_labels.txt and
// data/biomedclip_templates.txt): 30 imaging modalities / stains and
// BiomedCLIP's "this is a photo of {}".
std::string_view default_labels_text();
std::string_view default_templates_text();
std::vector<std::string> default_labels();
std::vector<std::string> default_templates();

}  // namespace medquant::zeroshot
