#include "pipeline/pipelines.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/thread_pool.h"
#include "hub/fetch.h"
#include "hub/verify.h"
#include "llm/imatrix.h"
#include "models/biomedclip/export.h"
#include "models/gemma3/convert.h"
#include "onnx/quantize_dynamic.h"
#include "pipeline/step_runner.h"
#include "validate/onnx_validation.h"
#include "validate/report.h"
#include "zeroshot/encoders.h"
#include "zeroshot/labels.h"

#ifndef MEDQUANT_SOURCE_DIR
#define MEDQUANT_SOURCE_DIR ""
#endif

namespace medquant::pipeline {
namespace {

namespace fs = std::filesystem;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// "org/name" (one slash, no path-like start) that is not an existing path.
bool looks_like_repo_id(const std::string& s) {
  if (s.empty() || s[0] == '/' || s[0] == '.' || s[0] == '~') return false;
  return std::count(s.begin(), s.end(), '/') == 1 && s.back() != '/';
}

// fetch: a repo id into the hub cache (which is its own record: the step is
// not stamped); a local folder is used as is.
std::string resolve_source(const std::string& from) {
  std::error_code ec;
  if (fs::is_directory(from, ec)) return from;
  if (fs::exists(from, ec)) fail("--from {}: not a folder (a checkpoint folder or a hub repo id)", from);
  if (!looks_like_repo_id(from))
    fail("--from {}: no such folder (and not a hub repo id like google/medgemma-4b-it)", from);
  const auto start = std::chrono::steady_clock::now();
  hub::FetchOptions f;
  f.repo_id = from;
  const hub::FetchResult r = with_context("fetch " + from, [&] {
    return hub::fetch(f, hub::HubSettings::from_environment());
  });
  size_t downloaded = 0;
  for (const auto& file : r.files) downloaded += file.downloaded;
  core::log_info("fetch {}@{}: {} file(s), {} downloaded -> {}, {:.2f} s", from, r.commit,
                 r.files.size(), downloaded, r.snapshot_dir,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return r.snapshot_dir;
}

Step verify_step(const std::string& ckpt) {
  return {"verify", {ckpt}, "hashes gguf-data", {}, [ckpt](const StepContext&) -> StepOutcome {
            const hub::VerifyReport r = hub::verify(ckpt);
            if (!r.ok()) fail("{} is not whole or not consistent:\n{}", ckpt, hub::format_report(r));
            return {fmt::format("{} ({} checks ok)", r.family, r.rows.size())};
          }};
}

std::string path_in(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

validate::Report single_report(std::string title, std::string command, validate::Validation v) {
  validate::Report report;
  report.title = std::move(title);
  report.command = std::move(command);
  report.created = validate::utc_now_iso8601();
  report.validations.push_back(std::move(v));
  return report;
}

}  // namespace

std::string medgemma_file_name(const std::string& type) {
  return "medgemma-4b-" + lower(type) + ".gguf";
}

void check_medgemma_options(const MedGemmaOptions& o) {
  // The quantized output types of convert gguf (its list without the float ones).
  std::vector<std::string> quantized;
  for (const auto& n : models::gemma3::outtype_names())
    if (n != "auto" && n != "f32" && n != "f16" && n != "bf16") quantized.push_back(n);
  const auto mix = gguf::parse_mix(o.type);
  if (!mix || std::find(quantized.begin(), quantized.end(), lower(std::string(mix->name))) == quantized.end()) {
    std::string known;
    for (const auto& n : quantized) known += (known.empty() ? "" : ", ") + upper(n);
    fail("--type {}: not a quantized type medquant writes (one of: {})", o.type, known);
  }
  std::error_code ec;
  if (!o.imatrix_text.empty() && !o.imatrix.empty())
    fail("--imatrix-text {} and --imatrix {}: give one importance matrix source, not both", o.imatrix_text,
         o.imatrix);
  if (!o.imatrix_text.empty() && !fs::is_regular_file(o.imatrix_text, ec))
    fail("--imatrix-text {}: no such file", o.imatrix_text);
  if (!o.imatrix.empty() && !fs::is_regular_file(o.imatrix, ec)) fail("--imatrix {}: no such file", o.imatrix);
}

PipelineResult run_biomedclip(const BiomedClipOptions& o) {
  std::error_code ec;
  if (!o.labels.empty() && !fs::is_regular_file(o.labels, ec)) fail("--labels {}: no such file", o.labels);
  if (!o.images.empty() && !fs::is_directory(o.images, ec)) fail("--images {}: no such folder", o.images);
  const std::string ckpt = resolve_source(o.from);
  StepRunner runner(o.out, "biomedclip", o.force);
  const std::string dir = path_in(o.out, "models/biomedclip");
  const std::string vision = path_in(dir, "biomedclip_vision.onnx");
  const std::string text = path_in(dir, "biomedclip_text.onnx");
  const std::string int8 = path_in(dir, "biomedclip_vision_int8.onnx");
  const std::string labels = path_in(dir, "labels.json");
  const std::string report_dir = path_in(o.out, "report/biomedclip");
  const size_t threads = core::default_threads();

  runner.run(verify_step(ckpt));

  // The exporter's defaults: static batch 1, L2-normalised, opset 17.
  const models::biomedclip::ExportOptions eo;
  runner.run({"export", {ckpt}, fmt::format("batch={} l2={} opset={}", eo.batch, eo.l2_normalize, eo.opset),
              {vision, text}, [&](const StepContext& ctx) -> StepOutcome {
                models::biomedclip::export_biomedclip(ckpt, ctx.staging_dir, eo);
                return {"FP32 vision + text encoders"};
              }});

  // quantize onnx's defaults: qint8, per-tensor, MatMul only, pre-processing.
  const onnx::QuantizeFileOptions qo;
  runner.run({"quantize", {vision},
              fmt::format("qint8={} per_channel={} reduce_range={} ops=default preprocess={}",
                          qo.quantize.weight_type == onnx::QuantType::QInt8, qo.quantize.per_channel,
                          qo.quantize.reduce_range, qo.preprocess),
              {int8}, [&](const StepContext& ctx) -> StepOutcome {
                const auto r = onnx::quantize_dynamic_file(vision, ctx.staged(int8), qo);
                return {fmt::format("dynamic INT8, {} nodes quantized", r.report.quantized_count())};
              }});

  std::vector<std::string> label_inputs = {text, path_in(ckpt, "vocab.txt")};
  if (!o.labels.empty()) label_inputs.push_back(o.labels);
  runner.run({"embed-labels", label_inputs,
              fmt::format("labels={} templates={}",
                          o.labels.empty() ? "builtin:" + core::sha256_hex(zeroshot::default_labels_text()) : "file",
                          core::sha256_hex(zeroshot::default_templates_text())),
              {labels}, [&](const StepContext& ctx) -> StepOutcome {
                const auto names = o.labels.empty() ? zeroshot::default_labels() : zeroshot::read_list_file(o.labels);
                zeroshot::TextEncoder encoder(text, path_in(ckpt, "vocab.txt"), {.threads = threads});
                const auto set = zeroshot::embed_labels(encoder, names, zeroshot::default_templates(), false);
                zeroshot::write_labels_json(ctx.staged(labels), set);
                return {fmt::format("{} labels, dim {}", set.labels.size(), set.dim)};
              }});

  std::vector<std::string> validate_inputs = {vision, int8, labels};
  if (!o.images.empty()) validate_inputs.push_back(o.images);
  const validate::OnnxOptions vo_defaults;
  bool pass = false;
  const std::vector<std::string> report_files = {path_in(report_dir, "report.json"), path_in(report_dir, "report.md"),
                                                 path_in(report_dir, "report.html")};
  const StepResult vr = runner.run(
      {"validate", validate_inputs,
       fmt::format("images={} cosine_mean={} cosine_min={} top1={}", o.images.empty() ? "synthetic" : "folder",
                   vo_defaults.thresholds.min_cosine_mean, vo_defaults.thresholds.min_cosine_min,
                   vo_defaults.thresholds.min_top1),
       report_files, [&](const StepContext& ctx) -> StepOutcome {
         validate::OnnxOptions v;
         v.reference = vision;
         v.candidate = int8;
         v.name = "BiomedCLIP INT8";
         v.images_dir = o.images;
         v.labels_path = labels;
         v.threads = threads;
         const validate::OnnxResult r = validate::validate_onnx(v);
         validate::Validation val = validate::to_validation(r);
         const std::string failed = val.failed_metrics();
         validate::write_report(single_report("medquant pipeline biomedclip", "medquant pipeline biomedclip --from " + o.from,
                                              std::move(val)),
                                ctx.staging_dir);
         pass = r.pass();
         return {fmt::format("{} {}", r.pass() ? "PASS" : "FAIL (" + failed + ")", validate::headline(r)), r.pass()};
       }});
  return {vr.ran ? pass : true, report_dir, runner.ran_steps()};
}

PipelineResult run_medgemma(const MedGemmaOptions& o) {
  check_medgemma_options(o);
  const std::string ckpt = resolve_source(o.from);
  StepRunner runner(o.out, "medgemma", o.force);
  const std::string dir = path_in(o.out, "models/medgemma");
  const std::string model = path_in(dir, medgemma_file_name(o.type));
  const std::string mmproj = path_in(dir, kMmprojFileName);
  const std::string reference = path_in(o.out, ".medquant/work/medgemma-4b-reference.gguf");
  const std::string reference_mmproj = path_in(o.out, ".medquant/work/mmproj-medgemma-4b-f32.gguf");
  const std::string report_dir = path_in(o.out, "report/medgemma");
  const std::string type = lower(o.type);

  runner.run(verify_step(ckpt));

  // The unquantized references validation compares against: the text model in
  // the checkpoint's own float type, the projector in F32 (test-all finds both).
  runner.run({"reference", {ckpt}, "outtype=auto mmproj=f32", {reference, reference_mmproj},
              [&](const StepContext& ctx) -> StepOutcome {
                models::gemma3::ConvertOptions c;
                c.model_dir = ckpt;
                c.output = ctx.staged(reference);
                c.mmproj = ctx.staged(reference_mmproj);
                c.mmproj_outtype = "f32";
                const auto r = models::gemma3::convert_gguf(c, core::default_pool());
                return {fmt::format("unquantized {} text model + mmproj F32", r.files.at(0).outtype)};
              }});

  // An importance matrix from --imatrix-text, computed on the unquantized
  // reference as llama-imatrix would, then used by the convert step.
  std::string imatrix = o.imatrix;
  if (!o.imatrix_text.empty()) {
    imatrix = path_in(o.out, ".medquant/work/imatrix.gguf");
    runner.run({"imatrix", {reference, o.imatrix_text}, fmt::format("ctx={}", o.imatrix_ctx), {imatrix},
                [&](const StepContext& ctx) -> StepOutcome {
                  llm::ImatrixOptions io;
                  io.n_ctx = o.imatrix_ctx;
                  io.threads = std::max(1, static_cast<int>(core::default_threads()));
                  const auto r = llm::compute_imatrix(reference, o.imatrix_text, ctx.staged(imatrix), io);
                  return {fmt::format("{} entries from {} chunks of {} tokens", r.n_entries, r.n_chunks,
                                      o.imatrix_ctx)};
                }});
  }

  // One pass to the mix (text model) and the projector at F16.
  std::vector<std::string> convert_inputs = {ckpt};
  if (!imatrix.empty()) convert_inputs.push_back(imatrix);
  runner.run({"convert", convert_inputs, fmt::format("outtype={} mmproj=f16 imatrix={}", type, !imatrix.empty()),
              {model, mmproj}, [&](const StepContext& ctx) -> StepOutcome {
                models::gemma3::ConvertOptions c;
                c.model_dir = ckpt;
                c.output = ctx.staged(model);
                c.mmproj = ctx.staged(mmproj);
                c.outtype = type;
                c.mmproj_outtype = "f16";
                c.imatrix = imatrix;
                const auto r = models::gemma3::convert_gguf(c, core::default_pool());
                return {fmt::format("{} text model {} + mmproj F16", r.architecture, r.files.at(0).outtype)};
              }});

  validate::GgufOptions v = o.validation;
  v.reference = reference;
  v.candidate = model;
  v.name = "MedGemma " + upper(type);
  const int threads = std::max(1, static_cast<int>(core::default_threads()));
  v.eval.threads = threads;
  v.speed.threads = threads;
  std::vector<std::string> validate_inputs = {reference, model};
  if (!v.text_path.empty()) validate_inputs.push_back(v.text_path);
  const auto& t = v.thresholds;
  bool pass = false;
  const std::vector<std::string> report_files = {path_in(report_dir, "report.json"), path_in(report_dir, "report.md"),
                                                 path_in(report_dir, "report.html")};
  const StepResult vr = runner.run(
      {"validate", validate_inputs,
       fmt::format("text={} ctx={} batch={} ubatch={} chunks={} speed={} kld={} top1={} ppl={} p99={}",
                   v.text_path.empty() ? "builtin" : "file", v.eval.n_ctx, v.eval.n_batch, v.eval.n_ubatch,
                   v.eval.n_chunks, !v.skip_speed, t.max_kld_mean, t.min_top1, t.max_ppl_ratio,
                   t.max_kld_p99 ? *t.max_kld_p99 : -1.0),
       report_files, [&](const StepContext& ctx) -> StepOutcome {
         const validate::GgufResult r = validate::validate_gguf(v);
         validate::Validation val = validate::to_validation(r);
         const std::string failed = val.failed_metrics();
         validate::write_report(single_report("medquant pipeline medgemma",
                                              fmt::format("medquant pipeline medgemma --from {} --type {}", o.from, o.type),
                                              std::move(val)),
                                ctx.staging_dir);
         pass = r.pass();
         return {fmt::format("{} {}", r.pass() ? "PASS" : "FAIL (" + failed + ")", validate::headline(r)), r.pass()};
       }});
  return {vr.ran ? pass : true, report_dir, runner.ran_steps()};
}

std::string find_fixtures_dir() {
  std::vector<fs::path> tried;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty(); p = p.parent_path()) {
      tried.push_back(p / "tests" / "fixtures");
      if (p == p.root_path()) break;
    }
  if (std::string(MEDQUANT_SOURCE_DIR).size()) tried.push_back(fs::path(MEDQUANT_SOURCE_DIR) / "tests" / "fixtures");
  for (const auto& d : tried)
    if (fs::is_directory(d / "tiny-biomedclip", ec) && fs::is_directory(d / "tiny-gemma3", ec)) return d.string();
  fail("the bundled tiny fixtures (tests/fixtures/tiny-biomedclip, tiny-gemma3) were not found above {} "
       "nor in the source tree {}; run the demo from a medquant build tree",
       exe.parent_path().string(), MEDQUANT_SOURCE_DIR);
}

}  // namespace medquant::pipeline
