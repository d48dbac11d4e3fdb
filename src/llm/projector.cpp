#include "llm/projector.h"

#include <llama.h>
#include <mtmd.h>

#include <cstring>

#include "core/error.h"
#include "llm/llm.h"

namespace medquant::llm {

Projector::Projector(std::string path, std::unique_ptr<Model> text, mtmd_context* ctx)
    : path_(std::move(path)), text_(std::move(text)), ctx_(ctx) {}

Projector::~Projector() { mtmd_free(ctx_); }

std::unique_ptr<Projector> Projector::load(const std::string& mmproj,
                                           const std::string& text_model, int threads) {
  auto text = Model::load(text_model, /*untouched_weights=*/true);
  // libmtmd (and its clip loader) log through their own callback: the same
  // routing as llama.cpp's, so their errors reach our messages.
  ggml_log_callback cb = nullptr;
  void* user = nullptr;
  llama_log_get(&cb, &user);
  mtmd_log_set(cb, user);
  mtmd_context_params p = mtmd_context_params_default();
  p.use_gpu = false;
  p.print_timings = false;
  p.n_threads = threads;
  p.warmup = false;  // the caller times its own warm-up runs
  clear_errors();
  mtmd_context* ctx = mtmd_init_from_file(mmproj.c_str(), text->get(), p);
  if (!ctx) fail("{}: libmtmd could not load the projector: {}", mmproj, last_errors());
  if (!mtmd_support_vision(ctx)) {
    mtmd_free(ctx);
    fail("{}: not a vision projector (libmtmd reports no vision input)", mmproj);
  }
  return std::unique_ptr<Projector>(new Projector(mmproj, std::move(text), ctx));
}

ImageEmbeddings Projector::encode(uint32_t width, uint32_t height, const std::vector<uint8_t>& rgb) {
  if (rgb.size() != static_cast<size_t>(width) * height * 3)
    fail("{}: an image of {}x{} needs {} RGB bytes, got {}", path_, width, height,
         static_cast<size_t>(width) * height * 3, rgb.size());
  mtmd_bitmap* bitmap = mtmd_bitmap_init(width, height, rgb.data());
  mtmd_input_chunks* chunks = mtmd_input_chunks_init();
  // The marker alone: libmtmd turns it into the projector's image chunk
  // (between the begin/end-of-image text tokens for Gemma 3).
  const std::string prompt = mtmd_default_marker();
  const mtmd_input_text text{prompt.c_str(), prompt.size(), false, true};
  const mtmd_bitmap* bitmaps[] = {bitmap};
  clear_errors();
  const int32_t rc = mtmd_tokenize(ctx_, chunks, &text, bitmaps, 1);
  ImageEmbeddings out;
  std::string error;
  if (rc != 0) {
    error = fmt::format("{}: libmtmd could not preprocess a {}x{} image ({}): {}", path_, width,
                        height, rc, last_errors());
  } else {
    const mtmd_input_chunk* image = nullptr;
    for (size_t i = 0; i < mtmd_input_chunks_size(chunks); ++i)
      if (mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks, i)) == MTMD_INPUT_CHUNK_TYPE_IMAGE)
        image = mtmd_input_chunks_get(chunks, i);
    if (!image) {
      error = fmt::format("{}: libmtmd made no image chunk", path_);
    } else if (mtmd_encode_chunk(ctx_, image) != 0) {
      error = fmt::format("{}: libmtmd could not encode the image: {}", path_, last_errors());
    } else {
      out.n_tokens = mtmd_input_chunk_get_n_tokens(image);
      out.n_embd = llama_model_n_embd_inp(text_->get());
      const float* e = mtmd_get_output_embd(ctx_);
      if (out.n_embd <= 0 || out.n_tokens == 0 || !e)
        error = fmt::format("{}: libmtmd gave {} image tokens of width {}", path_, out.n_tokens,
                            out.n_embd);
      else
        out.values.assign(e, e + out.n_tokens * static_cast<size_t>(out.n_embd));
    }
  }
  mtmd_input_chunks_free(chunks);
  mtmd_bitmap_free(bitmap);
  if (!error.empty()) throw Error(error);
  return out;
}

}  // namespace medquant::llm
