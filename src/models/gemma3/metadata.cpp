#include "models/gemma3/metadata.h"

#include <fmt/format.h>
#include <yaml.h>

#include <cmath>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"

namespace medquant::models::gemma3 {
namespace {

namespace fs = std::filesystem;
using checkpoint::Json;

// Python's str predicates, ASCII-exact; other (UTF-8) bytes count as letters.
bool is_decimal(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || static_cast<unsigned char>(c) >= 0x80;
}
bool is_cased_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_cased_upper(char c) { return c >= 'A' && c <= 'Z'; }
char upper(char c) { return is_cased_lower(c) ? static_cast<char>(c - 32) : c; }
char lower(char c) { return is_cased_upper(c) ? static_cast<char>(c + 32) : c; }

bool py_islower(const std::string& w) {
  bool cased = false;
  for (char c : w) {
    if (is_cased_upper(c)) return false;
    if (is_cased_lower(c)) cased = true;
  }
  return cased;
}

std::string py_title(const std::string& w) {
  std::string out = w;
  bool prev_cased = false;
  for (char& c : out) {
    const bool cased = is_cased_lower(c) || is_cased_upper(c);
    c = cased ? (prev_cased ? lower(c) : upper(c)) : c;
    prev_cased = cased;
  }
  return out;
}

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool fullmatch(const std::string& s, const std::regex& re) { return std::regex_match(s, re); }

// float(s) for the digits-and-point strings the size regex lets through.
std::optional<double> py_float(const std::string& s) {
  if (s.empty()) return std::nullopt;
  int points = 0;
  for (char c : s) {
    if (c == '.') ++points;
    else if (!is_decimal(c)) return std::nullopt;
  }
  if (points > 1 || s == ".") return std::nullopt;
  return std::strtod(s.c_str(), nullptr);
}

std::string json_to_string(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return v.dump();
}

// ---------------------------------------------------------------- YAML

bool plain_null(const std::string& s) { return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL"; }

// PyYAML's implicit resolvers (YAML 1.1) for plain scalars.
Json resolve_plain(const std::string& s) {
  if (plain_null(s)) return Json();
  static const std::set<std::string> kTrue = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"};
  static const std::set<std::string> kFalse = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"};
  if (kTrue.count(s)) return true;
  if (kFalse.count(s)) return false;
  static const std::regex kInt(R"([-+]?(0|[1-9][0-9_]*))");
  static const std::regex kFloat(R"([-+]?([0-9][0-9_]*)?\.[0-9_]*([eE][-+][0-9]+)?)");
  if (std::regex_match(s, kInt)) {
    std::string d;
    for (char c : s)
      if (c != '_') d += c;
    try {
      return std::stoll(d);
    } catch (...) {
      return s;
    }
  }
  if (std::regex_match(s, kFloat) && s != "." && s != "-." && s != "+.") {
    std::string d;
    for (char c : s)
      if (c != '_') d += c;
    return std::strtod(d.c_str(), nullptr);
  }
  return s;
}

Json yaml_node(yaml_document_t* doc, yaml_node_t* node, int depth) {
  if (!node || depth > 64) return Json();
  switch (node->type) {
    case YAML_SCALAR_NODE: {
      std::string s(reinterpret_cast<const char*>(node->data.scalar.value), node->data.scalar.length);
      if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) return resolve_plain(s);
      return s;
    }
    case YAML_SEQUENCE_NODE: {
      Json a = Json::array();
      for (yaml_node_item_t* i = node->data.sequence.items.start; i < node->data.sequence.items.top; ++i)
        a.push_back(yaml_node(doc, yaml_document_get_node(doc, *i), depth + 1));
      return a;
    }
    case YAML_MAPPING_NODE: {
      Json o = Json::object();
      for (yaml_node_pair_t* p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; ++p) {
        const Json k = yaml_node(doc, yaml_document_get_node(doc, p->key), depth + 1);
        o[json_to_string(k)] = yaml_node(doc, yaml_document_get_node(doc, p->value), depth + 1);
      }
      return o;
    }
    default:
      return Json();
  }
}

std::optional<Json> parse_yaml(const std::string& text, const std::string& where) {
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) fail("{}: cannot start the YAML parser", where);
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  std::optional<Json> out;
  if (yaml_parser_load(&parser, &doc)) {
    out = yaml_node(&doc, yaml_document_get_root_node(&doc), 0);
    yaml_document_delete(&doc);
  } else {
    const std::string problem = parser.problem ? parser.problem : "syntax error";
    const size_t line = parser.problem_mark.line + 1;
    yaml_parser_delete(&parser);
    fail("{}: model card front matter is not valid YAML (line {} of the front matter): {}", where,
         line, problem);
  }
  yaml_parser_delete(&parser);
  return out;
}

std::optional<Json> read_json_or_empty(const fs::path& p, bool tolerate_errors) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  if (!tolerate_errors) return checkpoint::read_json_file(p.string());
  try {
    return checkpoint::read_json_file(p.string());
  } catch (const Error&) {
    return std::nullopt;  // "not all models have valid generation_config.json"
  }
}

// pathlib's Path(dir).name: the last component, "." components dropped.
std::string folder_name(const std::string& dir) {
  std::string last;
  std::string part;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!part.empty() && part != ".") last = part;
      part.clear();
    } else {
      part += dir[i];
    }
  }
  if (last.empty() && !dir.empty() && dir[0] == '/') return "";
  return last;
}

void set_if_none(std::optional<std::string>& field, const std::optional<std::string>& v) {
  if (!field && v) field = v;
}

}  // namespace

std::string id_to_title(const std::string& s) {
  static const std::regex kKeep(R"(^(v\d+(?:\.\d+)*|\d.*)$)");
  std::string t = s;
  for (char& c : t)
    if (c == '-') c = ' ';
  std::string out;
  for (const std::string& w : split_ws(t)) {
    if (!out.empty()) out += ' ';
    out += (py_islower(w) && !std::regex_search(w, kKeep)) ? py_title(w) : w;
  }
  return out;
}

ModelIdComponents model_id_components(const std::optional<std::string>& model_id,
                                      int64_t total_params) {
  ModelIdComponents r;
  if (!model_id) return r;
  if (model_id->find(' ') != std::string::npos) {
    r.full_name = *model_id;
    return r;
  }
  std::optional<std::string> org;
  std::string full = *model_id;
  if (const size_t slash = model_id->find('/'); slash != std::string::npos) {
    org = model_id->substr(0, slash);
    full = model_id->substr(slash + 1);
  }
  if (org && !org->empty() && (*org)[0] == '.') org.reset();

  std::vector<std::string> parts;
  {
    std::string cur;
    for (size_t i = 0; i <= full.size(); ++i) {
      if (i == full.size() || full[i] == '-') {
        if (!cur.empty()) parts.push_back(cur);
        cur.clear();
      } else {
        cur += full[i];
      }
    }
  }
  std::vector<std::set<std::string>> types(parts.size());
  using std::regex_constants::icase;
  static const std::regex kVersion(R"((v|iter)?\d+([.]\d+)*)", icase);
  static const std::regex kType(R"(i?q\d(_\w)*|b?fp?(16|32))", icase);
  static const std::regex kSize(R"((([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))", icase);
  static const std::regex kFinetune(R"(chat|instruct|vision|lora)", icase);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string part = parts[i];
    if (fullmatch(part, kVersion)) {
      types[i].insert("version");
    } else if (fullmatch(part, kType)) {
      types[i].insert("type");
      for (char& c : parts[i]) c = upper(c);
    } else if (i > 0 && fullmatch(part, kSize)) {
      for (char& c : part)
        if (c == '_') c = '.';
      if (part.size() >= 2 && is_decimal(part.back()))
        part = part.substr(0, part.size() - 2) + "." + part.back() + part[part.size() - 2];
      if (part.size() > 1 && is_decimal(part[part.size() - 2]) &&
          std::string_view("kmbt").find(part.back()) != std::string_view::npos)
        part.back() = upper(part.back());
      if (total_params != 0) {
        if (auto value = py_float(part.substr(0, part.size() - 1))) {
          const auto idx = std::string_view(" KMBT").find(part.back());
          const double label = *value * std::pow(1000.0, idx == std::string_view::npos ? -1.0 : double(idx));
          const int64_t total = total_params;
          const auto floordiv8 = [](int64_t x) { return x >= 0 ? x / 8 : -((-x + 7) / 8); };
          if ((total < 0 && label < static_cast<double>(floordiv8(-total))) ||
              (total > 0 && std::fabs(label - static_cast<double>(total)) >
                                static_cast<double>(floordiv8(7 * total)))) {
            types[i].insert("finetune");
            part.back() = lower(part.back());
          }
        }
      }
      if (types[i].empty()) types[i].insert("size_label");
      parts[i] = part;
    } else if (i > 0 && fullmatch(part, kFinetune)) {
      std::string l = part;
      for (char& c : l) c = lower(c);
      if (total_params < 0 && l == "lora") types[i].insert("type");
      else types[i].insert("finetune");
    }
  }
  bool numeric_size = false;
  for (size_t i = 0; i < parts.size(); ++i)
    if (types[i].count("size_label"))
      for (char c : parts[i])
        if (is_decimal(c)) numeric_size = true;
  if (numeric_size)
    for (size_t i = 0; i < parts.size(); ++i)
      if (types[i].count("size_label") &&
          std::all_of(parts[i].begin(), parts[i].end(), [](char c) { return is_alpha(c); }))
        types[i].erase("size_label");

  bool at_start = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (at_start && ((types[i].empty() && is_alpha(parts[i][0])) || types[i].count("version"))) {
      types[i].insert("basename");
    } else {
      at_start = false;
      if (types[i].empty()) types[i].insert("finetune");
    }
  }
  for (size_t k = parts.size(); k-- > 0;) {
    if (types[k].count("basename") && types[k].size() > 1) types[k].erase("basename");
    else break;
  }
  auto join = [&](auto pred, bool dedupe) -> std::optional<std::string> {
    std::string out;
    std::vector<std::string> seen;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!pred(types[i])) continue;
      if (dedupe) {
        if (std::find(seen.begin(), seen.end(), parts[i]) != seen.end()) continue;
        seen.push_back(parts[i]);
      }
      out += (out.empty() ? "" : "-") + parts[i];
    }
    return out.empty() ? std::nullopt : std::optional<std::string>(out);
  };
  r.full_name = full;
  r.organization = org;
  r.basename = join([](const auto& t) { return t.count("basename") > 0; }, false);
  r.size_label = join([](const auto& t) { return t.count("size_label") > 0; }, true);
  r.finetune = join([](const auto& t) { return t.count("finetune") > 0; }, false);
  r.version = join([](const auto& t) { return t.count("version") && !t.count("basename"); }, false);
  if (!r.size_label && !r.finetune && !r.version) r.basename.reset();
  return r;
}

std::string size_label(uint64_t n) {
  const double count = static_cast<double>(n);
  double scaled;
  char suffix;
  if (count > 1e12) {
    scaled = count * 1e-12;
    suffix = 'T';
  } else if (count > 1e9) {
    scaled = count * 1e-9;
    suffix = 'B';
  } else if (count > 1e6) {
    scaled = count * 1e-6;
    suffix = 'M';
  } else {
    scaled = count * 1e-3;
    suffix = 'K';
  }
  // fix = max(min_digits - len(str(round(scaled)).lstrip('0')), 0), min_digits 2;
  // Python's round() rounds half to even, as nearbyint does by default.
  std::string digits = fmt::format("{}", static_cast<int64_t>(std::nearbyint(scaled)));
  digits.erase(0, digits.find_first_not_of('0') == std::string::npos ? digits.size()
                                                                     : digits.find_first_not_of('0'));
  const int fix = std::max(2 - static_cast<int>(digits.size()), 0);
  return fmt::format("{:.{}f}{}", scaled, fix, suffix);
}

std::optional<Json> read_model_card(const std::string& dir) {
  const fs::path p = fs::path(dir) / "README.md";
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  const std::string content = core::read_text_file(p.string());
  // content.splitlines(): the first line must be "---".
  std::vector<std::string> lines;
  {
    std::string cur;
    for (size_t i = 0; i < content.size(); ++i) {
      const char c = content[i];
      if (c == '\n' || c == '\r') {
        lines.push_back(cur);
        cur.clear();
        if (c == '\r' && i + 1 < content.size() && content[i + 1] == '\n') ++i;
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) lines.push_back(cur);
  }
  if (lines.empty() || lines[0] != "---") return std::nullopt;
  std::string yaml;
  for (size_t i = 1; i < lines.size() && lines[i] != "---"; ++i) yaml += (i > 1 ? "\n" : "") + lines[i];
  yaml += "\n";
  // The reference's fix-ups: the Norway problem, and tabs.
  for (size_t pos = 0; (pos = yaml.find("- no\n", pos)) != std::string::npos; pos += 8)
    yaml.replace(pos, 5, "- \"no\"\n");
  for (size_t pos = 0; (pos = yaml.find('\t', pos)) != std::string::npos; pos += 2) yaml.replace(pos, 1, "  ");
  std::optional<Json> data = parse_yaml(yaml, p.string());
  if (!data || !data->is_object()) {
    if (data && !data->is_null())
      core::log_warning("{}: model card front matter is not a mapping; ignored", p.string());
    return data && data->is_object() ? data : std::optional<Json>(Json::object());
  }
  return data;
}

ModelMetadata load_metadata(const std::string& dir, const std::optional<std::string>& model_name,
                            uint64_t total_params_u) {
  ModelMetadata m;
  const int64_t total_params = static_cast<int64_t>(total_params_u);
  const std::optional<Json> card = read_model_card(dir);
  const std::optional<Json> hf = read_json_or_empty(fs::path(dir) / "config.json", false);
  const std::optional<Json> gen = read_json_or_empty(fs::path(dir) / "generation_config.json", true);

  // -- model card
  if (card && card->is_object()) {
    const Json& c = *card;
    auto use = [&](std::optional<std::string>& field, const char* key) {
      auto it = c.find(key);
      if (it != c.end() && !field && !it->is_null()) field = json_to_string(*it);
    };
    auto use_array = [&](std::optional<std::vector<std::string>>& field, const char* key) {
      auto it = c.find(key);
      if (it == c.end() || it->is_null()) return;
      std::vector<std::string> cur = field.value_or(std::vector<std::string>{});
      if (it->is_string()) cur.push_back(it->get<std::string>());
      else if (it->is_array())
        for (const Json& x : *it) cur.push_back(json_to_string(x));
      field = cur;
    };
    use(m.name, "name");
    use(m.author, "author");
    use(m.version, "version");
    use(m.organization, "organization");
    use(m.description, "description");
    use(m.finetune, "finetune");
    use(m.basename, "basename");
    use(m.size_label, "size_label");
    use(m.source_url, "url");
    use(m.source_doi, "doi");
    use(m.source_uuid, "uuid");
    use(m.source_repo_url, "repo_url");
    use(m.name, "model_name");
    use(m.author, "model_author");
    use(m.version, "model_version");
    use(m.organization, "model_organization");
    use(m.description, "model_description");
    use(m.finetune, "model_finetune");
    use(m.basename, "model_basename");
    use(m.size_label, "model_size_label");
    use(m.source_url, "model_url");
    use(m.source_doi, "model_doi");
    use(m.source_uuid, "model_uuid");
    use(m.source_repo_url, "model_repo_url");
    use(m.name, "model_name");
    use(m.author, "model_creator");
    use(m.basename, "model_type");

    // base_model(s) / datasets: Hugging Face ids or URLs -> entries.
    auto sources = [&](std::initializer_list<const char*> keys,
                       std::optional<std::vector<std::map<std::string, std::string>>>& out) {
      const Json* value = nullptr;
      bool any = false;
      for (const char* k : keys)
        if (c.contains(k)) {
          any = true;
          if (!value) value = &c.at(k);
        }
      if (!any) return;
      std::vector<Json> ids;
      if (value && value->is_string()) ids.push_back(*value);
      else if (value && value->is_array())
        for (const Json& x : *value) ids.push_back(x);
      if (!out) out.emplace();
      static const std::regex kHfUrl(R"(https?://huggingface.co/([^/]+/[^/]+)$)");
      for (const Json& id : ids) {
        std::map<std::string, std::string> e;
        if (id.is_string()) {
          const std::string s = id.get<std::string>();
          auto fill = [&](const std::string& model_id, bool with_repo) {
            const ModelIdComponents x = model_id_components(model_id, total_params);
            if (x.full_name) e["name"] = id_to_title(*x.full_name);
            if (x.organization) e["organization"] = id_to_title(*x.organization);
            if (x.version) e["version"] = *x.version;
            if (with_repo && x.organization && x.full_name)
              e["repo_url"] = fmt::format("https://huggingface.co/{}/{}", *x.organization, *x.full_name);
          };
          if (s.starts_with("http://") || s.starts_with("https://") || s.starts_with("ssh://")) {
            e["repo_url"] = s;
            std::smatch match;
            if (s.find("huggingface.co") != std::string::npos && std::regex_match(s, match, kHfUrl))
              fill(match[1].str(), false);
          } else {
            fill(s, true);
          }
        } else if (id.is_object()) {
          for (const auto& [k, v] : id.items()) e[k] = json_to_string(v);
        } else {
          core::log_warning("model card: entry '{}' not in a known format", id.dump());
        }
        out->push_back(std::move(e));
      }
    };
    sources({"base_model", "base_models", "base_model_sources"}, m.base_models);
    sources({"datasets", "dataset", "dataset_sources"}, m.datasets);

    use(m.license, "license");
    if (auto it = c.find("license"); it != c.end() && it->is_array()) {
      std::string joined;
      for (const Json& x : *it) joined += (joined.empty() ? "" : ",") + json_to_string(x);
      m.license = joined;
    }
    use(m.license_name, "license_name");
    use(m.license_link, "license_link");
    use_array(m.tags, "tags");
    use_array(m.tags, "pipeline_tag");
    use_array(m.languages, "languages");
    use_array(m.languages, "language");
  }

  auto apply = [&](const ModelIdComponents& x) {
    if (!m.name && x.full_name) m.name = id_to_title(*x.full_name);
    if (!m.organization && x.organization) m.organization = id_to_title(*x.organization);
    set_if_none(m.basename, x.basename);
    set_if_none(m.finetune, x.finetune);
    set_if_none(m.version, x.version);
    set_if_none(m.size_label, x.size_label);
  };
  // -- config.json's _name_or_path, if it is a model id rather than a path
  if (hf && hf->is_object()) {
    auto it = hf->find("_name_or_path");
    if (it != hf->end() && it->is_string()) {
      const std::string id = it->get<std::string>();
      if (std::count(id.begin(), id.end(), '/') <= 1) apply(model_id_components(id, total_params));
    }
  }
  // -- the folder name
  apply(model_id_components(folder_name(dir), total_params));

  // -- generation_config.json
  if (gen && gen->is_object()) {
    static const std::pair<const char*, const char*> kKeys[] = {
        {"sequence", "general.sampling.sequence"},
        {"top_k", "general.sampling.top_k"},
        {"top_p", "general.sampling.top_p"},
        {"min_p", "general.sampling.min_p"},
        {"xtc_probability", "general.sampling.xtc_probability"},
        {"xtc_threshold", "general.sampling.xtc_threshold"},
        {"temperature", "general.sampling.temp"},
        {"penalty_last_n", "general.sampling.penalty_last_n"},
        {"penalty_repeat", "general.sampling.penalty_repeat"},
        {"mirostat", "general.sampling.mirostat"},
        {"mirostat_tau", "general.sampling.mirostat_tau"},
        {"mirostat_eta", "general.sampling.mirostat_eta"},
    };
    for (const auto& [src, key] : kKeys) {
      const Json* v = nullptr;
      if (auto it = gen->find(src); it != gen->end()) v = &*it;
      if (std::string_view(src) == "penalty_repeat" && !v)
        if (auto it = gen->find("repetition_penalty"); it != gen->end()) v = &*it;
      if (v && !v->is_null()) m.sampling.emplace_back(key, *v);
    }
  }
  if (model_name) m.name = *model_name;
  if (!m.name) m.name = folder_name(dir);
  if (!m.size_label && total_params > 0) m.size_label = size_label(total_params_u);
  return m;
}

void add_metadata_kvs(KvList& kv, const ModelMetadata& m) {
  for (const auto& [key, v] : m.sampling) {
    const std::string_view k = key;
    const bool is_int = k.ends_with("top_k") || k.ends_with("penalty_last_n") || k.ends_with("mirostat");
    if (k.ends_with(".sequence")) {
      if (!v.is_string()) fail("generation_config.json: {} must be a string", key);
      kv.set_string(key, v.get<std::string>());
    } else if (is_int) {
      if (!v.is_number_integer() && !v.is_boolean())
        fail("generation_config.json: {} must be an integer, got {}", key, v.dump());
      kv.set_i32(key, static_cast<int32_t>(v.get<int64_t>()));
    } else {
      if (!v.is_number() && !v.is_boolean()) fail("generation_config.json: {} must be a number, got {}", key, v.dump());
      kv.set_f32(key, static_cast<float>(v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : v.get<double>()));
    }
  }
  kv.set_string("general.name", m.name.value_or(""));
  auto s = [&](const char* key, const std::optional<std::string>& v) {
    if (v) kv.set_string(key, *v);
  };
  s("general.author", m.author);
  s("general.version", m.version);
  s("general.organization", m.organization);
  s("general.finetune", m.finetune);
  s("general.basename", m.basename);
  s("general.description", m.description);
  s("general.quantized_by", m.quantized_by);
  s("general.size_label", m.size_label);
  s("general.license", m.license);
  s("general.license.name", m.license_name);
  s("general.license.link", m.license_link);
  s("general.url", m.url);
  s("general.doi", m.doi);
  s("general.uuid", m.uuid);
  s("general.repo_url", m.repo_url);
  s("general.source.url", m.source_url);
  s("general.source.doi", m.source_doi);
  s("general.source.uuid", m.source_uuid);
  s("general.source.repo_url", m.source_repo_url);
  static const char* kEntryKeys[] = {"name", "author", "version", "organization", "description",
                                     "url", "doi", "uuid", "repo_url"};
  auto entries = [&](const char* group, const auto& list) {
    if (!list) return;
    kv.set_u32(fmt::format("general.{}.count", group), static_cast<uint32_t>(list->size()));
    for (size_t i = 0; i < list->size(); ++i)
      for (const char* k : kEntryKeys)
        if (auto it = (*list)[i].find(k); it != (*list)[i].end())
          kv.set_string(fmt::format("general.{}.{}.{}", group, i, k), it->second);
  };
  entries("base_model", m.base_models);
  entries("dataset", m.datasets);
  if (m.tags && !m.tags->empty()) kv.set("general.tags", gguf::Value::string_array(*m.tags));
  if (m.languages && !m.languages->empty())
    kv.set("general.languages", gguf::Value::string_array(*m.languages));
}

}  // namespace medquant::models::gemma3
