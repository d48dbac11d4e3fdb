// validate/ and llm/ pieces that need no model: checks, report writers,
// charts, the isolation of llama.cpp work in a child process, the tool's
// percentile and text rules. The figures themselves are held against
// llama-perplexity in tests/peer/test_validate_gguf.py.
#include <gtest/gtest.h>

#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "llm/isolate.h"
#include "llm/perplexity.h"
#include "validate/report.h"
#include "validate/sample_text.h"
#include "validate/svg.h"

namespace mv = medquant::validate;
namespace ml = medquant::llm;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

mv::Report sample_report() {
  mv::Report r;
  r.created = "2025-01-01T00:00:00Z";
  r.command = "medquant test-all edge/";
  mv::Validation g;
  g.kind = "gguf";
  g.name = "MedGemma <Q4_K_S> & co";
  g.status = mv::Status::Pass;
  g.summary = "9.3 tok/s, KLD 0.012, PPL +1.2%";
  g.checks.push_back(mv::make_check("kld_mean", "KLD mean", 0.012, "<=", 0.1));
  mv::Plot box{"latency", "Latency", "box", {}, {"note"}};
  box.data["panels"] = mv::Json::array(
      {{{"title", "prompt"}, {"unit", "ms"},
        {"series", mv::Json::array({{{"name", "reference"}, {"values", {1.0, 2.0, 3.0}}}})}}});
  g.plots.push_back(box);
  mv::Plot hist{"kld_distribution", "KLD", "histogram", {}, {}};
  hist.data = {{"log_x", true}, {"edges", {1e-4, 1e-3, 1e-2}}, {"series", mv::Json::array({{{"name", "b"}, {"counts", {3, 1}}}})}};
  g.plots.push_back(hist);
  r.validations.push_back(g);
  mv::Validation o;
  o.kind = "onnx";
  o.name = "BiomedCLIP INT8";
  o.status = mv::Status::Skip;
  o.reason = "validate onnx not available yet";
  r.validations.push_back(o);
  return r;
}

}  // namespace

TEST(Check, ComparesAndNeverPassesNaN) {
  EXPECT_TRUE(mv::make_check("m", "l", 0.1, "<=", 0.1).pass);
  EXPECT_FALSE(mv::make_check("m", "l", 0.2, "<=", 0.1).pass);
  EXPECT_TRUE(mv::make_check("m", "l", 0.9, ">=", 0.85).pass);
  EXPECT_FALSE(mv::make_check("m", "l", NAN, "<=", 0.1).pass);
  EXPECT_FALSE(mv::make_check("m", "l", NAN, ">=", 0.1).pass);
  EXPECT_THROW(mv::make_check("m", "l", 1, "<", 2), medquant::Error);
  EXPECT_EQ(mv::describe(mv::make_check("kld_mean", "l", 0.5, "<=", 0.1)),
            "kld_mean 0.500000 > 0.100000");
}

TEST(Report, OverallStatus) {
  mv::Report r = sample_report();
  EXPECT_EQ(r.overall(), mv::Status::Pass);  // a skip is not a failure, nor a pass
  EXPECT_EQ(r.count(mv::Status::Skip), 1);
  r.validations[0].status = mv::Status::Fail;
  EXPECT_EQ(r.overall(), mv::Status::Fail);
  r.validations.erase(r.validations.begin());
  EXPECT_EQ(r.overall(), mv::Status::Skip);
}

TEST(Report, JsonHasTheSchemaAndEveryValidation) {
  const auto j = mv::to_json(sample_report());
  EXPECT_EQ(j["schema"], "medquant.validation-report");
  EXPECT_EQ(j["schema_version"], mv::kReportSchemaVersion);
  EXPECT_EQ(j["summary"]["passed"], 1);
  EXPECT_EQ(j["summary"]["skipped"], 1);
  EXPECT_EQ(j["validations"][1]["status"], "SKIP");
  EXPECT_EQ(j["validations"][1]["reason"], "validate onnx not available yet");
  EXPECT_EQ(j["validations"][0]["checks"][0]["metric"], "kld_mean");
  EXPECT_TRUE(j["generator"]["llama_cpp"].get<std::string>().find("-b") != std::string::npos);
}

TEST(Report, HtmlIsSelfContainedAndFillsEverySlot) {
  const std::string html = mv::to_html(sample_report());
  EXPECT_EQ(count(html, "<script"), 0u);
  EXPECT_NE(html.find("Content-Security-Policy"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<svg"), 2u);  // the two plots given
  // Names are escaped.
  EXPECT_NE(html.find("MedGemma &lt;Q4_K_S&gt; &amp; co"), std::string::npos);
  EXPECT_EQ(html.find("<Q4_K_S>"), std::string::npos);
  // Empty slots: the gguf ones without data and the onnx ones of `validate onnx`.
  EXPECT_NE(html.find("id=\"v0-size\""), std::string::npos);
  EXPECT_NE(html.find("id=\"v1-cosine_histogram\""), std::string::npos);
  EXPECT_NE(html.find("id=\"v1-zero_shot_confusion\""), std::string::npos);
  EXPECT_NE(html.find("not available: validate onnx not available yet"), std::string::npos);
}

TEST(Report, WritesThreeFiles) {
  const auto dir = std::filesystem::path(MEDQUANT_BINARY_DIR) / "test_validate_report";
  std::filesystem::remove_all(dir);
  mv::write_report(sample_report(), (dir / "sub").string());
  for (const char* f : {"report.json", "report.md", "report.html"})
    EXPECT_TRUE(std::filesystem::exists(dir / "sub" / f)) << f;
  std::ifstream md(dir / "sub" / "report.md");
  std::stringstream ss;
  ss << md.rdbuf();
  EXPECT_NE(ss.str().find("| SKIP | BiomedCLIP INT8 | onnx | validate onnx not available yet |"),
            std::string::npos);
}

TEST(Svg, ChartsOfEveryTypeAndBadData) {
  mv::Json heat = {{"rows", {"attn_q", "ffn_up"}},
                   {"cols", {"0", "1"}},
                   {"values", {{0.01, nullptr}, {0.02, 0.03}}},
                   {"value_label", "rmse"}};
  const std::string h = mv::svg_heatmap(heat);
  EXPECT_EQ(count(h, "<svg"), 1u);
  EXPECT_NE(h.find("attn_q / 0: 0.01"), std::string::npos);
  mv::Json bars = {{"panels", mv::Json::array({{{"title", "size"}, {"unit", "MiB"},
                                                {"items", mv::Json::array({{{"label", "ref"}, {"value", 2.5}}})}}})}};
  EXPECT_NE(mv::svg_bars(bars).find("ref: 2.50 MiB"), std::string::npos);
  // Malformed data gives a message, not an exception.
  EXPECT_NE(mv::svg_histogram(mv::Json::object()).find("no values"), std::string::npos);
  EXPECT_NE(mv::svg_heatmap(mv::Json::array()).find("no values"), std::string::npos);
  EXPECT_EQ(mv::escape_xml("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

TEST(Llm, PercentileInterpolatesLinearly) {
  const std::vector<float> v{0, 1, 2, 3, 4};
  EXPECT_FLOAT_EQ(ml::percentile(v, 0.5f), 2.0f);
  EXPECT_FLOAT_EQ(ml::percentile(v, 0.0f), 0.0f);
  EXPECT_FLOAT_EQ(ml::percentile(v, 1.0f), 4.0f);
  EXPECT_NEAR(ml::percentile(v, 0.99f), 3.96f, 1e-6);
}

TEST(Llm, EvalTextDropsOneTrailingNewline) {
  EXPECT_EQ(ml::eval_text("a\n\n"), "a\n");
  EXPECT_EQ(ml::eval_text("a"), "a");
  EXPECT_EQ(ml::eval_text(""), "");
}

TEST(Llm, FewValuesHaveNoUncertainty) {
  // llama-perplexity gives an uncertainty only for more than 10 values.
  ml::KldResult r;
  r.count = 5;
  r.sum_kld = 0.5;
  r.sum_kld2 = 0.1;
  r.n_same_top = 4;
  r.kld_values = {0.1f, 0.1f, 0.1f, 0.1f, 0.1f};
  r.p_diff_values = {0, 0, 0, 0, 0};
  const auto f = ml::kld_figures(r);
  EXPECT_DOUBLE_EQ(f.kld_mean.value, 0.1);
  EXPECT_EQ(f.kld_mean.uncertainty, 0.0);
  EXPECT_DOUBLE_EQ(f.same_top.value, 0.8);
}

TEST(Isolate, ReturnsTheChildsAnswerAndItsErrors) {
  const auto r = ml::run_isolated("ok", [] { return std::string("hello\0world", 11); });
  EXPECT_EQ(r.output, std::string("hello\0world", 11));
  EXPECT_GT(r.peak_rss_bytes, 0u);
  try {
    ml::run_isolated("err", []() -> std::string { medquant::fail("model.gguf: bad tensor"); });
    FAIL() << "no error";
  } catch (const medquant::Error& e) {
    EXPECT_STREQ(e.what(), "model.gguf: bad tensor");
  }
  try {
    ml::run_isolated("model.gguf", []() -> std::string {
      std::signal(SIGABRT, SIG_DFL);
      std::abort();
    });
    FAIL() << "no error";
  } catch (const medquant::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.gguf: llama.cpp stopped the worker process (signal 6"),
              std::string::npos)
        << e.what();
  }
}

TEST(SampleText, IsTheDataFile) {
  const auto path = std::filesystem::path(MEDQUANT_FIXTURES).parent_path().parent_path() / "data" /
                    "medical_sample.txt";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(mv::builtin_text(), ss.str());
  EXPECT_GT(mv::builtin_text().size(), 8000u);
}
