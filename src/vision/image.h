// Decoded images in the form PIL (Pillow) gives them, so that open_clip's
// preprocessing can be reproduced pixel for pixel: PNG through libpng and
// JPEG through libjpeg-turbo (the JPEG library Pillow itself uses).
//
// What is read of the files:
//
//   PNG  8-byte signature 89 50 4E 47 0D 0A 1A 0A, then chunks (4-byte
//        big-endian length, 4-byte type, data, CRC-32). The first chunk is
//        IHDR: width (4), height (4), bit depth (1), colour type (1: 0 gray,
//        2 RGB, 3 palette, 4 gray+alpha, 6 RGBA), compression, filter,
//        interlace. PLTE holds the palette; IDAT the zlib-compressed rows.
//        Ancillary chunks (gAMA, iCCP, tRNS on non-palette images, text)
//        change nothing here, as in Pillow.
//   JPEG starts with FF D8 (SOI); the frame header (SOFn) gives precision
//        (8 bits only), height, width and the number of components (1 gray,
//        3 YCbCr/RGB, 4 CMYK/YCCK). Decoded with libjpeg's defaults as Pillow
//        does: accurate integer IDCT, "fancy" chroma upsampling, no EXIF
//        rotation.
//
// Pillow's modes and how each PNG/JPEG kind maps to them (PngImagePlugin
// _MODES, JpegImagePlugin):
//
//   PNG gray 1-bit          -> "1"    (0 or 255)
//   PNG gray 2/4/8-bit      -> "L"    (2-bit values x 0x55, 4-bit x 0x11)
//   PNG gray 16-bit         -> "I;16" (kept 16-bit; convert("RGB") clips at 255)
//   PNG RGB 8/16-bit        -> "RGB"  (16-bit: the high byte)
//   PNG palette 1-8 bit     -> "P"    (indices; entries past PLTE are black)
//   PNG gray+alpha 8-bit    -> "LA"
//   PNG gray+alpha 16-bit   -> "RGBA" (high bytes, gray copied to R, G, B)
//   PNG RGBA 8/16-bit       -> "RGBA" (16-bit: the high byte)
//   JPEG 1 / 3 / 4 components -> "L" / "RGB" / "CMYK" (Adobe polarity: inverted)
//
// Limits are checked from the header before any pixel memory is allocated:
// at most kMaxImageSide pixels per side and kMaxImagePixels in all.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace medquant::vision {

inline constexpr uint32_t kMaxImageSide = 32768;
inline constexpr uint64_t kMaxImagePixels = uint64_t{1} << 28;

enum class Mode : uint8_t { Bit, L, I16, P, LA, RGB, RGBA, CMYK };

std::string_view mode_name(Mode m);  // Pillow's name: "1", "L", "I;16", "P", ...
size_t mode_channels(Mode m);        // samples per pixel as stored here (P: 1 index)

struct Image {
  uint32_t width = 0, height = 0;
  Mode mode = Mode::RGB;
  std::vector<uint8_t> pixels;     // interleaved 8-bit samples, rows top to bottom
  std::vector<uint16_t> pixels16;  // I16 only: one sample per pixel
  std::vector<uint8_t> palette;    // P only: 256 x RGB (entries past the file's are 0)
  // What the JPEG decoder warned about in data it could still decode (as
  // Pillow, which decodes such files silently); empty if nothing.
  std::string warning;

  size_t channels() const { return mode_channels(mode); }
};

enum class ImageFormat : uint8_t { Unknown, Png, Jpeg };
ImageFormat detect_format(std::span<const uint8_t> head);

// Decodes a PNG or JPEG; `name` (the path) is used in error messages. Throws
// Error for anything else, a broken file, or one past the limits.
Image decode_image(std::span<const uint8_t> bytes, const std::string& name);
Image load_image(const std::string& path);

}  // namespace medquant::vision
