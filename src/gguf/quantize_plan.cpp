#include "gguf/quantize_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <regex>

#include "core/error.h"

namespace medquant::gguf {
namespace {

using quant::Type;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

int64_t block_size(Type t) { return quant::traits(t).block_size; }

// llama.cpp's tensor_category: broad roles by name, whatever the architecture.
enum class Category {
  TokenEmbd,
  AttentionQ,
  AttentionV,
  AttentionK,
  AttentionQkv,
  AttentionKvB,
  AttentionOutput,
  FfnUp,
  FfnGate,
  FfnDown,
  Output,
  Other
};

bool is_token_embd(const std::string& name) {
  return name == "token_embd.weight" || name == "per_layer_token_embd.weight";
}

Category category_of(const std::string& name) {
  if (name == "output.weight") return Category::Output;
  if (is_token_embd(name)) return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttentionQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::AttentionKvB;
  if (contains(name, "attn_v.weight")) return Category::AttentionV;
  if (contains(name, "attn_k.weight")) return Category::AttentionK;
  if (contains(name, "attn_q.weight")) return Category::AttentionQ;
  if (contains(name, "attn_output.weight")) return Category::AttentionOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

bool is_attn_v_like(Category c) {
  return c == Category::AttentionV || c == Category::AttentionQkv || c == Category::AttentionKvB;
}

// The layer number as llama.cpp reads it: sscanf(name, "blk.%d.", &layer).
bool scan_layer(const std::string& name, int& layer) {
  return std::sscanf(name.c_str(), "blk.%d.", &layer) == 1;
}

// tensor_allows_quantization, in the same order of checks.
bool allows_quantization(const TensorInfo& t, const ModelParams& model, const PlanOptions& opt) {
  if (t.effective_n_dims() < 2) return false;
  const std::string& name = t.name;
  // Kept as llama.cpp writes it, size_t wrap-around for names under 6 bytes included.
  bool q = name.rfind("weight") == name.size() - 6;
  q &= !contains(name, "_norm.weight");
  q &= !opt.leave_output_tensor || name != "output.weight";
  q &= !contains(name, "ffn_gate_inp.weight");
  q &= !contains(name, "ffn_gate_tid2eid.weight");
  q &= !contains(name, "altup");
  q &= !contains(name, "laurel");
  q &= !contains(name, "per_layer_model_proj");
  q &= name != "position_embd.weight";
  q &= name != "token_types.weight";
  q &= !contains(name, "ssm_conv1d");
  q &= !contains(name, "shortconv.conv.weight");
  q &= !contains(name, "indexer.k_proj.weight");
  q &= !contains(name, "indexer.q_proj.weight");
  if (model.arch == "glm5-next") {
    for (std::string_view part :
         {"hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
          "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight",
          "ssm_g_b.weight", "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight",
          "attn_v_b.weight"})
      q &= !contains(name, part);
  }
  for (std::string_view part :
       {"time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
        ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"})
    q &= !contains(name, part);
  return q;
}

// The mutable state of one planning pass (llama.cpp's quantize_state_impl).
struct State {
  const ModelParams& model;
  const PlanOptions& opt;
  FileType ftype;
  std::vector<std::pair<std::regex, Type>> patterns;
  int n_attention_wv = 0, n_ffn_down = 0, n_ffn_gate = 0, n_ffn_up = 0;
  int i_attention_wv = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  int n_fallback = 0;
  bool has_tied_embeddings = true;
};

// tensor_type_fallback: a type whose block fits the row length.
Type fallback_type(State& s, const TensorInfo& t, Type target, bool& fell_back) {
  const int64_t ncols = t.ne[0];
  const int64_t qk = block_size(target);
  if (ncols % qk == 0) return target;
  ++s.n_fallback;
  fell_back = true;
  Type out = target;
  switch (target) {
    case Type::IQ1_S:
    case Type::IQ1_M:
    case Type::IQ2_XXS:
    case Type::IQ2_XS:
    case Type::IQ2_S:
    case Type::IQ3_XXS:
    case Type::IQ3_S:
    case Type::IQ4_XS: out = Type::IQ4_NL; break;
    case Type::Q2_0:
    case Type::Q2_K:
    case Type::Q3_K:
    case Type::TQ1_0:
    case Type::TQ2_0: out = Type::Q4_0; break;
    case Type::Q4_K: out = Type::Q5_0; break;
    case Type::Q5_K: out = Type::Q5_1; break;
    case Type::Q6_K: out = Type::Q8_0; break;
    default:
      if (qk <= 32) break;  // already a 32-block type: the check below makes it F16
      fail("tensor '{}': no fallback type is defined for {}", t.name, quant::type_name(target));
  }
  if (ncols % block_size(out) != 0) out = Type::F16;
  return out;
}

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// llama_tensor_get_type_impl for the mixes medquant makes (the IQ / TQ /
// MXFP4 / Q2_K_S branches never apply to them and are left out).
Type type_by_rules(State& s, Type new_type, const TensorInfo& t, Category category) {
  const std::string& name = t.name;
  const std::string& arch = s.model.arch;
  const FileType ftype = s.ftype;
  const bool falcon = arch == "falcon";
  const uint32_t n_expert = s.model.n_expert;

  auto layer_info = [&](int i_layer, int n_layer) -> std::pair<int, int> {
    // MoE experts are not in layer order, so the layer comes from the name.
    if (std::max<uint32_t>(1, n_expert) > 1) {
      if (!scan_layer(name, i_layer)) fail("tensor '{}': cannot determine its layer", name);
      if (i_layer < 0 || i_layer >= n_layer)
        fail("tensor '{}': layer {} is not in [0, {})", name, i_layer, n_layer);
    }
    return {i_layer, n_layer};
  };

  if (arch == "glm5-next" && (contains(name, "attn_q_a") || contains(name, "attn_q_b") ||
                              contains(name, "nextn.eh_proj"))) {
    if (new_type != Type::F32 && new_type != Type::BF16 && new_type != Type::F16) return Type::Q8_0;
  }

  if (category == Category::Output || (s.has_tied_embeddings && category == Category::TokenEmbd)) {
    if (s.opt.output_tensor_type) {
      new_type = *s.opt.output_tensor_type;
    } else {
      const int64_t nx = t.ne[0];
      const int64_t qk = block_size(new_type);
      if (falcon || nx % qk != 0) {
        new_type = Type::Q8_0;
      } else if (new_type != Type::Q8_0) {
        new_type = Type::Q6_K;
      }
    }
  } else if (category == Category::TokenEmbd) {
    if (s.opt.token_embedding_type) new_type = *s.opt.token_embedding_type;
  } else if (is_attn_v_like(category)) {
    if (ftype == FileType::MostlyQ2_K) {
      new_type = s.model.n_gqa() >= 4 ? Type::Q4_K : Type::Q3_K;
    } else if (ftype == FileType::MostlyQ3_K_M) {
      new_type = s.i_attention_wv < 2 ? Type::Q5_K : Type::Q4_K;
    } else if (ftype == FileType::MostlyQ3_K_L) {
      new_type = Type::Q5_K;
    } else if ((ftype == FileType::MostlyQ4_K_M || ftype == FileType::MostlyQ5_K_M) &&
               use_more_bits(s.i_attention_wv, s.n_attention_wv)) {
      new_type = Type::Q6_K;
    } else if (ftype == FileType::MostlyQ4_K_S && s.i_attention_wv < 4) {
      new_type = Type::Q5_K;
    }
    if (s.model.is_70b) {
      // 8 heads share attn_v in the 70B models: more bits cost little there.
      if (new_type == Type::Q3_K || new_type == Type::Q4_K) new_type = Type::Q5_K;
    }
    if (n_expert == 8) new_type = Type::Q8_0;
    ++s.i_attention_wv;
  } else if (category == Category::AttentionK) {
    if (n_expert == 8) new_type = Type::Q8_0;
  } else if (category == Category::AttentionQ) {
    // only the IQ3 mixes change attn_q
  } else if (category == Category::FfnDown) {
    auto [i_layer, n_layer] = layer_info(s.i_ffn_down, s.n_ffn_down);
    if (ftype == FileType::MostlyQ2_K) {
      new_type = Type::Q3_K;
    } else if (ftype == FileType::MostlyQ3_K_M) {
      new_type = i_layer < n_layer / 16                        ? Type::Q5_K
                 : !falcon || use_more_bits(i_layer, n_layer) ? Type::Q4_K
                                                               : Type::Q3_K;
    } else if (ftype == FileType::MostlyQ3_K_L) {
      new_type = falcon ? Type::Q4_K : Type::Q5_K;
    } else if (ftype == FileType::MostlyQ4_K_M) {
      if (falcon) {
        new_type = i_layer < n_layer / 16              ? Type::Q6_K
                   : use_more_bits(i_layer, n_layer) ? Type::Q5_K
                                                     : Type::Q4_K;
      } else if (use_more_bits(i_layer, n_layer)) {
        new_type = Type::Q6_K;
      }
    } else if (ftype == FileType::MostlyQ5_K_M && use_more_bits(i_layer, n_layer)) {
      new_type = Type::Q6_K;
    } else if (ftype == FileType::MostlyQ4_K_S && !falcon && i_layer < n_layer / 8) {
      new_type = Type::Q5_K;
    } else if ((ftype == FileType::MostlyQ4_0 || ftype == FileType::MostlyQ5_0) &&
               s.opt.has_imatrix && i_layer < n_layer / 8) {
      // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0, with an imatrix only.
      new_type = ftype == FileType::MostlyQ4_0 ? Type::Q4_1 : Type::Q5_1;
    }
    ++s.i_ffn_down;
  } else if (category == Category::AttentionOutput) {
    if (!falcon) {
      if (n_expert == 8) {
        if (ftype == FileType::MostlyQ2_K || ftype == FileType::MostlyQ3_K_S ||
            ftype == FileType::MostlyQ3_K_M || ftype == FileType::MostlyQ4_K_S ||
            ftype == FileType::MostlyQ4_K_M)
          new_type = Type::Q5_K;
      } else {
        if (ftype == FileType::MostlyQ2_K) new_type = Type::Q3_K;
        else if (ftype == FileType::MostlyQ3_K_M) new_type = Type::Q4_K;
        else if (ftype == FileType::MostlyQ3_K_L) new_type = Type::Q5_K;
      }
    } else {
      if (ftype == FileType::MostlyQ3_K_L) new_type = Type::Q4_K;
    }
  } else if (category == Category::AttentionQkv) {
    if (ftype == FileType::MostlyQ3_K_M || ftype == FileType::MostlyQ3_K_L) new_type = Type::Q4_K;
    else if (ftype == FileType::MostlyQ4_K_M) new_type = Type::Q5_K;
    else if (ftype == FileType::MostlyQ5_K_M) new_type = Type::Q6_K;
  } else if (category == Category::FfnGate) {
    layer_info(s.i_ffn_gate, s.n_ffn_gate);  // only the IQ3_XS mix changes ffn_gate
    ++s.i_ffn_gate;
  } else if (category == Category::FfnUp) {
    layer_info(s.i_ffn_up, s.n_ffn_up);
    ++s.i_ffn_up;
  }
  return new_type;
}

// llama_tensor_get_type (the caller has checked allows_quantization).
Type type_for(State& s, const TensorInfo& t, Category category, bool& fell_back) {
  const PlanOptions& opt = s.opt;
  if (opt.token_embedding_type && category == Category::TokenEmbd) {
    // per_layer_token_embd follows --token-embedding-type unless a --tensor-type names it
    bool named = false;
    if (t.name == "per_layer_token_embd.weight")
      for (const auto& [re, type] : s.patterns)
        if (std::regex_search(t.name, re)) {
          named = true;
          break;
        }
    if (!named) return *opt.token_embedding_type;
  }
  if (opt.output_tensor_type && category == Category::Output) return *opt.output_tensor_type;

  Type new_type = opt.mix.default_type;
  if (quant::traits(new_type).is_quantized) {
    bool manual = false;
    for (const auto& [re, type] : s.patterns) {
      if (std::regex_search(t.name, re)) {
        new_type = type;
        manual = true;
        break;
      }
    }
    if (!manual && !opt.pure) new_type = type_by_rules(s, new_type, t, category);
    new_type = fallback_type(s, t, new_type, fell_back);
  }
  return new_type;
}

}  // namespace

const std::vector<Mix>& mixes() {
  static const std::vector<Mix> kMixes = {
      {"Q4_0", FileType::MostlyQ4_0, Type::Q4_0, "4.34G, +0.4685 ppl @ Llama-3-8B"},
      {"Q4_1", FileType::MostlyQ4_1, Type::Q4_1, "4.78G, +0.4511 ppl @ Llama-3-8B"},
      {"Q5_0", FileType::MostlyQ5_0, Type::Q5_0, "5.21G, +0.1316 ppl @ Llama-3-8B"},
      {"Q5_1", FileType::MostlyQ5_1, Type::Q5_1, "5.65G, +0.1062 ppl @ Llama-3-8B"},
      {"Q2_K", FileType::MostlyQ2_K, Type::Q2_K, "2.96G, +3.5199 ppl @ Llama-3-8B"},
      {"Q3_K_S", FileType::MostlyQ3_K_S, Type::Q3_K, "3.41G, +1.6321 ppl @ Llama-3-8B"},
      {"Q3_K_M", FileType::MostlyQ3_K_M, Type::Q3_K, "3.74G, +0.6569 ppl @ Llama-3-8B"},
      {"Q3_K_L", FileType::MostlyQ3_K_L, Type::Q3_K, "4.03G, +0.5562 ppl @ Llama-3-8B"},
      {"Q4_K_S", FileType::MostlyQ4_K_S, Type::Q4_K, "4.37G, +0.2689 ppl @ Llama-3-8B"},
      {"Q4_K_M", FileType::MostlyQ4_K_M, Type::Q4_K, "4.58G, +0.1754 ppl @ Llama-3-8B"},
      {"Q5_K_S", FileType::MostlyQ5_K_S, Type::Q5_K, "5.21G, +0.1049 ppl @ Llama-3-8B"},
      {"Q5_K_M", FileType::MostlyQ5_K_M, Type::Q5_K, "5.33G, +0.0569 ppl @ Llama-3-8B"},
      {"Q6_K", FileType::MostlyQ6_K, Type::Q6_K, "6.14G, +0.0217 ppl @ Llama-3-8B"},
      {"Q8_0", FileType::MostlyQ8_0, Type::Q8_0, "7.96G, +0.0026 ppl @ Llama-3-8B"},
      {"F16", FileType::MostlyF16, Type::F16, "14.00G, +0.0020 ppl @ Mistral-7B"},
      {"BF16", FileType::MostlyBF16, Type::BF16, "14.00G, -0.0050 ppl @ Mistral-7B"},
      {"F32", FileType::AllF32, Type::F32, "26.00G @ 7B"},
  };
  return kMixes;
}

std::optional<Mix> parse_mix(std::string_view name) {
  static const std::pair<std::string_view, std::string_view> kAliases[] = {
      {"Q3_K", "Q3_K_M"}, {"Q4_K", "Q4_K_M"}, {"Q5_K", "Q5_K_M"}};
  for (const auto& [alias, target] : kAliases)
    if (iequals(name, alias)) name = target;
  for (const auto& m : mixes())
    if (iequals(m.name, name)) return m;
  // llama-quantize also takes the numeric file type.
  if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit) && name.size() < 6) {
    const auto id = static_cast<uint32_t>(std::stoul(std::string(name)));
    for (const auto& m : mixes())
      if (static_cast<uint32_t>(m.file_type) == id) return m;
  }
  return std::nullopt;
}

ModelParams ModelParams::from(const Header& h, const std::string& path) {
  ModelParams p;
  const auto arch = h.get_string("general.architecture");
  if (!arch) fail("{}: no general.architecture string: not a llama.cpp model file", path);
  p.arch = *arch;
  // llama.cpp reads no hyperparameters for vision projectors ("clip").
  if (p.arch == "clip") return p;

  auto key = [&](std::string_view suffix) { return fmt::format("{}.{}", p.arch, suffix); };
  auto read_u32 = [&](const std::string& k, bool required, uint32_t fallback) -> uint32_t {
    const KeyValue* kv = h.find(k);
    if (!kv) {
      if (required) fail("{}: key '{}' not found", path, k);
      return fallback;
    }
    // Per-layer arrays (get_key_or_arr): the rules only look at layer 0.
    const auto v = kv->value.count() > 0 ? kv->value.as_int(0) : std::nullopt;
    if (!v || *v < 0 || *v > 0xffffffffll)
      fail("{}: key '{}' is {}, not an unsigned 32-bit integer", path, k,
           kv->value.to_string(4));
    return static_cast<uint32_t>(*v);
  };
  p.n_layer = read_u32(key("block_count"), true, 0);
  const uint32_t n_nextn = read_u32(key("nextn_predict_layers"), false, 0);
  p.n_expert = read_u32(key("expert_count"), false, 0);
  p.n_head = read_u32(key("attention.head_count"), false, 0);
  p.n_head_kv = read_u32(key("attention.head_count_kv"), false, p.n_head);

  // Model sizes as the architectures' load_hparams set them; 70B is the only
  // one the rules look at.
  const uint32_t n_layer_main = p.n_layer - std::min(p.n_layer, n_nextn);
  if (p.arch == "llama")
    p.is_70b = p.n_expert != 8 && n_layer_main == 80 && p.n_head != p.n_head_kv;
  else if (p.arch == "qwen2" || p.arch == "deci" || p.arch == "olmo")
    p.is_70b = n_layer_main == 80;
  else if (p.arch == "jais2")
    p.is_70b = n_layer_main == 68;
  return p;
}

TensorTypeOverride parse_tensor_type_override(std::string_view arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string_view::npos)
    fail("--tensor-type '{}': expected PATTERN=TYPE, e.g. attn_v=q8_0", arg);
  if (eq == 0) fail("--tensor-type '{}': missing tensor name pattern", arg);
  if (eq + 1 == arg.size()) fail("--tensor-type '{}': missing type", arg);
  TensorTypeOverride o;
  o.pattern = std::string(arg.substr(0, eq));
  for (auto& c : o.pattern) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto type = quant::parse_type(arg.substr(eq + 1));
  if (!type) fail("--tensor-type '{}': unknown type '{}'", arg, arg.substr(eq + 1));
  o.type = *type;
  try {
    std::regex check(o.pattern);
  } catch (const std::regex_error& e) {
    fail("--tensor-type '{}': bad regular expression: {}", arg, e.what());
  }
  return o;
}

std::vector<size_t> llama_tensor_order(const std::vector<TensorInfo>& tensors) {
  std::vector<int> layer(tensors.size(), -1);
  for (size_t i = 0; i < tensors.size(); ++i) scan_layer(tensors[i].name, layer[i]);
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (layer[a] != layer[b]) return layer[a] < layer[b];
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

Plan plan_quantization(const Header& in, const PlanOptions& opt, const std::string& path) {
  const ModelParams model = ModelParams::from(in, path);
  State s{model, opt, opt.mix.file_type, {}};
  for (const auto& o : opt.tensor_types) s.patterns.emplace_back(std::regex(o.pattern), o.type);

  const std::vector<size_t> order = llama_tensor_order(in.tensors);
  for (size_t i : order) {
    const Category c = category_of(in.tensors[i].name);
    if (is_attn_v_like(c)) ++s.n_attention_wv;
    if (c == Category::Output) s.has_tied_embeddings = false;
  }
  s.n_ffn_down = s.n_ffn_gate = s.n_ffn_up = static_cast<int>(model.n_layer);

  Plan plan;
  for (size_t i : order) {
    const TensorInfo& t = in.tensors[i];
    PlannedTensor p;
    p.source = i;
    p.type = t.type;
    if (allows_quantization(t, model, opt)) {
      with_context(fmt::format("{}: tensor '{}'", path, t.name), [&] {
        p.type = type_for(s, t, category_of(t.name), p.fallback);
      });
      if (t.ne[0] % block_size(p.type) != 0)
        fail("{}: tensor '{}' has rows of {} values, not a multiple of the {}-value blocks of {} "
             "(set by --token-embedding-type / --output-tensor-type)",
             path, t.name, t.ne[0], block_size(p.type), quant::type_name(p.type));
    }
    p.quantize = p.type != t.type;
    plan.tensors.push_back(p);
  }
  plan.n_fallback = s.n_fallback;
  return plan;
}

std::vector<KeyValue> quantized_kvs(const Header& in, FileType file_type,
                                    const ImatrixMetadata* imatrix) {
  std::vector<KeyValue> kvs = in.kvs;
  // gguf_set_val_*: an existing key is removed and the new value appended.
  auto set = [&](std::string_view key, Value v) {
    std::erase_if(kvs, [&](const KeyValue& kv) { return kv.key == key; });
    kvs.push_back({std::string(key), std::move(v)});
  };
  auto remove = [&](std::string_view key) {
    std::erase_if(kvs, [&](const KeyValue& kv) { return kv.key == key; });
  };
  set("general.quantization_version", Value::scalar<uint32_t>(2));
  set("general.file_type", Value::scalar<uint32_t>(static_cast<uint32_t>(file_type)));
  remove("split.no");
  remove("split.count");
  remove("split.tensors.count");
  if (imatrix) {
    // llama-quantize passes these as KV overrides with 127-byte string buffers.
    set("quantize.imatrix.file", Value::string(imatrix->file.substr(0, 127)));
    if (imatrix->dataset) set("quantize.imatrix.dataset", Value::string(imatrix->dataset->substr(0, 127)));
    set("quantize.imatrix.entries_count", Value::scalar<uint32_t>(imatrix->entries));
    if (imatrix->chunks > 0)
      set("quantize.imatrix.chunks_count",
          Value::scalar<uint32_t>(static_cast<uint32_t>(imatrix->chunks)));
  }
  return kvs;
}

}  // namespace medquant::gguf
