#include "hub/verify.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include "checkpoint/safetensors.h"
#include "checkpoint/torch_zip.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "gguf/gguf.h"
#include "gguf/validate.h"
#include "hub/api.h"
#include "hub/blob.h"
#include "hub/cache.h"
#include "hub/model_specs.h"
#include "onnx/model_io.h"

namespace medquant::hub {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class Record { None, Snapshot, LocalDir };

struct Target {
  fs::path root;                  // the folder (for a file target: the file's folder)
  std::optional<std::string> file;  // a single-file target, relative to root
  Record record = Record::None;
  std::string commit;
  std::optional<Tree> tree;
};

std::string join(const std::vector<std::string>& v, size_t max = 6) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += fmt::format(", ... ({} in all)", v.size());
  return s;
}

bool ends_with(const std::string& s, std::string_view suffix) { return s.ends_with(suffix); }

// Every file under root as a repo path (dangling symlinks included: a missing
// blob is a finding), without the local-dir bookkeeping in .cache/.
std::vector<std::string> list_files(const fs::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const fs::path rel = it->path().lexically_relative(root);
    if (rel.begin() != rel.end() && *rel.begin() == ".cache") {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    std::error_code ec2;
    if (it->is_directory(ec2) && !it->is_symlink(ec2)) continue;
    out.push_back(rel.generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

json read_json(const fs::path& p) {
  auto j = json::parse(core::read_text_file(p.string()), nullptr, false);
  if (j.is_discarded()) fail("{}: not valid JSON", p.string());
  return j;
}

// Where the hashes of this folder's files were recorded, if anywhere.
void find_record(Target& t) {
  const fs::path parent = t.root.parent_path();
  if (parent.filename() == "snapshots" && fs::is_directory(parent.parent_path() / "blobs")) {
    t.record = Record::Snapshot;
    t.commit = t.root.filename().string();
    t.tree = read_tree(parent.parent_path().string(), t.commit);
  } else if (fs::is_directory(t.root / ".cache" / "huggingface" / "download")) {
    t.record = Record::LocalDir;
  }
}

std::string kind_label(HashKind k) { return k == HashKind::Sha256 ? "sha256" : "git-sha1"; }

void check_hashes(const Target& t, const std::vector<std::string>& files, VerifyReport& report,
                  const VerifyOptions& options) {
  if (t.record == Record::None) {
    report.hash_record = "none";
    report.add("recorded hashes", CheckStatus::NotApplicable,
               "not a hub snapshot or a --local-dir copy: no recorded hashes to check against");
    return;
  }
  report.hash_record = t.record == Record::Snapshot
                           ? fmt::format("hub snapshot {}{}", t.commit,
                                         t.tree ? " (blob names + trees/" + t.commit + ".json)"
                                                : " (blob names)")
                           : "local-dir metadata (.cache/huggingface/download)";
  if (!options.hashes) {
    report.add("recorded hashes", CheckStatus::NotApplicable, "skipped (--no-hashes)");
    return;
  }
  size_t checked = 0, bad = 0;
  std::vector<std::string> unrecorded;
  std::optional<std::string> local_commit;
  for (const auto& f : files) {
    const fs::path p = t.root / f;
    std::optional<std::string> etag;
    if (t.record == Record::Snapshot) {
      std::error_code ec;
      if (fs::is_symlink(fs::symlink_status(p, ec))) {
        fs::path target = fs::read_symlink(p, ec);
        if (!ec && target.parent_path().filename() == "blobs") etag = target.filename().string();
      }
      if (t.tree && t.tree->count(f)) {
        const std::string listed = t.tree->at(f).etag();
        if (etag && *etag != listed) {
          ++bad;
          report.add("record " + f, CheckStatus::Fail,
                     fmt::format("links blob {} but trees/{}.json lists {}", *etag, t.commit, listed));
          continue;
        }
        etag = listed;
      }
    } else if (auto meta = read_local_dir_metadata(t.root.string(), f)) {
      etag = meta->second;
      local_commit = meta->first;
    }
    if (!etag) {
      unrecorded.push_back(f);
      continue;
    }
    HashKind kind;
    if (!hash_kind_of(*etag, &kind)) {
      unrecorded.push_back(f);
      continue;
    }
    ++checked;
    if (!fs::exists(p)) {
      ++bad;
      report.add(kind_label(kind) + " " + f, CheckStatus::Fail,
                 fmt::format("the blob {} it links to is missing", *etag));
      continue;
    }
    std::string got = hash_file(p.string(), kind);
    if (got != *etag) {
      ++bad;
      report.add(kind_label(kind) + " " + f, CheckStatus::Fail,
                 fmt::format("content hashes to {}, recorded {}", got, *etag));
    }
  }
  std::string note;
  if (t.tree && !t.file) {
    std::vector<std::string> absent;
    std::set<std::string> have(files.begin(), files.end());
    for (const auto& [path, e] : *t.tree)
      if (!have.count(path)) absent.push_back(path);
    if (!absent.empty())
      note = fmt::format("; {} file(s) of the commit were not fetched ({})", absent.size(), join(absent, 3));
  }
  if (bad > 0)
    report.add("recorded hashes", CheckStatus::Fail,
               fmt::format("{} of {} file(s) differ from their recorded hash{}", bad, checked, note));
  else
    report.add("recorded hashes", CheckStatus::Ok,
               fmt::format("{} file(s) match their recorded sha256 / git blob sha1{}", checked, note));
  if (!unrecorded.empty())
    report.add("unrecorded files", CheckStatus::Warn,
               fmt::format("{} file(s) have no recorded hash: {}", unrecorded.size(), join(unrecorded)));
}

// Files the family needs: every group must have one present member.
void check_required(const Target& t, const std::vector<std::vector<std::string>>& groups,
                    VerifyReport& report) {
  std::vector<std::string> found, missing;
  for (const auto& group : groups) {
    auto it = std::find_if(group.begin(), group.end(),
                           [&](const std::string& f) { return fs::exists(t.root / f); });
    if (it != group.end())
      found.push_back(*it);
    else
      missing.push_back(group.size() == 1 ? group[0] : "one of " + join(group, 9));
  }
  if (missing.empty())
    report.add("required files", CheckStatus::Ok, join(found, 9));
  else
    report.add("required files", CheckStatus::Fail, "missing: " + join(missing, 9));
}

// Every shard each *.safetensors.index.json names must be present.
void check_shards(const Target& t, const std::vector<std::string>& files, VerifyReport& report) {
  for (const auto& f : files) {
    if (!ends_with(f, ".safetensors.index.json")) continue;
    try {
      json idx = read_json(t.root / f);
      if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
        fail("{}: no \"weight_map\" object", f);
      std::map<std::string, size_t> shards;
      for (const auto& [name, shard] : idx["weight_map"].items()) {
        if (!shard.is_string()) fail("{}: weight_map[\"{}\"] is not a file name", f, name);
        ++shards[shard.get<std::string>()];
      }
      std::vector<std::string> missing;
      const fs::path dir = (t.root / f).parent_path();
      for (const auto& [shard, n] : shards)
        if (!fs::exists(dir / shard)) missing.push_back(fmt::format("{} (holds {} tensors)", shard, n));
      if (missing.empty())
        report.add("shards of " + f, CheckStatus::Ok, fmt::format("all {} shard(s) present", shards.size()));
      else
        report.add("shards of " + f, CheckStatus::Fail,
                   fmt::format("{} of {} shard(s) missing: {}", missing.size(), shards.size(), join(missing)));
    } catch (const Error& e) {
      report.add("shards of " + f, CheckStatus::Fail, e.what());
    }
  }
}

TensorTable table_of(const checkpoint::Checkpoint& ck) {
  TensorTable t;
  for (const auto& ref : ck.tensors()) t[ref.name()] = {ref.info->dtype, ref.info->shape};
  return t;
}

TensorTable table_of(const checkpoint::TorchZipFile& f) {
  TensorTable t;
  for (const auto& x : f.tensors()) t[x.name] = {x.dtype, x.shape};
  return t;
}

// Opens the weights (a safetensors checkpoint in the folder, or a torch zip
// file); nullopt with a Fail row when they don't open.
std::optional<TensorTable> load_weights(const Target& t, const std::string& torch_file,
                                        VerifyReport& report) {
  try {
    std::error_code ec;
    bool have_safetensors = false;
    for (const auto& e : fs::directory_iterator(t.root, ec))
      if (ends_with(e.path().filename().string(), ".safetensors") ||
          ends_with(e.path().filename().string(), ".safetensors.index.json"))
        have_safetensors = true;
    if (have_safetensors) {
      auto ck = checkpoint::Checkpoint::open(t.root.string());
      TensorTable table = table_of(ck);
      uint64_t bytes = 0;
      for (const auto& f : ck.files()) bytes += f->file_size();
      report.add("weights", CheckStatus::Ok,
                 fmt::format("safetensors: {} tensors in {} file(s), {}", table.size(), ck.files().size(),
                             core::human_bytes(bytes)));
      return table;
    }
    if (!torch_file.empty() && fs::exists(t.root / torch_file)) {
      checkpoint::TorchZipFile f((t.root / torch_file).string());
      TensorTable table = table_of(f);
      report.add("weights", CheckStatus::Ok,
                 fmt::format("{} (torch zip): {} tensors, {}", torch_file, table.size(),
                             core::human_bytes(f.file_size())));
      return table;
    }
    report.add("weights", CheckStatus::Fail, "no weights file to open");
  } catch (const Error& e) {
    report.add("weights", CheckStatus::Fail, e.what());
  }
  return std::nullopt;
}

std::set<std::string> names_of(const TensorTable& t) {
  std::set<std::string> s;
  for (const auto& [n, x] : t) s.insert(n);
  return s;
}

void compare_with_config(const ModelSpec& spec, const TensorTable& actual, VerifyReport& report) {
  auto problems = compare_tensors(spec, actual);
  if (problems.empty()) {
    size_t required = std::count_if(spec.tensors.begin(), spec.tensors.end(),
                                    [](const auto& kv) { return !kv.second.optional; });
    report.add("config <-> tensors", CheckStatus::Ok,
               fmt::format("{} tensors, all as the config implies ({} required; {})", actual.size(),
                           required, spec.description));
  }
  for (const auto& p : problems) report.add("config <-> tensors", CheckStatus::Fail, p);
}

// vocab.txt must not hold more tokens than the embedding has rows.
void check_vocab(const fs::path& vocab, int64_t vocab_size, VerifyReport& report) {
  if (!fs::exists(vocab)) return;
  std::ifstream in(vocab);
  int64_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  if (lines > vocab_size)
    report.add("vocab.txt <-> embeddings", CheckStatus::Fail,
               fmt::format("vocab.txt has {} tokens, the embedding only {} rows", lines, vocab_size));
  else
    report.add("vocab.txt <-> embeddings", CheckStatus::Ok,
               fmt::format("{} tokens, {} embedding rows", lines, vocab_size));
}

void verify_gemma3(const Target& t, const json& config, VerifyReport& report) {
  check_required(t, {{"config.json"}, {"model.safetensors", "model.safetensors.index.json"},
                     {"tokenizer.model", "tokenizer.json"}},
                 report);
  auto table = load_weights(t, "", report);
  if (!table) return;
  try {
    compare_with_config(gemma3_spec(config, names_of(*table)), *table, report);
  } catch (const Error& e) {
    report.add("config <-> tensors", CheckStatus::Fail, e.what());
  }
}

void verify_bert(const Target& t, const json& config, VerifyReport& report) {
  check_required(t, {{"config.json"},
                     {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"},
                     {"vocab.txt", "tokenizer.json"}},
                 report);
  auto table = load_weights(t, "pytorch_model.bin", report);
  if (!table) return;
  try {
    compare_with_config(bert_spec(config, names_of(*table)), *table, report);
    if (config.contains("vocab_size") && config["vocab_size"].is_number_integer())
      check_vocab(t.root / "vocab.txt", config["vocab_size"].get<int64_t>(), report);
  } catch (const Error& e) {
    report.add("config <-> tensors", CheckStatus::Fail, e.what());
  }
}

void verify_biomedclip(const Target& t, VerifyReport& report) {
  check_required(t, {{"open_clip_config.json"},
                     {"open_clip_pytorch_model.bin", "open_clip_model.safetensors"},
                     {"vocab.txt", "tokenizer.json"}},
                 report);
  json oc;
  try {
    oc = read_json(t.root / "open_clip_config.json");
  } catch (const Error& e) {
    report.add("config <-> tensors", CheckStatus::Fail, e.what());
    return;
  }
  std::optional<TensorTable> table;
  try {
    if (fs::exists(t.root / "open_clip_model.safetensors")) {
      auto ck = checkpoint::Checkpoint::open((t.root / "open_clip_model.safetensors").string());
      table = table_of(ck);
      report.add("weights", CheckStatus::Ok,
                 fmt::format("open_clip_model.safetensors: {} tensors", table->size()));
    } else {
      table = load_weights(t, "open_clip_pytorch_model.bin", report);
    }
  } catch (const Error& e) {
    report.add("weights", CheckStatus::Fail, e.what());
  }
  if (!table) return;
  try {
    // The text tower's BERT config, and the timm ViT's arguments, where the folder has them.
    const json& mc = oc.value("model_cfg", json::object());
    const std::string hf_name = mc.value("text_cfg", json::object()).value("hf_model_name", "");
    json text_config = nullptr, vision_args = nullptr;
    for (const fs::path& p : {t.root / "text_config.json",
                              t.root / hf_name.substr(hf_name.rfind('/') + 1) / "config.json"})
      if (!hf_name.empty() && fs::is_regular_file(p)) {
        text_config = read_json(p);
        break;
      }
    std::string timm_name = mc.value("vision_cfg", json::object()).value("timm_model_name", "");
    if (timm_name.starts_with("local-dir:")) {
      fs::path p = t.root / timm_name.substr(10) / "config.json";
      if (fs::is_regular_file(p)) vision_args = read_json(p).value("model_args", json::object());
    }
    ModelSpec spec = biomedclip_spec(oc, text_config, vision_args);
    compare_with_config(spec, *table, report);
    const json& tc = text_config.is_object() ? text_config : json::object();
    if (tc.contains("vocab_size") && tc["vocab_size"].is_number_integer())
      check_vocab(t.root / "vocab.txt", tc["vocab_size"].get<int64_t>(), report);
  } catch (const Error& e) {
    report.add("config <-> tensors", CheckStatus::Fail, e.what());
  }
}

void verify_gguf(const fs::path& path, const std::string& label, VerifyReport& report,
                 const VerifyOptions& options) {
  try {
    gguf::Reader r(path.string());
    std::string arch;
    for (const auto& kv : r.kvs())
      if (kv.key == "general.architecture" && kv.value.type() == gguf::ValueType::String)
        arch = kv.value.str();
    report.add("GGUF " + label, CheckStatus::Ok,
               fmt::format("v{}, {} tensors, {} keys{}", r.header().version, r.tensors().size(),
                           r.kvs().size(), arch.empty() ? "" : ", architecture " + arch));
    if (!options.gguf_data) return;
    uint64_t total = 0;
    for (const auto& ti : r.tensors()) total += ti.n_bytes();
    core::Progress progress("check " + label, total, core::ProgressUnit::Bytes);
    std::vector<std::string> bad;
    for (const auto& ti : r.tensors()) {
      auto bytes = r.tensor_data(ti);
      if (auto problem = gguf::find_invalid_data(ti.type, bytes)) bad.push_back(ti.name + ": " + *problem);
      r.release(ti, 0, bytes.size());
      progress.add(bytes.size());
    }
    if (bad.empty())
      report.add("GGUF data " + label, CheckStatus::Ok, "no NaN/inf values or scales");
    else
      report.add("GGUF data " + label, CheckStatus::Fail,
                 fmt::format("{} tensor(s) with invalid data: {}", bad.size(), join(bad, 3)));
  } catch (const Error& e) {
    report.add("GGUF " + label, CheckStatus::Fail, e.what());
  }
}

void verify_onnx(const fs::path& path, const std::string& label, VerifyReport& report) {
  try {
    onnx::Model m = onnx::load_model(path.string());
    onnx::require_checkable_opsets(m);
    onnx::check_model(m);
    report.add("ONNX " + label, CheckStatus::Ok,
               fmt::format("checker passed (opset {}, {} nodes, {} initializers)", m.opset(),
                           m.graph.nodes.size(), m.graph.initializers().size()));
  } catch (const Error& e) {
    report.add("ONNX " + label, CheckStatus::Fail, e.what());
  }
}

void verify_safetensors_file(const fs::path& path, const std::string& label, VerifyReport& report) {
  try {
    auto ck = checkpoint::Checkpoint::open(path.string());
    report.add("safetensors " + label, CheckStatus::Ok,
               fmt::format("{} tensors in {} file(s)", ck.tensors().size(), ck.files().size()));
  } catch (const Error& e) {
    report.add("safetensors " + label, CheckStatus::Fail, e.what());
  }
}

void verify_torch_file(const fs::path& path, const std::string& label, VerifyReport& report) {
  try {
    checkpoint::TorchZipFile f(path.string());
    report.add("torch zip " + label, CheckStatus::Ok, fmt::format("{} tensors", f.tensors().size()));
  } catch (const Error& e) {
    report.add("torch zip " + label, CheckStatus::Fail, e.what());
  }
}

// Structure checks for the model files that stand on their own.
void verify_model_files(const Target& t, const std::vector<std::string>& files, VerifyReport& report,
                        const VerifyOptions& options) {
  for (const auto& f : files) {
    if (ends_with(f, ".gguf")) verify_gguf(t.root / f, f, report, options);
    if (ends_with(f, ".onnx")) verify_onnx(t.root / f, f, report);
  }
}

Target resolve_target(const std::string& target, const VerifyOptions& options) {
  Target t;
  std::error_code ec;
  if (fs::exists(target, ec) || fs::is_symlink(fs::symlink_status(target, ec))) {
    fs::path p = fs::absolute(target).lexically_normal();
    if (fs::is_directory(p)) {
      t.root = p;
    } else {
      t.root = p.parent_path();
      t.file = p.filename().string();
    }
    find_record(t);
    return t;
  }
  // A repo id: its snapshot in the cache.
  std::string repo = target, revision = "main";
  if (auto at = target.find('@'); at != std::string::npos) {
    repo = target.substr(0, at);
    revision = target.substr(at + 1);
  }
  try {
    validate_repo_id(repo);
  } catch (const Error&) {
    fail("{}: no such file or folder", target);
  }
  if (!is_safe_relative_path(revision)) fail("{}: '{}' is not a valid revision", target, revision);
  HubCache cache(options.cache_dir.empty() ? default_cache_dir() : options.cache_dir, repo);
  auto commit = cache.resolve_offline(revision);
  if (!commit)
    fail("{}: no such file or folder, and {}@{} is not in the cache {} (medquant fetch {} first)",
         target, repo, revision, cache.cache_dir(), repo);
  t.root = cache.snapshot_dir(*commit);
  find_record(t);
  return t;
}

}  // namespace

std::string_view check_status_name(CheckStatus s) {
  switch (s) {
    case CheckStatus::Ok: return "ok";
    case CheckStatus::Warn: return "warn";
    case CheckStatus::Fail: return "FAIL";
    case CheckStatus::NotApplicable: return "n/a";
  }
  return "?";
}

bool VerifyReport::ok() const {
  return std::none_of(rows.begin(), rows.end(), [](const CheckRow& r) { return r.status == CheckStatus::Fail; });
}

void VerifyReport::add(std::string check, CheckStatus status, std::string detail) {
  rows.push_back({std::move(check), status, std::move(detail)});
}

VerifyReport verify(const std::string& target, const VerifyOptions& options) {
  Target t = resolve_target(target, options);
  VerifyReport report;
  report.target = t.file ? (t.root / *t.file).string() : t.root.string();

  if (t.file) {
    const std::string& f = *t.file;
    check_hashes(t, {f}, report, options);
    if (ends_with(f, ".gguf")) {
      report.family = "GGUF file";
      verify_gguf(t.root / f, f, report, options);
    } else if (ends_with(f, ".onnx")) {
      report.family = "ONNX file";
      verify_onnx(t.root / f, f, report);
    } else if (ends_with(f, ".safetensors") || ends_with(f, ".safetensors.index.json")) {
      report.family = "safetensors checkpoint";
      if (ends_with(f, ".index.json")) check_shards(t, {f}, report);
      verify_safetensors_file(t.root / f, f, report);
    } else if (ends_with(f, ".bin") || ends_with(f, ".pt") || ends_with(f, ".pth")) {
      report.family = "PyTorch checkpoint";
      verify_torch_file(t.root / f, f, report);
    } else {
      report.family = "unknown";
      report.add("file type", CheckStatus::Fail,
                 "not a model file medquant verifies (.gguf, .onnx, .safetensors, .bin) nor a model folder");
    }
    return report;
  }

  const std::vector<std::string> files = list_files(t.root);
  check_hashes(t, files, report, options);
  check_shards(t, files, report);
  if (fs::exists(t.root / "open_clip_config.json")) {
    report.family = "BiomedCLIP (open_clip)";
    verify_biomedclip(t, report);
  } else if (fs::exists(t.root / "config.json")) {
    json config;
    try {
      config = read_json(t.root / "config.json");
    } catch (const Error& e) {
      report.family = "unknown";
      report.add("config.json", CheckStatus::Fail, e.what());
    }
    const std::string type = config.is_object() ? config.value("model_type", "") : "";
    std::string arch;
    if (config.is_object() && config.contains("architectures") && config["architectures"].is_array() &&
        !config["architectures"].empty() && config["architectures"][0].is_string())
      arch = " (" + config["architectures"][0].get<std::string>() + ")";
    if (type == "gemma3" || type == "gemma3_text") {
      report.family = "Gemma 3" + arch;
      verify_gemma3(t, config, report);
    } else if (type == "bert") {
      report.family = "BERT" + arch;
      verify_bert(t, config, report);
    } else if (config.is_object()) {
      report.family = "unknown";
      report.add("family", CheckStatus::Fail,
                 fmt::format("config.json model_type '{}' is not a family medquant verifies "
                             "(gemma3, gemma3_text, bert, or open_clip_config.json)",
                             type));
    }
  } else if (std::any_of(files.begin(), files.end(), [](const std::string& f) {
               return ends_with(f, ".gguf") || ends_with(f, ".onnx");
             })) {
    report.family = "GGUF / ONNX files";
  } else {
    report.family = "unknown";
    report.add("family", CheckStatus::Fail,
               "not a model folder medquant recognises: no open_clip_config.json, config.json, "
               ".gguf or .onnx");
  }
  verify_model_files(t, files, report, options);
  return report;
}

std::string format_report(const VerifyReport& r) {
  size_t width = 5;
  for (const auto& row : r.rows) width = std::max(width, row.check.size());
  width = std::min<size_t>(width, 48);
  std::string out = fmt::format("{}\nfamily: {}\nhashes: {}\n\n  {:<6} {:<{}}  {}\n", r.target, r.family,
                                r.hash_record.empty() ? "none" : r.hash_record, "STATUS", "CHECK", width,
                                "DETAIL");
  size_t fails = 0;
  for (const auto& row : r.rows) {
    fails += row.status == CheckStatus::Fail;
    out += fmt::format("  {:<6} {:<{}}  {}\n", check_status_name(row.status), row.check, width, row.detail);
  }
  out += r.ok() ? "\nverdict: ok\n" : fmt::format("\nverdict: FAIL ({} problem(s))\n", fails);
  return out;
}

json report_json(const VerifyReport& r) {
  json rows = json::array();
  for (const auto& row : r.rows)
    rows.push_back({{"check", row.check}, {"status", check_status_name(row.status)}, {"detail", row.detail}});
  return {{"target", r.target}, {"family", r.family}, {"hashes", r.hash_record}, {"ok", r.ok()},
          {"checks", rows}};
}

}  // namespace medquant::hub
