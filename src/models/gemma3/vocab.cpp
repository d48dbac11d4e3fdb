#include "models/gemma3/vocab.h"

#include <filesystem>
#include <map>
#include <optional>

#include "checkpoint/hf_config.h"
#include "core/error.h"
#include "core/log.h"
#include "models/gemma3/sentencepiece.h"

namespace medquant::models::gemma3 {
namespace {

namespace fs = std::filesystem;
using checkpoint::Json;

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// TextModel.does_token_look_special.
bool looks_special(std::string_view t) {
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts_with(t, "<|") && std::string_view(t).ends_with("|>")) return true;
  if (starts_with(t, "<\xef\xbd\x9c") && std::string_view(t).ends_with("\xef\xbd\x9c>")) return true;  // <｜ ... ｜>
  return starts_with(t, "<unused") && std::string_view(t).ends_with(">");
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

// Python's int(str) for the keys of added_tokens_decoder (plain decimal here).
std::optional<int64_t> parse_id(const std::string& s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  return std::stoll(s);
}

std::optional<Json> read_optional_json(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  return checkpoint::read_json_file(p.string());
}

// Python truthiness of a JSON value (None, "", {}, [], 0, false are false).
bool truthy(const Json* v) {
  if (!v || v->is_null()) return false;
  if (v->is_string()) return !v->get_ref<const std::string&>().empty();
  if (v->is_object() || v->is_array()) return !v->empty();
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_number()) return v->get<double>() != 0;
  return true;
}

const Json* get(const Json* obj, const char* key) {
  if (!obj || !obj->is_object()) return nullptr;
  auto it = obj->find(key);
  return it == obj->end() ? nullptr : &*it;
}

// item.get('SpecialToken', {}).get('id') / item.get('Sequence', {}).get('id')
std::optional<std::string> template_id(const Json& item, const char* kind) {
  const Json* v = get(get(&item, kind), "id");
  if (!truthy(v) || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

// `a in (b, c)` with a a string and b, c whatever the JSON holds.
bool equals(const std::optional<Json>& v, const std::string& s) {
  return v && v->is_string() && v->get_ref<const std::string&>() == s;
}

// gguf-py's SpecialVocab (load_merges=False, the default special token types).
class SpecialVocab {
 public:
  SpecialVocab(const fs::path& dir, size_t n_vocab) : n_vocab_(n_vocab) {
    load_from_tokenizer_json(dir);
    load_from_config_json(dir);
  }

  void add_to(KvList& kv) const {
    static const std::map<std::string, std::string> kIdKeys = {
        {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"}, {"mask", "tokenizer.ggml.mask_token_id"},
        {"eot", "tokenizer.ggml.eot_token_id"},     {"eom", "tokenizer.ggml.eom_token_id"}};
    for (const auto& [type, id] : ids_) {
      auto it = kIdKeys.find(type);
      if (it == kIdKeys.end()) {
        core::log_verbose("tokenizer: no GGUF key for special token type {} (id {}), skipped", type, id);
        continue;
      }
      kv.set_u32(it->second, static_cast<uint32_t>(id));
    }
    for (const auto& [type, value] : add_) {
      if (type != "bos" && type != "eos" && type != "sep") continue;
      kv.set_bool("tokenizer.ggml.add_" + type + "_token", value);
    }
    if (chat_template_) {
      if (chat_template_->is_string()) {
        kv.set_string("tokenizer.chat_template", chat_template_->get<std::string>());
      } else if (chat_template_->is_array()) {
        add_template_list(kv, *chat_template_);
      }
    }
    if (lowercase_) kv.set_bool("tokenizer.ggml.normalizer.lowercase", *lowercase_);
    if (strip_accents_) kv.set_bool("tokenizer.ggml.normalizer.strip_accents", *strip_accents_);
  }

 private:
  // Ordered like Python dicts: insertion order, updates in place.
  template <typename V>
  struct Ordered : std::vector<std::pair<std::string, V>> {
    V* find(const std::string& k) {
      for (auto& [key, v] : *this)
        if (key == k) return &v;
      return nullptr;
    }
    void set(const std::string& k, V v) {
      if (V* p = find(k)) *p = v;
      else this->emplace_back(k, v);
    }
    void setdefault(const std::string& k, V v) {
      if (!find(k)) this->emplace_back(k, v);
    }
  };

  static void add_template_list(KvList& kv, const Json& list) {
    std::optional<std::string> default_template;
    std::vector<std::string> names;
    for (const Json& choice : list) {
      if (!choice.is_object()) continue;
      std::string name = choice.value("name", std::string());
      const Json* t = get(&choice, "template");
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) || static_cast<unsigned char>(c) > 127) c = '_';
      if (name.empty() || !t || !t->is_string()) continue;
      if (name == "default") {
        default_template = t->get<std::string>();
      } else {
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
        kv.set_string("tokenizer.chat_template." + name, t->get<std::string>());
      }
    }
    if (!names.empty()) kv.set("tokenizer.chat_templates", gguf::Value::string_array(names));
    if (default_template) kv.set_string("tokenizer.chat_template", *default_template);
  }

  void set_special_token(const std::string& type, const Json* id) {
    if (!id || !id->is_number_integer()) return;
    const int64_t tid = id->get<int64_t>();
    if (tid < 0) fail("tokenizer: invalid value for special token type {}: {}", type, tid);
    if (static_cast<uint64_t>(tid) < n_vocab_) {
      if (ids_.find(type)) return;
      ids_.emplace_back(type, tid);
      return;
    }
    core::log_warning("tokenizer: special token type {}, id {} out of range, must be under {} - skipping",
                      type, tid, n_vocab_);
  }

  void parse_normalizer(const Json& n) {
    const Json* type = get(&n, "type");
    if (!type || !type->is_string()) return;
    const std::string t = type->get<std::string>();
    if (t == "Lowercase") {
      lowercase_ = true;
    } else if (t == "StripAccents") {
      strip_accents_ = true;
    } else if (t == "BertNormalizer") {
      if (const Json* v = get(&n, "lowercase"); v && v->is_boolean()) lowercase_ = v->get<bool>();
      if (const Json* v = get(&n, "strip_accents"); v && v->is_boolean()) strip_accents_ = v->get<bool>();
    } else if (t == "Sequence") {
      if (const Json* list = get(&n, "normalizers"); list && list->is_array())
        for (const Json& x : *list) parse_normalizer(x);
    }
  }

  void load_from_tokenizer_json(const fs::path& dir) {
    const std::optional<Json> tokenizer = read_optional_json(dir / "tokenizer.json");
    Json added_tokens = Json::array();
    if (tokenizer) {
      if (const Json* n = get(&*tokenizer, "normalizer"); truthy(n)) parse_normalizer(*n);
      if (const Json* a = get(&*tokenizer, "added_tokens"); a && a->is_array()) added_tokens = *a;
    }
    std::optional<Json> config = read_optional_json(dir / "tokenizer_config.json");
    const bool have_config = config && truthy(&*config) && config->is_object();
    auto cfg = [&](const char* key) -> std::optional<Json> {
      if (!have_config) return std::nullopt;
      const Json* v = get(&*config, key);
      if (!v) return std::nullopt;
      return *v;
    };
    auto opt_truthy = [](const std::optional<Json>& v) { return v && truthy(&*v); };

    if (tokenizer && truthy(&*tokenizer)) {
      std::optional<Json> special_bos = cfg("bos_token"), special_cls = cfg("cls_token");
      std::optional<Json> special_eos = cfg("eos_token"), special_sep = cfg("sep_token");
      if (!opt_truthy(special_bos) && opt_truthy(special_cls) && have_config)
        (*config)["bos_token"] = *(special_bos = special_cls);
      if (!opt_truthy(special_eos) && opt_truthy(special_sep) && have_config)
        (*config)["eos_token"] = *(special_eos = special_sep);
      const Json* post = get(&*tokenizer, "post_processor");
      if (truthy(post)) {
        std::vector<const Json*> processors;
        if (const Json* list = get(post, "processors"); list && list->is_array()) {
          for (const Json& p : *list) processors.push_back(&p);
        } else {
          processors.push_back(post);
        }
        for (const Json* processor : processors) {
          const Json* pt = get(processor, "type");
          const std::string type = pt && pt->is_string() ? pt->get<std::string>() : "";
          if (type == "ByteLevel") {
            add_.setdefault("bos", false);
            add_.setdefault("eos", false);
          } else if (type == "RobertaProcessing") {
            add_.set("bos", true);
            add_.set("eos", true);
            add_.set("sep", true);
            if (!opt_truthy(special_cls) && have_config) {
              const Json* c = get(processor, "cls");
              special_cls = c && c->is_array() && !c->empty() ? std::optional<Json>((*c)[0]) : special_bos;
              (*config)["cls_token"] = special_cls ? *special_cls : Json();
            }
            if (!opt_truthy(special_sep) && have_config) {
              const Json* s = get(processor, "sep");
              special_sep = s && s->is_array() && !s->empty() ? std::optional<Json>((*s)[0]) : special_eos;
              (*config)["sep_token"] = special_sep ? *special_sep : Json();
            }
          } else if (type == "TemplateProcessing") {
            template_processing(*processor, have_config, config, special_bos, special_cls,
                                special_eos, special_sep);
          }
        }
      }
    }
    if (!have_config) return;

    // Chat template: tokenizer_config.json's, else chat_template.jinja / .json.
    std::optional<Json> alt;
    std::error_code ec;
    if (fs::is_regular_file(dir / "chat_template.jinja", ec)) {
      Json text = core::read_text_file((dir / "chat_template.jinja").string());
      std::vector<fs::path> more;
      if (fs::is_directory(dir / "additional_chat_templates", ec))
        for (const auto& e : fs::directory_iterator(dir / "additional_chat_templates", ec))
          if (e.path().extension() == ".jinja") more.push_back(e.path());
      if (!more.empty()) {
        std::sort(more.begin(), more.end());
        Json list = Json::array();
        list.push_back({{"name", "default"}, {"template", text}});
        for (const auto& p : more)
          list.push_back({{"name", p.stem().string()}, {"template", core::read_text_file(p.string())}});
        alt = list;
      } else {
        alt = text;
      }
    } else if (auto j = read_optional_json(dir / "chat_template.json")) {
      if (const Json* t = get(&*j, "chat_template")) alt = *t;
    }
    if (const Json* t = get(&*config, "chat_template")) {
      chat_template_ = *t;
    } else {
      chat_template_ = alt;
    }
    if (chat_template_ && !(chat_template_->is_null() || chat_template_->is_string() ||
                            chat_template_->is_array())) {
      core::log_warning("{}: bad type for chat_template - ignoring",
                        (dir / "tokenizer_config.json").string());
      chat_template_.reset();
    }
    if (chat_template_ && chat_template_->is_null()) chat_template_.reset();

    for (const std::string& type : types_) {
      if (const Json* a = get(&*config, ("add_" + type + "_token").c_str()); a && a->is_boolean()) {
        if (!add_.find(type)) {
          add_.emplace_back(type, a->get<bool>());
        } else if (*add_.find(type) != a->get<bool>()) {
          core::log_verbose("tokenizer: add_{}_token {} in tokenizer_config.json, {} from the "
                            "post_processor: using the latter",
                            type, a->get<bool>(), *add_.find(type));
        }
      }
      const Json* entry = get(&*config, (type + "_token").c_str());
      std::string content;
      if (entry && entry->is_string()) {
        content = entry->get<std::string>();
      } else if (entry && entry->is_object()) {
        const Json* c = get(entry, "content");
        if (!c || !c->is_string()) continue;
        content = c->get<std::string>();
      } else {
        continue;
      }
      for (const Json& atok : added_tokens) {
        const Json* c = get(&atok, "content");
        if (c && c->is_string() && c->get_ref<const std::string&>() == content) {
          set_special_token(type, get(&atok, "id"));
          break;
        }
      }
    }
  }

  void template_processing(const Json& processor, bool have_config, std::optional<Json>& config,
                           std::optional<Json>& special_bos, std::optional<Json>& special_cls,
                           std::optional<Json>& special_eos, std::optional<Json>& special_sep) {
    auto opt_truthy = [](const std::optional<Json>& v) { return v && truthy(&*v); };
    auto list = [&](const char* key) {
      std::vector<Json> out;
      if (const Json* v = get(&processor, key); v && v->is_array())
        for (const Json& x : *v) out.push_back(x);
      return out;
    };
    const std::vector<Json> single = list("single");
    std::vector<Json> pair = list("pair");
    std::optional<std::string> first, last;
    if (single.size() > 1) {
      if ((first = template_id(single.front(), "SpecialToken"))) {
        if (!have_config) {
          special_bos = Json(*first);
        } else if (!equals(special_bos, *first) && !equals(special_cls, *first)) {
          if (!opt_truthy(special_bos)) (*config)["bos_token"] = *(special_bos = Json(*first));
          if (!opt_truthy(special_cls)) (*config)["cls_token"] = *(special_cls = Json(*first));
        }
        add_.set("bos", equals(special_bos, *first) || equals(special_cls, *first));
      }
      if ((last = template_id(single.back(), "SpecialToken"))) {
        if (!have_config) {
          special_eos = Json(*last);
        } else if (!equals(special_eos, *last)) {
          const Json old = special_eos ? *special_eos : Json();
          if (std::find(types_.begin(), types_.end(), "eot") == types_.end()) {
            types_.push_back("eot");
            (*config)["eot_token"] = old;
          } else if (std::find(types_.begin(), types_.end(), "eom") == types_.end()) {
            types_.push_back("eom");
            (*config)["eom_token"] = old;
          }
          (*config)["eos_token"] = *(special_eos = Json(*last));
        }
        add_.set("eos", equals(special_eos, *last));
      }
    }
    if (pair.empty()) return;
    size_t begin = first && template_id(pair.front(), "SpecialToken") == first ? 1 : 0;
    size_t end = last && template_id(pair.back(), "SpecialToken") == last ? pair.size() - 1 : pair.size();
    if (begin >= end) return;
    std::vector<Json> inner(pair.begin() + static_cast<ptrdiff_t>(begin),
                            pair.begin() + static_cast<ptrdiff_t>(end));
    const auto a = template_id(inner.front(), "Sequence");
    const auto b = template_id(inner.back(), "Sequence");
    if (!(a == "A" && b == "B") || inner.size() < 3) return;
    inner = std::vector<Json>(inner.begin() + 1, inner.end() - 1);
    bool add_sep = false;
    if (auto e = template_id(inner[0], "SpecialToken"))
      if ((equals(special_sep, *e) || equals(special_eos, *e)) && !last) add_sep = true;
    if (inner.size() == 2)
      if (auto e = template_id(inner[1], "SpecialToken"))
        if (equals(special_sep, *e) || equals(special_eos, *e)) add_sep = true;
    add_.set("sep", add_sep);
    if (add_sep && !opt_truthy(special_sep) && have_config)
      (*config)["sep_token"] = special_eos ? *special_eos : Json();
  }

  void load_from_config_json(const fs::path& dir) {
    const std::optional<Json> config = read_optional_json(dir / "config.json");
    if (!config) return;
    const Json* text = get(&*config, "text_config");
    for (const std::string& type : types_) {
      const std::string key = type + "_token_id";
      const Json* id = get(&*config, key.c_str());
      if ((!id || id->is_null()) && text) id = get(text, key.c_str());
      set_special_token(type, id);
    }
  }

  size_t n_vocab_;
  std::vector<std::string> types_ = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
  Ordered<int64_t> ids_;
  Ordered<bool> add_;
  std::optional<Json> chat_template_;
  std::optional<bool> lowercase_, strip_accents_;
};

}  // namespace

Vocab read_vocab(const std::string& dir_s, int64_t vocab_size) {
  const fs::path dir(dir_s);
  const fs::path model = dir / "tokenizer.model";
  std::error_code ec;
  if (!fs::is_regular_file(model, ec))
    fail("{}: missing: the SentencePiece tokenizer is needed for the GGUF vocabulary "
         "(medquant converts Gemma 3 tokenizers from tokenizer.model)",
         model.string());
  const std::vector<SentencePiece> sp = read_sentencepiece_model(model.string());
  const auto n_sp = static_cast<int64_t>(sp.size());
  if (vocab_size <= 0) vocab_size = n_sp;
  if (vocab_size > (int64_t{1} << 31)) fail("vocab_size {} is too large", vocab_size);

  Vocab v;
  const auto n = static_cast<size_t>(vocab_size);
  v.tokens.resize(n);
  v.scores.assign(n, -10000.0f);
  v.types.assign(n, static_cast<int32_t>(TokenType::Unused));
  for (size_t i = 0; i < n; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (int64_t id = 0; id < n_sp; ++id) {
    if (id >= vocab_size) {
      core::log_warning("{}: tokens from id {} on are ignored: the model's vocab_size is {}",
                        model.string(), id, vocab_size);
      break;
    }
    // SentencePieceProcessor's IsUnknown / IsControl / IsUnused / IsByte, in
    // the converter's order; user-defined pieces count as normal.
    const SentencePiece& p = sp[static_cast<size_t>(id)];
    TokenType t = TokenType::Normal;
    switch (p.type) {
      case 2: t = TokenType::Unknown; break;
      case 3: t = TokenType::Control; break;
      case 5: t = TokenType::Unused; break;
      case 6: t = TokenType::Byte; break;
      default: break;
    }
    v.tokens[static_cast<size_t>(id)] = p.piece;
    v.scores[static_cast<size_t>(id)] = p.score;
    v.types[static_cast<size_t>(id)] = static_cast<int32_t>(t);
  }

  if (auto added = read_optional_json(dir / "added_tokens.json")) {
    if (!added->is_object()) fail("{}: expected an object of token -> id", (dir / "added_tokens.json").string());
    for (const auto& [token, id] : added->items()) {
      if (!id.is_number_integer())
        fail("{}: id of '{}' is not an integer", (dir / "added_tokens.json").string(), token);
      const int64_t i = id.get<int64_t>();
      if (i < 0 || i >= vocab_size) {
        core::log_warning("{}: token {} ignored: id out of range, max={}",
                          (dir / "added_tokens.json").string(), i, vocab_size - 1);
        continue;
      }
      v.tokens[static_cast<size_t>(i)] = token;
      v.scores[static_cast<size_t>(i)] = -1000.0f;
      v.types[static_cast<size_t>(i)] = static_cast<int32_t>(TokenType::UserDefined);
    }
  }

  const fs::path tc_path = dir / "tokenizer_config.json";
  if (auto tc = read_optional_json(tc_path)) {
    const Json* decoder = get(&*tc, "added_tokens_decoder");
    if (decoder && decoder->is_object()) {
      for (const auto& [key, data] : decoder->items()) {
        const auto id = parse_id(key);
        if (!id) fail("{}: added_tokens_decoder key '{}' is not a token id", tc_path.string(), key);
        const Json* content = get(&data, "content");
        if (!content || !content->is_string())
          fail("{}: added_tokens_decoder[{}] has no \"content\" string", tc_path.string(), key);
        if (*id >= vocab_size) {
          core::log_warning("{}: token {} ignored: id out of range, max={}", tc_path.string(), *id,
                            vocab_size - 1);
          continue;
        }
        std::string token = content->get<std::string>();
        const size_t i = static_cast<size_t>(*id);
        const Json* special = get(&data, "special");
        if (truthy(special) || looks_special(token)) {
          v.types[i] = static_cast<int32_t>(TokenType::Control);
        } else {
          token = replace_all(token, "\xe2\x96\x81", " ");  // pre-normalize user-defined spaces
          v.types[i] = static_cast<int32_t>(TokenType::UserDefined);
        }
        v.scores[i] = -1000.0f;
        v.tokens[i] = std::move(token);
      }
    }
  }
  return v;
}

void add_vocab_kvs(KvList& kv, const std::string& dir, const Vocab& vocab) {
  kv.set_string("tokenizer.ggml.model", "llama");
  kv.set_string("tokenizer.ggml.pre", "default");
  kv.set("tokenizer.ggml.tokens", gguf::Value::string_array(vocab.tokens));
  kv.set("tokenizer.ggml.scores", gguf::Value::array<float>(vocab.scores));
  kv.set("tokenizer.ggml.token_type", gguf::Value::array<int32_t>(vocab.types));
  SpecialVocab(dir, vocab.tokens.size()).add_to(kv);
  kv.set_bool("tokenizer.ggml.add_space_prefix", false);
}

}  // namespace medquant::models::gemma3
