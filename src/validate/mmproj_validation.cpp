#include "validate/mmproj_validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/log.h"
#include "core/npy.h"
#include "llm/isolate.h"
#include "llm/llm.h"
#include "llm/projector.h"
#include "vision/image.h"
#include "vision/resample.h"

namespace medquant::validate {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool is_float_type(const std::string& file_type) {
  return file_type == "F32" || file_type == "F16" || file_type == "BF16";
}

struct Encoded {
  std::vector<float> values;  // images x n_tokens x n_embd
  size_t n_tokens = 0;
  int n_embd = 0;
};

// Loads the projector and encodes every image in a child process (its own
// peak RSS, and a crash inside libmtmd becomes an Error); the embeddings go
// through a file in `tmp`, the figures through the pipe.
Encoded encode_all(const std::string& what, const std::string& mmproj, const MmprojOptions& o,
                   const std::vector<vision::Image>& images, const std::string& tmp,
                   MmprojModelRun& run, std::string* system_info) {
  const std::string out_path = (fs::path(tmp) / (what + ".f32")).string();
  const llm::IsolatedResult r = llm::run_isolated(mmproj, [&]() -> std::string {
    const auto t0 = Clock::now();
    const auto projector = llm::Projector::load(mmproj, o.text_model, o.threads);
    const double load_ms = ms_since(t0);
    for (int i = 0; i < o.warmup && !images.empty(); ++i)
      (void)projector->encode(images[0].width, images[0].height, images[0].pixels);
    std::ofstream out(out_path, std::ios::binary);
    std::vector<double> times;
    size_t n_tokens = 0;
    int n_embd = 0;
    for (size_t i = 0; i < images.size(); ++i) {
      const auto t1 = Clock::now();
      const llm::ImageEmbeddings e =
          projector->encode(images[i].width, images[i].height, images[i].pixels);
      times.push_back(ms_since(t1));
      if (i > 0 && (e.n_tokens != n_tokens || e.n_embd != n_embd))
        fail("{}: image {} gave {} x {} embeddings, image 0 gave {} x {}", mmproj, i, e.n_tokens,
             e.n_embd, n_tokens, n_embd);
      n_tokens = e.n_tokens;
      n_embd = e.n_embd;
      out.write(reinterpret_cast<const char*>(e.values.data()),
                static_cast<std::streamsize>(e.values.size() * sizeof(float)));
    }
    if (!out.flush()) fail("{}: cannot write", out_path);
    return Json{{"load_ms", load_ms},
                {"encode_ms", times},
                {"n_tokens", n_tokens},
                {"n_embd", n_embd},
                {"system_info", llm::system_info()}}
        .dump();
  });
  const Json j = Json::parse(r.output);
  Encoded e;
  e.n_tokens = j.at("n_tokens").get<size_t>();
  e.n_embd = j.at("n_embd").get<int>();
  if (system_info) *system_info = j.at("system_info").get<std::string>();
  const size_t n = images.size() * e.n_tokens * static_cast<size_t>(e.n_embd);
  e.values.resize(n);
  std::ifstream in(out_path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(e.values.data()), static_cast<std::streamsize>(n * sizeof(float))))
    fail("{}: the embeddings file {} is short", mmproj, out_path);
  if (!o.skip_speed) {
    run.has_speed = true;
    run.load_ms = j.at("load_ms").get<double>();
    run.encode_ms = j.at("encode_ms").get<std::vector<double>>();
    run.median_ms = percentile(run.encode_ms, 50);
    run.p90_ms = percentile(run.encode_ms, 90);
    run.peak_rss_bytes = r.peak_rss_bytes;
  }
  return e;
}

void dump(const std::string& path, const Encoded& e, size_t images) {
  core::NpyArray a;
  a.dtype = core::DType::F32;
  a.shape = {static_cast<int64_t>(images), static_cast<int64_t>(e.n_tokens),
             static_cast<int64_t>(e.n_embd)};
  a.data.resize(e.values.size() * sizeof(float));
  std::memcpy(a.data.data(), e.values.data(), a.data.size());
  core::write_npy(path, a);
}

std::string seconds_per_image(double ms) {
  return ms >= 1000 ? fmt::format("{:.2f} s/image", ms / 1000) : fmt::format("{:.0f} ms/image", ms);
}

// ------------------------------------------------------------------ plots

Plot latency_plot(const MmprojResult& r) {
  Plot p{.id = "latency", .title = "Image encode latency", .type = "box"};
  p.data["panels"] = Json::array({box_panel("one image per run (preprocessing, vision tower and projector)",
                                            "ms per image", r.ref.encode_ms, r.cand.encode_ms)});
  p.notes.push_back(fmt::format(
      "{} image(s) after {} warm-up encode(s), {} thread(s), libmtmd; median {:.1f} / {:.1f} ms "
      "(reference / build)",
      r.input_names.size(), r.options.warmup, r.options.threads, r.ref.median_ms, r.cand.median_ms));
  return p;
}

Plot size_plot(const MmprojResult& r) {
  Plot p{.id = "size", .title = "Size, bits per weight and peak memory", .type = "bars"};
  Json panels = Json::array();
  panels.push_back(bars_panel("file size", "MiB", mib(r.ref.facts.file_size),
                              mib(r.cand.facts.file_size), "{:.2f}"));
  panels.push_back(bars_panel("bits per weight", "bpw", r.ref.facts.bits_per_weight,
                              r.cand.facts.bits_per_weight, "{:.2f}"));
  if (r.ref.has_speed)
    panels.push_back(bars_panel("peak RSS while loading and encoding", "MiB",
                                mib(r.ref.peak_rss_bytes), mib(r.cand.peak_rss_bytes), "{:.1f}"));
  p.data["panels"] = panels;
  return p;
}

Plot cosine_plot(const MmprojResult& r) {
  Plot p{.id = "cosine_histogram",
         .title = "Cosine similarity of the build's image embeddings to the reference's",
         .type = "histogram"};
  p.data = cosine_histogram(r.row_cosines, "cosine(reference, build) per image-token row",
                            {{"mean", r.cosine_mean}, {"p1", r.cosine_p1}});
  p.notes.push_back(fmt::format("{} rows ({} image(s) x {} tokens, width {}); mean {:.6f}, min "
                                "{:.6f}, p1 {:.6f}",
                                r.row_cosines.size(), r.input_names.size(), r.n_tokens, r.n_embd,
                                r.cosine_mean, r.cosine_min, r.cosine_p1));
  return p;
}

Json facts_json(const MmprojModelRun& m) {
  const auto& x = m.facts;
  Json j = {{"path", x.path},
            {"file_size", x.file_size},
            {"tensor_bytes", x.tensor_bytes},
            {"elements", x.elements},
            {"bits_per_weight", x.bits_per_weight},
            {"file_type", x.file_type},
            {"tensors", x.n_tensors}};
  j["load_ms"] = m.has_speed ? Json(m.load_ms) : Json(nullptr);
  j["encode_ms"] = m.has_speed ? Json{{"median", m.median_ms}, {"p90", m.p90_ms}, {"runs", m.encode_ms}}
                               : Json(nullptr);
  j["peak_rss_bytes"] = m.has_speed ? Json(m.peak_rss_bytes) : Json(nullptr);
  return j;
}

}  // namespace

bool is_mmproj(const GgufFacts& facts) { return facts.architecture == "clip"; }

bool MmprojResult::pass() const {
  return std::all_of(checks.begin(), checks.end(), [](const Check& c) { return c.pass; });
}

MmprojResult validate_mmproj(const MmprojOptions& options) {
  const auto t_start = Clock::now();
  MmprojResult r;
  r.options = options;
  const MmprojOptions& o = r.options;
  if (r.options.name.empty()) r.options.name = fs::path(o.candidate).stem().string();
  if (o.text_model.empty())
    fail("validate gguf: --ref {} is a vision projector; give the text model it belongs to with "
         "--model (libmtmd needs its vocabulary)",
         o.reference);
  if (!fs::is_regular_file(o.text_model)) fail("--model {}: no such file", o.text_model);
  r.ref.facts = with_context("--ref", [&] { return read_gguf_facts(o.reference); });
  r.cand.facts = with_context("--cand", [&] { return read_gguf_facts(o.candidate); });
  for (const auto* m : {&r.ref.facts, &r.cand.facts})
    if (!is_mmproj(*m))
      fail("{}: not a vision projector (general.architecture '{}', expected 'clip'); both --ref "
           "and --cand must be mmproj files",
           m->path, m->architecture);

  std::vector<vision::Image> images;
  if (o.images_dir.empty()) {
    if (o.synthetic_images < 1) fail("validate gguf: at least one synthetic image is needed");
    for (int i = 0; i < o.synthetic_images; ++i) {
      images.push_back(synthetic_image(i));
      r.input_names.push_back(fmt::format("synthetic-{:02d}", i));
    }
    r.input_source = fmt::format("{} synthetic images, seed {}", o.synthetic_images, kSyntheticSeed);
  } else {
    for (const auto& f : image_files(o.images_dir)) {
      images.push_back(vision::to_rgb(vision::load_image(f)));
      r.input_names.push_back(file_name(f));
    }
    r.input_source = fmt::format("{} ({} files)", o.images_dir, images.size());
  }

  TempDir tmp;
  core::log_info("encoding {} image(s) with the reference {} ...", images.size(), file_name(o.reference));
  const Encoded a = encode_all("reference", o.reference, o, images, tmp.path(), r.ref, &r.system_info);
  core::log_info("encoding {} image(s) with the build {} ...", images.size(), file_name(o.candidate));
  const Encoded b = encode_all("candidate", o.candidate, o, images, tmp.path(), r.cand, nullptr);
  if (a.n_tokens != b.n_tokens || a.n_embd != b.n_embd)
    fail("--cand {} gives {} x {} embeddings per image, the reference {} gives {} x {}", o.candidate,
         b.n_tokens, b.n_embd, o.reference, a.n_tokens, a.n_embd);
  r.n_tokens = a.n_tokens;
  r.n_embd = a.n_embd;
  if (!o.dump_dir.empty()) {
    fs::create_directories(o.dump_dir);
    dump((fs::path(o.dump_dir) / "reference.npy").string(), a, images.size());
    dump((fs::path(o.dump_dir) / "candidate.npy").string(), b, images.size());
  }

  const size_t w = static_cast<size_t>(r.n_embd);
  double max_ref = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    double sum = 0, lo = 1;
    for (size_t t = 0; t < r.n_tokens; ++t) {
      const size_t off = (i * r.n_tokens + t) * w;
      const double c = cosine({a.values.data() + off, w}, {b.values.data() + off, w});
      r.row_cosines.push_back(c);
      sum += c;
      lo = std::min(lo, c);
    }
    r.image_cosine_mean.push_back(r.n_tokens ? sum / static_cast<double>(r.n_tokens) : 1.0);
    r.image_cosine_min.push_back(lo);
  }
  for (size_t k = 0; k < a.values.size(); ++k) {
    const double d = std::fabs(static_cast<double>(a.values[k]) - b.values[k]);
    // NaN in the build must not hide behind max(): it is the worst difference.
    r.max_abs_diff = std::isnan(d) ? INFINITY : std::max(r.max_abs_diff, d);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(a.values[k])));
  }
  r.relative_max_diff = max_ref > 0 ? r.max_abs_diff / max_ref : r.max_abs_diff;
  double sum = 0;
  r.cosine_min = 1;
  for (double c : r.row_cosines) {
    sum += c;
    r.cosine_min = std::isnan(c) ? c : std::min(r.cosine_min, c);
  }
  r.cosine_mean = r.row_cosines.empty() ? NAN : sum / static_cast<double>(r.row_cosines.size());
  r.cosine_p1 = percentile(r.row_cosines, 1);

  const bool float_build = is_float_type(r.cand.facts.file_type);
  r.min_cosine_mean = o.thresholds.min_cosine_mean.value_or(float_build ? 0.999 : 0.99);
  r.min_cosine_min = o.thresholds.min_cosine_min.value_or(float_build ? 0.99 : 0.95);
  r.checks.push_back(make_check("cosine_mean", "mean cosine of image-token rows", r.cosine_mean,
                                ">=", r.min_cosine_mean, "{:.6f}"));
  r.checks.push_back(make_check("cosine_min", "min cosine of image-token rows", r.cosine_min, ">=",
                                r.min_cosine_min, "{:.6f}"));
  r.seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return r;
}

std::string headline(const MmprojResult& r) {
  std::string s = fmt::format("cosine {:.5f} (min {:.4f})", r.cosine_mean, r.cosine_min);
  if (r.cand.has_speed) s += ", " + seconds_per_image(r.cand.median_ms);
  if (r.cand.facts.file_size > 0)
    s += fmt::format(", {:.1f}x smaller",
                     static_cast<double>(r.ref.facts.file_size) / static_cast<double>(r.cand.facts.file_size));
  return s;
}

Validation to_validation(const MmprojResult& r) {
  Validation v;
  v.kind = "mmproj";
  v.name = r.options.name;
  v.status = r.pass() ? Status::Pass : Status::Fail;
  v.summary = headline(r);
  v.checks = r.checks;

  Json m;
  m["llama_cpp"] = {{"version", std::string(llm::llama_cpp_version())},
                    {"commit", std::string(llm::llama_cpp_commit())},
                    {"system_info", r.system_info}};
  m["text_model"] = r.options.text_model;
  m["images"] = {{"source", r.input_source}, {"count", r.input_names.size()}, {"names", r.input_names}};
  m["n_tokens"] = r.n_tokens;
  m["n_embd"] = r.n_embd;
  m["threads"] = r.options.threads;
  m["warmup_runs"] = r.options.warmup;
  m["reference"] = facts_json(r.ref);
  m["candidate"] = facts_json(r.cand);
  auto num = [](double x) { return std::isfinite(x) ? Json(x) : Json(std::isnan(x) ? "nan" : "inf"); };
  Json per_mean = Json::array(), per_min = Json::array();
  for (size_t i = 0; i < r.image_cosine_mean.size(); ++i) {
    per_mean.push_back(num(r.image_cosine_mean[i]));
    per_min.push_back(num(r.image_cosine_min[i]));
  }
  m["cosine"] = {{"mean", num(r.cosine_mean)},
                 {"min", num(r.cosine_min)},
                 {"p1", num(r.cosine_p1)},
                 {"per_image_mean", per_mean},
                 {"per_image_min", per_min}};
  m["max_abs_diff"] = num(r.max_abs_diff);
  m["relative_max_diff"] = num(r.relative_max_diff);
  m["seconds"] = r.seconds;
  v.metrics = std::move(m);

  Table models{"Projectors", {"", "reference", "build"}, {}};
  auto row = [&](std::string label, std::string x, std::string y) {
    models.rows.push_back({std::move(label), std::move(x), std::move(y)});
  };
  row("file", file_name(r.ref.facts.path), file_name(r.cand.facts.path));
  row("file type", r.ref.facts.file_type, r.cand.facts.file_type);
  row("file size", fmt::format("{:.2f} MiB", mib(r.ref.facts.file_size)),
      fmt::format("{:.2f} MiB", mib(r.cand.facts.file_size)));
  row("bits per weight", fmt::format("{:.2f}", r.ref.facts.bits_per_weight),
      fmt::format("{:.2f}", r.cand.facts.bits_per_weight));
  if (r.ref.has_speed) {
    row("load time", fmt::format("{:.1f} ms", r.ref.load_ms), fmt::format("{:.1f} ms", r.cand.load_ms));
    row("encode median / p90", fmt::format("{:.1f} / {:.1f} ms", r.ref.median_ms, r.ref.p90_ms),
        fmt::format("{:.1f} / {:.1f} ms", r.cand.median_ms, r.cand.p90_ms));
    row("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref.peak_rss_bytes)),
        fmt::format("{:.1f} MiB", mib(r.cand.peak_rss_bytes)));
  }
  v.tables.push_back(models);

  Table acc{"Image embeddings", {"figure", "value"}, {}};
  acc.rows.push_back({"images", r.input_source});
  acc.rows.push_back({"embeddings per image", fmt::format("{} tokens x {}", r.n_tokens, r.n_embd)});
  acc.rows.push_back({"mean / min / p1 row cosine",
                      fmt::format("{:.6f} / {:.6f} / {:.6f}", r.cosine_mean, r.cosine_min, r.cosine_p1)});
  acc.rows.push_back({"max |difference|", fmt::format("{:.4e} ({:.4e} of max |reference|)",
                                                      r.max_abs_diff, r.relative_max_diff)});
  acc.rows.push_back({"text model (vocabulary)", file_name(r.options.text_model)});
  acc.rows.push_back({"computed by", fmt::format("libmtmd of llama.cpp {} (commit {}), {} thread(s)",
                                                 llm::llama_cpp_version(), llm::llama_cpp_commit(),
                                                 r.options.threads)});
  v.tables.push_back(acc);

  Table per{"Per image", {"image", "mean cosine", "min cosine", "reference ms", "build ms"}, {}};
  for (size_t i = 0; i < r.input_names.size(); ++i)
    per.rows.push_back({r.input_names[i], fmt::format("{:.6f}", r.image_cosine_mean[i]),
                        fmt::format("{:.6f}", r.image_cosine_min[i]),
                        r.ref.has_speed ? fmt::format("{:.1f}", r.ref.encode_ms[i]) : "-",
                        r.cand.has_speed ? fmt::format("{:.1f}", r.cand.encode_ms[i]) : "-"});
  v.tables.push_back(per);

  if (r.ref.has_speed) v.plots.push_back(latency_plot(r));
  v.plots.push_back(size_plot(r));
  v.plots.push_back(cosine_plot(r));
  return v;
}

std::string format_text(const MmprojResult& r) {
  std::string s;
  s += fmt::format("validate gguf (vision projector): {} against {}\n", r.cand.facts.path, r.ref.facts.path);
  s += fmt::format("images: {}; {} tokens x {} per image; text model {}\n", r.input_source,
                   r.n_tokens, r.n_embd, r.options.text_model);
  s += fmt::format("computed by libmtmd of llama.cpp {} (commit {}), {} thread(s)\n\n",
                   llm::llama_cpp_version(), llm::llama_cpp_commit(), r.options.threads);
  auto line = [&](const std::string& label, const std::string& x, const std::string& y) {
    s += fmt::format("  {:<22} {:<28} {}\n", label, x, y);
  };
  line("", "reference", "build");
  line("file", file_name(r.ref.facts.path), file_name(r.cand.facts.path));
  line("file type", r.ref.facts.file_type, r.cand.facts.file_type);
  line("size", fmt::format("{:.2f} MiB", mib(r.ref.facts.file_size)),
       fmt::format("{:.2f} MiB", mib(r.cand.facts.file_size)));
  if (r.ref.has_speed) {
    line("load", fmt::format("{:.1f} ms", r.ref.load_ms), fmt::format("{:.1f} ms", r.cand.load_ms));
    line("encode median / p90", fmt::format("{:.1f} / {:.1f} ms", r.ref.median_ms, r.ref.p90_ms),
         fmt::format("{:.1f} / {:.1f} ms", r.cand.median_ms, r.cand.p90_ms));
    line("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref.peak_rss_bytes)),
         fmt::format("{:.1f} MiB", mib(r.cand.peak_rss_bytes)));
  }
  s += "\n";
  s += fmt::format("  row cosine mean / min / p1 : {:.6f} / {:.6f} / {:.6f}\n", r.cosine_mean,
                   r.cosine_min, r.cosine_p1);
  s += fmt::format("  max |difference|           : {:.4e} ({:.4e} of max |reference|)\n\n",
                   r.max_abs_diff, r.relative_max_diff);
  for (const auto& c : r.checks) s += fmt::format("[{}] {}\n", c.pass ? "PASS" : "FAIL", describe(c));
  return s;
}

}  // namespace medquant::validate
