#include "zeroshot/labels.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <unordered_map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "text/unicode.h"
#include "zeroshot/default_lists.h"

namespace medquant::zeroshot {
namespace {

using Json = nlohmann::json;

std::string json_string(std::string_view s) { return Json(std::string(s)).dump(); }

// The shortest decimal that reads back as the same float32.
std::string float_text(float v) { return fmt::format("{}", v); }

const Json& require(const Json& obj, const char* key, Json::value_t type, const std::string& where,
                    const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) fail("{}: missing key '{}{}'", where, path, key);
  const bool ok = type == Json::value_t::number_float ? it->is_number()
                  : type == Json::value_t::number_integer
                      ? (it->is_number_integer() || it->is_number_unsigned())
                      : it->type() == type;
  if (!ok) {
    const char* want = type == Json::value_t::string           ? "a string"
                       : type == Json::value_t::number_float   ? "a number"
                       : type == Json::value_t::number_integer ? "an integer"
                       : type == Json::value_t::array          ? "an array"
                       : type == Json::value_t::object         ? "an object"
                                                               : "another type";
    fail("{}: '{}{}' must be {}, not {}", where, path, key, want, it->type_name());
  }
  return *it;
}

// nlohmann's parse errors quote the bytes last read, which may not be text.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) out += c;
    else out += fmt::format("\\x{:02x}", u);
  }
  return out;
}

bool is_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

// ---- labels.json -----------------------------------------------------------------

std::string labels_to_json(const LabelSet& s) {
  if (s.dim <= 0) fail("labels: dim {} is not positive", s.dim);
  std::string out;
  out += "{\n";
  out += fmt::format("  \"schema\": {},\n", json_string(kLabelsSchema));
  out += fmt::format("  \"schema_version\": {},\n", kLabelsSchemaVersion);
  out += fmt::format("  \"model_name\": {},\n", json_string(s.model_name));
  out += fmt::format("  \"text_model\": {{\"file\": {}, \"sha256\": {}, \"source_sha256\": {}}},\n",
                     json_string(s.text_model_file), json_string(s.text_model_sha256), json_string(s.source_sha256));
  out += fmt::format("  \"dim\": {},\n", s.dim);
  out += fmt::format("  \"logit_scale\": {},\n", s.logit_scale);
  out += fmt::format("  \"logit_scale_exp\": {},\n", s.logit_scale_exp);
  out += "  \"templates\": [";
  for (size_t i = 0; i < s.templates.size(); ++i) out += (i ? ", " : "") + json_string(s.templates[i]);
  out += "],\n  \"labels\": [\n";
  for (size_t i = 0; i < s.labels.size(); ++i) {
    const Label& l = s.labels[i];
    if (static_cast<int64_t>(l.embedding.size()) != s.dim)
      fail("labels: '{}' has {} values, dim is {}", l.name, l.embedding.size(), s.dim);
    out += fmt::format("    {{\"name\": {}, \"embedding\": [", json_string(l.name));
    for (size_t j = 0; j < l.embedding.size(); ++j) {
      if (!std::isfinite(l.embedding[j])) fail("labels: '{}' value {} is not finite", l.name, j);
      if (j) out += ", ";
      out += float_text(l.embedding[j]);
    }
    out += i + 1 < s.labels.size() ? "]},\n" : "]}\n";
  }
  out += "  ]\n}\n";
  return out;
}

LabelSet parse_labels_json(std::string_view text, const std::string& where) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    fail("{}: not valid JSON ({})", where, printable(e.what()));
  }
  if (!j.is_object()) fail("{}: not a labels file (the top level is {}, not an object)", where, j.type_name());
  const std::string schema = require(j, "schema", Json::value_t::string, where, "").get<std::string>();
  if (schema != kLabelsSchema)
    fail("{}: schema '{}' is not '{}' (not a medquant labels file)", where, schema, kLabelsSchema);
  const Json& version = require(j, "schema_version", Json::value_t::number_integer, where, "");
  if (version.get<int64_t>() != kLabelsSchemaVersion)
    fail("{}: schema_version {} is not supported (this medquant reads version {}){}", where,
         version.dump(), kLabelsSchemaVersion,
         version.get<int64_t>() > kLabelsSchemaVersion ? "; it was written by a newer medquant" : "");

  LabelSet s;
  s.model_name = require(j, "model_name", Json::value_t::string, where, "").get<std::string>();
  const Json& tm = require(j, "text_model", Json::value_t::object, where, "");
  s.text_model_file = require(tm, "file", Json::value_t::string, where, "text_model.").get<std::string>();
  s.text_model_sha256 = require(tm, "sha256", Json::value_t::string, where, "text_model.").get<std::string>();
  s.source_sha256 = require(tm, "source_sha256", Json::value_t::string, where, "text_model.").get<std::string>();
  if (!is_hex64(s.text_model_sha256))
    fail("{}: text_model.sha256 '{}' is not 64 lower-case hex digits", where, s.text_model_sha256);
  if (!s.source_sha256.empty() && !is_hex64(s.source_sha256))
    fail("{}: text_model.source_sha256 '{}' is not 64 lower-case hex digits", where, s.source_sha256);

  const Json& dim = require(j, "dim", Json::value_t::number_integer, where, "");
  if (dim.get<int64_t>() <= 0 || dim.get<int64_t>() > (int64_t{1} << 24))
    fail("{}: dim {} is out of range", where, dim.dump());
  s.dim = dim.get<int64_t>();

  s.logit_scale = require(j, "logit_scale", Json::value_t::number_float, where, "").get<double>();
  s.logit_scale_exp = require(j, "logit_scale_exp", Json::value_t::number_float, where, "").get<double>();
  if (!std::isfinite(s.logit_scale_exp) || s.logit_scale_exp <= 0)
    fail("{}: logit_scale_exp {} must be a positive number", where, s.logit_scale_exp);
  if (std::abs(std::exp(s.logit_scale) - s.logit_scale_exp) > 1e-5 * s.logit_scale_exp)
    fail("{}: logit_scale_exp {} is not exp(logit_scale) = exp({}) = {} (logit_scale is the log, "
         "logit_scale_exp the multiplier)",
         where, s.logit_scale_exp, s.logit_scale, std::exp(s.logit_scale));

  const Json& templates = require(j, "templates", Json::value_t::array, where, "");
  for (size_t i = 0; i < templates.size(); ++i) {
    if (!templates[i].is_string()) fail("{}: templates[{}] is not a string", where, i);
    s.templates.push_back(templates[i].get<std::string>());
  }

  const Json& labels = require(j, "labels", Json::value_t::array, where, "");
  if (labels.empty()) fail("{}: 'labels' is empty", where);
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < labels.size(); ++i) {
    const Json& l = labels[i];
    const std::string path = fmt::format("labels[{}].", i);
    if (!l.is_object()) fail("{}: labels[{}] is not an object", where, i);
    Label label;
    label.name = require(l, "name", Json::value_t::string, where, path).get<std::string>();
    if (label.name.empty()) fail("{}: labels[{}].name is empty", where, i);
    if (auto [it, fresh] = seen.emplace(label.name, i); !fresh)
      fail("{}: label '{}' appears twice (labels[{}] and labels[{}])", where, label.name, it->second, i);
    const Json& e = require(l, "embedding", Json::value_t::array, where, path);
    if (static_cast<int64_t>(e.size()) != s.dim)
      fail("{}: label '{}' has {} embedding values, but dim is {}", where, label.name, e.size(), s.dim);
    label.embedding.reserve(e.size());
    double norm2 = 0;
    for (size_t k = 0; k < e.size(); ++k) {
      if (!e[k].is_number()) fail("{}: label '{}' embedding[{}] is not a number", where, label.name, k);
      const float v = static_cast<float>(e[k].get<double>());
      if (!std::isfinite(v)) fail("{}: label '{}' embedding[{}] is not finite", where, label.name, k);
      norm2 += static_cast<double>(v) * v;
      label.embedding.push_back(v);
    }
    if (!(norm2 > 0)) fail("{}: label '{}' has an all-zero embedding", where, label.name);
    s.labels.push_back(std::move(label));
  }
  return s;
}

LabelSet read_labels_json(const std::string& path) {
  return parse_labels_json(core::read_text_file(path), path);
}

void write_labels_json(const std::string& path, const LabelSet& set) {
  core::write_file_atomic(path, labels_to_json(set));
}

// ---- label and template lists ------------------------------------------------------

std::vector<std::string> parse_list(std::string_view text, const std::string& where) {
  std::vector<std::string> out;
  std::unordered_map<std::string, size_t> seen;
  size_t line_no = 0;
  size_t pos = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // UTF-8 byte order mark
  while (pos < text.size()) {
    size_t end = text.find_first_of("\r\n", pos);
    size_t next = end;
    if (end == std::string_view::npos) {
      end = next = text.size();
    } else {
      next = end + 1;
      if (text[end] == '\r' && next < text.size() && text[next] == '\n') ++next;
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = next;
    ++line_no;
    text::utf8_decode(line, fmt::format("{}: line {}", where, line_no));  // throws on bad UTF-8
    const size_t first = line.find_first_not_of(" \t\f\v");
    if (first == std::string_view::npos) continue;
    line = line.substr(first, line.find_last_not_of(" \t\f\v") - first + 1);
    if (line.front() == '#') continue;
    std::string entry(line);
    if (auto [it, fresh] = seen.emplace(entry, line_no); !fresh)
      fail("{}: line {}: '{}' is already on line {}", where, line_no, entry, it->second);
    out.push_back(std::move(entry));
  }
  if (out.empty()) fail("{}: no entries (only blank or '#' lines)", where);
  return out;
}

std::vector<std::string> read_list_file(const std::string& path) {
  return parse_list(core::read_text_file(path), path);
}

std::string apply_template(std::string_view tmpl, std::string_view label) {
  std::string out;
  size_t fields = 0;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '{') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
        out += '{';
        ++i;
        continue;
      }
      const size_t close = tmpl.find('}', i);
      if (close == std::string_view::npos)
        fail("template '{}': '{{' at {} is not closed (write '{{{{' for a literal brace)", tmpl, i);
      const std::string_view field = tmpl.substr(i + 1, close - i - 1);
      if (!field.empty() && field != "0")
        fail("template '{}': field '{{{}}}' is not supported (use '{{}}' for the label)", tmpl, field);
      out += label;
      ++fields;
      i = close;
    } else if (c == '}') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("template '{}': single '}}' at {} (write '}}}}' for a literal brace)", tmpl, i);
    } else {
      out += c;
    }
  }
  if (fields == 0)
    fail("template '{}' has no '{{}}' for the label (every label would get the same prompt)", tmpl);
  return out;
}

void check_template(std::string_view tmpl) { apply_template(tmpl, ""); }

std::string_view default_labels_text() { return kDefaultLabelsText; }
std::string_view default_templates_text() { return kDefaultTemplatesText; }

std::vector<std::string> default_labels() {
  return parse_list(kDefaultLabelsText, "<built-in data/biomedclip_labels.txt>");
}

std::vector<std::string> default_templates() {
  auto t = parse_list(kDefaultTemplatesText, "<built-in data/biomedclip_templates.txt>");
  for (const auto& s : t) check_template(s);
  return t;
}

}  // namespace medquant::zeroshot
