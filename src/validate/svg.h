// Inline SVG charts for the HTML report: plain markup, no script; every mark
// has a <title> so a browser shows its exact value on hover. Input is a
// Plot's `data` (layouts in docs/report-schema.md); malformed data gives a
// short SVG saying so rather than an exception.
#pragma once

#include <string>
#include <string_view>

#include "validate/report.h"

namespace medquant::validate {

std::string escape_xml(std::string_view text);

std::string svg_box(const Json& data);        // box plots with the samples as dots
std::string svg_bars(const Json& data);       // horizontal bars, one panel per quantity
std::string svg_histogram(const Json& data);  // counts per bin, optional log10 x axis
std::string svg_heatmap(const Json& data);    // rows x columns of values

// The chart for a plot by its type.
std::string svg_plot(const Plot& plot);

}  // namespace medquant::validate
