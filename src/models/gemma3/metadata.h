// The general.* metadata of a converted model, as llama.cpp's converter
// derives it (gguf-py's Metadata.load / apply_metadata_heuristic /
// set_gguf_meta_model, utility.size_label):
//
//   general.sampling.*   from generation_config.json (top_k, top_p, temperature, ...)
//   general.name, basename, finetune, version, size_label, organization
//                        from the model card (README.md YAML front matter),
//                        then config.json's "_name_or_path" (if it looks like
//                        "org/model"), then the folder name: "medgemma-4b-it"
//                        gives name "Medgemma 4b It", basename "medgemma",
//                        size label "4B", finetune "it"; a size label the name
//                        does not give comes from the parameter count ("3.9B")
//   general.license*, tags, languages, base_model.*, dataset.*   from the model card
//
// The model card is read with libyaml (PyYAML's safe_load resolution of
// plain scalars: null, booleans, integers, floats).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/hf_config.h"
#include "models/gemma3/kv_list.h"

namespace medquant::models::gemma3 {

struct ModelMetadata {
  // Recommended sampling (general.sampling.*): integer and float values.
  std::vector<std::pair<std::string, checkpoint::Json>> sampling;  // in key order

  std::optional<std::string> name, author, version, organization, finetune, basename,
      description, quantized_by, size_label, license, license_name, license_link, url, doi,
      uuid, repo_url, source_url, source_doi, source_uuid, source_repo_url;
  // Entries with keys name, author, version, organization, description, url,
  // doi, uuid, repo_url.
  std::optional<std::vector<std::map<std::string, std::string>>> base_models, datasets;
  std::optional<std::vector<std::string>> tags, languages;
};

// Metadata of the model in `dir` with `total_params` parameters in the file
// being written (drives the size label). model_name, if set, is the name.
ModelMetadata load_metadata(const std::string& dir, const std::optional<std::string>& model_name,
                            uint64_t total_params);

// Sets general.sampling.*, general.name ... general.languages, in the
// reference's order.
void add_metadata_kvs(KvList& kv, const ModelMetadata& m);

// utility.model_weight_count_rounded_notation: "4.1M", "412K", "3.9B".
std::string size_label(uint64_t total_params);

// Metadata.get_model_id_components and id_to_title, exposed for tests.
struct ModelIdComponents {
  std::optional<std::string> full_name, organization, basename, finetune, version, size_label;
};
ModelIdComponents model_id_components(const std::optional<std::string>& model_id,
                                      int64_t total_params);
std::string id_to_title(const std::string& s);

// The YAML front matter of <dir>/README.md as JSON (nullopt without one).
std::optional<checkpoint::Json> read_model_card(const std::string& dir);

}  // namespace medquant::models::gemma3
