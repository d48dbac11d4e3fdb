// Mirrors tools/perplexity/perplexity.cpp of llama.cpp b11312 (perplexity()
// with a logits file, kl_divergence(), the log_softmax variants and the final
// statistics). The float / double types of every intermediate are the tool's:
// changing one changes the last digits the peer test compares.
#include "llm/perplexity.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"

namespace medquant::llm {
namespace {

constexpr char kLogitsMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};

int row_u16(int n_vocab) { return 2 * ((n_vocab + 1) / 2) + 4; }

inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

// perplexity.cpp: static double log_softmax(int n_vocab, const float * logits,
// uint16_t * log_prob, int tok)
double log_softmax_store(int n_vocab, const float* logits, uint16_t* log_prob, int tok) {
  float max_logit = logits[0];
  float min_logit = logits[0];
  for (int i = 1; i < n_vocab; ++i) {
    max_logit = std::max(max_logit, logits[i]);
    min_logit = std::min(min_logit, logits[i]);
  }
  min_logit = std::max(min_logit, max_logit - 16);
  double sum_exp = 0.0;
  for (int i = 0; i < n_vocab; ++i) sum_exp += expf(logits[i] - max_logit);
  const float log_sum_exp = std::log(sum_exp);
  const float min_log_prob = min_logit - max_logit - log_sum_exp;
  const float scale = (max_logit - min_logit) / 65535.f;
  float d[2] = {scale, min_log_prob};
  std::memcpy(log_prob, d, sizeof d);
  log_prob += 4;
  if (scale) {
    const float inv_scale = 1 / scale;
    for (int i = 0; i < n_vocab; ++i)
      log_prob[i] = logits[i] > min_logit
                        ? static_cast<uint16_t>(nearest_int(inv_scale * (logits[i] - min_logit)))
                        : 0;
  } else {
    std::memset(log_prob, 0, static_cast<size_t>(n_vocab) * sizeof(uint16_t));
  }
  return max_logit + log_sum_exp - logits[tok];
}

// One scored token of the KL divergence run: what the tool's
// log_softmax(n_vocab, logits, base_log_prob, tok, kld) adds to its sums.
struct TokenKld {
  float nll = 0;
  float nll_base = 0;
  double kld = 0;
  bool same_top = false;
  float p_diff = 0;
};

TokenKld log_softmax_kld(int n_vocab, const float* logits, const uint16_t* base_log_prob,
                         int tok) {
  TokenKld r;
  float max_logit = logits[0];
  int imax = 0;
  for (int i = 1; i < n_vocab; ++i) {
    if (logits[i] > max_logit) {
      max_logit = logits[i];
      imax = i;
    }
  }
  double sum_exp = 0.0;
  for (int i = 0; i < n_vocab; ++i) sum_exp += expf(logits[i] - max_logit);
  const float log_sum_exp = std::log(sum_exp);
  float d[2];
  std::memcpy(d, base_log_prob, sizeof d);
  const float scale = d[0];
  const float min_log_prob = d[1];
  base_log_prob += 4;

  r.nll = max_logit + log_sum_exp - logits[tok];
  r.nll_base = -(scale * base_log_prob[tok] + min_log_prob);

  max_logit += log_sum_exp;
  double sum = 0;
  int imax_base = -1;
  float p_log_base_max = 0;
  for (int i = 0; i < n_vocab; ++i) {
    const float p_log_base = scale * base_log_prob[i] + min_log_prob;
    if (i == 0 || p_log_base > p_log_base_max) {
      p_log_base_max = p_log_base;
      imax_base = i;
    }
    if (p_log_base > -16.f) {
      const float p_base = expf(p_log_base);
      sum += p_base * (p_log_base - logits[i] + max_logit);
    }
  }
  r.kld = sum;
  r.same_top = imax == imax_base;
  const float p_base = expf(-r.nll_base);
  const float p = expf(-r.nll);
  r.p_diff = p - p_base;
  return r;
}

// llama_perplexity()'s parameter derivation: n_parallel = max(1, n_batch /
// n_ctx) sequences, n_parallel * n_ctx cells, n_batch = min(n_batch, cells).
struct Layout {
  int n_ctx = 0;     // per chunk
  int n_seq = 0;
  int n_batch = 0;
  int num_batches = 0;
  int first = 0;     // n_ctx / 2
  int n_scored = 0;  // n_ctx - 1 - first
};

Layout layout_for(const EvalOptions& o) {
  if (o.n_ctx <= 0) fail("context size must be > 0 (got {})", o.n_ctx);
  if (o.n_ctx < 4) fail("context size {} is too small to score anything", o.n_ctx);
  if (o.n_batch <= 0 || o.n_ubatch <= 0) fail("batch sizes must be > 0");
  Layout l;
  l.n_ctx = o.n_ctx;
  l.n_seq = std::max(1, o.n_batch / o.n_ctx);
  l.n_batch = std::min(o.n_batch, l.n_seq * o.n_ctx);
  if (!(l.n_batch < l.n_ctx || l.n_batch % l.n_ctx == 0))
    fail("batch size {} must be below the context size {} or a multiple of it", l.n_batch,
         l.n_ctx);
  l.num_batches = (l.n_ctx + l.n_batch - 1) / l.n_batch;
  l.first = l.n_ctx / 2;
  l.n_scored = l.n_ctx - 1 - l.first;
  return l;
}

ContextOptions context_options(const Layout& l, const EvalOptions& o) {
  ContextOptions c;
  c.n_ctx = static_cast<uint32_t>(l.n_seq * l.n_ctx);
  c.n_batch = static_cast<uint32_t>(l.n_batch);
  c.n_ubatch = static_cast<uint32_t>(o.n_ubatch);
  c.n_seq_max = static_cast<uint32_t>(l.n_seq);
  c.threads = std::max(1, o.threads);
  return c;
}

// The chunk loop both runs share: for each group of n_seq chunks, one or more
// batches, then on_sequence(chunk index, logits of the scored positions,
// tokens from the first scored position) for each chunk of the group.
template <typename OnSequence>
void evaluate_chunks(const Model& model, Context& ctx, std::vector<Token>& tokens,
                     const Layout& l, int n_chunk, const std::string& what,
                     OnSequence&& on_sequence) {
  const bool add_bos = model.add_bos();
  const int n_vocab = model.n_vocab();
  Batch batch(ctx);
  std::vector<float> logits;
  if (l.num_batches > 1) logits.reserve(static_cast<size_t>(l.n_ctx) * n_vocab);
  core::Progress progress(what, static_cast<uint64_t>(n_chunk));

  for (int i = 0; i < n_chunk; i += l.n_seq) {
    const int start = i * l.n_ctx;
    const int end = start + l.n_ctx;
    const int n_seq_batch = std::min(l.n_seq, n_chunk - i);
    ctx.clear_memory();
    for (int j = 0; j < l.num_batches; ++j) {
      const int batch_start = start + j * l.n_batch;
      const int batch_size = std::min(end - batch_start, l.n_batch);
      int n_outputs = 0;
      batch.clear();
      for (int seq = 0; seq < n_seq_batch; ++seq) {
        const int seq_start = batch_start + seq * l.n_ctx;
        const Token token_org = tokens[static_cast<size_t>(seq_start)];
        if (add_bos && j == 0) tokens[static_cast<size_t>(seq_start)] = model.bos();
        for (int k = 0; k < batch_size; ++k) {
          const int pos = j * l.n_batch + k;
          const bool need_logits = pos >= l.first;
          batch.add(tokens[static_cast<size_t>(seq_start + k)], pos, seq, need_logits);
          n_outputs += need_logits;
        }
        tokens[static_cast<size_t>(seq_start)] = token_org;
      }
      batch.decode(fmt::format("{}: chunk {}", what, i + 1));
      if (l.num_batches > 1 && n_outputs > 0) {
        const float* batch_logits = ctx.logits();
        logits.insert(logits.end(), batch_logits,
                      batch_logits + static_cast<size_t>(n_outputs) * n_vocab);
      }
    }
    for (int seq = 0; seq < n_seq_batch; ++seq) {
      const float* all_logits =
          l.num_batches > 1 ? logits.data() : ctx.logits_ith(seq * l.n_ctx + l.first);
      if (!all_logits) fail("{}: llama.cpp returned no logits for chunk {}", what, i + seq + 1);
      const Token* tokens_data = tokens.data() + start + seq * l.n_ctx + l.first;
      on_sequence(i + seq, all_logits, tokens_data);
    }
    logits.clear();
    progress.add(static_cast<uint64_t>(n_seq_batch));
  }
}

template <typename T>
void read_exact(std::ifstream& in, T* data, size_t count, const std::string& path,
                const char* what) {
  in.read(reinterpret_cast<char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in) fail("{}: truncated logits file (reading {})", path, what);
}

}  // namespace

std::string eval_text(std::string text) {
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

BaseResult perplexity_base(const Model& model, const std::vector<Token>& text_tokens,
                           const EvalOptions& options, const std::string& logits_path) {
  if (model.add_eos()) fail("{}: the vocabulary adds EOS; llama-perplexity refuses such models",
                            model.path());
  const Layout l = layout_for(options);
  std::vector<Token> tokens = text_tokens;
  if (static_cast<int64_t>(tokens.size()) < 2 * static_cast<int64_t>(l.n_ctx))
    fail("the text tokenizes to only {} tokens; a context of {} needs at least {}",
         tokens.size(), l.n_ctx, 2 * l.n_ctx);
  const int n_chunk_max = static_cast<int>(tokens.size() / static_cast<size_t>(l.n_ctx));
  const int n_chunk =
      options.n_chunks < 0 ? n_chunk_max : std::min(options.n_chunks, n_chunk_max);
  const int n_vocab = model.n_vocab();
  const int nv = row_u16(n_vocab);

  Context ctx(model, context_options(l, options));
  core::AtomicFile out(logits_path);
  out.write(kLogitsMagic, sizeof kLogitsMagic);
  const uint32_t n_ctx_u = static_cast<uint32_t>(l.n_ctx);
  out.write(&n_ctx_u, sizeof n_ctx_u);
  out.write(&n_vocab, sizeof n_vocab);
  out.write(&n_chunk, sizeof n_chunk);
  out.write(tokens.data(), static_cast<size_t>(n_chunk) * l.n_ctx * sizeof(Token));

  BaseResult r;
  r.n_ctx = l.n_ctx;
  r.n_chunk = n_chunk;
  r.n_vocab = n_vocab;
  r.n_text_tokens = tokens.size();
  core::ThreadPool pool(static_cast<size_t>(std::max(1, options.threads)));
  std::vector<uint16_t> log_probs(static_cast<size_t>(l.n_scored) * nv);
  std::vector<double> nll(static_cast<size_t>(l.n_scored));

  evaluate_chunks(model, ctx, tokens, l, n_chunk, "perplexity (reference)",
                  [&](int, const float* logits, const Token* toks) {
                    pool.parallel_for(0, static_cast<size_t>(l.n_scored), [&](size_t t) {
                      nll[t] = log_softmax_store(n_vocab, logits + t * n_vocab,
                                                 log_probs.data() + t * nv, toks[t + 1]);
                    });
                    for (double v : nll) {
                      r.sum_nll += v;
                      r.sum_nll2 += v * v;
                    }
                    out.write(log_probs.data(), log_probs.size() * sizeof(uint16_t));
                    r.count += static_cast<size_t>(l.n_scored);
                    r.chunk_ppl.push_back(std::exp(r.sum_nll / static_cast<double>(r.count)));
                  });
  out.commit();

  double nll2 = r.sum_nll2 / static_cast<double>(r.count);
  const double mean = r.sum_nll / static_cast<double>(r.count);
  r.ppl = std::exp(mean);
  nll2 -= mean * mean;
  r.ppl_uncertainty = nll2 > 0 ? std::sqrt(nll2 / static_cast<double>(r.count - 1)) * r.ppl : 0;
  return r;
}

KldResult kl_divergence(const Model& model, const std::string& logits_path,
                        const EvalOptions& options) {
  if (model.add_eos()) fail("{}: the vocabulary adds EOS; llama-perplexity refuses such models",
                            model.path());
  std::ifstream in(logits_path, std::ios::binary);
  if (!in) fail("{}: cannot open", logits_path);
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, kLogitsMagic, 8) != 0)
    fail("{}: not a logits file (no \"_logits_\" at the start)", logits_path);
  uint32_t n_ctx_u = 0;
  int32_t n_vocab = 0, n_chunk = 0;
  read_exact(in, &n_ctx_u, 1, logits_path, "n_ctx");
  read_exact(in, &n_vocab, 1, logits_path, "n_vocab");
  read_exact(in, &n_chunk, 1, logits_path, "n_chunk");
  if (n_ctx_u < 4 || n_ctx_u > (1u << 24) || n_chunk <= 0 || n_chunk > (1 << 24) || n_vocab <= 0)
    fail("{}: implausible header (n_ctx {}, n_vocab {}, n_chunk {})", logits_path, n_ctx_u,
         n_vocab, n_chunk);
  if (n_vocab != model.n_vocab())
    fail("{}: vocabulary sizes differ: the reference has {} tokens, {} has {}", logits_path,
         n_vocab, model.path(), model.n_vocab());
  EvalOptions o = options;
  o.n_ctx = static_cast<int>(n_ctx_u);
  const Layout l = layout_for(o);
  const int nv = row_u16(n_vocab);

  std::vector<Token> tokens(static_cast<size_t>(l.n_ctx) * n_chunk);
  read_exact(in, tokens.data(), tokens.size(), logits_path, "the evaluation tokens");
  for (Token t : tokens)
    if (t < 0 || t >= n_vocab) fail("{}: token id {} is outside the vocabulary", logits_path, t);

  Context ctx(model, context_options(l, o));
  KldResult r;
  r.n_ctx = l.n_ctx;
  r.n_chunk = n_chunk;
  r.n_vocab = n_vocab;
  r.kld_values.reserve(static_cast<size_t>(l.n_scored) * n_chunk);
  r.p_diff_values.reserve(static_cast<size_t>(l.n_scored) * n_chunk);
  core::ThreadPool pool(static_cast<size_t>(std::max(1, o.threads)));
  std::vector<uint16_t> base(static_cast<size_t>(l.n_scored) * nv);
  std::vector<TokenKld> per_token(static_cast<size_t>(l.n_scored));

  evaluate_chunks(
      model, ctx, tokens, l, n_chunk, "KL divergence (candidate)",
      [&](int chunk, const float* logits, const Token* toks) {
        in.read(reinterpret_cast<char*>(base.data()),
                static_cast<std::streamsize>(base.size() * sizeof(uint16_t)));
        if (!in) fail("{}: failed reading log-probs for chunk {}", logits_path, chunk);
        pool.parallel_for(0, static_cast<size_t>(l.n_scored), [&](size_t t) {
          per_token[t] = log_softmax_kld(n_vocab, logits + t * n_vocab, base.data() + t * nv,
                                         toks[t + 1]);
        });
        for (const TokenKld& k : per_token) {
          // The tool's kl_divergence_result updates, in its types.
          r.sum_nll += k.nll;
          r.sum_nll2 += k.nll * k.nll;
          r.sum_nll_base += k.nll_base;
          r.sum_nll_base2 += k.nll_base * k.nll_base;
          r.sum_nll_nll_base += k.nll * k.nll_base;
          r.sum_kld += k.kld;
          r.sum_kld2 += k.kld * k.kld;
          ++r.count;
          if (k.same_top) ++r.n_same_top;
          r.sum_p_diff += k.p_diff;
          const double p_diff2 = k.p_diff * k.p_diff;
          r.sum_p_diff2 += p_diff2;
          r.sum_p_diff4 += p_diff2 * p_diff2;
          r.max_p_diff = std::max(r.max_p_diff, std::fabs(k.p_diff));
          r.kld_values.push_back(static_cast<float>(k.kld));
          r.p_diff_values.push_back(k.p_diff);
        }
      });
  return r;
}

float percentile(const std::vector<float>& values, float fraction) {
  if (values.empty()) return 0;
  if (fraction <= 0) return values.front();
  if (fraction >= 1) return values.back();
  float p = fraction * (values.size() - 1);
  size_t ip = static_cast<size_t>(p);
  p -= ip;
  return (1 - p) * values[ip] + p * values[std::min(ip + 1, values.size() - 1)];
}

KldFigures kld_figures(const KldResult& r) {
  auto mean_and_uncertainty = [](double sum, double sum2, size_t count) {
    if (count < 1) return ValueUncertainty{0., 0.};
    double f = sum / count;
    double df = sum2 / count - f * f;
    df = df > 0 && count > 10 ? std::sqrt(df / (count - 1)) : 0.;
    return ValueUncertainty{f, df};
  };
  auto covariance = [](double suma, double sumb, double sumab, size_t count) {
    if (count < 10) return 0.0;
    double var = sumab / count - (suma / count) * (sumb / count);
    var /= count - 1;
    return var;
  };
  auto median = [](const std::vector<float>& v) -> float {
    if (v.empty()) return 0;
    return v.size() % 2 == 0 ? 0.5f * (v[v.size() / 2] + v[v.size() / 2 - 1]) : v[v.size() / 2];
  };

  KldFigures f;
  f.count = r.count;
  const ValueUncertainty log_ppl = mean_and_uncertainty(r.sum_nll, r.sum_nll2, r.count);
  f.ppl = {std::exp(log_ppl.value), std::exp(log_ppl.value) * log_ppl.uncertainty};
  const ValueUncertainty log_ppl_base =
      mean_and_uncertainty(r.sum_nll_base, r.sum_nll_base2, r.count);
  f.ppl_base = {std::exp(log_ppl_base.value),
                std::exp(log_ppl_base.value) * log_ppl_base.uncertainty};
  const double log_ppl_cov = covariance(r.sum_nll, r.sum_nll_base, r.sum_nll_nll_base, r.count);
  f.ln_ppl_correlation = log_ppl_cov / (log_ppl.uncertainty * log_ppl_base.uncertainty);
  f.ln_ppl_ratio.value = log_ppl.value - log_ppl_base.value;
  f.ln_ppl_ratio.uncertainty = std::sqrt(log_ppl.uncertainty * log_ppl.uncertainty +
                                         log_ppl_base.uncertainty * log_ppl_base.uncertainty -
                                         2.0 * log_ppl_cov);
  f.ppl_ratio.value = std::exp(f.ln_ppl_ratio.value);
  f.ppl_ratio.uncertainty = f.ppl_ratio.value * f.ln_ppl_ratio.uncertainty;
  const double ppl_cov = f.ppl.value * f.ppl_base.value * log_ppl_cov;
  f.ppl_diff.value = f.ppl.value - f.ppl_base.value;
  f.ppl_diff.uncertainty =
      std::sqrt(f.ppl.uncertainty * f.ppl.uncertainty +
                f.ppl_base.uncertainty * f.ppl_base.uncertainty - 2.0 * ppl_cov);

  f.kld_mean = mean_and_uncertainty(r.sum_kld, r.sum_kld2, r.count);
  std::vector<float> kld = r.kld_values;
  std::vector<float> dp = r.p_diff_values;
  std::sort(kld.begin(), kld.end());
  std::sort(dp.begin(), dp.end());
  if (!kld.empty()) {
    f.kld_max = kld.back();
    f.kld_p99_9 = percentile(kld, 0.999f);
    f.kld_p99 = percentile(kld, 0.990f);
    f.kld_p95 = percentile(kld, 0.950f);
    f.kld_p90 = percentile(kld, 0.900f);
    f.kld_median = median(kld);
    f.kld_p10 = percentile(kld, 0.100f);
    f.kld_p5 = percentile(kld, 0.050f);
    f.kld_p1 = percentile(kld, 0.010f);
    f.kld_p0_1 = percentile(kld, 0.001f);
    f.kld_min = kld.front();
  }
  f.p_diff_mean = mean_and_uncertainty(r.sum_p_diff, r.sum_p_diff2, r.count);
  if (!dp.empty()) {
    f.p_diff_max = dp.back();
    f.p_diff_p99 = percentile(dp, 0.990f);
    f.p_diff_median = median(dp);
    f.p_diff_p1 = percentile(dp, 0.010f);
    f.p_diff_min = dp.front();
  }
  const ValueUncertainty p_diff_mse = mean_and_uncertainty(r.sum_p_diff2, r.sum_p_diff4, r.count);
  f.p_diff_rms.value = std::sqrt(p_diff_mse.value);
  f.p_diff_rms.uncertainty = 0.5 / f.p_diff_rms.value * p_diff_mse.uncertainty;
  const double same_top = r.count ? 1.0 * r.n_same_top / r.count : 0.0;
  f.same_top.value = same_top;
  f.same_top.uncertainty =
      r.count > 1 ? std::sqrt(same_top * (1.0 - same_top) / (r.count - 1)) : 0.0;
  return f;
}

}  // namespace medquant::llm
