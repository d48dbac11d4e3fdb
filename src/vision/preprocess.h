// open_clip's evaluation transform for CLIP image towers such as BiomedCLIP
// (open_clip.transform.image_transform, resize_mode "shortest", bicubic):
//
//   Resize(size, BICUBIC)   torchvision: the short side becomes `size`, the
//                           long side int(size * long / short); done by
//                           Pillow's Image.resize on the image in its own mode
//   CenterCrop(size)        top/left = round((side - size) / 2), Python's
//                           round (halves to even)
//   convert("RGB")          after the crop (so gray images are resized as one
//                           channel, RGBA premultiplied, palettes nearest)
//   ToTensor()              float32(v) / 255, CHW
//   Normalize(mean, std)    (x - mean[c]) / std[c] in float32
//
// The result is bit-identical to open_clip's tensor on the fixture images.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "vision/image.h"

namespace medquant::vision {

struct PreprocessConfig {
  uint32_t image_size = 224;
  // open_clip's defaults (OPENAI_DATASET_MEAN / STD), which BiomedCLIP uses.
  std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std = {0.26862954f, 0.26130258f, 0.27577711f};

  // From an open_clip_config.json: model_cfg.vision_cfg.image_size and
  // preprocess_cfg (mean, std; interpolation and resize_mode must be the
  // supported "bicubic" / "shortest" if given). Throws Error naming the file.
  static PreprocessConfig from_open_clip_config(const std::string& path);
};

// Resize + CenterCrop + convert("RGB"): the 8-bit RGB image ToTensor sees.
Image resize_and_crop(const Image& img, uint32_t size);

// The whole transform: float32 [3, size, size], channel-major.
std::vector<float> preprocess(const Image& img, const PreprocessConfig& config);

}  // namespace medquant::vision
