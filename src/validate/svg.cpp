#include "validate/svg.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace medquant::validate {
namespace {

constexpr double kWidth = 720;
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                    "#edc948"};

const char* color(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

std::string num(double v) {
  if (!std::isfinite(v)) return "0";
  return fmt::format("{:.2f}", v);
}

// A compact label for a value: 3 significant digits, no exponent for
// ordinary magnitudes.
std::string short_value(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a < 1e5 && a >= 1 && v == std::floor(v)) return fmt::format("{:.0f}", v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.2e}", v);
  if (a >= 100) return fmt::format("{:.0f}", v);
  if (a >= 10) return fmt::format("{:.1f}", v);
  if (a >= 1) return fmt::format("{:.2f}", v);
  return fmt::format("{:.3g}", v);
}

// About n round tick values covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int n = 5) {
  std::vector<double> ticks;
  if (!(hi > lo)) {
    ticks.push_back(lo);
    return ticks;
  }
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

std::string svg_open(double height, std::string_view label) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" "
      "height=\"{}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n",
      num(kWidth), num(height), num(kWidth), num(height), escape_xml(label));
}

std::string message_svg(std::string_view message) {
  return svg_open(40, message) +
         fmt::format("<text x=\"10\" y=\"24\" fill=\"#a00\">{}</text>\n</svg>\n",
                     escape_xml(message));
}

std::vector<double> numbers(const Json& array) {
  std::vector<double> out;
  if (!array.is_array()) return out;
  for (const auto& v : array)
    if (v.is_number()) out.push_back(v.get<double>());
  return out;
}

double quantile_sorted(const std::vector<double>& s, double q) {
  if (s.empty()) return 0;
  const double p = q * static_cast<double>(s.size() - 1);
  const size_t i = static_cast<size_t>(p);
  const double f = p - static_cast<double>(i);
  return i + 1 < s.size() ? s[i] * (1 - f) + s[i + 1] * f : s[i];
}

// x axis ticks and grid lines for [lo, hi] mapped to [x0, x1], at y.
// Ticks of a log10 axis over [lo, hi] (both log10 values): 1, 2, 5 times
// powers of ten inside the range, or evenly spaced ones if too few fall in.
std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  for (int k = static_cast<int>(std::floor(lo)); k <= static_cast<int>(std::ceil(hi)); ++k)
    for (double m : {1.0, 2.0, 5.0}) {
      const double t = std::log10(m) + k;
      if (t >= lo - 1e-9 && t <= hi + 1e-9) ticks.push_back(t);
    }
  if (ticks.size() > 8) {  // wide ranges: powers of ten only
    std::vector<double> p;
    for (double t : ticks)
      if (std::fabs(t - std::round(t)) < 1e-9) p.push_back(t);
    ticks = p;
  }
  return ticks.size() >= 2 ? ticks : nice_ticks(lo, hi);
}

std::string x_axis(double lo, double hi, double x0, double x1, double y_top, double y,
                   std::string_view unit, bool log10_values = false) {
  std::string s;
  const auto ticks = log10_values ? log_ticks(lo, hi) : nice_ticks(lo, hi);
  for (double t : ticks) {
    const double x = x0 + (t - lo) / (hi - lo) * (x1 - x0);
    if (!(hi > lo) || x < x0 - 0.5 || x > x1 + 0.5) continue;
    s += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/>\n",
                     num(x), num(y_top), num(y));
    const std::string label = log10_values ? short_value(std::pow(10.0, t)) : short_value(t);
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#444\">{}</text>\n",
                     num(x), num(y + 14), escape_xml(label));
  }
  if (!unit.empty())
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#444\">{}</text>\n",
                     num(x1), num(y + 28), escape_xml(unit));
  return s;
}

Json field(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) ? j[key] : Json::array();
}

bool flag(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
}

std::string str(const Json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>()
                                                                 : std::string();
}

}  // namespace

std::string escape_xml(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string svg_box(const Json& data) {
  if (!data.is_object() || !data.contains("panels") || !data["panels"].is_array() || data["panels"].empty())
    return message_svg("no samples");
  const double left = 170, right = kWidth - 20, row_h = 34;
  double height = 10;
  for (const auto& p : data["panels"]) height += 24 + row_h * std::max<size_t>(1, field(p, "series").size()) + 34;
  std::string s = svg_open(height, "latency distributions");
  double y = 10;
  for (const auto& panel : data["panels"]) {
    const Json series = field(panel, "series");
    s += fmt::format("<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}</text>\n", num(y + 14),
                     escape_xml(str(panel, "title")));
    y += 24;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& se : series)
      for (double v : numbers(field(se, "values"))) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    if (!std::isfinite(lo)) {
      lo = 0;
      hi = 1;
    }
    lo = std::min(0.0, lo);
    hi = hi > lo ? hi * 1.05 : lo + 1;
    const double y_axis_top = y;
    auto xpos = [&](double v) { return left + (v - lo) / (hi - lo) * (right - left); };
    std::string marks;
    for (size_t i = 0; i < series.size(); ++i) {
      std::vector<double> v = numbers(field(series[i], "values"));
      const double cy = y + row_h / 2;
      marks += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n",
                           num(left - 8), num(cy + 4), escape_xml(str(series[i], "name")));
      if (v.empty()) {
        y += row_h;
        continue;
      }
      std::sort(v.begin(), v.end());
      const double q1 = quantile_sorted(v, 0.25), med = quantile_sorted(v, 0.5),
                   q3 = quantile_sorted(v, 0.75);
      const char* c = color(i);
      marks += fmt::format(
          "<g><title>{}: n={} min={} p25={} median={} p75={} max={}</title>\n"
          "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#666\"/>\n"
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"0.35\" "
          "stroke=\"{}\"/>\n"
          "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\" stroke-width=\"2\"/>\n</g>\n",
          escape_xml(str(series[i], "name")), v.size(), short_value(v.front()), short_value(q1),
          short_value(med), short_value(q3), short_value(v.back()), num(xpos(v.front())), num(cy),
          num(xpos(v.back())), num(cy), num(xpos(q1)), num(cy - 9),
          num(std::max(1.0, xpos(q3) - xpos(q1))), num(18), c, c, num(xpos(med)), num(cy - 11),
          num(xpos(med)), num(cy + 11));
      // The samples as dots (at most 400, spread vertically by a fixed pattern).
      const size_t step = std::max<size_t>(1, v.size() / 400);
      for (size_t k = 0; k < v.size(); k += step) {
        const double jitter = ((k * 7919) % 13) / 12.0 * 12.0 - 6.0;
        marks += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"1.6\" fill=\"{}\"/>\n",
                             num(xpos(v[k])), num(cy + jitter), c);
      }
      y += row_h;
    }
    if (series.empty()) y += row_h;
    s += x_axis(lo, hi, left, right, y_axis_top, y, str(panel, "unit"));
    s += marks;
    y += 34;
  }
  return s + "</svg>\n";
}

std::string svg_bars(const Json& data) {
  if (!data.is_object() || !data.contains("panels") || !data["panels"].is_array() || data["panels"].empty())
    return message_svg("no values");
  const double left = 170, right = kWidth - 90, row_h = 24;
  double height = 10;
  for (const auto& p : data["panels"])
    height += 24 + row_h * std::max<size_t>(1, field(p, "items").size()) + 10;
  std::string s = svg_open(height, "bars");
  double y = 10;
  for (const auto& panel : data["panels"]) {
    const Json items = field(panel, "items");
    const std::string unit = str(panel, "unit");
    s += fmt::format("<text x=\"10\" y=\"{}\" font-weight=\"bold\">{}{}</text>\n", num(y + 14),
                     escape_xml(str(panel, "title")),
                     unit.empty() ? "" : escape_xml(" (" + unit + ")"));
    y += 24;
    double hi = 0;
    for (const auto& it : items)
      if (it.contains("value") && it["value"].is_number()) hi = std::max(hi, it["value"].get<double>());
    if (hi <= 0) hi = 1;
    for (size_t i = 0; i < items.size(); ++i) {
      const auto& it = items[i];
      const bool has = it.contains("value") && it["value"].is_number();
      const double v = has ? it["value"].get<double>() : 0;
      const double w = std::max(0.0, v) / hi * (right - left);
      const std::string label = str(it, "label");
      const std::string text = has ? (it.contains("text") ? str(it, "text") : short_value(v)) : "n/a";
      s += fmt::format(
          "<g><title>{}: {}{}</title><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>"
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>"
          "<text x=\"{}\" y=\"{}\" fill=\"#222\">{}</text></g>\n",
          escape_xml(label), escape_xml(text), unit.empty() ? "" : " " + escape_xml(unit),
          num(left - 8), num(y + 15), escape_xml(label), num(left), num(y + 4), num(w), num(16),
          color(i), num(left + w + 6), num(y + 15), escape_xml(text));
      y += row_h;
    }
    if (items.empty()) y += row_h;
    y += 10;
  }
  return s + "</svg>\n";
}

std::string svg_histogram(const Json& data) {
  if (!data.is_object()) return message_svg("no values");
  const std::vector<double> edges = numbers(field(data, "edges"));
  const Json series = field(data, "series");
  if (edges.size() < 2 || !series.is_array() || series.empty()) return message_svg("no values");
  const bool log_x = flag(data, "log_x");
  auto tx = [&](double v) { return log_x ? std::log10(std::max(v, 1e-30)) : v; };
  const double x0 = 60, x1 = kWidth - 20, top = 30, bottom = 230;
  const double lo = tx(edges.front()), hi = tx(edges.back());
  if (!(hi > lo)) return message_svg("all values equal");
  auto xpos = [&](double v) { return x0 + (tx(v) - lo) / (hi - lo) * (x1 - x0); };
  double max_count = 0;
  for (const auto& se : series)
    for (double c : numbers(field(se, "counts"))) max_count = std::max(max_count, c);
  if (max_count <= 0) max_count = 1;
  std::string s = svg_open(bottom + 40, str(data, "x_label"));
  // y axis
  for (double t : nice_ticks(0, max_count, 4)) {
    const double y = bottom - t / max_count * (bottom - top);
    s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#eee\"/>"
                     "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#444\">{}</text>\n",
                     num(x0), num(y), num(x1), num(y), num(x0 - 6), num(y + 4), short_value(t));
  }
  s += x_axis(lo, hi, x0, x1, top, bottom, str(data, "x_label"), log_x);
  for (size_t si = 0; si < series.size(); ++si) {
    const std::vector<double> counts = numbers(field(series[si], "counts"));
    for (size_t b = 0; b + 1 < edges.size() && b < counts.size(); ++b) {
      if (counts[b] <= 0) continue;
      const double xa = xpos(edges[b]), xb = xpos(edges[b + 1]);
      const double h = counts[b] / max_count * (bottom - top);
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" fill-opacity=\"0.7\">"
          "<title>{}: {} in [{}, {})</title></rect>\n",
          num(xa + 0.5), num(bottom - h), num(std::max(0.5, xb - xa - 1)), num(h), color(si),
          escape_xml(str(series[si], "name")), short_value(counts[b]), short_value(edges[b]),
          short_value(edges[b + 1]));
    }
  }
  const Json markers = field(data, "markers");
  for (size_t m = 0; m < markers.size(); ++m) {
    if (!markers[m].contains("value") || !markers[m]["value"].is_number()) continue;
    const double v = markers[m]["value"].get<double>();
    const double x = std::clamp(xpos(v), x0, x1);
    s += fmt::format(
        "<g><title>{} = {}</title><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c00\" "
        "stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{}\" fill=\"#c00\" "
        "text-anchor=\"middle\">{}</text></g>\n",
        escape_xml(str(markers[m], "label")), short_value(v), num(x), num(top - 4), num(x),
        num(bottom), num(x), num(top - 8 - 12.0 * static_cast<double>(m % 2)),
        escape_xml(str(markers[m], "label")));
  }
  // legend
  double lx = x0;
  for (size_t si = 0; si < series.size() && series.size() > 1; ++si) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/>"
                     "<text x=\"{}\" y=\"{}\">{}</text>\n",
                     num(lx), num(bottom + 30), color(si), num(lx + 14), num(bottom + 39),
                     escape_xml(str(series[si], "name")));
    lx += 160;
  }
  return s + "</svg>\n";
}

std::string svg_heatmap(const Json& data) {
  if (!data.is_object()) return message_svg("no values");
  const Json rows = field(data, "rows");
  const Json cols = field(data, "cols");
  const Json values = field(data, "values");
  if (!rows.is_array() || !cols.is_array() || rows.empty() || cols.empty() ||
      !values.is_array() || values.size() != rows.size())
    return message_svg("no values");
  const bool log_color = flag(data, "log_color");
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& r : values)
    for (const auto& v : r.is_array() ? r : Json::array())
      if (v.is_number() && (!log_color || v.get<double>() > 0)) {
        lo = std::min(lo, v.get<double>());
        hi = std::max(hi, v.get<double>());
      }
  if (!std::isfinite(lo)) {
    lo = 0;
    hi = 1;
  }
  if (!log_color) lo = std::min(lo, 0.0);  // white means no error
  auto t = [&](double v) {
    if (log_color) {
      if (v <= 0) return 0.0;
      const double a = std::log10(lo), b = std::log10(hi);
      return b > a ? (std::log10(v) - a) / (b - a) : 0.5;
    }
    return hi > lo ? (v - lo) / (hi - lo) : 0.5;
  };
  const double left = 130, top = 20;
  const double cell_w = std::min(48.0, (kWidth - left - 20) / static_cast<double>(cols.size()));
  const double cell_h = 20;
  const double height = top + cell_h * static_cast<double>(rows.size()) + 70;
  std::string s = svg_open(height, str(data, "value_label"));
  for (size_t c = 0; c < cols.size(); ++c)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#444\">{}</text>\n",
                     num(left + (static_cast<double>(c) + 0.5) * cell_w), num(top - 6),
                     escape_xml(cols[c].is_string() ? cols[c].get<std::string>() : cols[c].dump()));
  for (size_t r = 0; r < rows.size(); ++r) {
    const double y = top + static_cast<double>(r) * cell_h;
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", num(left - 6),
                     num(y + 14),
                     escape_xml(rows[r].is_string() ? rows[r].get<std::string>() : rows[r].dump()));
    for (size_t c = 0; values[r].is_array() && c < cols.size() && c < values[r].size(); ++c) {
      const Json& v = values[r][c];
      const double x = left + static_cast<double>(c) * cell_w;
      if (!v.is_number()) {
        s += fmt::format(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#ccc\" "
            "stroke-dasharray=\"2 2\"><title>no value</title></rect>\n",
            num(x + 0.5), num(y + 0.5), num(cell_w - 2), num(cell_h - 2));
        continue;
      }
      const double k = std::clamp(t(v.get<double>()), 0.0, 1.0);
      // white -> dark blue
      const int red = static_cast<int>(std::lround(247 - k * (247 - 8)));
      const int green = static_cast<int>(std::lround(251 - k * (251 - 48)));
      const int blue = static_cast<int>(std::lround(255 - k * (255 - 107)));
      s += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#{:02x}{:02x}{:02x}\">"
          "<title>{} / {}: {}</title></rect>\n",
          num(x), num(y), num(cell_w - 1), num(cell_h - 1), red, green, blue,
          escape_xml(rows[r].is_string() ? rows[r].get<std::string>() : rows[r].dump()),
          escape_xml(cols[c].is_string() ? cols[c].get<std::string>() : cols[c].dump()),
          short_value(v.get<double>()));
    }
  }
  const double ly = top + cell_h * static_cast<double>(rows.size()) + 16;
  s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444\">{}</text>\n", num(left), num(ly + 10),
                   escape_xml(str(data, "x_label")));
  // legend: a gradient of 10 steps from lo to hi
  const double gx = left, gy = ly + 22;
  for (int i = 0; i < 10; ++i) {
    const double k = i / 9.0;
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"10\" fill=\"#{:02x}{:02x}{:02x}\"/>\n",
                     num(gx + i * 16), num(gy), static_cast<int>(std::lround(247 - k * 239)),
                     static_cast<int>(std::lround(251 - k * 203)),
                     static_cast<int>(std::lround(255 - k * 148)));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#444\">{} {} … {}{}</text>\n", num(gx + 168),
                   num(gy + 9), escape_xml(str(data, "value_label")), short_value(lo),
                   short_value(hi), log_color ? " (log scale)" : "");
  return s + "</svg>\n";
}

std::string svg_plot(const Plot& plot) {
  if (plot.type == "box") return svg_box(plot.data);
  if (plot.type == "bars") return svg_bars(plot.data);
  if (plot.type == "histogram") return svg_histogram(plot.data);
  if (plot.type == "heatmap") return svg_heatmap(plot.data);
  return message_svg("unknown plot type " + plot.type);
}

}  // namespace medquant::validate
