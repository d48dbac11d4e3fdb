// Validation results and the reports made from them: report.json (the
// machine-readable record, schema in docs/report-schema.md), report.md and
// one self-contained report.html (inline CSS and SVG, no script, no network).
//
// A Report holds one Validation per build checked (a GGUF against its
// reference, an ONNX INT8 encoder against its FP32 export, ...). Every
// Validation carries the same generic parts, which the writers render
// without knowing the kind:
//   - checks: metric, value, comparison, limit, pass (the thresholds);
//   - tables: pre-formatted rows for the text formats (reference vs build);
//   - metrics: the kind's own figures (JSON, documented per kind);
//   - plots: data for one of four chart types (box, bars, histogram,
//     heatmap) under a fixed id. Each kind has a list of plot slots
//     (plot_slots()); a slot without data is shown as "not available" with
//     the reason, so `validate onnx` fills "cosine_histogram" and
//     "zero_shot_confusion" when it lands, and nothing else has to change.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace medquant::validate {

using Json = nlohmann::ordered_json;

inline constexpr int kReportSchemaVersion = 1;
inline constexpr std::string_view kReportSchemaName = "medquant.validation-report";

enum class Status { Pass, Fail, Skip };
std::string_view status_name(Status status);  // "PASS", "FAIL", "SKIP"

struct Check {
  std::string metric;  // stable id: "kld_mean", "top1_agreement", "ppl_ratio", ...
  std::string label;   // for people: "KLD mean"
  double value = 0;
  std::string op;      // "<=" or ">="
  double limit = 0;
  bool pass = false;
  std::string format = "{:.6f}";  // how value and limit are printed
};

// Evaluates value op limit (op "<=" or ">="; NaN never passes).
Check make_check(std::string metric, std::string label, double value, std::string op,
                 double limit, std::string format = "{:.6f}");
std::string describe(const Check& check);  // "kld_mean 0.000429 <= 0.100000"

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

// Chart data; see docs/report-schema.md for the layout of `data` per type.
struct Plot {
  std::string id;     // slot id
  std::string title;
  std::string type;   // "box", "bars", "histogram", "heatmap"
  Json data = nullptr;
  std::vector<std::string> notes = {};  // short lines shown under the chart
};

// Panels of a reference-vs-build pair, in the layouts of docs/report-schema.md:
// a "box" panel of two series and a "bars" panel of two items whose text is
// the value printed with `format` ("{:.2f}").
Json box_panel(const std::string& title, const std::string& unit,
               const std::vector<double>& reference, const std::vector<double>& build);
Json bars_panel(const std::string& title, const std::string& unit, double reference, double build,
                const std::string& format);

struct PlotSlot {
  std::string_view id;
  std::string_view title;
};
// The plots a kind of validation shows, in order: for "gguf" latency, size,
// tensor_error, kld_distribution; for "onnx" latency, size,
// cosine_histogram, zero_shot_confusion; for "mmproj" latency, size,
// cosine_histogram.
const std::vector<PlotSlot>& plot_slots(std::string_view kind);

struct Validation {
  std::string kind;     // "gguf", "onnx", "mmproj"
  std::string name;     // "MedGemma Q4_K_S"
  Status status = Status::Skip;
  std::string reason;   // why it was skipped or could not run; empty otherwise
  std::string summary;  // headline: "9.3 tok/s, KLD 0.012, PPL +1.2%"
  std::vector<Check> checks;
  std::vector<Table> tables;
  Json metrics = Json::object();
  std::vector<Plot> plots;

  // Failing checks' metric names, comma separated ("" if none).
  std::string failed_metrics() const;
};

struct Report {
  std::string title = "medquant validation report";
  std::string command;  // the command line that made it
  std::string created;  // UTC, ISO 8601
  std::vector<Validation> validations;

  // FAIL if any validation failed, PASS if at least one passed, else SKIP.
  Status overall() const;
  int count(Status status) const;
};

std::string utc_now_iso8601();

Json to_json(const Report& report);
std::string to_markdown(const Report& report);
std::string to_html(const Report& report);

// Writes <dir>/report.json, report.md and report.html (each atomically;
// the folder is created if missing).
void write_report(const Report& report, const std::string& dir);

}  // namespace medquant::validate
