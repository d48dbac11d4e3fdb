// `medquant verify <dir|file|repo-id>`: is this model folder (or file) whole
// and self-consistent? One row per check, and a verdict.
//
// What is checked, by what the target is:
//   any hub snapshot ($HF_HOME/hub/models--*/snapshots/<commit>) or a folder
//   written by `fetch --local-dir` (or huggingface_hub's local_dir): every
//   file's content against the hash it was recorded under (the blob name a
//   snapshot entry links to, or the etag in .cache/huggingface/download/, and
//   trees/<commit>.json when present): sha256 for LFS files, git blob sha1
//   for the others. A plain folder has no record: the row says so.
//   Folders, by family:
//     open_clip_config.json             BiomedCLIP (open_clip: timm ViT + HF BERT)
//     config.json model_type gemma3*    Gemma 3 / MedGemma (safetensors)
//     config.json model_type bert       BERT (safetensors or pytorch_model.bin)
//   required files present; every shard a *.safetensors.index.json names is
//   there; the weights open (safetensors / torch zip, fully validated); the
//   tensors are exactly those the config implies, with its shapes and dtype.
//   *.onnx: loads (external data included), ONNX's checker.
//   *.gguf: the structure (header, types, offsets, bounds) and that no tensor
//   holds NaN/inf data or scales, as llama.cpp checks.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace medquant::hub {

enum class CheckStatus { Ok, Warn, Fail, NotApplicable };
std::string_view check_status_name(CheckStatus s);  // "ok", "warn", "FAIL", "n/a"

struct CheckRow {
  std::string check;  // "sha256 model.safetensors", "config <-> tensors", ...
  CheckStatus status = CheckStatus::Ok;
  std::string detail;
};

struct VerifyReport {
  std::string target;       // the path verified
  std::string family;       // "Gemma 3 (Gemma3ForConditionalGeneration)", "GGUF file", ...
  std::string hash_record;  // where the recorded hashes came from, or "none"
  std::vector<CheckRow> rows;

  bool ok() const;  // no Fail row
  void add(std::string check, CheckStatus status, std::string detail = "");
};

struct VerifyOptions {
  bool hashes = true;     // hash every recorded file (reads all bytes)
  bool gguf_data = true;  // scan GGUF tensor data for NaN/inf (reads all bytes)
  std::string cache_dir;  // for a repo id target ("" = the default cache)
};

// `target`: a folder, a file, or a repo id ("org/name[@revision]") found in the cache.
// Problems become Fail rows; only an unusable target throws Error.
VerifyReport verify(const std::string& target, const VerifyOptions& options = {});

std::string format_report(const VerifyReport& report);  // the status table
nlohmann::json report_json(const VerifyReport& report);

}  // namespace medquant::hub
