#include "llm/imatrix.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "llama.h"
#include "llm/isolate.h"
#include "llm/perplexity.h"

namespace medquant::llm {
namespace {

// "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight" (llama-imatrix's filter_tensor_name).
std::string filter_tensor_name(const char* name) {
  const char* p = std::strchr(name, '#');
  if (!p) return name;
  ++p;
  const char* q = std::strchr(p, '#');
  return q ? std::string(p, q - p) : std::string(p);
}

struct Collector {
  gguf::ImatrixSums sums;
  std::vector<char> src1_copy;  // activations not in host memory
  std::vector<char> ids;
  std::string error;            // set in the callback (no exceptions through ggml), thrown after decode

  bool collect(ggml_tensor* t, bool ask) {
    const ggml_tensor* src0 = t->src[0];
    const ggml_tensor* src1 = t->src[1];
    if (ask) {
      if (t->op == GGML_OP_MUL_MAT_ID) return true;
      if (t->op != GGML_OP_MUL_MAT) return false;
      // The tool skips small batches (< 16 rows) and non-F32 activations.
      if (src1->ne[1] < 16 || src1->type != GGML_TYPE_F32) return false;
      return filter_tensor_name(src0->name).rfind("blk.", 0) == 0;
    }
    if (!error.empty()) return true;
    const std::string wname = filter_tensor_name(src0->name);
    const bool is_host = ggml_backend_buffer_is_host(src1->buffer);
    if (!is_host) {
      src1_copy.resize(ggml_nbytes(src1));
      ggml_backend_tensor_get(src1, src1_copy.data(), 0, src1_copy.size());
    }
    const char* data = is_host ? static_cast<const char*>(src1->data) : src1_copy.data();
    const int64_t ne0 = src1->ne[0];
    auto& e = sums.entries[wname];

    if (t->op == GGML_OP_MUL_MAT_ID) {
      // ids [n_expert_used, n_tokens], src1 [cols, n_expert_used, n_tokens]
      const ggml_tensor* id_t = t->src[2];
      const int64_t n_as = src0->ne[2];
      const int64_t n_ids = id_t->ne[0];
      const int64_t n_tokens = src1->ne[2];
      if (ggml_nrows(src1) != src1->ne[1] * src1->ne[2]) {
        error = wname + ": activations with more than 3 dimensions";
        return true;
      }
      ids.resize(ggml_nbytes(id_t));
      ggml_backend_tensor_get(id_t, ids.data(), 0, ids.size());
      if (e.sums.empty()) {
        e.sums.assign(static_cast<size_t>(ne0 * n_as), 0.0f);
        e.counts.assign(static_cast<size_t>(n_as), 0);
      } else if (e.sums.size() != static_cast<size_t>(ne0 * n_as)) {
        error = wname + ": inconsistent size";
        return true;
      }
      for (int64_t idx = 0; idx < n_ids; ++idx)
        for (int64_t row = 0; row < n_tokens; ++row) {
          int32_t ex;
          std::memcpy(&ex, ids.data() + row * id_t->nb[1] + idx * id_t->nb[0], sizeof ex);
          if (ex < 0 || ex >= n_as) {
            error = wname + ": expert id out of range";
            return true;
          }
          const float* x = reinterpret_cast<const float*>(data + (idx % src1->ne[1]) * src1->nb[1] +
                                                          row * src1->nb[2]);
          float* acc = e.sums.data() + ex * ne0;
          ++e.counts[static_cast<size_t>(ex)];
          for (int64_t j = 0; j < ne0; ++j) acc[j] += x[j] * x[j];
        }
    } else {
      const int64_t n_mat = src0->ne[2] * src0->ne[3];
      if (e.sums.empty()) {
        e.sums.assign(static_cast<size_t>(ne0 * n_mat), 0.0f);
        e.counts.assign(1, 0);
      } else if (e.sums.size() != static_cast<size_t>(ne0 * n_mat)) {
        error = wname + ": inconsistent size";
        return true;
      }
      for (int64_t i3 = 0; i3 < src1->ne[3]; ++i3)
        for (int64_t i2 = 0; i2 < src1->ne[2]; ++i2) {
          // 3D+ activations against a 2D weight are flattened, as the tool does
          const int64_t mat_id = (i3 % src0->ne[3]) * src0->ne[2] + (i2 % src0->ne[2]);
          float* acc = e.sums.data() + mat_id * ne0;
          for (int64_t row = 0; row < src1->ne[1]; ++row) {
            const float* x = reinterpret_cast<const float*>(data + row * src1->nb[1] +
                                                            i2 * src1->nb[2] + i3 * src1->nb[3]);
            for (int64_t j = 0; j < ne0; ++j) acc[j] += x[j] * x[j];
          }
        }
      for (auto& c : e.counts) c += ggml_nrows(src1) / n_mat;
    }
    for (float v : e.sums)
      if (!std::isfinite(v)) {
        error = wname + ": non-finite activations";
        break;
      }
    return true;
  }
};

bool collect_callback(ggml_tensor* t, bool ask, void* user_data) {
  return static_cast<Collector*>(user_data)->collect(t, ask);
}

}  // namespace

gguf::ImatrixSums collect_imatrix(const Model& model, const std::vector<Token>& text_tokens,
                                  const ImatrixOptions& o) {
  if (o.n_ctx <= 0) fail("imatrix: context size must be > 0 (got {})", o.n_ctx);
  if (o.n_batch <= 0 || o.n_ubatch <= 0) fail("imatrix: batch sizes must be > 0");
  if (model.add_eos()) fail("{}: the vocabulary adds EOS; llama-imatrix refuses such models", model.path());
  const int n_ctx = o.n_ctx;
  const int n_seq = std::max(1, o.n_batch / n_ctx);
  const int n_batch = std::min(o.n_batch, n_seq * n_ctx);
  if (!(n_batch < n_ctx || n_batch % n_ctx == 0))
    fail("imatrix: batch size {} must be below the context size {} or a multiple of it", n_batch, n_ctx);
  std::vector<Token> tokens = text_tokens;
  if (static_cast<int64_t>(tokens.size()) < 2 * static_cast<int64_t>(n_ctx))
    fail("imatrix: the text tokenizes to only {} tokens; a context of {} needs at least {} (two chunks)",
         tokens.size(), n_ctx, 2 * n_ctx);
  const int n_chunk_max = static_cast<int>(tokens.size() / static_cast<size_t>(n_ctx));
  const int n_chunk = o.n_chunks < 0 ? n_chunk_max : std::min(o.n_chunks, n_chunk_max);
  const int num_batches = (n_ctx + n_batch - 1) / n_batch;

  Collector collector;
  ContextOptions co;
  co.n_ctx = static_cast<uint32_t>(n_seq * n_ctx);
  co.n_batch = static_cast<uint32_t>(n_batch);
  co.n_ubatch = static_cast<uint32_t>(o.n_ubatch);
  co.n_seq_max = static_cast<uint32_t>(n_seq);
  co.threads = std::max(1, o.threads);
  co.cb_eval = collect_callback;
  co.cb_eval_user_data = &collector;
  Context ctx(model, co);
  Batch batch(ctx);
  core::Progress progress("imatrix", static_cast<uint64_t>(n_chunk));
  const bool add_bos = model.add_bos();

  for (int i = 0; i < n_chunk; i += n_seq) {
    const int start = i * n_ctx;
    const int end = start + n_ctx;
    const int n_seq_batch = std::min(n_seq, n_chunk - i);
    ctx.clear_memory();
    for (int j = 0; j < num_batches; ++j) {
      const int batch_start = start + j * n_batch;
      const int batch_size = std::min(end - batch_start, n_batch);
      batch.clear();
      for (int seq = 0; seq < n_seq_batch; ++seq) {
        const size_t seq_start = static_cast<size_t>(batch_start + seq * n_ctx);
        const Token token_org = tokens[seq_start];
        if (add_bos && j == 0) tokens[seq_start] = model.bos();
        // Every position is an output, as the tool asks (the last layer's FFN is then run for all).
        for (int k = 0; k < batch_size; ++k) batch.add(tokens[seq_start + k], j * n_batch + k, seq, true);
        tokens[seq_start] = token_org;
      }
      batch.decode(fmt::format("imatrix: chunk {}", i + 1));
      if (!collector.error.empty()) fail("{}: imatrix: {}", model.path(), collector.error);
    }
    progress.add(static_cast<uint64_t>(n_seq_batch));
  }

  gguf::ImatrixSums out = std::move(collector.sums);
  if (out.entries.empty()) fail("{}: imatrix: no matrix multiplication of a blk.* weight was seen", model.path());
  out.chunk_size = static_cast<uint32_t>(n_ctx);
  for (const auto& [name, e] : out.entries)
    for (int64_t c : e.counts) out.chunk_count = std::max(out.chunk_count, static_cast<uint32_t>(c / n_ctx));
  return out;
}

ImatrixRun compute_imatrix(const std::string& model_gguf, const std::string& text_file,
                           const std::string& output, const ImatrixOptions& options) {
  const std::string text = eval_text(core::read_text_file(text_file));
  if (text.empty()) fail("{}: the text is empty; an importance matrix needs at least {} tokens", text_file,
                         2 * options.n_ctx);
  const auto r = run_isolated(model_gguf, [&] {
    init_backend();
    const auto model = Model::load(model_gguf);
    const auto tokens = tokenize(*model, text);
    gguf::ImatrixSums sums;
    try {
      sums = collect_imatrix(*model, tokens, options);
    } catch (const Error& e) {
      fail("{}: {}", text_file, e.what());
    }
    sums.datasets = {text_file};
    gguf::write_imatrix(output, sums);
    return fmt::format("{} {} {}", tokens.size(), sums.chunk_count, sums.entries.size());
  });
  ImatrixRun run;
  std::sscanf(r.output.c_str(), "%zu %u %zu", &run.n_tokens, &run.n_chunks, &run.n_entries);
  run.seconds = r.seconds;
  return run;
}

}  // namespace medquant::llm
