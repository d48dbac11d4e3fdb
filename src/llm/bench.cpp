#include "llm/bench.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace medquant::llm {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Token argmax(const float* logits, int n_vocab) {
  int best = 0;
  for (int i = 1; i < n_vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double SpeedResult::prompt_tokens_per_second() const {
  const double m = median(prompt_ms);
  return m > 0 ? prompt_tokens * 1000.0 / m : 0;
}

double SpeedResult::gen_tokens_per_second() const {
  const double m = median(gen_ms);
  return m > 0 ? gen_tokens * 1000.0 / m : 0;
}

SpeedResult benchmark(const std::string& path, const std::string& text,
                      const SpeedOptions& o) {
  if (o.prompt_tokens < 1 || o.gen_tokens < 0 || o.repetitions < 1 || o.warmup < 0)
    fail("benchmark: prompt tokens >= 1, generated tokens >= 0, repetitions >= 1 and "
         "warm-up runs >= 0 are needed");
  init_backend();
  SpeedResult r;
  r.prompt_tokens = o.prompt_tokens;
  r.gen_tokens = o.gen_tokens;
  r.threads = std::max(1, o.threads);

  auto t0 = Clock::now();
  std::unique_ptr<Model> model = Model::load(path);
  r.load_ms = ms_since(t0);

  std::vector<Token> tokens = tokenize(*model, text);
  if (static_cast<int>(tokens.size()) < o.prompt_tokens)
    fail("benchmark: the text has {} tokens, fewer than the {} prompt tokens asked for",
         tokens.size(), o.prompt_tokens);
  tokens.resize(static_cast<size_t>(o.prompt_tokens));

  ContextOptions co;
  co.n_ctx = static_cast<uint32_t>(o.prompt_tokens + o.gen_tokens + 1);
  co.n_batch = std::max<uint32_t>(2048, static_cast<uint32_t>(o.prompt_tokens));
  co.n_ubatch = 512;
  co.n_seq_max = 1;
  co.threads = r.threads;
  t0 = Clock::now();
  Context ctx(*model, co);
  r.context_ms = ms_since(t0);
  const int n_vocab = model->n_vocab();

  Batch batch(ctx);
  for (int rep = 0; rep < o.warmup + o.repetitions; ++rep) {
    const bool measured = rep >= o.warmup;
    ctx.clear_memory();
    batch.clear();
    for (int i = 0; i < o.prompt_tokens; ++i)
      batch.add(tokens[static_cast<size_t>(i)], i, 0, i == o.prompt_tokens - 1);
    t0 = Clock::now();
    batch.decode(fmt::format("{}: benchmark prompt", path));
    const float* logits = ctx.logits_ith(o.prompt_tokens - 1);  // waits for the result
    const double prompt_ms = ms_since(t0);
    if (!logits) fail("{}: benchmark: llama.cpp returned no logits", path);
    Token next = argmax(logits, n_vocab);
    double gen_total = 0;
    for (int g = 0; g < o.gen_tokens; ++g) {
      batch.clear();
      batch.add(next, o.prompt_tokens + g, 0, true);
      t0 = Clock::now();
      batch.decode(fmt::format("{}: benchmark generation", path));
      logits = ctx.logits_ith(0);
      const double token_ms = ms_since(t0);
      if (!logits) fail("{}: benchmark: llama.cpp returned no logits", path);
      next = argmax(logits, n_vocab);
      gen_total += token_ms;
      if (measured) r.token_ms.push_back(token_ms);
    }
    if (measured) {
      r.prompt_ms.push_back(prompt_ms);
      r.gen_ms.push_back(gen_total);
    }
  }
  return r;
}

}  // namespace medquant::llm
