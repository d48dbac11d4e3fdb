#include "vision/image.h"

#include <png.h>
#include <stdio.h>  // jpeglib.h needs FILE
#include <jerror.h>
#include <jpeglib.h>

#include <csetjmp>
#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"

namespace medquant::vision {

std::string_view mode_name(Mode m) {
  switch (m) {
    case Mode::Bit: return "1";
    case Mode::L: return "L";
    case Mode::I16: return "I;16";
    case Mode::P: return "P";
    case Mode::LA: return "LA";
    case Mode::RGB: return "RGB";
    case Mode::RGBA: return "RGBA";
    case Mode::CMYK: return "CMYK";
  }
  return "?";
}

size_t mode_channels(Mode m) {
  switch (m) {
    case Mode::Bit:
    case Mode::L:
    case Mode::I16:
    case Mode::P: return 1;
    case Mode::LA: return 2;
    case Mode::RGB: return 3;
    case Mode::RGBA:
    case Mode::CMYK: return 4;
  }
  return 0;
}

ImageFormat detect_format(std::span<const uint8_t> head) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (head.size() >= 8 && std::memcmp(head.data(), kPng, 8) == 0) return ImageFormat::Png;
  if (head.size() >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff)
    return ImageFormat::Jpeg;
  return ImageFormat::Unknown;
}

namespace {

void check_size(const std::string& name, uint64_t w, uint64_t h) {
  if (w == 0 || h == 0) fail("{}: image has no pixels ({}x{})", name, w, h);
  if (w > kMaxImageSide || h > kMaxImageSide || w * h > kMaxImagePixels)
    fail("{}: image of {}x{} pixels is too large (limits: {} per side, {} in all)", name, w, h,
         kMaxImageSide, kMaxImagePixels);
}

// ---- PNG (libpng) ---------------------------------------------------------------

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

struct PngState {
  char message[256] = "";
  std::jmp_buf jump;
};

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof st->message, "%s", msg);
  std::longjmp(st->jump, 1);
}

void png_warning_fn(png_structp, png_const_charp) {}  // Pillow ignores them too

void png_read_fn(png_structp png, png_bytep out, png_size_t n) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (n > src->size - src->pos) png_error(png, "file is truncated");
  std::memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

struct PngHeader {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
};

// The libpng part, free of C++ objects with destructors between setjmp and
// the calls that may longjmp. Returns false with st->message set on error.
// `prepare` (called once the header is known) sizes the output rows.
bool read_png(PngSource* src, PngState* st, PngHeader* hdr, Image* img,
              bool (*prepare)(const PngHeader&, Image*, void*), void* ctx) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, st, png_error_fn, png_warning_fn);
  if (!png) {
    std::snprintf(st->message, sizeof st->message, "out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep>* volatile rows = nullptr;  // volatile: read after a longjmp
  if (!info || setjmp(st->jump)) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    delete rows;
    if (!st->message[0]) std::snprintf(st->message, sizeof st->message, "out of memory");
    return false;
  }
  png_set_read_fn(png, src, png_read_fn);
  png_set_user_limits(png, kMaxImageSide, kMaxImageSide);
  png_read_info(png, info);
  hdr->width = png_get_image_width(png, info);
  hdr->height = png_get_image_height(png, info);
  hdr->bit_depth = png_get_bit_depth(png, info);
  hdr->color_type = png_get_color_type(png, info);
  if (!prepare(*hdr, img, ctx)) png_error(png, "too large");  // message set by prepare

  const int ct = hdr->color_type, bd = hdr->bit_depth;
  if (ct == PNG_COLOR_TYPE_PALETTE) {
    png_set_packing(png);  // 1/2/4-bit indices -> one byte each
    png_colorp plte = nullptr;
    int n = 0;
    if (png_get_PLTE(png, info, &plte, &n) & PNG_INFO_PLTE)
      for (int i = 0; i < n && i < 256; ++i) {
        img->palette[3 * i + 0] = plte[i].red;
        img->palette[3 * i + 1] = plte[i].green;
        img->palette[3 * i + 2] = plte[i].blue;
      }
  } else if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) {
    png_set_expand_gray_1_2_4_to_8(png);  // scales as Pillow's L;2 / L;4 / "1" unpackers
  } else if (bd == 16 && ct != PNG_COLOR_TYPE_GRAY) {
    png_set_strip_16(png);  // the high byte, as Pillow's RGB;16B / RGBA;16B / LA;16B
  } else if (bd == 16) {
    png_set_swap(png);  // 16-bit gray kept whole, native (little-endian) order
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  const size_t rowbytes = png_get_rowbytes(png, info);
  uint8_t* base = img->mode == Mode::I16 ? reinterpret_cast<uint8_t*>(img->pixels16.data())
                                         : img->pixels.data();
  const size_t stride = img->width * img->channels() * (img->mode == Mode::I16 ? 2 : 1);
  if (rowbytes != stride) png_error(png, "unexpected row size");
  rows = new std::vector<png_bytep>(img->height);
  for (size_t y = 0; y < img->height; ++y) (*rows)[y] = base + y * stride;
  png_read_image(png, (*rows).data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  delete rows;
  return true;
}

struct PrepareCtx {
  const std::string* name;
  std::string error;
};

bool prepare_png(const PngHeader& h, Image* img, void* vctx) {
  auto* ctx = static_cast<PrepareCtx*>(vctx);
  try {
    check_size(*ctx->name, h.width, h.height);
    img->width = h.width;
    img->height = h.height;
    switch (h.color_type) {
      case PNG_COLOR_TYPE_GRAY:
        img->mode = h.bit_depth == 1 ? Mode::Bit : h.bit_depth == 16 ? Mode::I16 : Mode::L;
        break;
      case PNG_COLOR_TYPE_RGB: img->mode = Mode::RGB; break;
      case PNG_COLOR_TYPE_PALETTE: img->mode = Mode::P; break;
      case PNG_COLOR_TYPE_GRAY_ALPHA:
        img->mode = Mode::LA;  // 16-bit: made "RGBA" after reading, as Pillow does
        break;
      case PNG_COLOR_TYPE_RGB_ALPHA: img->mode = Mode::RGBA; break;
      default: fail("{}: unknown PNG colour type {}", *ctx->name, h.color_type);
    }
    const size_t n = size_t{h.width} * h.height;
    if (img->mode == Mode::I16) img->pixels16.assign(n, 0);
    else img->pixels.assign(n * img->channels(), 0);
    if (img->mode == Mode::P) img->palette.assign(256 * 3, 0);
    return true;
  } catch (const Error& e) {
    ctx->error = e.what();
    return false;
  } catch (const std::exception& e) {
    ctx->error = fmt::format("{}: cannot allocate the image: {}", *ctx->name, e.what());
    return false;
  }
}

Image decode_png(std::span<const uint8_t> bytes, const std::string& name) {
  // The size, from IHDR (always the first chunk), before libpng allocates anything.
  if (bytes.size() >= 8 + 8 + 13 && std::memcmp(bytes.data() + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t at) {
      return uint32_t{bytes[at]} << 24 | uint32_t{bytes[at + 1]} << 16 | uint32_t{bytes[at + 2]} << 8 |
             bytes[at + 3];
    };
    const uint32_t w = be32(16), h = be32(20);
    if (w > 0 && h > 0) check_size(name, w, h);
  }
  Image img;
  PngSource src{bytes.data(), bytes.size(), 0};
  PngState st;
  PngHeader hdr;
  PrepareCtx ctx{&name, {}};
  if (!read_png(&src, &st, &hdr, &img, prepare_png, &ctx)) {
    if (!ctx.error.empty()) throw Error(ctx.error);
    fail("{}: broken PNG: {}", name, st.message);
  }
  // A 16-bit gray+alpha PNG is "RGBA" in Pillow: gray copied to R, G, B.
  if (hdr.color_type == PNG_COLOR_TYPE_GRAY_ALPHA && hdr.bit_depth == 16) {
    img.mode = Mode::RGBA;
    std::vector<uint8_t> rgba(size_t{img.width} * img.height * 4);
    for (size_t i = 0, n = size_t{img.width} * img.height; i < n; ++i) {
      const uint8_t* s = &img.pixels[2 * i];
      rgba[4 * i + 0] = rgba[4 * i + 1] = rgba[4 * i + 2] = s[0];
      rgba[4 * i + 3] = s[1];
    }
    img.pixels = std::move(rgba);
  }
  return img;
}

// ---- JPEG (libjpeg-turbo) -------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = "";
  bool truncated = false;
  int warnings = 0;
  char first_warning[JMSG_LENGTH_MAX] = "";
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_emit_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  if (level >= 0) return;  // trace messages
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) err->truncated = true;
  if (err->warnings++ == 0) (*cinfo->err->format_message)(cinfo, err->first_warning);
}

struct JpegHeader {
  JDIMENSION width = 0, height = 0;
  int components = 0, precision = 0;
};

bool read_jpeg(const uint8_t* data, size_t size, JpegError* err, Image* img,
               bool (*prepare)(const JpegHeader&, Image*, void*), void* ctx) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&err->mgr);
  err->mgr.error_exit = jpeg_error_exit;
  err->mgr.emit_message = jpeg_emit_message;
  if (setjmp(err->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  JpegHeader h{cinfo.image_width, cinfo.image_height, cinfo.num_components,
               cinfo.data_precision};
  if (!prepare(h, img, ctx)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = h.components == 1 ? JCS_GRAYSCALE : h.components == 3 ? JCS_RGB : JCS_CMYK;
  cinfo.dct_method = JDCT_ISLOW;
  cinfo.do_fancy_upsampling = TRUE;
  jpeg_start_decompress(&cinfo);
  const size_t stride = size_t{img->width} * img->channels();
  if (cinfo.output_width != img->width || cinfo.output_height != img->height ||
      static_cast<size_t>(cinfo.output_components) != img->channels()) {
    std::snprintf(err->message, sizeof err->message, "unexpected decoder output layout");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = img->pixels.data() + cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

bool prepare_jpeg(const JpegHeader& h, Image* img, void* vctx) {
  auto* ctx = static_cast<PrepareCtx*>(vctx);
  try {
    check_size(*ctx->name, h.width, h.height);
    if (h.precision != 8)
      fail("{}: {}-bit JPEG is not supported (8-bit only)", *ctx->name, h.precision);
    if (h.components != 1 && h.components != 3 && h.components != 4)
      fail("{}: JPEG with {} components is not supported", *ctx->name, h.components);
    img->width = h.width;
    img->height = h.height;
    img->mode = h.components == 1 ? Mode::L : h.components == 3 ? Mode::RGB : Mode::CMYK;
    img->pixels.assign(size_t{h.width} * h.height * img->channels(), 0);
    return true;
  } catch (const Error& e) {
    ctx->error = e.what();
    return false;
  } catch (const std::exception& e) {
    ctx->error = fmt::format("{}: cannot allocate the image: {}", *ctx->name, e.what());
    return false;
  }
}

Image decode_jpeg(std::span<const uint8_t> bytes, const std::string& name) {
  Image img;
  JpegError err;
  PrepareCtx ctx{&name, {}};
  if (!read_jpeg(bytes.data(), bytes.size(), &err, &img, prepare_jpeg, &ctx)) {
    if (!ctx.error.empty()) throw Error(ctx.error);
    if (err.truncated) fail("{}: JPEG file is truncated ({})", name, err.message);
    fail("{}: broken JPEG: {}", name, err.message);
  }
  if (err.truncated) fail("{}: JPEG file is truncated", name);
  if (err.warnings)
    img.warning = fmt::format("{}: JPEG decoder: {} ({} warning{})", name, err.first_warning,
                              err.warnings, err.warnings == 1 ? "" : "s");
  // Pillow reads CMYK JPEGs with Adobe's inverted polarity ("CMYK;I").
  if (img.mode == Mode::CMYK)
    for (uint8_t& v : img.pixels) v = static_cast<uint8_t>(255 - v);
  return img;
}

}  // namespace

Image decode_image(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.empty()) fail("{}: empty file (0 bytes), not an image", name);
  switch (detect_format(bytes)) {
    case ImageFormat::Png: return decode_png(bytes, name);
    case ImageFormat::Jpeg: return decode_jpeg(bytes, name);
    default: break;
  }
  fail("{}: not a PNG or JPEG image (unrecognised first bytes)", name);
}

Image load_image(const std::string& path) {
  const core::MappedFile file(path);
  return decode_image({file.data(), file.size()}, path);
}

}  // namespace medquant::vision
