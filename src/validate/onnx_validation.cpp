#include "validate/onnx_validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/npy.h"
#include "llm/isolate.h"
#include "onnx/model_io.h"
#include "text/clean.h"
#include "validate/common.h"
#include "vision/image.h"
#include "vision/preprocess.h"
#include "zeroshot/classifier.h"
#include "zeroshot/encoders.h"
#include "zeroshot/labels.h"

namespace medquant::validate {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// "vision" or "text", from the graph inputs of the model.
std::string tower_of(const std::string& path) {
  const onnx::Model m = onnx::load_model(path);
  for (const auto& in : m.graph.inputs)
    if (in.name() == "input_ids") return "text";
  if (m.graph.inputs.size() == 1) return "vision";
  fail("{}: neither an image encoder (one [N,3,S,S] input) nor a text encoder (input_ids)", path);
}

std::string default_vocab(const OnnxOptions& o) {
  if (!o.vocab_path.empty()) return o.vocab_path;
  const fs::path beside = fs::path(o.reference).parent_path() / "vocab.txt";
  if (fs::exists(beside)) return beside.string();
  fail("{}: a text model; give its vocab.txt with --vocab", o.reference);
}

// Load, warm up and time one model in a child process (its own peak RSS).
OnnxModelFacts measure(const std::string& path, const std::string& tower, const OnnxOptions& o) {
  OnnxModelFacts f;
  f.path = path;
  f.file_size = fs::file_size(path);
  if (o.skip_speed) return f;
  const runtime::SessionOptions so{.threads = o.threads};
  const llm::IsolatedResult r = llm::run_isolated("speed run of " + path, [&]() -> std::string {
    std::vector<double> times;
    double load_ms = 0;
    auto timed = [&](auto& encoder, auto&& once) {
      for (int i = 0; i < o.warmup; ++i) once(encoder);
      for (int i = 0; i < o.runs; ++i) {
        const auto t0 = Clock::now();
        once(encoder);
        times.push_back(ms_since(t0));
      }
    };
    if (tower == "vision") {
      const auto t0 = Clock::now();
      zeroshot::ImageEncoder enc(path, so);
      load_ms = ms_since(t0);
      const std::vector<std::vector<float>> px = {
          vision::preprocess(synthetic_image(0), enc.preprocess_config())};
      timed(enc, [&](zeroshot::ImageEncoder& e) { (void)e.encode(px); });
    } else {
      const auto t0 = Clock::now();
      zeroshot::TextEncoder enc(path, default_vocab(o), so);
      load_ms = ms_since(t0);
      const std::vector<std::string> prompt = {medical_prompts()[0]};
      timed(enc, [&](zeroshot::TextEncoder& e) { (void)e.encode(prompt); });
    }
    return Json{{"load_ms", load_ms}, {"times", times}}.dump();
  });
  const Json j = Json::parse(r.output);
  f.has_speed = true;
  f.load_ms = j["load_ms"].get<double>();
  f.latency_ms = j["times"].get<std::vector<double>>();
  f.median_ms = percentile(f.latency_ms, 50);
  f.p90_ms = percentile(f.latency_ms, 90);
  f.p99_ms = percentile(f.latency_ms, 99);
  f.peak_rss_bytes = r.peak_rss_bytes;
  return f;
}

void write_rows(const std::string& path, const std::vector<std::vector<float>>& rows, size_t width) {
  core::NpyArray a;
  a.dtype = core::DType::F32;
  a.shape = {static_cast<int64_t>(rows.size()), static_cast<int64_t>(width)};
  a.data.resize(rows.size() * width * sizeof(float));
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(a.data.data() + i * width * sizeof(float), rows[i].data(), width * sizeof(float));
  core::write_npy(path, a);
}

std::string pct(double fraction) {
  const double p = fraction * 100.0;
  return p == std::floor(p) ? fmt::format("{:.0f}%", p) : fmt::format("{:.1f}%", p);
}

std::string ratio(double x) { return fmt::format("{:.1f}x", x); }

// ------------------------------------------------------------------ plots

Plot latency_plot(const OnnxResult& r) {
  Plot p{.id = "latency", .title = "Latency distributions", .type = "box"};
  p.data["panels"] = Json::array(
      {box_panel(fmt::format("one {} input per run", r.tower == "vision" ? "image" : "prompt"),
                 "ms per run", r.ref.latency_ms, r.cand.latency_ms)});
  p.notes.push_back(fmt::format(
      "{} timed runs after {} warm-up run(s), {} thread(s), medquant's executor; median {:.2f} / "
      "{:.2f} ms (reference / build)",
      r.options.runs, r.options.warmup, r.threads, r.ref.median_ms, r.cand.median_ms));
  return p;
}

Plot size_plot(const OnnxResult& r) {
  Plot p{.id = "size", .title = "Size", .type = "bars"};
  Json panels = Json::array();
  panels.push_back(bars_panel("file size", "MiB", mib(r.ref.file_size), mib(r.cand.file_size), "{:.2f}"));
  if (r.ref.has_speed) {
    panels.push_back(bars_panel("peak RSS while loading and running", "MiB", mib(r.ref.peak_rss_bytes),
                                mib(r.cand.peak_rss_bytes), "{:.1f}"));
    panels.push_back(bars_panel("load time", "ms", r.ref.load_ms, r.cand.load_ms, "{:.1f}"));
  }
  p.data["panels"] = panels;
  return p;
}

Plot cosine_plot(const OnnxResult& r) {
  Plot p{.id = "cosine_histogram",
         .title = "Cosine similarity of INT8 vs FP32 embeddings",
         .type = "histogram"};
  p.data = cosine_histogram(r.cosines, "cosine(reference, build) per input",
                            {{"mean", r.cosine_mean}, {"p1", r.cosine_p1}});
  p.notes.push_back(fmt::format("{} inputs ({}); mean {:.6f}, min {:.6f}, p1 {:.6f}", r.cosines.size(),
                                r.input_source, r.cosine_mean, r.cosine_min, r.cosine_p1));
  return p;
}

Plot confusion_plot(const OnnxResult& r) {
  Plot p{.id = "zero_shot_confusion",
         .title = "Zero-shot classification: confusion matrix",
         .type = "heatmap"};
  // Only the labels either model predicted at least once.
  std::vector<size_t> used;
  for (size_t i = 0; i < r.ref_top1.size(); ++i) {
    used.push_back(r.ref_top1[i]);
    used.push_back(r.cand_top1[i]);
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  std::map<size_t, size_t> at;
  Json names = Json::array();
  for (size_t i = 0; i < used.size(); ++i) {
    at[used[i]] = i;
    names.push_back(r.label_names[used[i]]);
  }
  std::vector<std::vector<double>> m(used.size(), std::vector<double>(used.size(), 0));
  for (size_t i = 0; i < r.ref_top1.size(); ++i) m[at[r.ref_top1[i]]][at[r.cand_top1[i]]] += 1;
  p.data = {{"x_label", "build top-1"},
            {"y_label", "reference top-1"},
            {"rows", names},
            {"cols", names},
            {"values", m},
            {"value_label", "inputs"},
            {"log_color", false}};
  p.notes.push_back(fmt::format("{} inputs, {} labels ({} predicted); top-1 agreement {}, top-5 {}, "
                                "mean KLD {:.3g}",
                                r.ref_top1.size(), r.label_names.size(), used.size(),
                                pct(r.top1_agreement), pct(r.top5_agreement), r.kld_mean));
  return p;
}

}  // namespace

const std::vector<std::string>& medical_prompts() {
  static const std::vector<std::string> prompts = {
      "this is a photo of a chest X-ray",
      "this is a photo of a brain MRI",
      "this is a photo of an abdominal CT scan",
      "this is a photo of a hematoxylin and eosin stained tissue section",
      "this is a photo of a fundus image of the retina",
      "this is a photo of a dermoscopy image of a skin lesion",
      "this is a photo of a breast mammogram",
      "this is a photo of a knee radiograph",
      "pneumonia with consolidation in the right lower lobe",
      "no acute cardiopulmonary abnormality",
      "metastatic adenocarcinoma in a lymph node",
      "diabetic retinopathy with microaneurysms",
      "melanoma with irregular pigment network",
      "ischemic stroke in the left middle cerebral artery territory",
      "fracture of the distal radius",
      "immunohistochemistry showing Ki-67 positive nuclei",
  };
  return prompts;
}

bool OnnxResult::pass() const {
  return std::all_of(checks.begin(), checks.end(), [](const Check& c) { return c.pass; });
}

OnnxResult validate_onnx(const OnnxOptions& options) {
  const auto t_start = Clock::now();
  OnnxResult r;
  r.options = options;
  if (r.options.name.empty()) r.options.name = fs::path(options.candidate).stem().string();
  if (options.runs < 1) fail("validate onnx: --runs must be at least 1");
  for (const auto* path : {&options.reference, &options.candidate})
    if (!fs::is_regular_file(*path)) fail("{}: no such file", *path);
  r.tower = tower_of(options.reference);
  if (const std::string t = tower_of(options.candidate); t != r.tower)
    fail("{}: a {} model, but the reference {} is a {} model", options.candidate, t, options.reference, r.tower);
  r.threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());

  // Speed first, in child processes, before this process starts any worker threads.
  r.ref = measure(options.reference, r.tower, options);
  r.cand = measure(options.candidate, r.tower, options);

  const runtime::SessionOptions so{.threads = options.threads};
  std::vector<std::vector<float>> ref_out, cand_out;
  std::vector<std::vector<float>> pixels;
  std::vector<std::vector<int32_t>> token_ids;
  int64_t image_size = 0, context = 0;
  if (r.tower == "vision") {
    zeroshot::ImageEncoder ref_enc(options.reference, so);
    if (options.images_dir.empty()) {
      if (options.synthetic_images < 1) fail("validate onnx: at least one synthetic image is needed");
      for (int i = 0; i < options.synthetic_images; ++i) {
        pixels.push_back(vision::preprocess(synthetic_image(i), ref_enc.preprocess_config()));
        r.input_names.push_back(fmt::format("synthetic-{:02d}", i));
      }
      r.input_source =
          fmt::format("{} synthetic images, seed {}", options.synthetic_images, kSyntheticSeed);
    } else {
      for (const auto& f : image_files(options.images_dir)) {
        pixels.push_back(ref_enc.preprocess(f));
        r.input_names.push_back(file_name(f));
      }
      r.input_source = fmt::format("{} ({} images)", options.images_dir, pixels.size());
    }
    image_size = ref_enc.preprocess_config().image_size;
    ref_out = ref_enc.encode(pixels);
    r.dim = ref_enc.info().dim;
    zeroshot::ImageEncoder cand_enc(options.candidate, so);
    if (cand_enc.preprocess_config().image_size != ref_enc.preprocess_config().image_size ||
        cand_enc.preprocess_config().mean != ref_enc.preprocess_config().mean ||
        cand_enc.preprocess_config().std != ref_enc.preprocess_config().std)
      fail("{}: its preprocessing metadata (size, mean, std) differs from the reference {}", options.candidate,
           options.reference);
    if (cand_enc.info().dim != r.dim)
      fail("{}: embeddings of {} values, the reference's have {}", options.candidate, cand_enc.info().dim, r.dim);
    cand_out = cand_enc.encode(pixels);
  } else {
    if (!options.images_dir.empty()) fail("{}: a text model; --images applies to image encoders", options.reference);
    const std::string vocab = default_vocab(options);
    zeroshot::TextEncoder ref_enc(options.reference, vocab, so);
    ref_out = ref_enc.encode(medical_prompts());
    r.dim = ref_enc.info().dim;
    context = ref_enc.context_length();
    for (const auto& p : medical_prompts())
      token_ids.push_back(ref_enc.tokenizer().encode_padded(text::open_clip_clean(p), static_cast<size_t>(context)));
    r.input_names = medical_prompts();
    r.input_source = fmt::format("{} medical prompts, vocab {}", medical_prompts().size(), vocab);
    zeroshot::TextEncoder cand_enc(options.candidate, vocab, so);
    if (cand_enc.info().dim != r.dim)
      fail("{}: embeddings of {} values, the reference's have {}", options.candidate, cand_enc.info().dim, r.dim);
    cand_out = cand_enc.encode(medical_prompts());
  }

  for (size_t i = 0; i < ref_out.size(); ++i) r.cosines.push_back(cosine(ref_out[i], cand_out[i]));
  double sum = 0;
  for (double c : r.cosines) sum += c;
  r.cosine_mean = sum / static_cast<double>(r.cosines.size());
  r.cosine_min = *std::min_element(r.cosines.begin(), r.cosines.end());
  r.cosine_p1 = percentile(r.cosines, 1);

  if (!options.labels_path.empty()) {
    if (r.tower != "vision") fail("{}: labels apply to image encoders", options.labels_path);
    const zeroshot::LabelSet set = zeroshot::read_labels_json(options.labels_path);
    if (set.dim != r.dim)
      fail("{}: label embeddings of {} values, the model's have {}", options.labels_path, set.dim, r.dim);
    r.has_labels = true;
    for (const auto& l : set.labels) r.label_names.push_back(l.name);
    size_t same1 = 0, same5 = 0;
    double kld_sum = 0;
    for (size_t i = 0; i < ref_out.size(); ++i) {
      const auto a = zeroshot::predict(ref_out[i], set);
      const auto b = zeroshot::predict(cand_out[i], set);
      const auto a1 = zeroshot::top_k(a, 1), b5 = zeroshot::top_k(b, 5);
      r.ref_top1.push_back(a1[0].label);
      r.cand_top1.push_back(b5[0].label);
      same1 += a1[0].label == b5[0].label;
      same5 += std::any_of(b5.begin(), b5.end(), [&](const auto& p) { return p.label == a1[0].label; });
      double kld = 0;
      for (size_t k = 0; k < a.size(); ++k)
        if (a[k].probability > 0)
          kld += a[k].probability * (std::log(a[k].probability) - std::log(std::max(b[k].probability, 1e-300)));
      kld = std::max(kld, 0.0);
      kld_sum += kld;
      r.kld_max = std::max(r.kld_max, kld);
    }
    const double n = static_cast<double>(ref_out.size());
    r.top1_agreement = static_cast<double>(same1) / n;
    r.top5_agreement = static_cast<double>(same5) / n;
    r.kld_mean = kld_sum / n;
  }

  if (!options.dump_dir.empty()) {
    fs::create_directories(options.dump_dir);
    const fs::path d(options.dump_dir);
    if (r.tower == "vision") {
      core::NpyArray a;
      a.dtype = core::DType::F32;
      a.shape = {static_cast<int64_t>(pixels.size()), 3, image_size, image_size};
      const size_t plane = static_cast<size_t>(3 * image_size * image_size);
      a.data.resize(pixels.size() * plane * sizeof(float));
      for (size_t i = 0; i < pixels.size(); ++i)
        std::memcpy(a.data.data() + i * plane * sizeof(float), pixels[i].data(), plane * sizeof(float));
      core::write_npy((d / "inputs.npy").string(), a);
    } else {
      core::NpyArray a;
      a.dtype = core::DType::I64;
      a.shape = {static_cast<int64_t>(token_ids.size()), context};
      a.data.resize(token_ids.size() * static_cast<size_t>(context) * sizeof(int64_t));
      auto* p = reinterpret_cast<int64_t*>(a.data.data());
      for (const auto& row : token_ids)
        for (int32_t id : row) *p++ = id;
      core::write_npy((d / "input_ids.npy").string(), a);
    }
    write_rows((d / "reference.npy").string(), ref_out, static_cast<size_t>(r.dim));
    write_rows((d / "candidate.npy").string(), cand_out, static_cast<size_t>(r.dim));
  }

  const auto& t = options.thresholds;
  r.checks.push_back(make_check("cosine_mean", "mean cosine", r.cosine_mean, ">=", t.min_cosine_mean));
  r.checks.push_back(make_check("cosine_min", "min cosine", r.cosine_min, ">=", t.min_cosine_min));
  if (r.has_labels) {
    r.checks.push_back(make_check("top1_agreement", "zero-shot top-1 agreement", r.top1_agreement, ">=",
                                  t.min_top1, "{:.4f}"));
    if (t.min_top5)
      r.checks.push_back(make_check("top5_agreement", "zero-shot top-5 agreement", r.top5_agreement, ">=",
                                    *t.min_top5, "{:.4f}"));
    if (t.max_kld_mean)
      r.checks.push_back(make_check("kld_mean", "mean KLD of label probabilities", r.kld_mean, "<=",
                                    *t.max_kld_mean));
  }
  r.seconds = ms_since(t_start) / 1000.0;
  return r;
}

std::string headline(const OnnxResult& r) {
  std::string s = fmt::format("cosine {:.4f} (min {:.4f})", r.cosine_mean, r.cosine_min);
  if (r.has_labels) s += fmt::format(", top-1 {}", pct(r.top1_agreement));
  if (r.ref.has_speed && r.cand.median_ms > 0) {
    const double x = r.ref.median_ms / r.cand.median_ms;
    s += x >= 1 ? fmt::format(", {} faster", ratio(x)) : fmt::format(", {} slower", ratio(1 / x));
  }
  if (r.cand.file_size > 0) {
    const double x = static_cast<double>(r.ref.file_size) / static_cast<double>(r.cand.file_size);
    s += x >= 1 ? fmt::format(", {} smaller", ratio(x)) : fmt::format(", {} larger", ratio(1 / x));
  }
  return s;
}

Validation to_validation(const OnnxResult& r) {
  Validation v;
  v.kind = "onnx";
  v.name = r.options.name;
  v.status = r.pass() ? Status::Pass : Status::Fail;
  v.summary = headline(r);
  v.checks = r.checks;

  auto facts = [](const OnnxModelFacts& f) {
    Json j = {{"file", f.path}, {"file_size", f.file_size}};
    if (f.has_speed)
      j.update({{"load_ms", f.load_ms},
                {"latency_ms", {{"median", f.median_ms}, {"p90", f.p90_ms}, {"p99", f.p99_ms}, {"runs", f.latency_ms}}},
                {"peak_rss_bytes", f.peak_rss_bytes}});
    return j;
  };
  Json m;
  m["tower"] = r.tower;
  m["inputs"] = {{"source", r.input_source}, {"count", r.cosines.size()}, {"names", r.input_names}};
  m["embedding_dim"] = r.dim;
  m["threads"] = r.threads;
  m["reference"] = facts(r.ref);
  m["build"] = facts(r.cand);
  m["cosine"] = {{"mean", r.cosine_mean}, {"min", r.cosine_min}, {"p1", r.cosine_p1}, {"values", r.cosines}};
  if (r.has_labels)
    m["zero_shot"] = {{"labels", r.label_names.size()},
                      {"top1_agreement", r.top1_agreement},
                      {"top5_agreement", r.top5_agreement},
                      {"kld_mean", r.kld_mean},
                      {"kld_max", r.kld_max}};
  if (r.ref.has_speed && r.cand.median_ms > 0) m["speedup"] = r.ref.median_ms / r.cand.median_ms;
  if (r.cand.file_size > 0)
    m["size_ratio"] = static_cast<double>(r.ref.file_size) / static_cast<double>(r.cand.file_size);
  m["seconds"] = r.seconds;
  v.metrics = std::move(m);

  Table models{"Models", {"", "reference", "build"}, {}};
  auto row = [&](std::string label, std::string a, std::string b) {
    models.rows.push_back({std::move(label), std::move(a), std::move(b)});
  };
  row("file", file_name(r.ref.path), file_name(r.cand.path));
  row("file size", fmt::format("{:.2f} MiB", mib(r.ref.file_size)), fmt::format("{:.2f} MiB", mib(r.cand.file_size)));
  if (r.ref.has_speed) {
    row("load time", fmt::format("{:.1f} ms", r.ref.load_ms), fmt::format("{:.1f} ms", r.cand.load_ms));
    row("latency median / p90 / p99",
        fmt::format("{:.2f} / {:.2f} / {:.2f} ms", r.ref.median_ms, r.ref.p90_ms, r.ref.p99_ms),
        fmt::format("{:.2f} / {:.2f} / {:.2f} ms", r.cand.median_ms, r.cand.p90_ms, r.cand.p99_ms));
    row("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref.peak_rss_bytes)),
        fmt::format("{:.1f} MiB", mib(r.cand.peak_rss_bytes)));
  }
  v.tables.push_back(models);

  Table acc{"Accuracy (build vs reference, same inputs)", {"figure", "value"}, {}};
  acc.rows.push_back({"inputs", r.input_source});
  acc.rows.push_back({"cosine mean", fmt::format("{:.6f}", r.cosine_mean)});
  acc.rows.push_back({"cosine min", fmt::format("{:.6f}", r.cosine_min)});
  acc.rows.push_back({"cosine p1", fmt::format("{:.6f}", r.cosine_p1)});
  if (r.has_labels) {
    acc.rows.push_back({"zero-shot labels", std::to_string(r.label_names.size())});
    acc.rows.push_back({"top-1 agreement", pct(r.top1_agreement)});
    acc.rows.push_back({"top-5 agreement (reference top-1 in build top-5)", pct(r.top5_agreement)});
    acc.rows.push_back({"mean KLD (reference || build)", fmt::format("{:.6g}", r.kld_mean)});
  }
  v.tables.push_back(acc);

  if (r.ref.has_speed) v.plots.push_back(latency_plot(r));
  v.plots.push_back(size_plot(r));
  v.plots.push_back(cosine_plot(r));
  if (r.has_labels) v.plots.push_back(confusion_plot(r));
  return v;
}

std::string format_text(const OnnxResult& r) {
  std::string s;
  s += fmt::format("validate onnx: {} against {} ({} tower)\n", r.cand.path, r.ref.path, r.tower);
  s += fmt::format("inputs: {}; medquant's executor, {} thread(s)\n\n", r.input_source, r.threads);
  auto line = [&](const std::string& label, const std::string& a, const std::string& b) {
    s += fmt::format("  {:<28} {:<28} {}\n", label, a, b);
  };
  line("", "reference", "build");
  line("file", file_name(r.ref.path), file_name(r.cand.path));
  line("size", fmt::format("{:.2f} MiB", mib(r.ref.file_size)), fmt::format("{:.2f} MiB", mib(r.cand.file_size)));
  if (r.ref.has_speed) {
    line("load", fmt::format("{:.1f} ms", r.ref.load_ms), fmt::format("{:.1f} ms", r.cand.load_ms));
    line(fmt::format("latency ({} runs) med/p90/p99", r.options.runs),
         fmt::format("{:.2f}/{:.2f}/{:.2f} ms", r.ref.median_ms, r.ref.p90_ms, r.ref.p99_ms),
         fmt::format("{:.2f}/{:.2f}/{:.2f} ms", r.cand.median_ms, r.cand.p90_ms, r.cand.p99_ms));
    line("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref.peak_rss_bytes)),
         fmt::format("{:.1f} MiB", mib(r.cand.peak_rss_bytes)));
  }
  s += "\n";
  s += fmt::format("  cosine mean / min / p1     : {:.6f} / {:.6f} / {:.6f}\n", r.cosine_mean, r.cosine_min,
                   r.cosine_p1);
  if (r.has_labels)
    s += fmt::format("  zero-shot ({} labels)      : top-1 {}, top-5 {}, mean KLD {:.6g}\n", r.label_names.size(),
                     pct(r.top1_agreement), pct(r.top5_agreement), r.kld_mean);
  s += fmt::format("  summary                    : {}\n\n", headline(r));
  for (const auto& c : r.checks) s += fmt::format("[{}] {}\n", c.pass ? "PASS" : "FAIL", describe(c));
  return s;
}

}  // namespace medquant::validate
