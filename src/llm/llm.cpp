#include "llm/llm.h"

#include <llama.h>

#include <array>
#include <deque>
#include <limits>
#include <mutex>

#include "core/error.h"
#include "core/log.h"

#ifndef MEDQUANT_LLAMA_VERSION
#define MEDQUANT_LLAMA_VERSION "unknown"
#endif
#ifndef MEDQUANT_LLAMA_COMMIT
#define MEDQUANT_LLAMA_COMMIT "unknown"
#endif

namespace medquant::llm {
namespace {

std::mutex g_log_mutex;
std::deque<std::string> g_errors;  // the last few error/warning lines of llama.cpp
std::string g_partial;             // a log line still being assembled (CONT pieces)

void log_callback(ggml_log_level level, const char* text, void*) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string s = text ? text : "";
  if (level == GGML_LOG_LEVEL_CONT) {
    g_partial += s;
  } else {
    g_partial = s;
  }
  if (core::verbosity() >= core::Verbosity::Verbose) fmt::print(stderr, "{}", s);
  if ((level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN ||
       (level == GGML_LOG_LEVEL_CONT && !g_errors.empty())) &&
      !g_partial.empty() && g_partial.back() == '\n') {
    std::string line = g_partial;
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) g_errors.push_back(line);
    while (g_errors.size() > 4) g_errors.pop_front();
  }
}

}  // namespace

std::string last_errors() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::string out;
  for (const auto& e : g_errors) out += (out.empty() ? "" : "; ") + e;
  return out.empty() ? "no message (run with -v for llama.cpp's log)" : out;
}

void clear_errors() {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_errors.clear();
}

std::string_view llama_cpp_version() { return MEDQUANT_LLAMA_VERSION; }
std::string_view llama_cpp_commit() { return MEDQUANT_LLAMA_COMMIT; }

std::string system_info() {
  init_backend();
  std::string s = llama_print_system_info();
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

void init_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    llama_log_set(log_callback, nullptr);
    llama_backend_init();
  });
}

// ---------------------------------------------------------------- Model

std::unique_ptr<Model> Model::load(const std::string& path, bool untouched_weights) {
  init_backend();
  clear_errors();
  llama_model_params params = llama_model_default_params();
  if (untouched_weights) params.use_extra_bufts = false;
  llama_model* model = llama_model_load_from_file(path.c_str(), params);
  if (!model) fail("{}: llama.cpp could not load the model: {}", path, last_errors());
  return std::unique_ptr<Model>(new Model(path, model));
}

Model::~Model() { llama_model_free(model_); }

const llama_vocab* Model::vocab() const { return llama_model_get_vocab(model_); }
int Model::n_vocab() const { return llama_vocab_n_tokens(vocab()); }
bool Model::add_bos() const { return llama_vocab_get_add_bos(vocab()); }
bool Model::add_eos() const { return llama_vocab_get_add_eos(vocab()); }
Token Model::bos() const { return llama_vocab_bos(vocab()); }
bool Model::is_eog(Token t) const { return llama_vocab_is_eog(vocab(), t); }
uint64_t Model::n_params() const { return llama_model_n_params(model_); }
uint64_t Model::size_bytes() const { return llama_model_size(model_); }
uint32_t Model::n_ctx_train() const {
  const int32_t n = llama_model_n_ctx_train(model_);
  return n > 0 ? static_cast<uint32_t>(n) : 0;
}

std::string Model::description() const {
  char buf[256];
  const int n = llama_model_desc(model_, buf, sizeof buf);
  return n > 0 ? std::string(buf) : std::string();
}

std::vector<Token> tokenize(const Model& model, std::string_view text) {
  // common_tokenize: an upper bound first, the exact size if it was too small.
  if (text.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2))
    fail("text of {} bytes is too large to tokenize", text.size());
  const int32_t len = static_cast<int32_t>(text.size());
  std::vector<Token> out(static_cast<size_t>(len) + 2);
  int32_t n = llama_tokenize(model.vocab(), text.data(), len, out.data(),
                             static_cast<int32_t>(out.size()), true, false);
  if (n == std::numeric_limits<int32_t>::min()) fail("tokenization failed: too many tokens");
  if (n < 0) {
    out.resize(static_cast<size_t>(-n));
    const int32_t check = llama_tokenize(model.vocab(), text.data(), len, out.data(),
                                         static_cast<int32_t>(out.size()), true, false);
    if (check != -n) fail("tokenization failed ({} then {} tokens)", -n, check);
  } else {
    out.resize(static_cast<size_t>(n));
  }
  return out;
}

// ---------------------------------------------------------------- Context

Context::Context(const Model& model, const ContextOptions& o) {
  llama_context_params p = llama_context_default_params();
  p.n_ctx = o.n_ctx;
  p.n_batch = o.n_batch;
  p.n_ubatch = o.n_ubatch;
  p.n_seq_max = o.n_seq_max;
  p.n_threads = o.threads;
  p.n_threads_batch = o.threads;
  p.cb_eval = o.cb_eval;
  p.cb_eval_user_data = o.cb_eval_user_data;
  // What common_context_params_to_llama changes from the library defaults.
  p.swa_full = false;
  p.no_perf = false;
  p.kv_unified = false;
  clear_errors();
  ctx_ = llama_init_from_model(model.get(), p);
  if (!ctx_)
    fail("{}: llama.cpp could not create a context (n_ctx {}, n_seq {}): {}", model.path(),
         o.n_ctx, o.n_seq_max, last_errors());
}

Context::~Context() { llama_free(ctx_); }

uint32_t Context::n_ctx() const { return llama_n_ctx(ctx_); }
uint32_t Context::n_seq_max() const { return llama_n_seq_max(ctx_); }
void Context::clear_memory() { llama_memory_clear(llama_get_memory(ctx_), true); }
void Context::synchronize() { llama_synchronize(ctx_); }
const float* Context::logits() { return llama_get_logits(ctx_); }
const float* Context::logits_ith(int i) { return llama_get_logits_ith(ctx_, i); }

// ---------------------------------------------------------------- Batch

Batch::Batch(Context& ctx) : ctx_(ctx), batch_(llama_batch_ext_init(ctx.get())) {
  if (!batch_) fail("llama.cpp could not allocate a batch");
}

Batch::~Batch() { llama_batch_ext_free(batch_); }

void Batch::add(Token token, int32_t pos, int32_t seq_id, bool output) {
  entries_.push_back({token, pos, seq_id, output});
}

void Batch::decode(const std::string& what) {
  // As common_batch::get_sub_batch renders its entries.
  llama_batch_ext_clear(batch_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    const int32_t idx = llama_batch_ext_add_token(batch_, e.seq_id, e.token);
    if (idx < 0) fail("{}: cannot add token {} to a batch (error {})", what, e.token, idx);
    const std::array<llama_pos, GGML_MROPE_SECTIONS> pos{e.pos, 0, 0, 0};
    llama_batch_ext_set_pos(batch_, idx, pos.data());
    if (e.output) llama_batch_ext_set_output_logits(batch_, idx, true);
  }
  clear_errors();
  const int32_t rc = llama_process(ctx_.get(), LLAMA_PROCESS_TYPE_DECODE, batch_);
  if (rc != 0) fail("{}: llama_decode failed ({}): {}", what, rc, last_errors());
}

}  // namespace medquant::llm
