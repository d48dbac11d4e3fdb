// Vision projectors (mmproj GGUF files) through libmtmd, llama.cpp's
// multimodal library: load a projector and encode images into the
// embeddings the text model receives in place of the image tokens
// (for Gemma 3: 256 rows of the text model's width per image).
//
// libmtmd reads the text model's vocabulary and width (to check the
// projector fits it and to place the image's marker tokens); the text GGUF is
// loaded memory-mapped with its weights never read
// (llm::Model::load(path, untouched_weights = true)).
// Images are given as 8-bit RGB; libmtmd resizes and normalises them as its
// projector type says (for Gemma 3, to 896x896 with mean/std 0.5).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct mtmd_context;

namespace medquant::llm {

class Model;

struct ImageEmbeddings {
  size_t n_tokens = 0;        // rows
  int n_embd = 0;             // columns (the text model's input width)
  std::vector<float> values;  // n_tokens * n_embd, row-major
};

class Projector {
 public:
  // Throws Error "<mmproj>: libmtmd could not load the projector: <its last
  // error>" (or the text model's load error).
  static std::unique_ptr<Projector> load(const std::string& mmproj, const std::string& text_model,
                                         int threads);
  ~Projector();
  Projector(const Projector&) = delete;
  Projector& operator=(const Projector&) = delete;

  // Encodes one image (width * height * 3 bytes, rows top to bottom).
  ImageEmbeddings encode(uint32_t width, uint32_t height, const std::vector<uint8_t>& rgb);

 private:
  Projector(std::string path, std::unique_ptr<Model> text, mtmd_context* ctx);
  std::string path_;
  std::unique_ptr<Model> text_;
  mtmd_context* ctx_;
};

}  // namespace medquant::llm
