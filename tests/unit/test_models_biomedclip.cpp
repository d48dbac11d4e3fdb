// models/biomedclip: the model description worked out from open_clip configs
// and state-dict shapes (sizes from the weights, the heads rule, defaults,
// config/weight mismatches, unsupported variants), on the tiny fixture and on
// the shapes of the real BiomedCLIP with its real (size-less) config; and the
// exported graphs' structure. Numbers are checked against ONNX Runtime in
// tests/peer/test_export_biomedclip.py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "core/atomic_file.h"
#include "core/error.h"
#include "models/biomedclip/config.h"
#include "models/biomedclip/export.h"

using namespace medquant;
using namespace medquant::models::biomedclip;
using ::testing::HasSubstr;
namespace fs = std::filesystem;

namespace {

const fs::path kFixture = fs::path(MEDQUANT_FIXTURES) / "tiny-biomedclip";

// microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224's open_clip_config.json.
const char* kRealConfig = R"({
  "model_cfg": {
    "embed_dim": 512,
    "vision_cfg": {
      "timm_model_name": "vit_base_patch16_224",
      "timm_model_pretrained": false,
      "timm_pool": "",
      "timm_proj": "linear",
      "image_size": 224
    },
    "text_cfg": {
      "hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
      "hf_tokenizer_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
      "hf_proj_type": "mlp",
      "hf_pooler_type": "cls_last_hidden_state_pooler",
      "context_length": 256
    }
  },
  "preprocess_cfg": {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711]
  }
})";

struct Sizes {
  int64_t width = 768, depth = 12, mlp = 3072, patch = 16, image = 224, embed = 512;
  int64_t hidden = 768, layers = 12, ffn = 3072, vocab = 30522, positions = 512, types = 2;
  int64_t proj_mid = 640;
};

// The state dict shapes open_clip saves for a BiomedCLIP-shaped model.
ShapeTable make_shapes(const Sizes& s) {
  ShapeTable t;
  VisionConfig v;
  v.width = s.width;
  v.depth = s.depth;
  v.mlp_hidden = s.mlp;
  v.patch_size = s.patch;
  v.image_size = s.image;
  v.head = "visual.head.proj";
  v.output_dim = s.embed;
  for (const auto& e : expected_vision_tensors(v)) t[e.name] = e.shape;
  TextConfig x;
  x.bert.prefix = "text.transformer.";
  x.bert.hidden = s.hidden;
  x.bert.layers = s.layers;
  x.bert.intermediate = s.ffn;
  x.bert.vocab_size = s.vocab;
  x.bert.max_positions = s.positions;
  x.bert.type_vocab = s.types;
  x.proj = TextProj::Mlp;
  x.proj_hidden = s.proj_mid;
  x.output_dim = s.embed;
  for (const auto& e : expected_text_tensors(x)) t[e.name] = e.shape;
  t["logit_scale"] = {};
  t["text.transformer.embeddings.position_ids"] = {1, s.positions};
  return t;
}

ConfigFiles real_files() {
  ConfigFiles f;
  f.open_clip = Json::parse(kRealConfig);
  return f;
}

Json& vision_cfg(ConfigFiles& f) { return f.open_clip["model_cfg"]["vision_cfg"]; }
Json& text_cfg(ConfigFiles& f) { return f.open_clip["model_cfg"]["text_cfg"]; }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- the real BiomedCLIP: sizes come from the weights ------------------------

TEST(BiomedClipConfig, RealConfigSizesFromWeights) {
  const auto c = describe_biomedclip(real_files(), make_shapes({}));
  EXPECT_EQ(c.embed_dim, 512);
  EXPECT_EQ(c.vision.width, 768);
  EXPECT_EQ(c.vision.depth, 12);
  EXPECT_EQ(c.vision.heads, 12);
  EXPECT_THAT(c.vision.heads_rule, HasSubstr("vit_base_patch16_224"));
  EXPECT_EQ(c.vision.patch_size, 16);
  EXPECT_EQ(c.vision.image_size, 224);
  EXPECT_EQ(c.vision.tokens(), 197);
  EXPECT_EQ(c.vision.mlp_hidden, 3072);
  EXPECT_EQ(c.vision.pool, VisionPool::Token);  // timm_pool "" keeps timm's token pool
  EXPECT_EQ(c.vision.head, "visual.head.proj");
  EXPECT_FALSE(c.vision.head_bias);
  EXPECT_EQ(c.vision.output_dim, 512);
  EXPECT_FLOAT_EQ(c.vision.layer_norm_eps, 1e-6f);
  EXPECT_EQ(c.text.bert.hidden, 768);
  EXPECT_EQ(c.text.bert.layers, 12);
  EXPECT_EQ(c.text.bert.heads, 12);  // no BERT config: hidden / 64
  EXPECT_THAT(c.text.bert.heads_rule, HasSubstr("hidden / 64"));
  EXPECT_EQ(c.text.bert.intermediate, 3072);
  EXPECT_EQ(c.text.bert.vocab_size, 30522);
  EXPECT_EQ(c.text.bert.max_positions, 512);
  EXPECT_FLOAT_EQ(c.text.bert.layer_norm_eps, 1e-12f);
  EXPECT_EQ(c.text.pool, TextPool::Cls);
  EXPECT_EQ(c.text.proj, TextProj::Mlp);
  EXPECT_EQ(c.text.proj_hidden, 640);
  EXPECT_EQ(c.text.output_dim, 512);
  EXPECT_EQ(c.text.context_length, 256);
  EXPECT_EQ(c.preprocess.image_size, 224);
  EXPECT_DOUBLE_EQ(c.preprocess.mean[0], 0.48145466);
  EXPECT_DOUBLE_EQ(c.preprocess.std[2], 0.27577711);
  EXPECT_EQ(c.preprocess.interpolation, "bicubic");
}

TEST(BiomedClipConfig, BertConfigGivesHeadsAndIsChecked) {
  auto f = real_files();
  f.text = Json{{"model_type", "bert"}, {"hidden_size", 768}, {"num_attention_heads", 16},
                {"layer_norm_eps", 1e-5}};
  f.text_path = "text_config.json";
  // 768 / 16 = 48-wide heads: the config's number wins over the 64 rule.
  const auto c = describe_biomedclip(f, make_shapes({}));
  EXPECT_EQ(c.text.bert.heads, 16);
  EXPECT_THAT(c.text.bert.heads_rule, HasSubstr("num_attention_heads"));
  EXPECT_FLOAT_EQ(c.text.bert.layer_norm_eps, 1e-5f);

  f.text = Json{{"hidden_size", 1024}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("shape mismatch between config and weights: text_config.json: hidden_size is 1024"));
  f.text = Json{{"num_hidden_layers", 6}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("num_hidden_layers is 6"));
  f.text = Json{{"hidden_act", "gelu_new"}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("hidden_act 'gelu_new' is not supported"));
  f.text = Json{{"position_embedding_type", "relative_key"}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("absolute only"));
  f.text = Json{{"model_type", "roberta"}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("model_type 'roberta' is not supported"));
  f.text = Json{{"num_attention_heads", 7}};
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("does not split into 7 attention heads"));
}

TEST(BiomedClipConfig, OtherViTSizesByName) {
  auto f = real_files();
  vision_cfg(f)["timm_model_name"] = "vit_small_patch16_224.augreg_in21k";
  Sizes s;
  s.width = 384;
  s.mlp = 1536;
  const auto c = describe_biomedclip(f, make_shapes(s));
  EXPECT_EQ(c.vision.heads, 6);
  EXPECT_EQ(c.vision.width, 384);

  // The name says base (768 wide) but the weights are 384 wide.
  vision_cfg(f)["timm_model_name"] = "vit_base_patch16_224";
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes(s)); }),
              HasSubstr("shape mismatch between config and weights: timm model 'vit_base_patch16_224' width is 768"));
}

TEST(BiomedClipConfig, StatedSizesMustMatchWeights) {
  auto f = real_files();
  vision_cfg(f)["width"] = 1024;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("vision_cfg.width is 1024, but 'visual.trunk.patch_embed.proj.weight' [768, 3, 16, 16] gives 768"));
  f = real_files();
  vision_cfg(f)["image_size"] = 384;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("vision_cfg.image_size is 384"));
  f = real_files();
  vision_cfg(f)["head_width"] = 96;  // 768 / 96 = 8 heads, but vit_base has 12
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("head_width is 96"));
  f = real_files();
  vision_cfg(f)["head_width"] = 64;
  EXPECT_EQ(describe_biomedclip(f, make_shapes({})).vision.heads, 12);
  f = real_files();
  vision_cfg(f)["mlp_ratio"] = 2.0;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("mlp_ratio 2 x width 768"));
  f = real_files();
  f.open_clip["model_cfg"]["embed_dim"] = 256;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("model_cfg.embed_dim is 256"));
  f = real_files();
  text_cfg(f)["context_length"] = 1024;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("context_length is 1024, but the text tower has 512 positions"));
}

TEST(BiomedClipConfig, TensorShapesAndLeftovers) {
  auto shapes = make_shapes({});
  shapes["visual.trunk.blocks.3.attn.qkv.weight"] = {2304, 512};
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("tensor 'visual.trunk.blocks.3.attn.qkv.weight' is [2304, 512], the model "
                        "described by the config needs [2304, 768]"));
  shapes = make_shapes({});
  shapes.erase("visual.trunk.blocks.11.mlp.fc2.bias");
  shapes.erase("text.transformer.encoder.layer.4.output.LayerNorm.weight");
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("tensor is missing: 'visual.trunk.blocks.11.mlp.fc2.bias'"));
  shapes = make_shapes({});
  shapes.erase("text.proj.2.weight");
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("'text.proj.2.weight'"));
  shapes = make_shapes({});
  shapes.erase("logit_scale");
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("'logit_scale' is missing"));
  // Layer scale (a ViT variant) would silently be dropped: refused.
  shapes = make_shapes({});
  shapes["visual.trunk.blocks.0.ls1.gamma"] = {768};
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("'visual.trunk.blocks.0.ls1.gamma' [768]"));
  // An MLP projection whose middle width is not open_clip's (H + E) / 2.
  Sizes s;
  s.proj_mid = 600;
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), make_shapes(s)); }),
              HasSubstr("'text.proj.0.weight' is [600, 768], the model described by the config needs [640, 768]"));
  // A BERT pooler the CLS-last-hidden-state pooler does not use is harmless.
  shapes = make_shapes({});
  shapes["text.transformer.pooler.dense.weight"] = {768, 768};
  shapes["text.transformer.pooler.dense.bias"] = {768};
  EXPECT_NO_THROW(describe_biomedclip(real_files(), shapes));
  // A pos_embed that is not a square grid.
  shapes = make_shapes({});
  shapes["visual.trunk.pos_embed"] = {1, 190, 768};
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("not 1 class token + a square grid"));
  // Not a ViT at all.
  shapes = make_shapes({});
  shapes.erase("visual.trunk.patch_embed.proj.weight");
  EXPECT_THAT(error_of([&] { describe_biomedclip(real_files(), shapes); }),
              HasSubstr("'visual.trunk.patch_embed.proj.weight' is missing"));
}

TEST(BiomedClipConfig, UnsupportedVariants) {
  auto expect = [](const std::function<void(ConfigFiles&)>& edit, const std::string& message) {
    auto f = real_files();
    edit(f);
    EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }), HasSubstr(message));
  };
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_model_name"] = "convnext_base"; },
         "'convnext_base' is not a plain timm ViT");
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_model_name"] = "vit_base_patch16_clip_224.openai"; },
         "is not a plain timm ViT");
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_model_name"] = "vit_base_patch16_reg4_dinov2"; },
         "is not a plain timm ViT");
  expect([](ConfigFiles& f) { vision_cfg(f).erase("timm_model_name"); },
         "only timm image towers are supported");
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_pool"] = "abs_attn"; },
         "attention pooling heads are not supported");
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_pool"] = "max"; }, "timm_pool 'max' is not supported");
  expect([](ConfigFiles& f) { vision_cfg(f)["timm_proj"] = "mlp"; }, "timm_proj 'mlp' (an MLP head) is not supported");
  expect([](ConfigFiles& f) { text_cfg(f)["hf_pooler_type"] = "max_pooler"; },
         "hf_pooler_type 'max_pooler' is not supported");
  expect([](ConfigFiles& f) { text_cfg(f)["hf_proj_type"] = "transformer"; },
         "hf_proj_type 'transformer' is not supported");
  expect([](ConfigFiles& f) { text_cfg(f)["hf_proj_type"] = nullptr; },
         "no projection, but the text width 768 differs from embed_dim 512");
  expect([](ConfigFiles& f) { text_cfg(f)["hf_pooler_type"] = "cls_pooler"; },
         "'text.transformer.pooler.dense.weight'");  // cls_pooler needs BERT's pooler
  expect([](ConfigFiles& f) { text_cfg(f).erase("hf_model_name"); },
         "only Hugging Face text towers are supported");
  expect([](ConfigFiles& f) { f.open_clip.erase("model_cfg"); }, "no \"model_cfg\" object");
  expect([](ConfigFiles& f) { f.open_clip["model_cfg"]["embed_dim"] = "512"; },
         "embed_dim is \"512\", expected an integer");
  expect([](ConfigFiles& f) { f.open_clip["preprocess_cfg"]["mean"] = Json::array({0.5, 0.5}); },
         "preprocess_cfg.mean is [0.5,0.5], expected 3 numbers");
}

TEST(BiomedClipConfig, OpenClipDefaultsAndLegacyKeys) {
  // Keys left out take CLIPVisionCfg / CLIPTextCfg defaults: avg pool, mean pooler, mlp.
  auto f = real_files();
  vision_cfg(f).erase("timm_pool");
  text_cfg(f).erase("hf_pooler_type");
  const auto c = describe_biomedclip(f, make_shapes({}));
  EXPECT_EQ(c.vision.pool, VisionPool::Avg);
  EXPECT_EQ(c.text.pool, TextPool::Mean);
  EXPECT_EQ(c.text.proj, TextProj::Mlp);
  // Older open_clip configs say "pooler_type" / "proj".
  f = real_files();
  text_cfg(f).erase("hf_pooler_type");
  text_cfg(f).erase("hf_proj_type");
  text_cfg(f)["pooler_type"] = "cls_last_hidden_state_pooler";
  text_cfg(f)["proj"] = "linear";
  auto shapes = make_shapes({});
  shapes.erase("text.proj.0.weight");
  shapes.erase("text.proj.2.weight");
  shapes["text.proj.weight"] = {512, 768};
  const auto l = describe_biomedclip(f, shapes);
  EXPECT_EQ(l.text.pool, TextPool::Cls);
  EXPECT_EQ(l.text.proj, TextProj::Linear);
  // timm_proj "" uses timm's own classifier (with bias) as the head.
  f = real_files();
  vision_cfg(f)["timm_proj"] = "";
  vision_cfg(f)["timm_pool"] = "token";
  shapes = make_shapes({});
  shapes["visual.trunk.head.weight"] = shapes["visual.head.proj.weight"];
  shapes["visual.trunk.head.bias"] = {512};
  shapes.erase("visual.head.proj.weight");
  const auto h = describe_biomedclip(f, shapes);
  EXPECT_EQ(h.vision.head, "visual.trunk.head");
  EXPECT_TRUE(h.vision.head_bias);
  // ... and with timm_pool "" that would be per-token output: refused.
  vision_cfg(f)["timm_pool"] = "";
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, shapes); }), HasSubstr("per-token features"));
}

TEST(BiomedClipConfig, TimmLocalDirConfig) {
  auto f = real_files();
  vision_cfg(f)["timm_model_name"] = "local-dir:my-vit";
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes({})); }),
              HasSubstr("config.json was not found"));
  f.timm = Json{{"architecture", "vit_base_patch16_224"},
                {"model_args", {{"embed_dim", 384}, {"depth", 6}, {"num_heads", 4}}}};
  f.timm_path = "my-vit/config.json";
  Sizes s;
  s.width = 384;
  s.depth = 6;
  s.mlp = 1536;
  const auto c = describe_biomedclip(f, make_shapes(s));
  EXPECT_EQ(c.vision.heads, 4);
  EXPECT_EQ(c.vision.heads_rule, "my-vit/config.json: model_args.num_heads");
  // Without num_heads timm keeps the architecture's (vit_base: 12); 384 / 12 = 32.
  f.timm->at("model_args").erase("num_heads");
  EXPECT_EQ(describe_biomedclip(f, make_shapes(s)).vision.heads, 12);
  f.timm->at("model_args")["depth"] = 4;
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes(s)); }),
              HasSubstr("my-vit/config.json: model_args.depth is 4, but the blocks present gives 6"));
  f.timm->at("model_args")["depth"] = 6;
  f.timm->at("model_args")["init_values"] = 1e-5;  // layer scale
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes(s)); }),
              HasSubstr("model_args.init_values = 1e-05 changes the ViT"));
  f.timm->at("model_args").erase("init_values");
  f.timm->at("architecture") = "deit3_base_patch16_224";
  EXPECT_THAT(error_of([&] { describe_biomedclip(f, make_shapes(s)); }),
              HasSubstr("architecture 'deit3_base_patch16_224' is not a plain timm ViT"));
}

TEST(BiomedClipConfig, TimmNames) {
  auto b = parse_timm_vit_name("vit_base_patch16_224");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->width, 768);
  EXPECT_EQ(b->heads, 12);
  EXPECT_EQ(b->patch, 16);
  EXPECT_EQ(b->image, 224);
  auto l = parse_timm_vit_name("vit_large_patch14_336.augreg");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->heads, 16);
  EXPECT_EQ(l->patch, 14);
  EXPECT_EQ(l->image, 336);
  EXPECT_TRUE(parse_timm_vit_name("vit_base_patch32_224_in21k"));
  EXPECT_FALSE(parse_timm_vit_name("vit_base_patch16_clip_224"));
  EXPECT_FALSE(parse_timm_vit_name("vit_base_patch16_siglip_224"));
  EXPECT_FALSE(parse_timm_vit_name("vit_base_r50_s16_224"));
  EXPECT_FALSE(parse_timm_vit_name("vit_giant_patch14_224"));
  EXPECT_FALSE(parse_timm_vit_name("resnet50"));
}

TEST(BertConfig, PlainCheckpoints) {
  TextConfig x;
  x.bert.prefix = "bert.";
  x.bert.hidden = 128;
  x.bert.layers = 3;
  x.bert.intermediate = 512;
  x.bert.vocab_size = 1000;
  x.bert.max_positions = 64;
  x.bert.type_vocab = 2;
  ShapeTable shapes;
  for (const auto& e : expected_bert_tensors(x.bert, true)) shapes[e.name] = e.shape;
  shapes["cls.predictions.bias"] = {1000};
  EXPECT_EQ(find_bert_prefix(shapes, "ckpt"), "bert.");
  auto b = describe_bert(nullptr, "", shapes, "bert.", "ckpt");
  EXPECT_EQ(b.hidden, 128);
  EXPECT_EQ(b.layers, 3);
  EXPECT_EQ(b.heads, 2);
  EXPECT_EQ(b.max_positions, 64);
  EXPECT_TRUE(b.has_pooler);
  EXPECT_FALSE(b.legacy_norm_names);
  const Json cfg = {{"num_attention_heads", 8}, {"layer_norm_eps", 1e-7}, {"pad_token_id", 3}};
  b = describe_bert(&cfg, "config.json", shapes, "bert.", "ckpt");
  EXPECT_EQ(b.heads, 8);
  EXPECT_FLOAT_EQ(b.layer_norm_eps, 1e-7f);
  EXPECT_EQ(b.pad_token_id, 3);
  // TF-era LayerNorm names.
  ShapeTable legacy;
  for (const auto& [name, s] : shapes) {
    std::string n = name;
    if (n.ends_with("LayerNorm.weight")) n.replace(n.size() - 6, 6, "gamma");
    if (n.ends_with("LayerNorm.bias")) n.replace(n.size() - 4, 4, "beta");
    legacy[n] = s;
  }
  b = describe_bert(nullptr, "", legacy, "bert.", "ckpt");
  EXPECT_TRUE(b.legacy_norm_names);
  EXPECT_NO_THROW(check_tensors(expected_bert_tensors(b, true), legacy, "ckpt"));
  EXPECT_THAT(error_of([&] { find_bert_prefix({{"encoder.weight", {1}}}, "ckpt"); }),
              HasSubstr("not a BERT checkpoint"));
}

// ---- the tiny fixture --------------------------------------------------------

TEST(BiomedClipFixture, Description) {
  const auto ckpt = BiomedClipCheckpoint::open(kFixture.string());
  const auto& c = ckpt.config;
  EXPECT_EQ(c.embed_dim, 48);
  EXPECT_EQ(c.vision.width, 64);
  EXPECT_EQ(c.vision.depth, 2);
  EXPECT_EQ(c.vision.heads, 2);
  EXPECT_THAT(c.vision.heads_rule, HasSubstr("model_args.num_heads"));
  EXPECT_EQ(c.vision.mlp_hidden, 256);
  EXPECT_EQ(c.vision.output_dim, 48);
  EXPECT_EQ(c.text.bert.hidden, 64);
  EXPECT_EQ(c.text.bert.heads, 2);
  EXPECT_THAT(c.text.bert.heads_rule, HasSubstr("text_config.json"));
  EXPECT_EQ(c.text.bert.vocab_size, 2048);
  EXPECT_EQ(c.text.proj_hidden, 56);
  EXPECT_EQ(c.text.pool, TextPool::Cls);
  EXPECT_EQ(c.text.context_length, 256);
  const Json ref = Json::parse(core::read_text_file((kFixture / "reference/reference.json").string()));
  EXPECT_FLOAT_EQ(ckpt.logit_scale, ref["logit_scale"].get<float>());
}

TEST(BiomedClipFixture, GraphLayout) {
  const auto ckpt = BiomedClipCheckpoint::open(kFixture.string());
  ExportOptions o;
  o.batch = 3;
  for (int tower = 0; tower < 2; ++tower) {
    auto m = tower == 0 ? build_vision_model(ckpt, o) : build_text_model(ckpt, o);
    EXPECT_NO_THROW(check_exported(m, "model"));
    EXPECT_EQ(m.opset(""), 17);
    std::map<std::string, int> ops;
    for (const auto& n : m.graph.nodes) ops[n.op_type]++;
    const std::set<std::string> allowed = {"Conv", "Reshape", "Transpose", "Add", "Concat",
                                           "LayerNormalization", "MatMul", "Div", "Softmax",
                                           "Erf", "Mul", "Gather", "ReduceL2", "Max",
                                           "Unsqueeze", "Cast", "Sub"};
    for (const auto& [op, count] : ops) EXPECT_TRUE(allowed.count(op)) << op;
    // Every MatMul with a constant B reads an [in, out] float initializer.
    int constant_b = 0;
    for (const auto& n : m.graph.nodes)
      if (n.op_type == "MatMul")
        if (const auto* w = m.graph.find_initializer(n.inputs[1])) {
          ++constant_b;
          EXPECT_EQ(w->dims.size(), 2u);
          EXPECT_EQ(w->type, medquant::onnx::kFloat);
        }
    const int layers = 2;
    EXPECT_EQ(constant_b, layers * 6 + (tower == 0 ? 1 : 2));
    EXPECT_EQ(ops["LayerNormalization"], tower == 0 ? 2 * layers + 1 : 2 * layers + 1);
    EXPECT_EQ(ops["Erf"], tower == 0 ? layers : layers + 1);
    EXPECT_EQ(ops["Conv"], tower == 0 ? 1 : 0);
    EXPECT_EQ(ops["Softmax"], layers);
  }
  auto v = build_vision_model(ckpt, o);
  const auto* q = v.graph.find_initializer("visual.blocks.0.attn.q.weight");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->dims, (std::vector<int64_t>{64, 64}));
  const auto* fc1 = v.graph.find_initializer("visual.blocks.1.mlp.fc1.weight");
  ASSERT_TRUE(fc1);
  EXPECT_EQ(fc1->dims, (std::vector<int64_t>{64, 256}));  // [in, out]
  EXPECT_EQ(v.graph.outputs[0].name(), "image_embeds");
  ExportOptions bad = o;
  bad.opset = 18;
  EXPECT_THAT(error_of([&] { build_vision_model(ckpt, bad); }), HasSubstr("only opset 17"));
  bad = o;
  bad.batch = 0;
  EXPECT_THAT(error_of([&] { build_text_model(ckpt, bad); }), HasSubstr("--batch 0"));
}

}  // namespace
