// The state dict of a checkpoint, whichever way it was saved: a torch.save
// zip (open_clip_pytorch_model.bin, pytorch_model.bin) or safetensors (a
// file, or a sharded folder/index). Tensors are read as float32: straight
// from the memory mapping when stored as contiguous little-endian float32
// (zero copy), else converted (f16, bf16, f64) or gathered (strided views).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "models/biomedclip/config.h"

namespace medquant::models::biomedclip {

class Weights {
 public:
  // Opens and validates the file (torch zip by its "PK" magic, else
  // safetensors). Throws Error naming the path.
  static std::shared_ptr<const Weights> open(const std::string& path);
  ~Weights();
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  const std::string& path() const { return path_; }
  const ShapeTable& shapes() const { return shapes_; }
  bool has(std::string_view name) const { return shapes_.count(name) > 0; }
  core::DType dtype(std::string_view name) const;

  // Elements as float32, row-major. `view` is set when the bytes are the
  // mapping's own (valid while this object lives); else `owned` holds them.
  struct Floats {
    std::span<const float> view;
    std::vector<float> owned;
    std::span<const float> values() const { return owned.empty() ? view : std::span<const float>(owned); }
  };
  // Throws Error naming the tensor if absent or not a floating-point tensor.
  Floats floats(std::string_view name) const;
  // The raw bytes of a contiguous float32 tensor in the mapping, or an empty
  // span if it is stored some other way.
  std::span<const uint8_t> f32_bytes(std::string_view name) const;
  // Lets the kernel drop the pages of a tensor once it has been copied.
  void release(std::string_view name) const;

 private:
  Weights() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
  ShapeTable shapes_;
};

}  // namespace medquant::models::biomedclip
