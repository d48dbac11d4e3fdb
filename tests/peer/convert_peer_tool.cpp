// Helper for tests/peer/test_convert_gguf.py (not shipped): llama.cpp runs the
// GGUF files that `medquant convert gguf` wrote.
//
//   convert_peer_tool logits <model.gguf> <ids.i32> <out.f32>
//       libllama loads the model and decodes the token ids (raw little-endian
//       int32) in one batch on 2 threads, KV cache in f32 and no flash
//       attention (llama.cpp's most precise settings on CPU); writes the logits of every position
//       (n_tokens rows of n_vocab float32).
//   convert_peer_tool image <model.gguf> <mmproj.gguf> <image> <out.f32>
//       libmtmd loads the projector with the model, reads the image (its
//       helper, stb_image) and encodes it: writes the image embeddings
//       (n_image_tokens rows of the text model's n_embd float32), what
//       transformers' get_image_features gives.
//
// Exit 0 on success; on failure a message on stderr and exit 1.
#include <llama.h>
#include <mtmd-helper.h>
#include <mtmd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

void quiet(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

bool write_floats(const std::string& path, const float* data, size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(float)));
  return static_cast<bool>(f);
}

llama_model* load_model(const std::string& path) {
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(path.c_str(), mp);
  if (!model) std::fprintf(stderr, "cannot load %s\n", path.c_str());
  return model;
}

int logits(const std::string& model_path, const std::string& ids_path, const std::string& out_path) {
  std::ifstream in(ids_path, std::ios::binary);
  std::vector<llama_token> ids;
  for (int32_t v; in.read(reinterpret_cast<char*>(&v), 4);) ids.push_back(v);
  if (ids.empty()) {
    std::fprintf(stderr, "%s: no token ids\n", ids_path.c_str());
    return 1;
  }
  llama_model* model = load_model(model_path);
  if (!model) return 1;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(std::max<size_t>(ids.size(), 256));
  cp.n_batch = cp.n_ctx;
  cp.n_ubatch = cp.n_ctx;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  // Full precision where llama.cpp lets us choose: the KV cache (f16 by
  // default) and attention without the flash kernel (f16 accumulation).
  cp.type_k = GGML_TYPE_F32;
  cp.type_v = GGML_TYPE_F32;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "cannot create a context\n");
    return 1;
  }
  llama_batch batch = llama_batch_init(static_cast<int32_t>(ids.size()), 0, 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = static_cast<llama_pos>(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = static_cast<int32_t>(ids.size());
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "llama_decode failed\n");
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::vector<float> out(ids.size() * static_cast<size_t>(n_vocab));
  for (size_t i = 0; i < ids.size(); ++i)
    std::memcpy(out.data() + i * n_vocab, llama_get_logits_ith(ctx, static_cast<int32_t>(i)),
                static_cast<size_t>(n_vocab) * sizeof(float));
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  return write_floats(out_path, out.data(), out.size()) ? 0 : 1;
}

int image(const std::string& model_path, const std::string& mmproj_path, const std::string& image_path,
          const std::string& out_path) {
  llama_model* model = load_model(model_path);
  if (!model) return 1;
  mtmd_context_params mp = mtmd_context_params_default();
  mp.use_gpu = false;
  mp.n_threads = 2;
  mp.print_timings = false;
  mp.warmup = false;
  mtmd_context* ctx = mtmd_init_from_file(mmproj_path.c_str(), model, mp);
  if (!ctx) {
    std::fprintf(stderr, "mtmd cannot load %s\n", mmproj_path.c_str());
    return 1;
  }
  mtmd_helper_bitmap_wrapper bmp =
      mtmd_helper_bitmap_init_from_file(ctx, image_path.c_str(), false, mtmd_helper_init_opt_default());
  if (!bmp.bitmap) {
    std::fprintf(stderr, "cannot read %s\n", image_path.c_str());
    return 1;
  }
  const std::string prompt = std::string("<start_of_turn>user\n") + mtmd_default_marker();
  mtmd_input_text text{prompt.c_str(), prompt.size(), true, true};
  mtmd_input_chunks* chunks = mtmd_input_chunks_init();
  const mtmd_bitmap* bitmaps[] = {bmp.bitmap};
  if (mtmd_tokenize(ctx, chunks, &text, bitmaps, 1) != 0) {
    std::fprintf(stderr, "mtmd_tokenize failed\n");
    return 1;
  }
  const int n_embd = llama_model_n_embd_inp(model);
  for (size_t i = 0; i < mtmd_input_chunks_size(chunks); ++i) {
    const mtmd_input_chunk* chunk = mtmd_input_chunks_get(chunks, i);
    if (mtmd_input_chunk_get_type(chunk) != MTMD_INPUT_CHUNK_TYPE_IMAGE) continue;
    if (mtmd_encode_chunk(ctx, chunk) != 0) {
      std::fprintf(stderr, "mtmd_encode_chunk failed\n");
      return 1;
    }
    const size_t n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
    const float* embd = mtmd_get_output_embd(ctx);
    const bool ok = write_floats(out_path, embd, n_tokens * static_cast<size_t>(n_embd));
    std::printf("%zu %d\n", n_tokens, n_embd);
    mtmd_input_chunks_free(chunks);
    mtmd_bitmap_free(bmp.bitmap);
    mtmd_free(ctx);
    llama_model_free(model);
    return ok ? 0 : 1;
  }
  std::fprintf(stderr, "no image chunk\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  llama_log_set(quiet, nullptr);
  mtmd_helper_log_set(quiet, nullptr);
  llama_backend_init();
  const std::string cmd = argc > 1 ? argv[1] : "";
  int rc = 2;
  if (cmd == "logits" && argc == 5) rc = logits(argv[2], argv[3], argv[4]);
  else if (cmd == "image" && argc == 6) rc = image(argv[2], argv[3], argv[4], argv[5]);
  else
    std::fprintf(stderr,
                 "usage: convert_peer_tool logits <model.gguf> <ids.i32> <out.f32>\n"
                 "       convert_peer_tool image <model.gguf> <mmproj.gguf> <image> <out.f32>\n");
  llama_backend_free();
  return rc;
}
