// The bridge to llama.cpp (libllama of the pinned build, see cmake/llama.cmake):
// load a GGUF model, tokenize, decode batches. Everything medquant runs
// through llama.cpp goes through here, so that the rest of the code never
// includes llama.h.
//
// llama.cpp prints its logs through one process-wide callback; init_backend()
// routes them to medquant's verbosity (shown with -v) and keeps the last
// error lines, which Model::load() puts into its Error when loading fails.
//
// A GGML_ASSERT inside llama.cpp aborts the process; callers that must
// survive a hostile file run the llama.cpp part in a child process
// (llm/isolate.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct llama_model;
struct llama_context;
struct llama_vocab;
struct llama_batch_ext;
struct ggml_tensor;

namespace medquant::llm {

using Token = int32_t;

// The llama.cpp build medquant is linked against: "0.3.36-b11312" (the
// llama-cpp-python sdist it came from and llama.cpp's build number), and its
// commit.
std::string_view llama_cpp_version();
std::string_view llama_cpp_commit();
// The last few error/warning lines llama.cpp (or libmtmd) logged since the
// last clear, for error messages ("no message ..." if none).
std::string last_errors();
void clear_errors();

// llama.cpp's system line: "CPU : SSE3 = 1 | AVX2 = 1 | ... | OPENMP = 1 | REPACK = 1 |".
std::string system_info();

// llama_backend_init() once per process, and the log routing.
void init_backend();

// A llama.cpp model, loaded with llama-perplexity's model parameters
// (llama_model_default_params: mmap, extra buffer types for weight repacking).
class Model {
 public:
  // Throws Error "<path>: llama.cpp could not load the model: <its last error>".
  // untouched_weights: no weight repacking (use_extra_bufts off), so the
  // memory-mapped weights are never read, for callers that need only the
  // hyper-parameters and vocabulary (libmtmd). llama.cpp's vocab_only skips
  // the hyper-parameters and no_alloc aborts on this build.
  static std::unique_ptr<Model> load(const std::string& path, bool untouched_weights = false);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  llama_model* get() const { return model_; }
  const llama_vocab* vocab() const;
  const std::string& path() const { return path_; }
  int n_vocab() const;
  bool add_bos() const;   // llama_vocab_get_add_bos
  bool add_eos() const;   // llama_vocab_get_add_eos
  Token bos() const;
  bool is_eog(Token t) const;
  std::string description() const;  // llama_model_desc: "gemma3 ?B Q4_K - Small"
  uint64_t n_params() const;
  uint64_t size_bytes() const;      // llama_model_size: bytes of all tensors
  uint32_t n_ctx_train() const;

 private:
  Model(std::string path, llama_model* model) : path_(std::move(path)), model_(model) {}
  std::string path_;
  llama_model* model_;
};

// Tokenizes as llama.cpp's common_tokenize(ctx, text, add_special = true,
// parse_special = false), what llama-perplexity does with its input text.
std::vector<Token> tokenize(const Model& model, std::string_view text);

struct ContextOptions {
  uint32_t n_ctx = 512;     // total cells (all sequences)
  uint32_t n_batch = 2048;  // logical batch
  uint32_t n_ubatch = 512;  // physical batch
  uint32_t n_seq_max = 1;
  int threads = 1;          // n_threads and n_threads_batch
  // ggml_backend_sched_eval_callback, called for every graph node (llama-imatrix's cb_eval).
  bool (*cb_eval)(ggml_tensor* t, bool ask, void* user_data) = nullptr;
  void* cb_eval_user_data = nullptr;
};

// A llama.cpp context with the parameters llama.cpp's common library derives
// from its defaults (common_context_params_to_llama): llama_context_default_params
// except swa_full = false and timings on, plus the options above.
class Context {
 public:
  Context(const Model& model, const ContextOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  llama_context* get() const { return ctx_; }
  uint32_t n_ctx() const;
  uint32_t n_seq_max() const;
  void clear_memory();  // llama_memory_clear(mem, true)
  void synchronize();
  const float* logits();           // llama_get_logits
  const float* logits_ith(int i);  // llama_get_logits_ith

 private:
  llama_context* ctx_;
};

// A batch of tokens for llama_process (like llama.cpp's common_batch, tokens
// only). Positions are single text positions.
class Batch {
 public:
  explicit Batch(Context& ctx);
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void clear() { entries_.clear(); }
  void add(Token token, int32_t pos, int32_t seq_id, bool output);
  int size() const { return static_cast<int>(entries_.size()); }

  // llama_process(DECODE); throws Error "<what>: llama_decode failed (<code>)".
  void decode(const std::string& what);

 private:
  struct Entry {
    Token token;
    int32_t pos;
    int32_t seq_id;
    bool output;
  };
  Context& ctx_;
  llama_batch_ext* batch_;
  std::vector<Entry> entries_;
};

}  // namespace medquant::llm
