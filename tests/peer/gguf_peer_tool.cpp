// Helper for tests/peer/test_quantize_gguf.py (not shipped):
//
//   gguf_peer_tool dequant <file.gguf> <tensor> <out.f32>
//       medquant's decoding of one tensor (quant::dequantize_row, or the
//       f16/bf16/f32 conversion), as raw little-endian float32.
//   gguf_peer_tool generate <model.gguf> <out.f32> <n_predict> <prompt text>
//       llama.cpp (libllama) loads the model, tokenizes the prompt, and
//       decodes greedily n_predict tokens on one thread; writes the logits of
//       every step (n_predict rows of n_vocab float32) and prints the
//       generated token ids on stdout.
#include <llama.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/half.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

namespace {

using namespace medquant;

int dequant(const std::string& path, const std::string& name, const std::string& out_path) {
  gguf::Reader r(path);
  const gguf::TensorInfo* t = r.header().find_tensor(name);
  if (!t) fail("{}: no tensor '{}'", path, name);
  const auto bytes = r.tensor_data(*t);
  const int64_t n = t->n_elements(), ne0 = t->ne[0];
  std::vector<float> out(static_cast<size_t>(n));
  const size_t row = t->row_bytes();
  for (int64_t i = 0; i < t->n_rows(); ++i) {
    const uint8_t* src = bytes.data() + i * row;
    float* dst = out.data() + i * ne0;
    switch (t->type) {
      case quant::Type::F32: std::memcpy(dst, src, ne0 * 4); break;
      case quant::Type::F16:
        core::fp16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), dst, ne0);
        break;
      case quant::Type::BF16:
        core::bf16_to_fp32_row(reinterpret_cast<const uint16_t*>(src), dst, ne0);
        break;
      default: quant::dequantize_row(t->type, src, dst, ne0);
    }
  }
  std::ofstream f(out_path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * 4));
  return f ? 0 : 1;
}

int generate(const std::string& model_path, const std::string& out_path, int n_predict,
             const std::string& prompt) {
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(model_path.c_str(), mp);
  if (!model) fail("{}: llama.cpp could not load the model", model_path);
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int n_vocab = llama_vocab_n_tokens(vocab);

  std::vector<llama_token> tokens(prompt.size() + 8);
  const int n = llama_tokenize(vocab, prompt.c_str(), static_cast<int32_t>(prompt.size()),
                               tokens.data(), static_cast<int32_t>(tokens.size()), true, true);
  if (n < 0) fail("tokenize failed");
  tokens.resize(n);

  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 256;
  cp.n_batch = 256;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) fail("{}: cannot create a context", model_path);

  std::vector<float> all;
  std::vector<llama_token> generated;
  llama_batch batch = llama_batch_get_one(tokens.data(), static_cast<int32_t>(tokens.size()));
  llama_token next = 0;
  for (int step = 0; step < n_predict; ++step) {
    if (llama_decode(ctx, batch) != 0) fail("{}: decode failed at step {}", model_path, step);
    const float* logits = llama_get_logits_ith(ctx, -1);
    all.insert(all.end(), logits, logits + n_vocab);
    int best = 0;
    for (int i = 1; i < n_vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    next = best;
    generated.push_back(next);
    batch = llama_batch_get_one(&next, 1);
  }
  std::ofstream f(out_path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size() * 4));
  for (size_t i = 0; i < generated.size(); ++i) std::printf("%s%d", i ? " " : "", generated[i]);
  std::printf("\n");
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return f ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "dequant" && argc == 5) return dequant(argv[2], argv[3], argv[4]);
    if (cmd == "generate" && argc == 6) return generate(argv[2], argv[3], std::stoi(argv[4]), argv[5]);
    std::fprintf(stderr,
                 "usage: gguf_peer_tool dequant <file.gguf> <tensor> <out.f32>\n"
                 "       gguf_peer_tool generate <model.gguf> <out.f32> <n_predict> <prompt>\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
