#include "validate/test_all.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "gguf/gguf.h"
#include "validate/mmproj_validation.h"
#include "validate/onnx_validation.h"

namespace medquant::validate {
namespace {

namespace fs = std::filesystem;

Validation skipped(std::string kind, std::string name, std::string reason) {
  Validation v;
  v.kind = std::move(kind);
  v.name = std::move(name);
  v.status = Status::Skip;
  v.reason = std::move(reason);
  return v;
}

Validation errored(std::string kind, std::string name, const std::string& message) {
  Validation v;
  v.kind = std::move(kind);
  v.name = std::move(name);
  v.status = Status::Fail;
  v.reason = "error: " + message;
  return v;
}

bool is_projector(const std::string& path, const GgufFacts& f) {
  if (f.architecture == "clip") return true;
  if (fs::path(path).filename().string().find("mmproj") != std::string::npos) return true;
  try {
    const gguf::Reader r(path);
    return r.header().get_string("general.type").value_or("") == "mmproj";
  } catch (const Error&) {
    return false;
  }
}

int reference_rank(const std::string& file_type) {
  if (file_type == "F32") return 3;
  if (file_type == "BF16") return 2;
  if (file_type == "F16") return 1;
  return 0;  // quantized (or unknown): a build
}

void run_biomedclip(const fs::path& dir, const TestAllOptions& options, Report& report,
                    const std::function<void(const std::string&)>& on_line) {
  const fs::path int8 = dir / "biomedclip_vision_int8.onnx";
  if (!fs::exists(int8)) return;
  const fs::path ref = dir / "biomedclip_vision.onnx";
  Validation v;
  if (!fs::exists(ref)) {
    v = skipped("onnx", "BiomedCLIP INT8", "no biomedclip_vision.onnx reference beside it");
  } else {
    // `validate onnx` (validate/onnx_validation.h) with its default thresholds;
    // zero-shot figures from labels.json beside the models or at the root.
    OnnxOptions o;
    o.reference = ref.string();
    o.candidate = int8.string();
    o.name = "BiomedCLIP INT8";
    o.threads = static_cast<size_t>(std::max(0, options.gguf.eval.threads));
    for (const fs::path& labels : {dir / "labels.json", fs::path(options.root) / "labels.json"})
      if (o.labels_path.empty() && fs::exists(labels)) o.labels_path = labels.string();
    try {
      v = to_validation(validate_onnx(o));
    } catch (const Error& err) {
      v = errored("onnx", o.name, err.what());
    }
  }
  on_line(result_line(v));
  report.validations.push_back(std::move(v));
}

void run_medgemma(const fs::path& dir, const TestAllOptions& options, Report& report,
                  const std::function<void(const std::string&)>& on_line) {
  if (!fs::is_directory(dir)) return;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".gguf") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (files.empty()) return;

  struct Entry {
    std::string path;
    std::optional<GgufFacts> facts;
    std::string error;
  };
  std::vector<Entry> entries;
  for (const auto& f : files) {
    Entry e{f, std::nullopt, ""};
    try {
      e.facts = read_gguf_facts(f);
    } catch (const Error& err) {
      e.error = err.what();
    }
    entries.push_back(std::move(e));
  }
  // `medquant pipeline medgemma` keeps its reference out of the layout, in
  // <root>/.medquant/work/: a candidate reference too, never a build.
  std::vector<Entry> work;
  const fs::path work_dir = fs::path(options.root) / ".medquant" / "work";
  if (fs::is_directory(work_dir))
    for (const auto& f : fs::directory_iterator(work_dir))
      if (f.is_regular_file() && f.path().extension() == ".gguf") try {
          work.push_back({f.path().string(), read_gguf_facts(f.path().string()), ""});
        } catch (const Error&) {
        }
  const Entry* ref = nullptr;
  for (const auto* list : {&entries, &work})
    for (const auto& e : *list)
      if (e.facts && !is_projector(e.path, *e.facts) && reference_rank(e.facts->file_type) > 0 &&
          (!ref || reference_rank(e.facts->file_type) > reference_rank(ref->facts->file_type)))
        ref = &e;
  // The projectors' reference: the best-ranked float projector; libmtmd also
  // needs a text model for its vocabulary (the reference, else any text GGUF).
  const Entry* ref_proj = nullptr;
  const Entry* text_model = ref;
  size_t n_projectors = 0;
  for (const auto* list : {&entries, &work})
    for (const auto& e : *list) {
      if (!e.facts) continue;
      if (!is_projector(e.path, *e.facts)) {
        if (!text_model) text_model = &e;
        continue;
      }
      if (list == &entries) ++n_projectors;
      const int rank = reference_rank(e.facts->file_type);
      if (rank > 0 && (!ref_proj || rank > reference_rank(ref_proj->facts->file_type))) ref_proj = &e;
    }

  for (const auto& e : entries) {
    const std::string base = fs::path(e.path).filename().string();
    if (&e == ref) continue;
    if (!e.facts) {
      Validation v = errored("gguf", "MedGemma " + base, e.error);
      on_line(result_line(v));
      report.validations.push_back(std::move(v));
      continue;
    }
    if (is_projector(e.path, *e.facts)) {
      if (&e == ref_proj && n_projectors > 1) continue;  // the reference of the others
      const bool typed = e.facts->file_type.rfind("file type", 0) != 0 && !e.facts->file_type.empty();
      std::string name = "MedGemma vision projector " + (typed ? e.facts->file_type : base);
      std::string why;
      if (&e == ref_proj || !ref_proj)
        why = e.facts->file_type == "F32" ? "an F32 projector with no build beside it"
                                          : "no F32/BF16 reference projector beside it";
      else if (!text_model)
        why = "no text model GGUF beside it (libmtmd needs its vocabulary)";
      if (!why.empty()) name = "MedGemma vision projector (" + base + ")";
      Validation v;
      if (!why.empty()) {
        v = skipped("mmproj", name, why);
      } else {
        // `validate gguf` on a projector (validate/mmproj_validation.h),
        // synthetic images, default thresholds for the build's type.
        MmprojOptions o;
        o.reference = ref_proj->path;
        o.candidate = e.path;
        o.text_model = text_model->path;
        o.name = name;
        o.threads = std::max(1, options.gguf.eval.threads);
        o.skip_speed = options.gguf.skip_speed;
        try {
          v = to_validation(validate_mmproj(o));
        } catch (const Error& err) {
          v = errored("mmproj", name, err.what());
        }
      }
      on_line(result_line(v));
      report.validations.push_back(std::move(v));
      continue;
    }
    const std::string name = "MedGemma " + (e.facts->file_type.rfind("file type", 0) == 0
                                                ? base
                                                : e.facts->file_type);
    if (!ref || reference_rank(e.facts->file_type) > 0) {
      Validation v = skipped(
          "gguf", name,
          reference_rank(e.facts->file_type) > 0
              ? "an unquantized file; " + fs::path(ref->path).filename().string() +
                    " is the reference"
              : "no F32/BF16/F16 reference GGUF in " + dir.string());
      on_line(result_line(v));
      report.validations.push_back(std::move(v));
      continue;
    }
    GgufOptions o = options.gguf;
    o.reference = ref->path;
    o.candidate = e.path;
    o.name = name;
    Validation v;
    try {
      v = to_validation(validate_gguf(o));
    } catch (const Error& err) {
      v = errored("gguf", name, err.what());
    }
    on_line(result_line(v));
    report.validations.push_back(std::move(v));
  }
}

}  // namespace

std::string result_line(const Validation& v) {
  std::string s = fmt::format("[{}] {}", status_name(v.status), v.name);
  if (!v.reason.empty()) return s + " - " + v.reason;
  if (!v.summary.empty()) s += " - " + v.summary;
  std::string failed;
  for (const auto& c : v.checks)
    if (!c.pass) failed += (failed.empty() ? "" : "; ") + describe(c);
  if (!failed.empty()) s += " (failed: " + failed + ")";
  return s;
}

std::string format_summary(const Report& report) {
  const int passed = report.count(Status::Pass);
  const int failed = report.count(Status::Fail);
  std::string s = fmt::format("{} passed, {} failed, {} skipped\n", passed, failed, report.count(Status::Skip));
  if (failed > 0) {
    std::string names;
    for (const auto& v : report.validations)
      if (v.status == Status::Fail)
        names += fmt::format("{}{} ({})", names.empty() ? "" : ", ", v.name,
                             v.reason.empty() ? v.failed_metrics() : v.reason);
    s += "TESTS FAILED: " + names + "\n";
  } else if (passed == 0) {
    s += "NO TESTS RAN: every build was skipped\n";
  } else {
    s += "ALL TESTS PASSED\n";
  }
  return s;
}

bool all_passed(const Report& report) {
  return report.count(Status::Fail) == 0 && report.count(Status::Pass) > 0;
}

Report run_test_all(const TestAllOptions& options,
                    const std::function<void(const std::string&)>& on_line) {
  const fs::path root(options.root);
  if (!fs::is_directory(root)) fail("{}: not a folder", options.root);
  Report report;
  const fs::path label = root.filename().empty() ? root.parent_path().filename() : root.filename();
  report.title = "medquant test-all: " + (label.empty() ? options.root : label.string());
  run_biomedclip(root / "models" / "biomedclip", options, report, on_line);
  run_medgemma(root / "models" / "medgemma", options, report, on_line);
  if (report.validations.empty())
    fail("{}: no builds found (looked for models/biomedclip/biomedclip_vision_int8.onnx and "
         "models/medgemma/*.gguf)",
         options.root);
  return report;
}

}  // namespace medquant::validate
