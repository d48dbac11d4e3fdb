#include "validate/report.h"

#include <fmt/format.h>

#include <cmath>
#include <ctime>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "llm/llm.h"
#include "validate/svg.h"

#ifndef MEDQUANT_VERSION
#define MEDQUANT_VERSION "0.0.0"
#endif

namespace medquant::validate {
namespace {

std::string fmt_runtime(const std::string& format, double v) {
  try {
    return fmt::format(fmt::runtime(format), v);
  } catch (const fmt::format_error&) {
    return fmt::format("{}", v);
  }
}

std::string md_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

const char* status_class(Status s) {
  switch (s) {
    case Status::Pass: return "pass";
    case Status::Fail: return "fail";
    case Status::Skip: return "skip";
  }
  return "skip";
}

Json check_json(const Check& c) {
  Json j;
  j["metric"] = c.metric;
  j["label"] = c.label;
  j["value"] = std::isfinite(c.value) ? Json(c.value) : Json(nullptr);
  j["op"] = c.op;
  j["limit"] = c.limit;
  j["pass"] = c.pass;
  return j;
}

constexpr const char* kCss = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}
.meta{color:#666;font-size:13px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:3px;font-weight:bold;font-size:12px;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.skip{background:#757575}
.overall{font-size:16px;padding:4px 12px}
.slot{border:1px dashed #bbb;color:#777;padding:14px;margin:6px 0 14px;font-size:13px}
.plot{margin:6px 0 16px}.notes{font-size:12px;color:#555;margin:2px 0 0 4px}
details{margin:8px 0}summary{cursor:pointer;color:#335}
code{background:#f3f3f3;padding:0 3px}
)css";

}  // namespace

std::string_view status_name(Status status) {
  switch (status) {
    case Status::Pass: return "PASS";
    case Status::Fail: return "FAIL";
    case Status::Skip: return "SKIP";
  }
  return "SKIP";
}

Check make_check(std::string metric, std::string label, double value, std::string op,
                 double limit, std::string format) {
  Check c;
  c.metric = std::move(metric);
  c.label = std::move(label);
  c.value = value;
  c.op = std::move(op);
  c.limit = limit;
  c.format = std::move(format);
  if (c.op == "<=") c.pass = value <= limit;
  else if (c.op == ">=") c.pass = value >= limit;
  else fail("make_check: unknown comparison '{}'", c.op);
  return c;  // NaN compares false: never passes
}

std::string describe(const Check& c) {
  const std::string op = c.pass ? c.op : (c.op == "<=" ? ">" : "<");
  return fmt::format("{} {} {} {}", c.metric, fmt_runtime(c.format, c.value), op,
                     fmt_runtime(c.format, c.limit));
}

Json box_panel(const std::string& title, const std::string& unit,
               const std::vector<double>& reference, const std::vector<double>& build) {
  return {{"title", title},
          {"unit", unit},
          {"series", Json::array({{{"name", "reference"}, {"values", reference}},
                                  {{"name", "build"}, {"values", build}}})}};
}

Json bars_panel(const std::string& title, const std::string& unit, double reference, double build,
                const std::string& format) {
  auto item = [&](const char* label, double v) {
    return Json{{"label", label}, {"value", v}, {"text", fmt_runtime(format, v)}};
  };
  return {{"title", title},
          {"unit", unit},
          {"items", Json::array({item("reference", reference), item("build", build)})}};
}

const std::vector<PlotSlot>& plot_slots(std::string_view kind) {
  static const std::vector<PlotSlot> gguf = {
      {"latency", "Latency distributions (prompt and per generated token)"},
      {"size", "Size, bits per weight and peak memory"},
      {"tensor_error", "Per-tensor quantization error (RMSE relative to the reference's RMS)"},
      {"kld_distribution", "Distribution of the per-token KL divergence"},
  };
  static const std::vector<PlotSlot> onnx = {
      {"latency", "Latency distributions"},
      {"size", "Size"},
      {"cosine_histogram", "Cosine similarity of INT8 vs FP32 embeddings"},
      {"zero_shot_confusion", "Zero-shot classification: confusion matrix"},
  };
  static const std::vector<PlotSlot> mmproj = {
      {"latency", "Image encode latency"},
      {"size", "Size, bits per weight and peak memory"},
      {"cosine_histogram", "Cosine similarity of the build's image embeddings to the reference's"},
  };
  static const std::vector<PlotSlot> none;
  if (kind == "gguf") return gguf;
  if (kind == "onnx") return onnx;
  if (kind == "mmproj") return mmproj;
  return none;
}

std::string Validation::failed_metrics() const {
  std::string out;
  for (const auto& c : checks)
    if (!c.pass) out += (out.empty() ? "" : ", ") + c.metric;
  return out;
}

Status Report::overall() const {
  if (count(Status::Fail) > 0) return Status::Fail;
  if (count(Status::Pass) > 0) return Status::Pass;
  return Status::Skip;
}

int Report::count(Status status) const {
  int n = 0;
  for (const auto& v : validations) n += v.status == status;
  return n;
}

std::string utc_now_iso8601() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Json to_json(const Report& r) {
  Json j;
  j["schema"] = std::string(kReportSchemaName);
  j["schema_version"] = kReportSchemaVersion;
  j["generator"] = {{"tool", "medquant"},
                    {"version", MEDQUANT_VERSION},
                    {"llama_cpp", std::string(llm::llama_cpp_version())},
                    {"llama_cpp_commit", std::string(llm::llama_cpp_commit())}};
  j["created"] = r.created;
  j["command"] = r.command;
  j["title"] = r.title;
  j["status"] = std::string(status_name(r.overall()));
  j["summary"] = {{"passed", r.count(Status::Pass)},
                  {"failed", r.count(Status::Fail)},
                  {"skipped", r.count(Status::Skip)}};
  j["validations"] = Json::array();
  for (const auto& v : r.validations) {
    Json x;
    x["kind"] = v.kind;
    x["name"] = v.name;
    x["status"] = std::string(status_name(v.status));
    x["reason"] = v.reason.empty() ? Json(nullptr) : Json(v.reason);
    x["summary"] = v.summary;
    x["checks"] = Json::array();
    for (const auto& c : v.checks) x["checks"].push_back(check_json(c));
    x["metrics"] = v.metrics;
    x["plots"] = Json::array();
    for (const auto& p : v.plots)
      x["plots"].push_back(
          {{"id", p.id}, {"title", p.title}, {"type", p.type}, {"data", p.data}, {"notes", p.notes}});
    j["validations"].push_back(std::move(x));
  }
  return j;
}

std::string to_markdown(const Report& r) {
  std::string s = fmt::format("# {}\n\n", r.title);
  s += fmt::format("**{}** - {} passed, {} failed, {} skipped\n\n", status_name(r.overall()),
                   r.count(Status::Pass), r.count(Status::Fail), r.count(Status::Skip));
  s += fmt::format("- created: {}\n- medquant {}, figures computed by llama.cpp {} (commit {})\n",
                   r.created, MEDQUANT_VERSION, llm::llama_cpp_version(), llm::llama_cpp_commit());
  if (!r.command.empty()) s += fmt::format("- command: `{}`\n", r.command);
  s += "\n| status | build | kind | summary |\n| --- | --- | --- | --- |\n";
  for (const auto& v : r.validations)
    s += fmt::format("| {} | {} | {} | {} |\n", status_name(v.status), md_escape(v.name), v.kind,
                     md_escape(v.reason.empty() ? v.summary : v.reason));
  for (const auto& v : r.validations) {
    s += fmt::format("\n## {} {}\n\n", status_name(v.status), v.name);
    if (!v.reason.empty()) s += fmt::format("{}\n\n", v.reason);
    if (!v.checks.empty()) {
      s += "| check | value | limit | result |\n| --- | ---: | ---: | --- |\n";
      for (const auto& c : v.checks)
        s += fmt::format("| {} (`{}`) | {} | {} {} | {} |\n", c.label, c.metric,
                         fmt_runtime(c.format, c.value), c.op, fmt_runtime(c.format, c.limit),
                         c.pass ? "PASS" : "FAIL");
      s += "\n";
    }
    for (const auto& t : v.tables) {
      if (!t.title.empty()) s += fmt::format("### {}\n\n", t.title);
      s += "|";
      for (const auto& c : t.columns) s += fmt::format(" {} |", md_escape(c));
      s += "\n|";
      for (size_t i = 0; i < t.columns.size(); ++i) s += i == 0 ? " --- |" : " ---: |";
      s += "\n";
      for (const auto& row : t.rows) {
        s += "|";
        for (const auto& cell : row) s += fmt::format(" {} |", md_escape(cell));
        s += "\n";
      }
      s += "\n";
    }
    if (!plot_slots(v.kind).empty()) s += "Plots: see report.html.\n";
  }
  return s;
}

std::string to_html(const Report& r) {
  auto e = [](std::string_view x) { return escape_xml(x); };
  std::string s;
  s += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'; img-src data:\">\n";
  s += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  s += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n", e(r.title), kCss);
  const Status overall = r.overall();
  s += fmt::format("<h1>{}</h1>\n", e(r.title));
  s += fmt::format(
      "<p><span id=\"overall\" class=\"badge overall {}\">{}</span> {} passed, {} failed, {} "
      "skipped</p>\n",
      status_class(overall), status_name(overall), r.count(Status::Pass), r.count(Status::Fail),
      r.count(Status::Skip));
  s += fmt::format(
      "<p class=\"meta\">created {} &middot; medquant {} &middot; figures computed by llama.cpp "
      "<span id=\"llama-build\">{}</span> (commit {})</p>\n",
      e(r.created), MEDQUANT_VERSION, e(llm::llama_cpp_version()), e(llm::llama_cpp_commit()));
  if (!r.command.empty()) s += fmt::format("<p class=\"meta\">command: <code>{}</code></p>\n", e(r.command));
  s += "<table id=\"summary\"><tr><th>status</th><th>build</th><th>kind</th><th>summary</th></tr>\n";
  for (size_t i = 0; i < r.validations.size(); ++i) {
    const auto& v = r.validations[i];
    s += fmt::format(
        "<tr><td><span class=\"badge {}\">{}</span></td><td><a href=\"#v{}\">{}</a></td><td>{}</td>"
        "<td>{}</td></tr>\n",
        status_class(v.status), status_name(v.status), i, e(v.name), e(v.kind),
        e(v.reason.empty() ? v.summary : v.reason));
  }
  s += "</table>\n";

  for (size_t i = 0; i < r.validations.size(); ++i) {
    const auto& v = r.validations[i];
    s += fmt::format("<section id=\"v{}\" data-kind=\"{}\">\n<h2><span class=\"badge {}\">{}</span> {}</h2>\n",
                     i, e(v.kind), status_class(v.status), status_name(v.status), e(v.name));
    if (!v.reason.empty()) s += fmt::format("<p>{}</p>\n", e(v.reason));
    if (!v.summary.empty()) s += fmt::format("<p class=\"meta\">{}</p>\n", e(v.summary));
    if (!v.checks.empty()) {
      s += "<h3>Checks</h3>\n<table class=\"checks\"><tr><th>check</th><th>metric</th><th>value</th>"
           "<th>limit</th><th>result</th></tr>\n";
      for (const auto& c : v.checks)
        s += fmt::format(
            "<tr data-metric=\"{}\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>"
            "<td class=\"num\">{} {}</td><td><span class=\"badge {}\">{}</span></td></tr>\n",
            e(c.metric), e(c.label), e(c.metric), e(fmt_runtime(c.format, c.value)), e(c.op),
            e(fmt_runtime(c.format, c.limit)), c.pass ? "pass" : "fail", c.pass ? "PASS" : "FAIL");
      s += "</table>\n";
    }
    for (const auto& t : v.tables) {
      const bool collapsed = t.rows.size() > 20;
      if (collapsed)
        s += fmt::format("<details><summary>{} ({} rows)</summary>\n", e(t.title), t.rows.size());
      else if (!t.title.empty())
        s += fmt::format("<h3>{}</h3>\n", e(t.title));
      s += "<table><tr>";
      for (const auto& c : t.columns) s += fmt::format("<th>{}</th>", e(c));
      s += "</tr>\n";
      for (const auto& row : t.rows) {
        s += "<tr>";
        for (size_t k = 0; k < row.size(); ++k)
          s += (k == 0 ? "<td>" : "<td class=\"num\">") + e(row[k]) + "</td>";
        s += "</tr>\n";
      }
      s += "</table>\n";
      if (collapsed) s += "</details>\n";
    }
    // Plot slots of the kind first, in order, then any other plots.
    std::vector<bool> used(v.plots.size(), false);
    auto render = [&](const Plot& p) {
      s += fmt::format("<h3>{}</h3>\n<div class=\"plot\" id=\"v{}-{}\">\n{}", e(p.title), i,
                       e(p.id), svg_plot(p));
      for (const auto& n : p.notes) s += fmt::format("<div class=\"notes\">{}</div>\n", e(n));
      s += "</div>\n";
    };
    for (const auto& slot : plot_slots(v.kind)) {
      bool found = false;
      for (size_t k = 0; k < v.plots.size(); ++k)
        if (!used[k] && v.plots[k].id == slot.id) {
          used[k] = found = true;
          render(v.plots[k]);
          break;
        }
      if (!found)
        s += fmt::format(
            "<h3>{}</h3>\n<div class=\"slot\" id=\"v{}-{}\">not available{}</div>\n", e(slot.title),
            i, e(slot.id),
            v.status == Status::Skip && !v.reason.empty() ? ": " + e(v.reason) : std::string());
    }
    for (size_t k = 0; k < v.plots.size(); ++k)
      if (!used[k]) render(v.plots[k]);
    s += "</section>\n";
  }
  s += "</body>\n</html>\n";
  return s;
}

void write_report(const Report& r, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("{}: cannot create the report folder: {}", dir, ec.message());
  const std::filesystem::path d(dir);
  core::write_file_atomic((d / "report.json").string(), to_json(r).dump(2) + "\n");
  core::write_file_atomic((d / "report.md").string(), to_markdown(r));
  core::write_file_atomic((d / "report.html").string(), to_html(r));
}

}  // namespace medquant::validate
