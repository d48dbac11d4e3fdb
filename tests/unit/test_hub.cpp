// Unit tests of the hub module's pure parts: file selection, names and
// hashes, header parsing, cache layout. The network side is tested against a
// mock hub in tests/peer/test_hub.py.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "hub/api.h"
#include "hub/blob.h"
#include "hub/cache.h"
#include "hub/glob.h"
#include "hub/http.h"
#include "hub/model_specs.h"

using namespace medquant;
using namespace medquant::hub;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "medquant-hub-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST(Glob, MatchesLikePythonFnmatch) {
  EXPECT_TRUE(glob_match("*.json", "config.json"));
  EXPECT_TRUE(glob_match("*.json", "sub/dir/config.json"));  // '*' crosses '/'
  EXPECT_FALSE(glob_match("*.json", "config.json.bak"));
  EXPECT_TRUE(glob_match("model-0000?-of-00002.safetensors", "model-00001-of-00002.safetensors"));
  EXPECT_TRUE(glob_match("[ab]*.txt", "b.txt"));
  EXPECT_FALSE(glob_match("[ab]*.txt", "c.txt"));
  EXPECT_TRUE(glob_match("reference/", "reference/x.npy"));  // a folder: its contents
  EXPECT_FALSE(glob_match("reference/", "references.txt"));
  EXPECT_FALSE(glob_match("Config.json", "config.json"));  // case matters, as on Linux
}

TEST(Glob, IncludeThenExclude) {
  std::vector<std::string> none, json{"*.json"}, tok{"tokenizer*"};
  EXPECT_TRUE(path_selected("anything", none, none));
  EXPECT_TRUE(path_selected("config.json", json, tok));
  EXPECT_FALSE(path_selected("tokenizer.json", json, tok));
  EXPECT_FALSE(path_selected("model.safetensors", json, none));
  EXPECT_FALSE(path_selected("tokenizer.model", none, tok));
}

TEST(Blob, GitBlobSha1MatchesGit) {
  // `git hash-object` of an empty file and of "hello\n".
  EXPECT_EQ(git_blob_sha1(""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  EXPECT_EQ(git_blob_sha1("hello\n"), "ce013625030ba8dba906f756967f9e9ca394464a");
  BlobHasher h(HashKind::GitBlobSha1, 6);  // streamed in pieces
  h.update("hel", 3);
  h.update("lo\n", 3);
  EXPECT_EQ(h.hex_digest(), "ce013625030ba8dba906f756967f9e9ca394464a");
}

TEST(Blob, HashFileOfBothKinds) {
  TempDir dir;
  std::string p = dir.path() + "/f";
  core::write_file_atomic(p, "hello\n");
  EXPECT_EQ(hash_file(p, HashKind::GitBlobSha1), "ce013625030ba8dba906f756967f9e9ca394464a");
  EXPECT_EQ(hash_file(p, HashKind::Sha256),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
  std::string empty = dir.path() + "/empty";
  core::write_file_atomic(empty, "");
  EXPECT_EQ(hash_file(empty, HashKind::GitBlobSha1), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
}

TEST(Blob, KindFromEtag) {
  HashKind k;
  ASSERT_TRUE(hash_kind_of(std::string(64, 'a'), &k));
  EXPECT_EQ(k, HashKind::Sha256);
  ASSERT_TRUE(hash_kind_of(std::string(40, '0'), &k));
  EXPECT_EQ(k, HashKind::GitBlobSha1);
  EXPECT_FALSE(hash_kind_of("abc", &k));
  EXPECT_FALSE(hash_kind_of(std::string(40, 'A'), &k));  // the hub's hashes are lower case
}

TEST(Http, NormalizeEtag) {
  EXPECT_EQ(normalize_etag("\"abc\""), "abc");
  EXPECT_EQ(normalize_etag("W/\"abc\""), "abc");
  EXPECT_EQ(normalize_etag(" abc "), "abc");
}

TEST(Http, RetryAfter) {
  EXPECT_EQ(parse_retry_after("120", 0), 120.0);
  EXPECT_EQ(parse_retry_after(" 0 ", 0), 0.0);
  // Wed, 21 Oct 2015 07:28:00 GMT = 1445412480
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 30), 30.0);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 + 99), 0.0);
  EXPECT_FALSE(parse_retry_after("soon", 0));
  EXPECT_FALSE(parse_retry_after("", 0));
  EXPECT_FALSE(parse_retry_after("-5", 0));
}

TEST(Http, ContentRange) {
  auto r = parse_content_range("bytes 100-199/1000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 100u);
  EXPECT_EQ(r->last, 199u);
  EXPECT_EQ(r->total, 1000u);
  auto star = parse_content_range("bytes 0-9/*");
  ASSERT_TRUE(star);
  EXPECT_FALSE(star->total);
  EXPECT_FALSE(parse_content_range("bytes */1000"));  // the 416 form: no range
  EXPECT_FALSE(parse_content_range("bytes 10-5/100"));
  EXPECT_FALSE(parse_content_range("bytes 0-100/100"));  // last byte past the total
  EXPECT_FALSE(parse_content_range("items 0-1/2"));
}

TEST(Http, UrlEncodeAndHost) {
  EXPECT_EQ(url_encode("refs/pr/1", false), "refs%2Fpr%2F1");
  EXPECT_EQ(url_encode("sub dir/a+b.json", true), "sub%20dir/a%2Bb.json");
  EXPECT_EQ(url_host("https://cdn-lfs.hf.co/repos/x?sig=1"), "cdn-lfs.hf.co");
  EXPECT_EQ(url_host("http://user@127.0.0.1:8080/x"), "127.0.0.1:8080");
}

TEST(Api, RepoIds) {
  EXPECT_NO_THROW(validate_repo_id("google/medgemma-4b-it"));
  EXPECT_NO_THROW(validate_repo_id("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"));
  EXPECT_NO_THROW(validate_repo_id("gpt2"));
  for (const char* bad : {"", "a/b/c", "a b/c", "org/", "/name", "org/na--me", "org/..x", "org/-x"})
    EXPECT_THROW(validate_repo_id(bad), Error) << bad;
}

TEST(Api, SafePaths) {
  EXPECT_TRUE(is_safe_relative_path("config.json"));
  EXPECT_TRUE(is_safe_relative_path("a/b/c.npy"));
  for (const char* bad : {"", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/"})
    EXPECT_FALSE(is_safe_relative_path(bad)) << bad;
}

TEST(Api, Urls) {
  HubSettings s;
  s.endpoint = "http://127.0.0.1:9";
  HubApi api(s);
  EXPECT_EQ(api.model_info_url("org/name", "main"),
            "http://127.0.0.1:9/api/models/org/name/revision/main?blobs=true");
  EXPECT_EQ(api.resolve_url("org/name", "refs/pr/1", "sub dir/model.safetensors"),
            "http://127.0.0.1:9/org/name/resolve/refs%2Fpr%2F1/sub%20dir/model.safetensors");
  auto h = api.request_headers();
  EXPECT_EQ(std::count_if(h.begin(), h.end(), [](auto& x) { return x.starts_with("Authorization"); }), 0);
  s.token = "hf_x";
  EXPECT_EQ(HubApi(s).request_headers().back(), "Authorization: Bearer hf_x");
}

TEST(Api, RetryDelays) {
  HubSettings s;
  s.backoff_base = 1.0;
  s.backoff_max = 30.0;
  EXPECT_EQ(retry_delay(s, 1, std::nullopt), 1.0);
  EXPECT_EQ(retry_delay(s, 2, std::nullopt), 2.0);
  EXPECT_EQ(retry_delay(s, 4, std::nullopt), 8.0);
  EXPECT_EQ(retry_delay(s, 10, std::nullopt), 30.0);
  EXPECT_EQ(retry_delay(s, 3, 7.0), 7.0);  // Retry-After wins
  EXPECT_TRUE(is_retryable_status(429));
  EXPECT_TRUE(is_retryable_status(503));
  EXPECT_TRUE(is_retryable_status(408));
  EXPECT_FALSE(is_retryable_status(401));
  EXPECT_FALSE(is_retryable_status(404));
}

TEST(Api, SettingsFromEnvironment) {
  TempDir dir;
  ScopedEnv a("HF_HOME", dir.path().c_str()), b("HF_HUB_CACHE", nullptr),
      c("HUGGINGFACE_HUB_CACHE", nullptr), d("HF_TOKEN", nullptr),
      e("HUGGING_FACE_HUB_TOKEN", nullptr), f("HF_TOKEN_PATH", nullptr),
      g("HF_ENDPOINT", "http://127.0.0.1:1/"), h("HF_HUB_OFFLINE", "TRUE"),
      i("TRANSFORMERS_OFFLINE", nullptr), j("HF_HUB_DOWNLOAD_TIMEOUT", "2.6");
  HubSettings s = HubSettings::from_environment();
  EXPECT_EQ(s.endpoint, "http://127.0.0.1:1");
  EXPECT_EQ(s.cache_dir, dir.path() + "/hub");
  EXPECT_FALSE(s.token);
  EXPECT_TRUE(s.offline);
  EXPECT_EQ(s.stall_timeout.count(), 3);
  core::write_file_atomic(dir.path() + "/token", "hf_from_file\n");
  EXPECT_EQ(HubSettings::from_environment().token, "hf_from_file");
  {
    ScopedEnv t("HF_TOKEN", "hf_env"), cache("HF_HUB_CACHE", "/somewhere/else"),
        off("HF_HUB_OFFLINE", "0");
    HubSettings s2 = HubSettings::from_environment();
    EXPECT_EQ(s2.token, "hf_env");
    EXPECT_EQ(s2.cache_dir, "/somewhere/else");
    EXPECT_FALSE(s2.offline);
  }
  ScopedEnv bad("HF_HUB_DOWNLOAD_TIMEOUT", "soon");
  EXPECT_THROW(HubSettings::from_environment(), Error);
}

TEST(Cache, Layout) {
  EXPECT_EQ(repo_folder_name("google/medgemma-4b-it"), "models--google--medgemma-4b-it");
  EXPECT_EQ(repo_folder_name("gpt2"), "models--gpt2");
  HubCache c("/c", "org/name");
  std::string e64(64, 'a');
  EXPECT_EQ(c.repo_dir(), "/c/models--org--name");
  EXPECT_EQ(c.blob_path(e64), "/c/models--org--name/blobs/" + e64);
  EXPECT_EQ(c.incomplete_path(e64), "/c/models--org--name/blobs/" + e64 + ".incomplete");
  EXPECT_EQ(c.lock_path(e64), "/c/.locks/models--org--name/" + e64 + ".lock");
  EXPECT_EQ(c.pointer_path("abc", "sub/f.json"), "/c/models--org--name/snapshots/abc/sub/f.json");
}

TEST(Cache, RefsPointersAndOfflineResolution) {
  TempDir dir;
  HubCache c(dir.path(), "org/name");
  c.ensure_layout();
  EXPECT_TRUE(fs::exists(dir.path() + "/CACHEDIR.TAG"));
  const std::string commit(40, 'c'), etag = git_blob_sha1("{}\n");
  core::write_file_atomic(c.blob_path(etag), "{}\n");

  c.link_pointer(commit, "config.json", etag);
  c.link_pointer(commit, "a/b/deep.json", etag);
  EXPECT_EQ(fs::read_symlink(c.pointer_path(commit, "config.json")).string(), "../../blobs/" + etag);
  EXPECT_EQ(fs::read_symlink(c.pointer_path(commit, "a/b/deep.json")).string(),
            "../../../../blobs/" + etag);
  EXPECT_EQ(core::read_text_file(c.pointer_path(commit, "a/b/deep.json")), "{}\n");
  EXPECT_EQ(c.pointer_etag(commit, "config.json"), etag);
  EXPECT_FALSE(c.pointer_etag(commit, "absent"));
  EXPECT_EQ(c.snapshot_files(commit), (std::vector<std::string>{"a/b/deep.json", "config.json"}));
  c.link_pointer(commit, "config.json", etag);  // replacing an entry is fine

  EXPECT_FALSE(c.resolve_offline("main"));
  c.write_ref("main", commit);
  c.write_ref("refs/pr/1", commit);
  c.write_ref(commit, commit);  // a commit sha needs no ref
  EXPECT_EQ(core::read_text_file(c.repo_dir() + "/refs/main"), commit);  // no newline
  EXPECT_TRUE(fs::exists(c.repo_dir() + "/refs/refs/pr/1"));
  EXPECT_FALSE(fs::exists(c.repo_dir() + "/refs/" + commit));
  EXPECT_EQ(c.resolve_offline("main"), commit);
  EXPECT_EQ(c.resolve_offline(commit), commit);
  EXPECT_FALSE(c.resolve_offline(std::string(40, 'd')));
  core::write_file_atomic(c.repo_dir() + "/refs/bad", "not a sha");
  EXPECT_THROW(c.read_ref("bad"), Error);

  c.mark_no_exist(commit, "sub/absent.txt");
  EXPECT_TRUE(fs::exists(c.repo_dir() + "/.no_exist/" + commit + "/sub/absent.txt"));
}

TEST(Cache, TreeRoundTrip) {
  TempDir dir;
  std::vector<Sibling> sibs(2);
  sibs[0].path = "config.json";
  sibs[0].size = 3;
  sibs[0].blob_id = std::string(40, '1');
  sibs[1].path = "model.safetensors";
  sibs[1].size = 1000;
  sibs[1].blob_id = std::string(40, '2');
  sibs[1].lfs_sha256 = std::string(64, '3');
  sibs[1].lfs_size = 1000;
  auto tree = tree_from_siblings(sibs);
  ASSERT_TRUE(tree);
  write_tree(dir.path(), std::string(40, 'c'), *tree);
  auto back = read_tree(dir.path(), std::string(40, 'c'));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->size(), 2u);
  EXPECT_EQ(back->at("config.json").etag(), std::string(40, '1'));
  EXPECT_EQ(back->at("model.safetensors").etag(), std::string(64, '3'));
  EXPECT_EQ(back->at("model.safetensors").size, 1000u);
  EXPECT_FALSE(read_tree(dir.path(), std::string(40, 'd')));
  sibs[0].blob_id.clear();  // a listing without blob ids can't make a tree
  EXPECT_FALSE(tree_from_siblings(sibs));
  core::write_file_atomic(dir.path() + "/trees/" + std::string(40, 'e') + ".json", "[]");
  EXPECT_THROW(read_tree(dir.path(), std::string(40, 'e')), Error);
  core::write_file_atomic(dir.path() + "/trees/" + std::string(40, 'f') + ".json",
                          R"({"format_version": 1, "files": {"../x": {"size": 1, "blob_id": "a"}}})");
  EXPECT_THROW(read_tree(dir.path(), std::string(40, 'f')), Error);
}

TEST(Cache, LocalDirMetadata) {
  TempDir dir;
  const std::string commit(40, 'c'), etag(64, 'e');
  write_local_dir_metadata(dir.path(), "sub/model.safetensors", commit, etag);
  std::string text = core::read_text_file(dir.path() +
                                          "/.cache/huggingface/download/sub/model.safetensors.metadata");
  EXPECT_TRUE(text.starts_with(commit + "\n" + etag + "\n"));
  EXPECT_EQ(core::read_text_file(dir.path() + "/.cache/huggingface/.gitignore"), "*");
  auto m = read_local_dir_metadata(dir.path(), "sub/model.safetensors");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->first, commit);
  EXPECT_EQ(m->second, etag);
  EXPECT_FALSE(read_local_dir_metadata(dir.path(), "absent"));
}

TEST(Cache, FileLockIsExclusive) {
  TempDir dir;
  const std::string path = dir.path() + "/locks/x.lock";
  {
    FileLock lock(path);
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    EXPECT_NE(::flock(fd, LOCK_EX | LOCK_NB), 0);  // held (flock is per open file)
    ::close(fd);
  }
  int fd = ::open(path.c_str(), O_RDWR);
  EXPECT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);  // released with the object
  ::close(fd);
}

// ---------------------------------------------------------------- model specs

namespace {

nlohmann::json tiny_gemma3_config() {
  return nlohmann::json::parse(R"({
    "model_type": "gemma3", "torch_dtype": "bfloat16",
    "text_config": {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
                    "vocab_size": 32},
    "vision_config": {"hidden_size": 6, "intermediate_size": 12, "num_hidden_layers": 1,
                      "image_size": 28, "patch_size": 14, "num_channels": 3,
                      "vision_use_head": false}})");
}

TensorTable table_from(const ModelSpec& spec) {
  TensorTable t;
  for (const auto& [name, s] : spec.tensors)
    if (!s.optional) t[name] = {s.dtype.value_or(core::DType::BF16), s.shape};
  return t;
}

}  // namespace

TEST(ModelSpecs, Gemma3FromConfig) {
  ModelSpec s = gemma3_spec(tiny_gemma3_config(), {"language_model.model.norm.weight"});
  EXPECT_EQ(s.float_dtype, core::DType::BF16);
  // text: embed + norm + 2 x (4 norms + 4 proj + 2 qk norms + 3 mlp); vision: 3 + 1 x 16 + 2; projector: 2
  EXPECT_EQ(s.tensors.size(), 2u + 2 * 13 + 3 + 16 + 2 + 2);
  EXPECT_EQ(s.tensors.at("language_model.model.layers.1.self_attn.q_proj.weight").shape,
            (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(s.tensors.at("language_model.model.layers.1.self_attn.k_proj.weight").shape,
            (std::vector<int64_t>{4, 8}));
  EXPECT_EQ(s.tensors.at("vision_tower.vision_model.embeddings.position_embedding.weight").shape,
            (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(s.tensors.at("multi_modal_projector.mm_input_projection_weight").shape,
            (std::vector<int64_t>{6, 8}));
  EXPECT_TRUE(s.assumptions.empty()) << s.assumptions[0];
  EXPECT_TRUE(compare_tensors(s, table_from(s)).empty());
  // The transformers >= 4.52 layout is recognised by its names.
  ModelSpec s2 = gemma3_spec(tiny_gemma3_config(), {"model.language_model.norm.weight"});
  EXPECT_TRUE(s2.tensors.count("model.vision_tower.vision_model.post_layernorm.bias"));
}

TEST(ModelSpecs, Gemma3DefaultsAsTransformers) {
  // MedGemma's config leaves head counts and vocab to Gemma3TextConfig's defaults.
  auto c = nlohmann::json::parse(R"({"model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34},
    "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27,
                      "num_attention_heads": 16, "image_size": 896, "patch_size": 14,
                      "vision_use_head": false}})");
  ModelSpec s = gemma3_spec(c, {});
  EXPECT_EQ(s.tensors.at("language_model.model.embed_tokens.weight").shape,
            (std::vector<int64_t>{262208, 2560}));
  EXPECT_EQ(s.tensors.at("language_model.model.layers.33.self_attn.q_proj.weight").shape,
            (std::vector<int64_t>{8 * 256, 2560}));
  EXPECT_EQ(s.tensors.at("language_model.model.layers.0.self_attn.k_proj.weight").shape,
            (std::vector<int64_t>{4 * 256, 2560}));
  EXPECT_EQ(s.tensors.at("vision_tower.vision_model.embeddings.position_embedding.weight").shape,
            (std::vector<int64_t>{4096, 1152}));
  EXPECT_EQ(s.assumptions.size(), 5u);  // vocab, heads, kv heads, head_dim, channels
  EXPECT_FALSE(s.tensors.count("language_model.lm_head.weight"));  // tied by default
}

TEST(ModelSpecs, CompareReportsEachKind) {
  ModelSpec s = gemma3_spec(tiny_gemma3_config(), {});
  TensorTable t = table_from(s);
  t.erase("language_model.model.norm.weight");
  t["extra.weight"] = {core::DType::BF16, {1}};
  t["language_model.model.embed_tokens.weight"].shape = {33, 8};
  t["multi_modal_projector.mm_soft_emb_norm.weight"].dtype = core::DType::F32;
  auto p = compare_tensors(s, t);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0], "1 tensors the config implies are missing: language_model.model.norm.weight");
  EXPECT_EQ(p[1], "1 tensors the config does not imply: extra.weight");
  EXPECT_EQ(p[2], "1 shapes disagree with the config: language_model.model.embed_tokens.weight is "
                  "[33, 8], the config implies [32, 8]");
  EXPECT_EQ(p[3], "1 dtypes disagree with the config: multi_modal_projector.mm_soft_emb_norm.weight "
                  "is f32, expected bf16");
}

TEST(ModelSpecs, ConfigErrorsNameTheField) {
  auto c = tiny_gemma3_config();
  c["text_config"]["hidden_size"] = "big";
  try {
    gemma3_spec(c, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "config.json: text_config.hidden_size: not a non-negative integer");
  }
  EXPECT_THROW(gemma3_spec(nlohmann::json{{"model_type", "llama"}}, {}), Error);
}

TEST(ModelSpecs, BiomedClipKnownTextTower) {
  // The real BiomedCLIP config names its towers; their sizes come from timm / the hub model.
  auto oc = nlohmann::json::parse(R"({"model_cfg": {"embed_dim": 512,
    "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_pool": "", "timm_proj": "linear",
                   "image_size": 224},
    "text_cfg": {"hf_model_name": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                 "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                 "context_length": 256}}})");
  ModelSpec s = biomedclip_spec(oc, nullptr, nullptr);
  EXPECT_EQ(s.tensors.at("visual.trunk.pos_embed").shape, (std::vector<int64_t>{1, 197, 768}));
  EXPECT_EQ(s.tensors.at("visual.head.proj.weight").shape, (std::vector<int64_t>{512, 768}));
  EXPECT_EQ(s.tensors.at("text.proj.0.weight").shape, (std::vector<int64_t>{640, 768}));
  EXPECT_EQ(s.tensors.at("text.transformer.embeddings.word_embeddings.weight").shape,
            (std::vector<int64_t>{30522, 768}));
  EXPECT_TRUE(s.tensors.count("text.transformer.encoder.layer.11.output.LayerNorm.bias"));
  EXPECT_TRUE(s.tensors.at("text.transformer.pooler.dense.weight").optional);
  oc["model_cfg"]["text_cfg"]["hf_model_name"] = "someone/unknown-bert";
  EXPECT_THROW(biomedclip_spec(oc, nullptr, nullptr), Error);
}
