// Pillow's Image.resize, crop and convert("RGB"), reproduced exactly
// (Pillow 11.3 src/libImaging/Resample.c, Geometry.c, Convert.c):
//
//   resize   BICUBIC (a = -0.5; support 2, scaled by the downscale factor so
//            it also antialiases), separable: a horizontal pass over the rows
//            the vertical pass needs, then a vertical pass. 8-bit modes use
//            22-bit fixed-point coefficients, start each sum at one half and
//            clip to 0..255 after each pass; "I;16" uses double coefficients
//            and Pillow's own rounding and byte clipping. "LA" and "RGBA" are
//            resized premultiplied by alpha ("La"/"RGBa") and divided back.
//            "1" and "P" are always resized with NEAREST, whatever is asked.
//   crop     a copy of a window.
//   to_rgb   convert("RGB"): L copied to R, G, B; "1" as 0/255; "I;16" values
//            above 255 become 255; "P" through its palette; alpha dropped
//            (no compositing); CMYK as (255-K) - C(255-K)/255 per channel.
#pragma once

#include <cstdint>

#include "vision/image.h"

namespace medquant::vision {

Image resize_bicubic(const Image& img, uint32_t width, uint32_t height);
Image crop(const Image& img, uint32_t left, uint32_t top, uint32_t width, uint32_t height);
Image to_rgb(const Image& img);

}  // namespace medquant::vision
