#include "validate/gguf_validation.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/quantize_plan.h"
#include "llm/isolate.h"
#include "llm/llm.h"
#include "models/gemma3/convert.h"
#include "validate/common.h"
#include "validate/sample_text.h"

namespace medquant::validate {
namespace {

namespace fs = std::filesystem;



// ---------------------------------------------------------------- child results as JSON

Json speed_json(const llm::SpeedResult& s, const llm::SpeedOptions& o) {
  return {{"load_ms", s.load_ms},
          {"context_ms", s.context_ms},
          {"threads", s.threads},
          {"warmup_runs", o.warmup},
          {"repetitions", o.repetitions},
          {"prompt",
           {{"tokens", s.prompt_tokens},
            {"runs_ms", s.prompt_ms},
            {"tokens_per_second", s.prompt_tokens_per_second()}}},
          {"generation",
           {{"tokens", s.gen_tokens},
            {"runs_ms", s.gen_ms},
            {"token_ms", s.token_ms},
            {"tokens_per_second", s.gen_tokens_per_second()}}}};
}

llm::SpeedResult speed_from_json(const Json& j) {
  llm::SpeedResult s;
  s.load_ms = j.at("load_ms").get<double>();
  s.context_ms = j.at("context_ms").get<double>();
  s.threads = j.at("threads").get<int>();
  s.prompt_tokens = j.at("prompt").at("tokens").get<int>();
  s.prompt_ms = j.at("prompt").at("runs_ms").get<std::vector<double>>();
  s.gen_tokens = j.at("generation").at("tokens").get<int>();
  s.gen_ms = j.at("generation").at("runs_ms").get<std::vector<double>>();
  s.token_ms = j.at("generation").at("token_ms").get<std::vector<double>>();
  return s;
}

Json base_json(const llm::BaseResult& b) {
  return {{"n_ctx", b.n_ctx},       {"n_chunk", b.n_chunk},   {"n_vocab", b.n_vocab},
          {"n_text_tokens", b.n_text_tokens}, {"count", b.count}, {"sum_nll", b.sum_nll},
          {"sum_nll2", b.sum_nll2}, {"ppl", b.ppl}, {"ppl_uncertainty", b.ppl_uncertainty},
          {"chunk_ppl", b.chunk_ppl}};
}

llm::BaseResult base_from_json(const Json& j) {
  llm::BaseResult b;
  b.n_ctx = j.at("n_ctx").get<int>();
  b.n_chunk = j.at("n_chunk").get<int>();
  b.n_vocab = j.at("n_vocab").get<int>();
  b.n_text_tokens = j.at("n_text_tokens").get<size_t>();
  b.count = j.at("count").get<size_t>();
  b.sum_nll = j.at("sum_nll").get<double>();
  b.sum_nll2 = j.at("sum_nll2").get<double>();
  b.ppl = j.at("ppl").get<double>();
  b.ppl_uncertainty = j.at("ppl_uncertainty").get<double>();
  b.chunk_ppl = j.at("chunk_ppl").get<std::vector<double>>();
  return b;
}

// NaN and infinities do not survive JSON; a broken build can produce them.
Json finite_or_string(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

double number_or_nan(const Json& v) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "inf") return INFINITY;
    if (s == "-inf") return -INFINITY;
  }
  return NAN;
}

Json float_array(const std::vector<float>& v) {
  Json a = Json::array();
  for (float x : v) a.push_back(finite_or_string(x));
  return a;
}

std::vector<float> float_vector(const Json& a) {
  std::vector<float> v;
  v.reserve(a.size());
  for (const auto& x : a) v.push_back(static_cast<float>(number_or_nan(x)));
  return v;
}

Json kld_json(const llm::KldResult& k) {
  return {{"n_ctx", k.n_ctx},
          {"n_chunk", k.n_chunk},
          {"n_vocab", k.n_vocab},
          {"sums",
           Json::array({finite_or_string(k.sum_nll), finite_or_string(k.sum_nll2),
                        finite_or_string(k.sum_nll_base), finite_or_string(k.sum_nll_base2),
                        finite_or_string(k.sum_nll_nll_base), finite_or_string(k.sum_kld),
                        finite_or_string(k.sum_kld2), finite_or_string(k.sum_p_diff),
                        finite_or_string(k.sum_p_diff2), finite_or_string(k.sum_p_diff4),
                        finite_or_string(k.max_p_diff)})},
          {"n_same_top", k.n_same_top},
          {"count", k.count},
          {"kld_values", float_array(k.kld_values)},
          {"p_diff_values", float_array(k.p_diff_values)}};
}

llm::KldResult kld_from_json(const Json& j) {
  llm::KldResult k;
  k.n_ctx = j.at("n_ctx").get<int>();
  k.n_chunk = j.at("n_chunk").get<int>();
  k.n_vocab = j.at("n_vocab").get<int>();
  const Json& s = j.at("sums");
  k.sum_nll = number_or_nan(s.at(0));
  k.sum_nll2 = number_or_nan(s.at(1));
  k.sum_nll_base = number_or_nan(s.at(2));
  k.sum_nll_base2 = number_or_nan(s.at(3));
  k.sum_nll_nll_base = number_or_nan(s.at(4));
  k.sum_kld = number_or_nan(s.at(5));
  k.sum_kld2 = number_or_nan(s.at(6));
  k.sum_p_diff = number_or_nan(s.at(7));
  k.sum_p_diff2 = number_or_nan(s.at(8));
  k.sum_p_diff4 = number_or_nan(s.at(9));
  k.max_p_diff = static_cast<float>(number_or_nan(s.at(10)));
  k.n_same_top = j.at("n_same_top").get<size_t>();
  k.count = j.at("count").get<size_t>();
  k.kld_values = float_vector(j.at("kld_values"));
  k.p_diff_values = float_vector(j.at("p_diff_values"));
  return k;
}

// ---------------------------------------------------------------- formatting

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  return fmt::format("{:.{}f}", v, decimals);
}

std::string pm(const llm::ValueUncertainty& v, int decimals) {
  return fmt::format("{} ± {}", fixed(v.value, decimals), fixed(v.uncertainty, decimals));
}

std::string kld_short(double v) {
  if (!std::isfinite(v)) return fixed(v, 3);
  return v >= 0.001 || v == 0 ? fmt::format("{:.3f}", v) : fmt::format("{:.1e}", v);
}

std::string tps(double v) { return v >= 100 ? fmt::format("{:.0f}", v) : fmt::format("{:.1f}", v); }

Json vu(const llm::ValueUncertainty& v) {
  return {{"value", finite_or_string(v.value)}, {"uncertainty", finite_or_string(v.uncertainty)}};
}

// ---------------------------------------------------------------- plots

Plot latency_plot(const GgufResult& r) {
  Plot p{.id = "latency",
         .title = "Latency distributions (prompt and per generated token)",
         .type = "box"};
  const auto& a = r.ref_run.speed;
  const auto& b = r.cand_run.speed;
  p.data["panels"] = Json::array(
      {box_panel(fmt::format("prompt processing, {} tokens per run", a.prompt_tokens), "ms per run",
                 a.prompt_ms, b.prompt_ms),
       box_panel("generation, one token at a time", "ms per token", a.token_ms, b.token_ms)});
  p.notes.push_back(fmt::format(
      "{} measured runs after {} warm-up run(s), {} thread(s); reference {} / {} tok/s, build {} "
      "/ {} tok/s (prompt / generation, medians)",
      r.options.speed.repetitions, r.options.speed.warmup, a.threads,
      tps(a.prompt_tokens_per_second()), tps(a.gen_tokens_per_second()),
      tps(b.prompt_tokens_per_second()), tps(b.gen_tokens_per_second())));
  return p;
}

Plot size_plot(const GgufResult& r) {
  Plot p{.id = "size", .title = "Size, bits per weight and peak memory", .type = "bars"};
  Json panels = Json::array();
  panels.push_back(bars_panel("file size", "MiB", mib(r.ref.file_size), mib(r.cand.file_size), "{:.2f}"));
  panels.push_back(bars_panel("bits per weight", "bpw", r.ref.bits_per_weight, r.cand.bits_per_weight,
                              "{:.2f}"));
  if (r.ref_run.has_speed)
    panels.push_back(bars_panel("peak RSS while loading and running", "MiB",
                                mib(r.ref_run.peak_rss_bytes), mib(r.cand_run.peak_rss_bytes), "{:.1f}"));
  p.data["panels"] = panels;
  return p;
}

Plot tensor_error_plot(const GgufResult& r) {
  Plot p{.id = "tensor_error",
         .title = "Per-tensor quantization error (RMSE relative to the reference's RMS)",
         .type = "heatmap"};
  static const std::regex kBlock(R"(^blk\.(\d+)\.(.+?)(\.weight)?$)");
  std::map<int, int> layers;
  std::vector<std::string> kinds;
  std::map<std::pair<std::string, int>, double> cells;
  for (const auto& t : r.tensors.tensors) {
    std::smatch m;
    if (std::regex_match(t.name, m, kBlock)) {
      const int layer = std::stoi(m[1].str());
      const std::string kind = m[2].str();
      layers[layer] = 0;
      if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
      cells[{kind, layer}] = t.relative();
    } else {
      p.notes.push_back(fmt::format("{} ({} -> {}): relative RMSE {:.3e}, RMSE {:.3e}", t.name,
                                    t.ref_type, t.cand_type, t.relative(), t.rmse));
    }
  }
  Json cols = Json::array();
  for (const auto& [layer, unused] : layers) cols.push_back(std::to_string(layer));
  Json values = Json::array();
  for (const auto& kind : kinds) {
    Json row = Json::array();
    for (const auto& [layer, unused] : layers) {
      auto it = cells.find({kind, layer});
      row.push_back(it == cells.end() ? Json(nullptr) : Json(it->second));
    }
    values.push_back(row);
  }
  p.data = {{"x_label", "layer (blk.N)"},
            {"y_label", "tensor"},
            {"rows", kinds},
            {"cols", cols},
            {"values", values},
            {"value_label", "RMSE / RMS(reference)"},
            {"log_color", false}};
  if (r.tensors.tensors.empty()) p.notes.push_back("no tensor differs in type from the reference");
  for (const auto& s : r.tensors.skipped) p.notes.push_back("not compared: " + s);
  return p;
}

Plot kld_plot(const GgufResult& r) {
  Plot p{.id = "kld_distribution",
         .title = "Distribution of the per-token KL divergence",
         .type = "histogram"};
  std::vector<float> v;
  for (float x : r.kld.kld_values)
    if (std::isfinite(x)) v.push_back(x);
  std::sort(v.begin(), v.end());
  if (v.empty()) {
    p.data = Json::object();
    p.notes.push_back("no finite KLD values");
    return p;
  }
  const double hi = std::max<double>(v.back(), 1e-12);
  double lo = hi;
  for (float x : v)
    if (x > 0) {
      lo = x;
      break;
    }
  lo = std::max(lo, hi * 1e-6);
  if (!(hi > lo)) lo = hi / 10;
  const int bins = 40;
  std::vector<double> edges(bins + 1);
  for (int i = 0; i <= bins; ++i)
    edges[static_cast<size_t>(i)] = std::pow(10.0, std::log10(lo) + (std::log10(hi) - std::log10(lo)) * i / bins);
  std::vector<double> counts(bins, 0);
  size_t below = 0;
  for (float x : v) {
    if (x < lo) {
      ++below;
      counts[0] += 1;
      continue;
    }
    int b = static_cast<int>((std::log10(static_cast<double>(x)) - std::log10(lo)) /
                             (std::log10(hi) - std::log10(lo)) * bins);
    counts[static_cast<size_t>(std::clamp(b, 0, bins - 1))] += 1;
  }
  p.data = {{"x_label", "KLD per scored token (nats, log scale)"},
            {"log_x", true},
            {"edges", edges},
            {"series", Json::array({{{"name", "build vs reference"}, {"counts", counts}}})},
            {"markers", Json::array({{{"label", "mean"}, {"value", r.figures.kld_mean.value}},
                                     {{"label", "p99"}, {"value", r.figures.kld_p99}}})}};
  p.notes.push_back(fmt::format("{} scored tokens; mean {:.6f}, median {:.6f}, p99 {:.6f}, max {:.6f}",
                                r.kld.count, r.figures.kld_mean.value, r.figures.kld_median,
                                r.figures.kld_p99, r.figures.kld_max));
  if (below > 0)
    p.notes.push_back(fmt::format("{} value(s) below {:.2e} counted in the first bin", below, lo));
  return p;
}

}  // namespace

GgufFacts read_gguf_facts(const std::string& path) {
  GgufFacts f;
  f.path = path;
  const gguf::Reader reader(path);
  f.file_size = reader.file_size();
  f.n_tensors = reader.tensors().size();
  for (const auto& t : reader.tensors()) {
    f.tensor_bytes += t.n_bytes();
    f.elements += static_cast<uint64_t>(t.n_elements());
  }
  f.bits_per_weight =
      f.elements ? 8.0 * static_cast<double>(f.tensor_bytes) / static_cast<double>(f.elements) : 0;
  f.architecture = reader.header().get_string("general.architecture").value_or("");
  f.model_name = reader.header().get_string("general.name").value_or("");
  if (const auto ft = reader.header().get_int("general.file_type")) {
    f.file_type = fmt::format("file type {}", *ft);
    for (const auto& m : gguf::mixes())
      if (static_cast<int64_t>(m.file_type) == *ft) f.file_type = std::string(m.name);
  }
  return f;
}

bool GgufResult::pass() const {
  return std::all_of(checks.begin(), checks.end(), [](const Check& c) { return c.pass; });
}

GgufResult validate_gguf(const GgufOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  GgufResult r;
  r.options = o;
  for (const auto* p : {&o.reference, &o.candidate})
    if (p->empty()) fail("validate gguf: --ref and --cand are required");
  if (fs::is_directory(o.candidate)) fail("--cand {}: is a folder, not a GGUF file", o.candidate);
  TempDir tmp;
  // A Hugging Face folder as the reference: converted first (its own float
  // type, as `medquant convert gguf --outtype auto`) into the temporary folder.
  std::string reference = o.reference;
  if (fs::is_directory(o.reference)) {
    if (!fs::exists(fs::path(o.reference) / "config.json"))
      fail("--ref {}: a folder without config.json (expected a Hugging Face checkpoint or a "
           "GGUF file)",
           o.reference);
    core::log_info("converting the reference {} to GGUF ...", o.reference);
    models::gemma3::ConvertOptions c;
    c.model_dir = o.reference;
    c.output = (fs::path(tmp.path()) / "reference.gguf").string();
    c.outtype = "auto";
    const auto converted = with_context("--ref " + o.reference, [&] {
      return models::gemma3::convert_gguf(c, core::default_pool());
    });
    reference = c.output;
    r.reference_note = fmt::format("converted from {} by medquant convert gguf ({})", o.reference,
                                   converted.files.empty() ? "auto" : converted.files[0].outtype);
  }
  r.options.reference = reference;
  r.ref = with_context("--ref", [&] { return read_gguf_facts(reference); });
  r.cand = with_context("--cand", [&] { return read_gguf_facts(o.candidate); });
  if (!r.ref.architecture.empty() && !r.cand.architecture.empty() &&
      r.ref.architecture != r.cand.architecture)
    fail("--ref {} is a '{}' model but --cand {} is '{}'", o.reference, r.ref.architecture,
         o.candidate, r.cand.architecture);

  std::string raw;
  if (o.text_path.empty()) {
    raw = std::string(builtin_text());
    r.text_source = std::string(kBuiltinTextName);
  } else {
    raw = core::read_text_file(o.text_path);
    r.text_source = o.text_path;
  }
  const std::string text = llm::eval_text(raw);
  r.text_bytes = text.size();
  r.threads = std::max(1, o.eval.threads);
  llm::EvalOptions eval = o.eval;
  eval.threads = r.threads;
  llm::SpeedOptions speed = o.speed;
  speed.threads = r.threads;

  const std::string logits_path =
      o.save_base_logits.empty() ? (fs::path(tmp.path()) / "base.logits").string()
                                 : o.save_base_logits;

  core::log_info("scoring the text with the reference {} ...", file_name(reference));
  {
    const auto out = llm::run_isolated(reference, [&] {
      llm::init_backend();
      const auto model = llm::Model::load(reference);
      const auto tokens = llm::tokenize(*model, text);
      const llm::BaseResult base = llm::perplexity_base(*model, tokens, eval, logits_path);
      Json j = {{"system_info", llm::system_info()},
                {"description", model->description()},
                {"n_params", model->n_params()},
                {"base", base_json(base)}};
      return j.dump();
    });
    const Json j = Json::parse(out.output);
    r.system_info = j.at("system_info").get<std::string>();
    r.ref_run.description = j.at("description").get<std::string>();
    r.ref_run.n_params = j.at("n_params").get<uint64_t>();
    r.base = base_from_json(j.at("base"));
  }
  core::log_info("KL divergence of the build {} ...", file_name(o.candidate));
  {
    const auto out = llm::run_isolated(o.candidate, [&] {
      llm::init_backend();
      const auto model = llm::Model::load(o.candidate);
      const llm::KldResult kld = llm::kl_divergence(*model, logits_path, eval);
      Json j = {{"description", model->description()},
                {"n_params", model->n_params()},
                {"kld", kld_json(kld)}};
      return j.dump();
    });
    const Json j = Json::parse(out.output);
    r.cand_run.description = j.at("description").get<std::string>();
    r.cand_run.n_params = j.at("n_params").get<uint64_t>();
    r.kld = kld_from_json(j.at("kld"));
    r.figures = llm::kld_figures(r.kld);
  }
  if (!o.skip_speed) {
    for (auto [path, run] : {std::pair<const std::string*, ModelRun*>{&reference, &r.ref_run},
                              std::pair<const std::string*, ModelRun*>{&o.candidate, &r.cand_run}}) {
      core::log_info("speed of {} ({} warm-up + {} runs) ...", file_name(*path), speed.warmup,
                     speed.repetitions);
      const auto out = llm::run_isolated(*path, [&] {
        return speed_json(llm::benchmark(*path, text, speed), speed).dump();
      });
      run->speed = speed_from_json(Json::parse(out.output));
      run->peak_rss_bytes = out.peak_rss_bytes;
      run->has_speed = true;
    }
  }
  core::log_info("per-tensor error ...");
  {
    const gguf::Reader ref(reference), cand(o.candidate);
    r.tensors = tensor_errors(ref, cand, core::default_pool());
  }

  const auto& t = o.thresholds;
  r.checks.push_back(make_check("kld_mean", "KLD mean", r.figures.kld_mean.value, "<=",
                                t.max_kld_mean, "{:.6f}"));
  r.checks.push_back(make_check("top1_agreement", "top-1 token agreement", r.figures.same_top.value,
                                ">=", t.min_top1, "{:.5f}"));
  r.checks.push_back(make_check("ppl_ratio", "PPL(build) / PPL(reference)",
                                r.figures.ppl_ratio.value, "<=", t.max_ppl_ratio, "{:.6f}"));
  if (t.max_kld_p99)
    r.checks.push_back(make_check("kld_p99", "KLD 99th percentile", r.figures.kld_p99, "<=",
                                  *t.max_kld_p99, "{:.6f}"));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return r;
}

std::string headline(const GgufResult& r) {
  std::string s;
  if (r.cand_run.has_speed) s += fmt::format("{} tok/s, ", tps(r.cand_run.speed.gen_tokens_per_second()));
  const double ppl_pct = (r.figures.ppl_ratio.value - 1.0) * 100.0;
  s += fmt::format("KLD {}, PPL {}{}%, top-1 {:.1f}%", kld_short(r.figures.kld_mean.value),
                   ppl_pct >= 0 ? "+" : "", fixed(ppl_pct, 1), r.figures.same_top.value * 100.0);
  return s;
}

Validation to_validation(const GgufResult& r) {
  Validation v;
  v.kind = "gguf";
  v.name = !r.options.name.empty() ? r.options.name : file_name(r.options.candidate);
  v.status = r.pass() ? Status::Pass : Status::Fail;
  v.summary = headline(r);
  v.checks = r.checks;
  const auto& f = r.figures;

  auto facts = [](const GgufFacts& x, const ModelRun& run) {
    Json j = {{"path", x.path},
              {"file_size", x.file_size},
              {"tensor_bytes", x.tensor_bytes},
              {"elements", x.elements},
              {"bits_per_weight", x.bits_per_weight},
              {"file_type", x.file_type},
              {"architecture", x.architecture},
              {"model_name", x.model_name},
              {"tensors", x.n_tensors},
              {"llama_cpp_description", run.description},
              {"n_params", run.n_params}};
    j["peak_rss_bytes"] = run.has_speed ? Json(run.peak_rss_bytes) : Json(nullptr);
    j["speed"] = Json(nullptr);
    return j;
  };
  Json m;
  m["llama_cpp"] = {{"version", std::string(llm::llama_cpp_version())},
                    {"commit", std::string(llm::llama_cpp_commit())},
                    {"system_info", r.system_info}};
  m["evaluation"] = {{"text", r.text_source},
                     {"text_bytes", r.text_bytes},
                     {"text_tokens", r.base.n_text_tokens},
                     {"n_ctx", r.base.n_ctx},
                     {"n_batch", r.options.eval.n_batch},
                     {"n_ubatch", r.options.eval.n_ubatch},
                     {"n_chunk", r.base.n_chunk},
                     {"scored_tokens", r.kld.count},
                     {"threads", r.threads}};
  m["reference"] = facts(r.ref, r.ref_run);
  m["reference"]["converted_from"] = r.reference_note.empty() ? Json(nullptr) : Json(r.reference_note);
  m["candidate"] = facts(r.cand, r.cand_run);
  if (r.ref_run.has_speed) {
    m["reference"]["speed"] = speed_json(r.ref_run.speed, r.options.speed);
    m["candidate"]["speed"] = speed_json(r.cand_run.speed, r.options.speed);
  }
  m["perplexity"] = {
      {"reference", {{"value", finite_or_string(r.base.ppl)},
                     {"uncertainty", finite_or_string(r.base.ppl_uncertainty)}}},
      {"reference_from_stored_logprobs", vu(f.ppl_base)},
      {"candidate", vu(f.ppl)},
      {"ratio", vu(f.ppl_ratio)},
      {"ln_ratio", vu(f.ln_ppl_ratio)},
      {"difference", vu(f.ppl_diff)},
      {"ln_correlation", finite_or_string(f.ln_ppl_correlation)}};
  m["kl_divergence"] = {{"mean", finite_or_string(f.kld_mean.value)},
                        {"mean_uncertainty", finite_or_string(f.kld_mean.uncertainty)},
                        {"max", finite_or_string(f.kld_max)},
                        {"p99_9", finite_or_string(f.kld_p99_9)},
                        {"p99", finite_or_string(f.kld_p99)},
                        {"p95", finite_or_string(f.kld_p95)},
                        {"p90", finite_or_string(f.kld_p90)},
                        {"median", finite_or_string(f.kld_median)},
                        {"p10", finite_or_string(f.kld_p10)},
                        {"p5", finite_or_string(f.kld_p5)},
                        {"p1", finite_or_string(f.kld_p1)},
                        {"p0_1", finite_or_string(f.kld_p0_1)},
                        {"min", finite_or_string(f.kld_min)}};
  m["top1_agreement"] = vu(f.same_top);
  m["delta_p"] = {{"mean", finite_or_string(f.p_diff_mean.value)},
                  {"mean_uncertainty", finite_or_string(f.p_diff_mean.uncertainty)},
                  {"rms", finite_or_string(f.p_diff_rms.value)},
                  {"rms_uncertainty", finite_or_string(f.p_diff_rms.uncertainty)},
                  {"max", finite_or_string(f.p_diff_max)},
                  {"p99", finite_or_string(f.p_diff_p99)},
                  {"median", finite_or_string(f.p_diff_median)},
                  {"p1", finite_or_string(f.p_diff_p1)},
                  {"min", finite_or_string(f.p_diff_min)}};
  Json tensors = Json::array();
  for (const auto& t : r.tensors.tensors)
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"reference_type", t.ref_type},
                       {"type", t.cand_type},
                       {"elements", t.elements},
                       {"bytes", t.cand_bytes},
                       {"rmse", t.rmse},
                       {"max_abs_err", t.max_abs_err},
                       {"rms_reference", t.rms_reference},
                       {"relative_rmse", t.relative()}});
  m["tensors"] = tensors;
  m["tensors_not_compared"] = r.tensors.skipped;
  m["seconds"] = r.seconds;
  v.metrics = std::move(m);

  // Tables for report.md / report.html.
  Table models{"Models", {"", "reference", "build"}, {}};
  auto row = [&](std::string label, std::string a, std::string b) {
    models.rows.push_back({std::move(label), std::move(a), std::move(b)});
  };
  row("file", file_name(r.ref.path), file_name(r.cand.path));
  row("file type", r.ref.file_type, r.cand.file_type);
  row("file size", fmt::format("{:.2f} MiB", mib(r.ref.file_size)),
      fmt::format("{:.2f} MiB", mib(r.cand.file_size)));
  row("bits per weight", fmt::format("{:.2f}", r.ref.bits_per_weight),
      fmt::format("{:.2f}", r.cand.bits_per_weight));
  row("llama.cpp", r.ref_run.description, r.cand_run.description);
  if (r.ref_run.has_speed) {
    const auto& a = r.ref_run.speed;
    const auto& b = r.cand_run.speed;
    row("load time", fmt::format("{:.1f} ms", a.load_ms), fmt::format("{:.1f} ms", b.load_ms));
    row("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref_run.peak_rss_bytes)),
        fmt::format("{:.1f} MiB", mib(r.cand_run.peak_rss_bytes)));
    row(fmt::format("prompt ({} tokens)", a.prompt_tokens),
        fmt::format("{} tok/s", tps(a.prompt_tokens_per_second())),
        fmt::format("{} tok/s", tps(b.prompt_tokens_per_second())));
    row("generation", fmt::format("{} tok/s", tps(a.gen_tokens_per_second())),
        fmt::format("{} tok/s", tps(b.gen_tokens_per_second())));
  }
  row("PPL", pm({r.base.ppl, r.base.ppl_uncertainty}, 4), pm(f.ppl, 6));
  v.tables.push_back(models);

  Table acc{"Accuracy (as llama-perplexity --kl-divergence prints it)", {"figure", "value"}, {}};
  auto arow = [&](std::string label, std::string value) {
    acc.rows.push_back({std::move(label), std::move(value)});
  };
  arow("Mean PPL(Q)", pm(f.ppl, 6));
  arow("Mean PPL(base)", pm(f.ppl_base, 6));
  arow("Cor(ln(PPL(Q)), ln(PPL(base)))", fmt::format("{}%", fixed(100.0 * f.ln_ppl_correlation, 2)));
  arow("Mean ln(PPL(Q)/PPL(base))", pm(f.ln_ppl_ratio, 6));
  arow("Mean PPL(Q)/PPL(base)", pm(f.ppl_ratio, 6));
  arow("Mean PPL(Q)-PPL(base)", pm(f.ppl_diff, 6));
  arow("Mean KLD", pm(f.kld_mean, 6));
  arow("Maximum KLD", fixed(f.kld_max, 6));
  arow("99.9% KLD", fixed(f.kld_p99_9, 6));
  arow("99.0% KLD", fixed(f.kld_p99, 6));
  arow("95.0% KLD", fixed(f.kld_p95, 6));
  arow("Median KLD", fixed(f.kld_median, 6));
  arow("Minimum KLD", fixed(f.kld_min, 6));
  arow("RMS Δp", fmt::format("{} ± {} %", fixed(100.0 * f.p_diff_rms.value, 3),
                             fixed(100.0 * f.p_diff_rms.uncertainty, 3)));
  arow("Same top p", fmt::format("{} ± {} %", fixed(100.0 * f.same_top.value, 3),
                                 fixed(100.0 * f.same_top.uncertainty, 3)));
  v.tables.push_back(acc);

  Table ev{"Evaluation", {"", "value"}, {}};
  if (!r.reference_note.empty()) ev.rows.push_back({"reference", r.reference_note});
  ev.rows.push_back({"text", r.text_source});
  ev.rows.push_back({"text bytes / tokens", fmt::format("{} / {}", r.text_bytes, r.base.n_text_tokens)});
  ev.rows.push_back({"context, chunks", fmt::format("{} tokens, {} chunks ({} scored tokens)",
                                                    r.base.n_ctx, r.base.n_chunk, r.kld.count)});
  ev.rows.push_back({"computed by", fmt::format("llama.cpp {} (commit {}), {} thread(s)",
                                                llm::llama_cpp_version(), llm::llama_cpp_commit(),
                                                r.threads)});
  v.tables.push_back(ev);

  if (!r.tensors.tensors.empty()) {
    Table tt{"Per-tensor error", {"tensor", "type", "RMSE", "RMSE / RMS", "max |error|"}, {}};
    for (const auto& t : r.tensors.tensors)
      tt.rows.push_back({t.name, fmt::format("{} -> {}", t.ref_type, t.cand_type),
                         fmt::format("{:.3e}", t.rmse), fmt::format("{:.5f}", t.relative()),
                         fmt::format("{:.3e}", t.max_abs_err)});
    v.tables.push_back(tt);
  }

  if (r.ref_run.has_speed) v.plots.push_back(latency_plot(r));
  v.plots.push_back(size_plot(r));
  v.plots.push_back(tensor_error_plot(r));
  v.plots.push_back(kld_plot(r));
  return v;
}

std::string format_text(const GgufResult& r) {
  const auto& f = r.figures;
  std::string s;
  s += fmt::format("validate gguf: {} against {}\n", r.cand.path, r.ref.path);
  if (!r.reference_note.empty()) s += fmt::format("reference: {}\n", r.reference_note);
  s += fmt::format("text: {} ({} bytes, {} tokens); {} chunks of {} tokens, {} scored\n",
                   r.text_source, r.text_bytes, r.base.n_text_tokens, r.base.n_chunk,
                   r.base.n_ctx, r.kld.count);
  s += fmt::format("computed by llama.cpp {} (commit {}), {} thread(s)\n\n",
                   llm::llama_cpp_version(), llm::llama_cpp_commit(), r.threads);
  const size_t w = 22;
  auto line = [&](const std::string& label, const std::string& a, const std::string& b) {
    s += fmt::format("  {:<{}} {:<28} {}\n", label, w, a, b);
  };
  line("", "reference", "build");
  line("file", file_name(r.ref.path), file_name(r.cand.path));
  line("file type", r.ref.file_type, r.cand.file_type);
  line("size", fmt::format("{:.2f} MiB", mib(r.ref.file_size)),
       fmt::format("{:.2f} MiB", mib(r.cand.file_size)));
  line("bits per weight", fmt::format("{:.2f}", r.ref.bits_per_weight),
       fmt::format("{:.2f}", r.cand.bits_per_weight));
  if (r.ref_run.has_speed) {
    const auto& a = r.ref_run.speed;
    const auto& b = r.cand_run.speed;
    line("load", fmt::format("{:.1f} ms", a.load_ms), fmt::format("{:.1f} ms", b.load_ms));
    line("peak RSS", fmt::format("{:.1f} MiB", mib(r.ref_run.peak_rss_bytes)),
         fmt::format("{:.1f} MiB", mib(r.cand_run.peak_rss_bytes)));
    line(fmt::format("prompt ({} tokens)", a.prompt_tokens),
         fmt::format("{} tok/s", tps(a.prompt_tokens_per_second())),
         fmt::format("{} tok/s", tps(b.prompt_tokens_per_second())));
    line("generation", fmt::format("{} tok/s", tps(a.gen_tokens_per_second())),
         fmt::format("{} tok/s", tps(b.gen_tokens_per_second())));
  }
  line("PPL", pm({r.base.ppl, r.base.ppl_uncertainty}, 4), pm(f.ppl, 6));
  s += "\n";
  s += fmt::format("  Mean PPL(Q)/PPL(base) : {}\n", pm(f.ppl_ratio, 6));
  s += fmt::format("  Mean    KLD           : {}\n", pm(f.kld_mean, 6));
  s += fmt::format("  99.0%   KLD           : {}\n", fixed(f.kld_p99, 6));
  s += fmt::format("  Maximum KLD           : {}\n", fixed(f.kld_max, 6));
  s += fmt::format("  Same top p            : {} ± {} %\n", fixed(100.0 * f.same_top.value, 3),
                   fixed(100.0 * f.same_top.uncertainty, 3));
  if (!r.tensors.tensors.empty()) {
    const auto worst = std::max_element(
        r.tensors.tensors.begin(), r.tensors.tensors.end(),
        [](const TensorError& a, const TensorError& b) { return a.relative() < b.relative(); });
    s += fmt::format("  largest tensor error  : {} ({} -> {}), RMSE/RMS {:.5f}\n", worst->name,
                     worst->ref_type, worst->cand_type, worst->relative());
  }
  s += "\n";
  for (const auto& c : r.checks)
    s += fmt::format("[{}] {}\n", c.pass ? "PASS" : "FAIL", describe(c));
  return s;
}

}  // namespace medquant::validate
