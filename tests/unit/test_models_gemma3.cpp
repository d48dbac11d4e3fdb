// models/gemma3 against its references: libsentencepiece for the
// tokenizer.model reader, transformers' AutoConfig for the config defaults,
// gguf-py's naming heuristics for general.* (the last two recorded by
// tools/make_expected_gguf.py in tests/fixtures/expected-gguf/). The converted
// files themselves are checked against llama.cpp's converter in
// tests/peer/test_convert_gguf.py.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/hf_config.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "models/gemma3/config.h"
#include "models/gemma3/metadata.h"
#include "models/gemma3/sentencepiece.h"
#include "models/gemma3/tensors.h"

namespace {

namespace fs = std::filesystem;
namespace g3 = medquant::models::gemma3;
using Json = nlohmann::ordered_json;

const fs::path kFixtures = MEDQUANT_FIXTURES;

Json load(const fs::path& p) {
  std::ifstream f(p);
  return Json::parse(f);
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("medquant-test-gemma3-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---------------------------------------------------------------- tokenizer.model

class Gemma3SentencePieceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Gemma3SentencePieceTest, SameAsLibsentencepiece) {
  const fs::path model = kFixtures / GetParam() / "tokenizer.model";
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(model.string()).ok());
  const auto pieces = g3::read_sentencepiece_model(model.string());
  ASSERT_EQ(static_cast<int>(pieces.size()), sp.GetPieceSize());
  int types_seen[7] = {};
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    const auto& p = pieces[static_cast<size_t>(id)];
    ASSERT_EQ(p.piece, sp.IdToPiece(id)) << id;
    ASSERT_EQ(p.score, sp.GetScore(id)) << id;
    ASSERT_EQ(p.type == 2, sp.IsUnknown(id)) << id;
    ASSERT_EQ(p.type == 3, sp.IsControl(id)) << id;
    ASSERT_EQ(p.type == 5, sp.IsUnused(id)) << id;
    ASSERT_EQ(p.type == 6, sp.IsByte(id)) << id;
    ASSERT_GE(p.type, 1);
    ASSERT_LE(p.type, 6);
    ++types_seen[p.type];
  }
  // The fixture has every kind the converter distinguishes except UNUSED.
  EXPECT_GT(types_seen[1], 0);
  EXPECT_GT(types_seen[2], 0);
  EXPECT_GT(types_seen[3], 0);
  EXPECT_GT(types_seen[4], 0);
  EXPECT_GT(types_seen[6], 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Gemma3SentencePieceTest, ::testing::Values("tiny-gemma3", "tiny-gemma3-text"));

TEST(Gemma3SentencePiece, BrokenFilesAreErrors) {
  const fs::path dir = temp_dir("spm");
  const std::string good = medquant::core::read_text_file((kFixtures / "tiny-gemma3" / "tokenizer.model").string());
  auto write = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
    return (dir / name).string();
  };
  // Truncated in the middle of the pieces, a length past the end, a bad wire
  // type, a file of text, no pieces at all.
  for (const auto& [name, bytes] :
       std::vector<std::pair<std::string, std::string>>{{"truncated", good.substr(0, good.size() / 3)},
                                                        {"length", std::string("\x0a\xff\xff\x03", 4)},
                                                        {"wire", std::string("\x0f\x01", 2)},
                                                        {"text", "hello, this is not a model\n"},
                                                        {"empty-message", std::string("\x10\x01", 2)}}) {
    const std::string path = write(name, bytes);
    try {
      g3::read_sentencepiece_model(path);
      ADD_FAILURE() << name << " was accepted";
    } catch (const medquant::Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

// ---------------------------------------------------------------- config.json

TEST(Gemma3Config, DefaultsAreTransformers) {
  const Json doc = load(kFixtures / "expected-gguf" / "config_defaults.json");
  for (const Json& c : doc["configs"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const fs::path dir = temp_dir(c["name"].get<std::string>());
    std::ofstream(dir / "config.json") << c["config"].dump();
    const g3::Config cfg = g3::read_config(medquant::checkpoint::HfConfig::load(dir.string()));
    const Json& t = c["text"];
    EXPECT_EQ(cfg.text.vocab_size, t["vocab_size"].get<int64_t>());
    EXPECT_EQ(cfg.text.hidden_size, t["hidden_size"].get<int64_t>());
    EXPECT_EQ(cfg.text.intermediate_size, t["intermediate_size"].get<int64_t>());
    EXPECT_EQ(cfg.text.num_hidden_layers, t["num_hidden_layers"].get<int64_t>());
    EXPECT_EQ(cfg.text.num_attention_heads, t["num_attention_heads"].get<int64_t>());
    EXPECT_EQ(cfg.text.num_key_value_heads, t["num_key_value_heads"].get<int64_t>());
    EXPECT_EQ(cfg.text.head_dim, t["head_dim"].get<int64_t>());
    EXPECT_EQ(cfg.text.max_position_embeddings, t["max_position_embeddings"].get<int64_t>());
    EXPECT_EQ(cfg.text.rms_norm_eps, t["rms_norm_eps"].get<double>());
    EXPECT_EQ(cfg.text.sliding_window, t["sliding_window"].get<int64_t>());
    EXPECT_EQ(cfg.text.rope_theta, t["rope_theta"].get<double>());
    ASSERT_TRUE(cfg.text.rope_theta_swa.has_value());
    EXPECT_EQ(*cfg.text.rope_theta_swa, t["rope_local_base_freq"].get<double>());
    if (t["rope_scaling"].is_null()) {
      EXPECT_FALSE(cfg.text.rope_type.has_value());
    } else {
      EXPECT_EQ(cfg.text.rope_type.value_or(""), t["rope_scaling"]["rope_type"].get<std::string>());
      EXPECT_EQ(cfg.text.rope_factor.value_or(0), t["rope_scaling"]["factor"].get<double>());
    }
    EXPECT_EQ(cfg.text.final_logit_softcapping.has_value(), !t["final_logit_softcapping"].is_null());
    EXPECT_EQ(cfg.text.tie_word_embeddings, t["tie_word_embeddings"].get<bool>());
    EXPECT_EQ(cfg.multimodal, c.contains("vision"));
    if (c.contains("vision")) {
      const Json& v = c["vision"];
      EXPECT_EQ(cfg.vision.hidden_size, v["hidden_size"].get<int64_t>());
      EXPECT_EQ(cfg.vision.intermediate_size, v["intermediate_size"].get<int64_t>());
      EXPECT_EQ(cfg.vision.num_hidden_layers, v["num_hidden_layers"].get<int64_t>());
      EXPECT_EQ(cfg.vision.num_attention_heads, v["num_attention_heads"].get<int64_t>());
      EXPECT_EQ(cfg.vision.num_channels, v["num_channels"].get<int64_t>());
      EXPECT_EQ(cfg.vision.image_size, v["image_size"].get<int64_t>());
      EXPECT_EQ(cfg.vision.patch_size, v["patch_size"].get<int64_t>());
      EXPECT_EQ(cfg.vision.layer_norm_eps, v["layer_norm_eps"].get<double>());
      EXPECT_EQ(cfg.mm_tokens_per_image, c["mm_tokens_per_image"].get<int64_t>());
    }
    fs::remove_all(dir);
  }
}

std::string error_of(const Json& config) {
  const fs::path dir = temp_dir("bad");
  std::ofstream(dir / "config.json") << config.dump();
  std::string what;
  try {
    g3::read_config(medquant::checkpoint::HfConfig::load(dir.string()));
  } catch (const medquant::Error& e) {
    what = e.what();
  }
  fs::remove_all(dir);
  return what;
}

TEST(Gemma3Config, UnsupportedAndBrokenConfigsAreErrors) {
  const std::string arch = error_of({{"architectures", {"LlamaForCausalLM"}}});
  EXPECT_NE(arch.find("LlamaForCausalLM"), std::string::npos) << arch;
  EXPECT_NE(arch.find("Gemma3ForConditionalGeneration, Gemma3ForCausalLM"), std::string::npos) << arch;
  EXPECT_NE(error_of({{"model_type", "gemma3"}}).find("architectures"), std::string::npos);
  const std::string type = error_of({{"architectures", {"Gemma3ForCausalLM"}}, {"hidden_size", "big"}});
  EXPECT_NE(type.find("hidden_size is a string, expected an integer"), std::string::npos) << type;
  const std::string heads =
      error_of({{"architectures", {"Gemma3ForCausalLM"}}, {"num_attention_heads", 6}, {"num_key_value_heads", 4}});
  EXPECT_NE(heads.find("not a multiple"), std::string::npos) << heads;
  const std::string gemma2 = error_of({{"architectures", {"Gemma3ForCausalLM"}}, {"attn_logit_softcapping", 50.0}});
  EXPECT_NE(gemma2.find("attn_logit_softcapping"), std::string::npos) << gemma2;
  const std::string vision = error_of(
      {{"architectures", {"Gemma3ForConditionalGeneration"}}, {"vision_config", {{"image_size", 900}, {"patch_size", 14}}}});
  EXPECT_NE(vision.find("not a multiple of patch_size"), std::string::npos) << vision;
}

TEST(Gemma3Tensors, NamesOfBothLayoutsAndErrors) {
  g3::Config c;
  c.multimodal = true;
  c.text.num_hidden_layers = 2;
  c.vision.num_hidden_layers = 2;
  auto text = [&](const std::string& n) { return g3::tensor_rule(n, g3::Part::Text, c); };
  auto vision = [&](const std::string& n) { return g3::tensor_rule(n, g3::Part::Vision, c); };
  EXPECT_EQ(text("language_model.model.layers.1.self_attn.q_norm.weight")->gguf_name, "blk.1.attn_q_norm.weight");
  EXPECT_EQ(text("model.language_model.layers.1.self_attn.q_norm.weight")->gguf_name, "blk.1.attn_q_norm.weight");
  EXPECT_TRUE(text("model.language_model.norm.weight")->add_one);
  EXPECT_FALSE(text("model.layers.0.mlp.up_proj.weight")->add_one);
  EXPECT_EQ(text("lm_head.weight")->gguf_name, "output.weight");
  EXPECT_FALSE(text("vision_tower.vision_model.post_layernorm.weight").has_value());
  EXPECT_FALSE(text("model.multi_modal_projector.mm_soft_emb_norm.weight").has_value());
  EXPECT_FALSE(text("model.layers.0.self_attn.rotary_emb.inv_freq").has_value());
  EXPECT_EQ(vision("model.vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias")->gguf_name, "v.blk.1.ffn_down.bias");
  EXPECT_EQ(vision("multi_modal_projector.mm_input_projection_weight")->forced, medquant::quant::Type::F16);
  EXPECT_EQ(vision("vision_tower.vision_model.embeddings.patch_embedding.weight")->forced, medquant::quant::Type::F32);
  EXPECT_TRUE(vision("multi_modal_projector.mm_soft_emb_norm.weight")->add_one);
  EXPECT_FALSE(vision("vision_tower.vision_model.encoder.layers.1.layer_norm1.weight")->add_one);
  EXPECT_FALSE(vision("vision_tower.vision_model.head.attention.in_proj_weight").has_value());
  EXPECT_FALSE(vision("language_model.model.norm.weight").has_value());
  EXPECT_THROW(text("model.layers.0.mlp.experts.weight"), medquant::Error);
  EXPECT_THROW(text("model.layers.7.mlp.up_proj.weight"), medquant::Error);  // past num_hidden_layers
  EXPECT_THROW(vision("vision_tower.vision_model.encoder.layers.0.attn.weight"), medquant::Error);
  // Output types as the reference's prepare_tensors decides them.
  using medquant::quant::Type;
  const auto up = *text("model.layers.0.mlp.up_proj.weight");
  EXPECT_EQ(g3::tensor_type(up, 2, 256, Type::BF16), Type::BF16);
  EXPECT_EQ(g3::tensor_type(*text("model.norm.weight"), 1, 256, Type::BF16), Type::F32);
  EXPECT_EQ(g3::tensor_type(*vision("vision_tower.vision_model.encoder.layers.0.mlp.fc2.weight"), 2, 4304, Type::Q8_0),
            Type::F16);  // 4304 % 32 != 0: the QuantError fallback
  EXPECT_EQ(g3::tensor_type(*vision("multi_modal_projector.mm_input_projection_weight"), 2, 2560, Type::F32), Type::F16);
}

// ---------------------------------------------------------------- general.* naming

TEST(Gemma3Metadata, ModelIdComponentsAreGgufPys) {
  const Json doc = load(kFixtures / "expected-gguf" / "model_names.json");
  ASSERT_GT(doc["model_ids"].size(), 100u);
  auto opt = [](const Json& j) { return j.is_null() ? std::optional<std::string>() : std::optional(j.get<std::string>()); };
  for (const Json& e : doc["model_ids"]) {
    const std::string id = e["id"];
    const int64_t total = e["total_params"];
    SCOPED_TRACE(id + " @ " + std::to_string(total));
    const auto c = g3::model_id_components(id, total);
    const Json& x = e["components"];
    EXPECT_EQ(c.full_name, opt(x[0]));
    EXPECT_EQ(c.organization, opt(x[1]));
    EXPECT_EQ(c.basename, opt(x[2]));
    EXPECT_EQ(c.finetune, opt(x[3]));
    EXPECT_EQ(c.version, opt(x[4]));
    EXPECT_EQ(c.size_label, opt(x[5]));
    if (c.full_name) {
      EXPECT_EQ(g3::id_to_title(*c.full_name), e["title"].get<std::string>());
    }
  }
  for (const Json& e : doc["size_labels"])
    EXPECT_EQ(g3::size_label(e["params"].get<uint64_t>()), e["label"].get<std::string>()) << e["params"];
}

}  // namespace
