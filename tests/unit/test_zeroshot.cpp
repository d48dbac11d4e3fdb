// zeroshot: the classifier arithmetic against open_clip's reference outputs of
// the tiny-biomedclip fixture (normalised features, logits_per_image), the
// labels.json schema (round trip, every refusal), label/template lists and
// Python str.format templates, the built-in lists, and the encoders on the
// fixture exported by models/biomedclip (token ids and embeddings vs open_clip).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/sha256.h"
#include "models/biomedclip/export.h"
#include "text/clean.h"
#include "zeroshot/classifier.h"
#include "zeroshot/encoders.h"
#include "zeroshot/labels.h"

namespace {

namespace fs = std::filesystem;
using namespace medquant;
using namespace medquant::zeroshot;
using ::testing::HasSubstr;

const fs::path kFixture = fs::path(MEDQUANT_FIXTURES) / "tiny-biomedclip";
const fs::path kRef = kFixture / "reference";
const fs::path kRepo = fs::path(MEDQUANT_FIXTURES).parent_path().parent_path();

struct Matrix {
  size_t rows = 0, cols = 0;
  std::vector<float> v;
  std::span<const float> row(size_t r) const { return {v.data() + r * cols, cols}; }
};

Matrix load_f32(const std::string& name) {
  const core::NpyArray a = core::read_npy((kRef / name).string());
  EXPECT_EQ(a.dtype, core::DType::F32);
  EXPECT_EQ(a.shape.size(), 2u);
  Matrix m{static_cast<size_t>(a.shape[0]), static_cast<size_t>(a.shape[1]), {}};
  m.v.resize(m.rows * m.cols);
  std::memcpy(m.v.data(), a.data.data(), m.v.size() * sizeof(float));
  return m;
}

std::vector<int64_t> load_i64(const std::string& name) {
  const core::NpyArray a = core::read_npy((kRef / name).string());
  std::vector<int64_t> v(static_cast<size_t>(a.element_count()));
  std::memcpy(v.data(), a.data.data(), v.size() * sizeof(int64_t));
  return v;
}

nlohmann::json reference_json() {
  return nlohmann::json::parse(core::read_text_file((kRef / "reference.json").string()));
}

double cosine(std::span<const float> a, std::span<const float> b) {
  double d = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return d / std::sqrt(na * nb);
}

// The fixture's label prompts as a label set with open_clip's normalised
// text features as embeddings and its logit_scale.
LabelSet reference_set(const Matrix& text) {
  const auto ref = reference_json();
  LabelSet s;
  s.model_name = "tiny-biomedclip";
  s.text_model_file = "biomedclip_text.onnx";
  s.text_model_sha256 = std::string(64, 'a');
  s.dim = static_cast<int64_t>(text.cols);
  s.logit_scale = ref["logit_scale"].get<double>();
  s.logit_scale_exp = std::exp(s.logit_scale);
  s.templates = {"{}"};
  for (size_t r = 0; r < text.rows; ++r)
    s.labels.push_back({ref["labels"][r].get<std::string>(), {text.row(r).begin(), text.row(r).end()}});
  return s;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("medquant_test_zeroshot_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// ---- arithmetic ------------------------------------------------------------------

TEST(ZeroShotMath, NormalizeIsOpenClipsNormalize) {
  const Matrix raw = load_f32("text_features.npy");
  const Matrix want = load_f32("text_features_normalized.npy");
  for (size_t r = 0; r < raw.rows; ++r) {
    std::vector<float> x(raw.row(r).begin(), raw.row(r).end());
    l2_normalize(x);
    for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], want.row(r)[i], 1e-6) << r << "," << i;
  }
  std::vector<float> zero(4, 0.0f);  // F.normalize: x / max(||x||, eps) leaves 0 as 0
  EXPECT_EQ(l2_normalize(zero), 0.0);
  EXPECT_THAT(zero, ::testing::Each(0.0f));
}

TEST(ZeroShotMath, SingleTemplateClassEmbeddingIsTheNormalisedTextFeature) {
  const Matrix raw = load_f32("text_features.npy");
  const Matrix want = load_f32("text_features_normalized.npy");
  for (size_t r = 0; r < raw.rows; ++r) {
    const auto e = class_embedding(raw.row(r), 1, raw.cols);
    for (size_t i = 0; i < e.size(); ++i) EXPECT_NEAR(e[i], want.row(r)[i], 1e-6);
  }
}

TEST(ZeroShotMath, TemplatesAveragedAsOpenClip) {
  // Three of open_clip's raw text features as three prompts of one class:
  // build_zero_shot_classifier takes the normalised features (open_clip's own
  // normalize=True output), their mean, and normalises it.
  const Matrix raw = load_f32("text_features.npy");
  const Matrix nrm = load_f32("text_features_normalized.npy");
  const size_t dim = raw.cols;
  for (size_t first : {0u, 3u, 9u}) {
    std::vector<float> rows(raw.v.begin() + first * dim, raw.v.begin() + (first + 3) * dim);
    std::vector<double> want(dim, 0);
    for (size_t t = 0; t < 3; ++t)
      for (size_t i = 0; i < dim; ++i) want[i] += nrm.row(first + t)[i] / 3.0;
    const double n = std::sqrt(std::inner_product(want.begin(), want.end(), want.begin(), 0.0));
    const auto got = class_embedding(rows, 3, dim);
    for (size_t i = 0; i < dim; ++i) EXPECT_NEAR(got[i], want[i] / n, 1e-6);
    // Each prompt is normalised first, so scaling one prompt changes nothing
    // (a plain mean of raw features would be pulled towards it).
    for (size_t i = 0; i < dim; ++i) rows[i] *= 7.5f;
    const auto scaled = class_embedding(rows, 3, dim);
    for (size_t i = 0; i < dim; ++i) EXPECT_NEAR(scaled[i], got[i], 1e-6);
  }
  EXPECT_THROW(class_embedding(std::span<const float>(raw.v.data(), 5), 1, dim), Error);
}

TEST(ZeroShotMath, ProbabilitiesAreSoftmaxOfOpenClipsLogits) {
  const Matrix img = load_f32("image_features_normalized.npy");
  const Matrix img_raw = load_f32("image_features.npy");
  const Matrix logits = load_f32("logits_per_image.npy");  // exp(logit_scale) * img_n @ txt_n.T
  const LabelSet set = reference_set(load_f32("text_features_normalized.npy"));
  ASSERT_EQ(logits.cols, set.labels.size());
  for (size_t r = 0; r < img.rows; ++r) {
    std::vector<double> l(logits.row(r).begin(), logits.row(r).end());
    const auto want = softmax(l);
    const auto got = predict(img.row(r), set);
    const auto got_raw = predict(img_raw.row(r), set);  // raw image features: cosine is the same
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_NEAR(got[k].logit, logits.row(r)[k], 1e-4);
      EXPECT_NEAR(got[k].probability, want[k], 1e-6);
      EXPECT_NEAR(got_raw[k].probability, want[k], 1e-6);
      EXPECT_NEAR(got[k].cosine * set.logit_scale_exp, got[k].logit, 1e-12);
    }
    // Top-K order is the reference logits' order.
    std::vector<size_t> order(l.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return l[a] > l[b]; });
    const auto top = top_k(got, 5);
    ASSERT_EQ(top.size(), 5u);
    for (size_t k = 0; k < 5; ++k) EXPECT_EQ(top[k].label, order[k]);
    EXPECT_EQ(top_k(got, 0).size(), set.labels.size());
    EXPECT_EQ(top_k(got, 100).size(), set.labels.size());
  }
  EXPECT_THROW(predict(img.row(0).subspan(1), set), Error);
  std::vector<float> zero(set.dim, 0.0f);
  EXPECT_THROW(predict(zero, set), Error);
}

TEST(ZeroShotMath, SoftmaxIsStable) {
  const std::vector<double> big = {1000.0, 1001.0, 999.0};
  const auto p = softmax(big);
  const std::vector<double> small = {1.0, 2.0, 0.0};
  const auto q = softmax(small);  // softmax is shift-invariant
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(p[i], q[i], 1e-15);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-15);
}

// ---- labels.json ------------------------------------------------------------------

TEST(LabelsJson, RoundTripIsExact) {
  LabelSet s = reference_set(load_f32("text_features_normalized.npy"));
  s.source_sha256 = std::string(64, '0');
  const std::string text = labels_to_json(s);
  const LabelSet back = parse_labels_json(text, "mem");
  EXPECT_EQ(back.model_name, s.model_name);
  EXPECT_EQ(back.text_model_file, s.text_model_file);
  EXPECT_EQ(back.text_model_sha256, s.text_model_sha256);
  EXPECT_EQ(back.source_sha256, s.source_sha256);
  EXPECT_EQ(back.dim, s.dim);
  EXPECT_EQ(back.logit_scale, s.logit_scale);
  EXPECT_EQ(back.logit_scale_exp, s.logit_scale_exp);
  EXPECT_EQ(back.templates, s.templates);
  ASSERT_EQ(back.labels.size(), s.labels.size());
  for (size_t i = 0; i < s.labels.size(); ++i) {
    EXPECT_EQ(back.labels[i].name, s.labels[i].name);  // UTF-8 ("Sjögren", "β") kept
    EXPECT_EQ(back.labels[i].embedding, s.labels[i].embedding);  // bit-exact floats
  }
  // The schema's keys, as docs/labels-schema.md lists them.
  const auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["schema"], "medquant.labels");
  EXPECT_EQ(j["schema_version"], 1);
  for (const char* k : {"model_name", "text_model", "dim", "logit_scale", "logit_scale_exp", "templates", "labels"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"file", "sha256", "source_sha256"}) EXPECT_TRUE(j["text_model"].contains(k)) << k;
  EXPECT_EQ(j["labels"][0].size(), 2u);

  const fs::path d = temp_dir("json");
  write_labels_json((d / "labels.json").string(), s);
  EXPECT_EQ(read_labels_json((d / "labels.json").string()).labels.size(), s.labels.size());
  fs::remove_all(d);
}

TEST(LabelsJson, Refusals) {
  const LabelSet s = reference_set(load_f32("text_features_normalized.npy"));
  const auto good = nlohmann::json::parse(labels_to_json(s));
  auto expect_error = [&](const nlohmann::json& j, const std::string& what) {
    try {
      parse_labels_json(j.dump(), "labels.json");
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("labels.json: ")) << what;
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  };
  auto j = good;
  j["schema_version"] = 2;
  expect_error(j, "written by a newer medquant");
  j = good;
  j["schema"] = "something.else";
  expect_error(j, "not a medquant labels file");
  j = good;
  j.erase("dim");
  expect_error(j, "missing key 'dim'");
  j = good;
  j["dim"] = "48";
  expect_error(j, "'dim' must be an integer");
  for (const nlohmann::json& dim : {nlohmann::json(-48), nlohmann::json(0), nlohmann::json(uint64_t{1} << 63),
                                    nlohmann::json(~uint64_t{0})}) {
    j["dim"] = dim;  // negative, zero, or past int64 (which would wrap to negative)
    expect_error(j, "dim " + dim.dump() + " is out of range");
  }
  j = good;
  j["text_model"].erase("sha256");
  expect_error(j, "missing key 'text_model.sha256'");
  j = good;
  j["labels"][3]["embedding"].erase(0);
  expect_error(j, "has 47 embedding values, but dim is 48");
  j = good;
  j["labels"][3]["name"] = j["labels"][1]["name"];
  expect_error(j, "appears twice (labels[1] and labels[3])");
  j = good;
  j["labels"][2]["embedding"][5] = "x";
  expect_error(j, "embedding[5] is not a number");
  j = good;
  j["labels"][2]["embedding"] = std::vector<double>(48, 0.0);
  expect_error(j, "all-zero embedding");
  j = good;
  j["labels"] = nlohmann::json::array();
  expect_error(j, "'labels' is empty");
  j = good;
  j["logit_scale_exp"] = s.logit_scale;  // the log stored where the multiplier belongs
  expect_error(j, "is not exp(logit_scale)");
  j = good;
  j["labels"][0].erase("embedding");
  expect_error(j, "missing key 'labels[0].embedding'");

  for (std::string bad : {std::string(""), std::string("{\"schema\": "), labels_to_json(s).substr(0, 500),
                          std::string("[1, 2]")}) {
    try {
      parse_labels_json(bad, "labels.json");
      ADD_FAILURE() << "accepted corrupt JSON";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("labels.json: "));
    }
  }
  try {  // binary data: the message stays printable text
    parse_labels_json("\x89PNG\r\n", "labels.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("\\x89"));
  }
  // Numbers too large for float32 are refused, not turned into inf.
  std::string text = labels_to_json(s);
  const size_t at = text.find("\"embedding\": [") + 14;
  text.replace(at, text.find(',', at) - at, "1e39");
  EXPECT_THROW(parse_labels_json(text, "labels.json"), Error);
  EXPECT_THROW(read_labels_json("/nonexistent/labels.json"), Error);
}

// ---- lists and templates -------------------------------------------------------------

TEST(LabelLists, Parsing) {
  EXPECT_EQ(parse_list("\xEF\xBB\xBF# comment\nchest X-ray\r\n\n  brain MRI  \r# x\rbone X-ray", "f"),
            (std::vector<std::string>{"chest X-ray", "brain MRI", "bone X-ray"}));
  EXPECT_EQ(parse_list("Sjögren's syndrome\nβ-thalassemia\n", "f"),
            (std::vector<std::string>{"Sjögren's syndrome", "β-thalassemia"}));
  try {
    parse_list("a\nb\n\na\n", "labels.txt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("labels.txt: line 4: 'a' is already on line 1"));
  }
  EXPECT_THROW(parse_list("", "f"), Error);
  EXPECT_THROW(parse_list("# only\n\n", "f"), Error);
  try {
    parse_list("ok\nbad \xff\n", "labels.txt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("labels.txt: line 2"));
  }
  EXPECT_THROW(read_list_file("/nonexistent/labels.txt"), Error);
}

TEST(LabelLists, TemplatesFollowPythonFormat) {
  // What Python's template.format(label) gives.
  EXPECT_EQ(apply_template("this is a photo of {}", "brain MRI"), "this is a photo of brain MRI");
  EXPECT_EQ(apply_template("{}", "a {} b"), "a {} b");
  EXPECT_EQ(apply_template("{0}, a {0}.", "CT"), "CT, a CT.");
  EXPECT_EQ(apply_template("{{x}} {}", "CT"), "{x} CT");
  EXPECT_EQ(apply_template("}}{}{{", "CT"), "}CT{");
  for (const char* bad : {"no placeholder", "{1}", "{name}", "{:>10}", "{0!r}", "a } b {}", "{} {", "{{}}"})
    EXPECT_THROW(apply_template(bad, "x"), Error) << bad;
  try {
    check_template("a photo");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("template 'a photo' has no '{}'"));
  }
}

TEST(LabelLists, BuiltInDefaults) {
  const auto labels = default_labels();
  EXPECT_EQ(labels.size(), 30u);
  EXPECT_EQ(labels.front(), "chest X-ray");
  for (const char* must : {"brain MRI", "mammography", "dermoscopy", "retinal fundus photograph",
                           "hematoxylin and eosin histopathology", "bone X-ray", "chest CT",
                           "abdominal ultrasound"})
    EXPECT_THAT(labels, ::testing::Contains(std::string(must)));
  EXPECT_EQ(default_templates(), std::vector<std::string>{"this is a photo of {}"});
  // The binary carries the files of data/ as they are in the tree.
  EXPECT_EQ(default_labels_text(), core::read_text_file((kRepo / "data" / "biomedclip_labels.txt").string()));
  EXPECT_EQ(default_templates_text(),
            core::read_text_file((kRepo / "data" / "biomedclip_templates.txt").string()));
}

// ---- encoders on the exported fixture ---------------------------------------------

class ZeroShotEncoders : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(temp_dir("export"));
    models::biomedclip::ExportOptions o;
    o.batch = 2;  // exercises the padded last batch (12 prompts, 3 images)
    models::biomedclip::export_biomedclip(kFixture.string(), dir_->string(), o);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string text_model() { return (*dir_ / "biomedclip_text.onnx").string(); }
  static std::string vision_model() { return (*dir_ / "biomedclip_vision.onnx").string(); }
  static fs::path* dir_;
};
fs::path* ZeroShotEncoders::dir_ = nullptr;

TEST_F(ZeroShotEncoders, TextMatchesOpenClip) {
  TextEncoder enc(text_model(), (kFixture / "vocab.txt").string(), {.threads = 1});
  const auto ref = reference_json();
  EXPECT_EQ(enc.context_length(), ref["context_length"].get<int64_t>());
  EXPECT_EQ(enc.info().batch, 2);
  EXPECT_EQ(enc.info().dim, 48);
  EXPECT_TRUE(enc.info().logit_scale_from_metadata);
  EXPECT_NEAR(enc.info().logit_scale, ref["logit_scale"].get<double>(), 1e-7);
  EXPECT_NEAR(enc.info().logit_scale_exp, ref["logit_scale_exp"].get<double>(), 1e-5);
  // Token ids as open_clip's tokenizer gives them.
  const auto ids = load_i64("input_ids.npy");
  const std::vector<std::string> prompts = ref["labels"].get<std::vector<std::string>>();
  for (size_t r = 0; r < prompts.size(); ++r) {
    const auto got = enc.tokenizer().encode_padded(text::open_clip_clean(prompts[r]), 256);
    for (size_t c = 0; c < 256; ++c) ASSERT_EQ(got[c], ids[r * 256 + c]) << r << "," << c;
  }
  const Matrix want = load_f32("text_features_normalized.npy");
  const auto rows = enc.encode(prompts);
  ASSERT_EQ(rows.size(), prompts.size());
  for (size_t r = 0; r < rows.size(); ++r) EXPECT_GE(cosine(rows[r], want.row(r)), 0.99999) << r;

  // embed_labels with the single template "{}" is open_clip's normalised encode_text.
  const LabelSet set = embed_labels(enc, prompts, {"{}"});
  EXPECT_EQ(set.text_model_file, "biomedclip_text.onnx");
  EXPECT_EQ(set.text_model_sha256, core::sha256_file(text_model()));
  EXPECT_EQ(set.model_name, "tiny-biomedclip");
  EXPECT_EQ(set.source_sha256.size(), 64u);
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t i = 0; i < 48; ++i) EXPECT_NEAR(set.labels[r].embedding[i], want.row(r)[i], 1e-5);
  EXPECT_THROW(embed_labels(enc, {"a", "a"}, {"{}"}), Error);
}

TEST_F(ZeroShotEncoders, VisionMatchesOpenClip) {
  ImageEncoder enc(vision_model(), {.threads = 1});
  const auto ref = reference_json();
  EXPECT_EQ(enc.preprocess_config().image_size, 224u);
  for (size_t c = 0; c < 3; ++c) {
    EXPECT_FLOAT_EQ(enc.preprocess_config().mean[c], ref["preprocess"]["mean"][c].get<float>());
    EXPECT_FLOAT_EQ(enc.preprocess_config().std[c], ref["preprocess"]["std"][c].get<float>());
  }
  std::vector<std::vector<float>> pixels;
  for (const auto& im : ref["images"]) pixels.push_back(enc.preprocess((kFixture / im["file"].get<std::string>()).string()));
  const auto rows = enc.encode(pixels);
  const Matrix want = load_f32("image_features_normalized.npy");
  ASSERT_EQ(rows.size(), 3u);
  for (size_t r = 0; r < 3; ++r) EXPECT_GE(cosine(rows[r], want.row(r)), 0.99999) << r;
}

TEST_F(ZeroShotEncoders, WrongFilesAreRefused) {
  const std::string vocab = (kFixture / "vocab.txt").string();
  try {
    TextEncoder enc(vision_model(), vocab);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("vision tower"));
  }
  try {
    ImageEncoder enc(text_model());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("text tower"));
  }
  // A vocabulary that is not the exported one (one token changed).
  const fs::path d = temp_dir("vocab");
  std::string v = core::read_text_file(vocab);
  v.replace(v.find("[MASK]"), 6, "[MAZK]");
  core::write_file_atomic((d / "vocab.txt").string(), v);
  try {
    TextEncoder enc(text_model(), (d / "vocab.txt").string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("is not the one"));
  }
  fs::remove_all(d);
  ImageEncoder enc(vision_model());
  EXPECT_THROW(enc.preprocess(vocab), Error);  // not an image
}

}  // namespace
