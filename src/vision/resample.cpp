#include "vision/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace medquant::vision {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// precompute_coeffs: per output pixel, the first input pixel, the count, and
// ksize weights (normalised to sum 1).
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // (xmin, count) per output pixel
  std::vector<double> kk;   // ksize per output pixel
};

Coeffs precompute_coeffs(int in_size, float in0, float in1, int out_size) {
  constexpr double kSupport = 2.0;  // bicubic
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kSupport * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  c.kk.assign(static_cast<size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // C truncation, as Pillow
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c.kk[static_cast<size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

std::vector<int32_t> fixed_coeffs(const Coeffs& c) {
  std::vector<int32_t> out(c.kk.size());
  for (size_t i = 0; i < c.kk.size(); ++i)
    out[i] = c.kk[i] < 0 ? static_cast<int32_t>(-0.5 + c.kk[i] * (1 << kPrecisionBits))
                         : static_cast<int32_t>(0.5 + c.kk[i] * (1 << kPrecisionBits));
  return out;
}

inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup table
  return static_cast<uint8_t>(s < 0 ? 0 : s > 255 ? 255 : s);
}

// A plane of interleaved 8-bit samples.
struct Plane {
  int w = 0, h = 0, ch = 0;
  std::vector<uint8_t> px;
  uint8_t* row(int y) { return px.data() + static_cast<size_t>(y) * w * ch; }
  const uint8_t* row(int y) const { return px.data() + static_cast<size_t>(y) * w * ch; }
};

Plane horizontal_8bpc(const Plane& in, int out_w, int y0, int rows, const Coeffs& c) {
  const std::vector<int32_t> k = fixed_coeffs(c);
  Plane out{out_w, rows, in.ch, std::vector<uint8_t>(static_cast<size_t>(out_w) * rows * in.ch)};
  for (int yy = 0; yy < rows; ++yy) {
    const uint8_t* src = in.row(yy + y0);
    uint8_t* dst = out.row(yy);
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
      const int32_t* kx = &k[static_cast<size_t>(xx) * c.ksize];
      for (int b = 0; b < in.ch; ++b) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; ++x) ss += src[(x + xmin) * in.ch + b] * kx[x];
        dst[xx * in.ch + b] = clip8(ss);
      }
    }
  }
  return out;
}

Plane vertical_8bpc(const Plane& in, int out_h, const std::vector<int>& bounds, const Coeffs& c) {
  const std::vector<int32_t> k = fixed_coeffs(c);
  Plane out{in.w, out_h, in.ch, std::vector<uint8_t>(static_cast<size_t>(in.w) * out_h * in.ch)};
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1];
    const int32_t* ky = &k[static_cast<size_t>(yy) * c.ksize];
    uint8_t* dst = out.row(yy);
    for (int i = 0; i < in.w * in.ch; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; ++y) ss += in.row(y + ymin)[i] * ky[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

// I;16: double sums, Pillow's ROUND_UP and per-byte CLIP8 (which wraps the
// low byte of values past 65535; kept as is).
inline uint16_t store16(double ss) {
  const int v = static_cast<int>(ss >= 0.0 ? ss + 0.5 : ss - 0.5);
  auto clip = [](int x) { return x <= 0 ? 0 : x < 256 ? x : 255; };
  return static_cast<uint16_t>(clip(v % 256) | (clip(v >> 8) << 8));
}

struct Plane16 {
  int w = 0, h = 0;
  std::vector<uint16_t> px;
};

Plane16 horizontal_16bpc(const Plane16& in, int out_w, int y0, int rows, const Coeffs& c) {
  Plane16 out{out_w, rows, std::vector<uint16_t>(static_cast<size_t>(out_w) * rows)};
  for (int yy = 0; yy < rows; ++yy)
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
      const double* k = &c.kk[static_cast<size_t>(xx) * c.ksize];
      double ss = 0.0;
      for (int x = 0; x < xmax; ++x)
        ss += in.px[static_cast<size_t>(yy + y0) * in.w + x + xmin] * k[x];
      out.px[static_cast<size_t>(yy) * out_w + xx] = store16(ss);
    }
  return out;
}

Plane16 vertical_16bpc(const Plane16& in, int out_h, const std::vector<int>& bounds,
                       const Coeffs& c) {
  Plane16 out{in.w, out_h, std::vector<uint16_t>(static_cast<size_t>(in.w) * out_h)};
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = bounds[2 * yy], ymax = bounds[2 * yy + 1];
    const double* k = &c.kk[static_cast<size_t>(yy) * c.ksize];
    for (int xx = 0; xx < in.w; ++xx) {
      double ss = 0.0;
      for (int y = 0; y < ymax; ++y) ss += in.px[static_cast<size_t>(y + ymin) * in.w + xx] * k[y];
      out.px[static_cast<size_t>(yy) * in.w + xx] = store16(ss);
    }
  }
  return out;
}

// ImagingResampleInner: which passes run, and on which rows.
template <typename P, typename H, typename V>
P resample(const P& in, int xsize, int ysize, H horizontal, V vertical) {
  const bool need_h = xsize != in.w;
  const bool need_v = ysize != in.h;
  const Coeffs ch = precompute_coeffs(in.w, 0.0f, static_cast<float>(in.w), xsize);
  const Coeffs cv = precompute_coeffs(in.h, 0.0f, static_cast<float>(in.h), ysize);
  std::vector<int> bounds_v = cv.bounds;
  const int ybox_first = bounds_v[0];
  const int ybox_last = bounds_v[2 * (ysize - 1)] + bounds_v[2 * (ysize - 1) + 1];
  P cur = in;
  if (need_h) {
    for (int i = 0; i < ysize; ++i) bounds_v[2 * i] -= ybox_first;
    cur = horizontal(in, xsize, ybox_first, ybox_last - ybox_first, ch);
  }
  if (need_v) cur = vertical(cur, ysize, bounds_v, cv);
  return cur;
}

// Pillow's NEAREST resize (ImagingScaleAffine): positions accumulated in double.
Image resize_nearest(const Image& img, uint32_t width, uint32_t height) {
  const double a0 = static_cast<double>(static_cast<float>(img.width)) / width;
  const double a4 = static_cast<double>(static_cast<float>(img.height)) / height;
  const size_t ch = img.channels();
  Image out = img;
  out.width = width;
  out.height = height;
  out.pixels.assign(size_t{width} * height * ch, 0);  // Pillow fills unmapped pixels with 0
  std::vector<int> xin(width, -1);
  double xo = a0 * 0.5;
  for (uint32_t x = 0; x < width; ++x) {
    const int xi = xo < 0.0 ? -1 : static_cast<int>(xo);
    if (xi >= 0 && xi < static_cast<int>(img.width)) xin[x] = xi;
    xo += a0;
  }
  double yo = a4 * 0.5;
  for (uint32_t y = 0; y < height; ++y) {
    const int yi = yo < 0.0 ? -1 : static_cast<int>(yo);
    if (yi >= 0 && yi < static_cast<int>(img.height))
      for (uint32_t x = 0; x < width; ++x)
        if (xin[x] >= 0)
          std::memcpy(&out.pixels[(size_t{y} * width + x) * ch],
                      &img.pixels[(size_t(yi) * img.width + xin[x]) * ch], ch);
    yo += a4;
  }
  return out;
}

inline unsigned muldiv255(unsigned a, unsigned b) {
  const unsigned t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

}  // namespace

Image resize_bicubic(const Image& img, uint32_t width, uint32_t height) {
  if (width < 1 || height < 1) fail("resize: target size {}x{} is empty", width, height);
  if (width == img.width && height == img.height) return img;  // Image.resize returns a copy
  if (img.mode == Mode::Bit || img.mode == Mode::P) return resize_nearest(img, width, height);
  const int w = static_cast<int>(width), h = static_cast<int>(height);
  if (img.mode == Mode::I16) {
    Plane16 in{static_cast<int>(img.width), static_cast<int>(img.height), img.pixels16};
    Plane16 r = resample(in, w, h, horizontal_16bpc, vertical_16bpc);
    Image out = img;
    out.width = width;
    out.height = height;
    out.pixels16 = std::move(r.px);
    return out;
  }
  Plane in{static_cast<int>(img.width), static_cast<int>(img.height),
           static_cast<int>(img.channels()), img.pixels};
  const bool alpha = img.mode == Mode::LA || img.mode == Mode::RGBA;
  if (alpha) {  // LA -> La, RGBA -> RGBa (premultiplied)
    for (size_t i = 0; i < in.px.size(); i += in.ch) {
      const unsigned a = in.px[i + in.ch - 1];
      for (int b = 0; b + 1 < in.ch; ++b) in.px[i + b] = static_cast<uint8_t>(muldiv255(in.px[i + b], a));
    }
  }
  Plane r = resample(in, w, h, horizontal_8bpc, vertical_8bpc);
  if (alpha) {  // La -> LA, RGBa -> RGBA
    for (size_t i = 0; i < r.px.size(); i += r.ch) {
      const unsigned a = r.px[i + r.ch - 1];
      if (a == 255 || a == 0) continue;
      for (int b = 0; b + 1 < r.ch; ++b) {
        const unsigned v = (255 * r.px[i + b]) / a;
        r.px[i + b] = static_cast<uint8_t>(v > 255 ? 255 : v);
      }
    }
  }
  Image out = img;
  out.width = width;
  out.height = height;
  out.pixels = std::move(r.px);
  return out;
}

Image crop(const Image& img, uint32_t left, uint32_t top, uint32_t width, uint32_t height) {
  if (uint64_t{left} + width > img.width || uint64_t{top} + height > img.height)
    fail("crop: window {}x{} at ({}, {}) is outside the {}x{} image", width, height, left, top,
         img.width, img.height);
  Image out = img;
  out.width = width;
  out.height = height;
  if (img.mode == Mode::I16) {
    out.pixels16.resize(size_t{width} * height);
    for (uint32_t y = 0; y < height; ++y)
      std::memcpy(&out.pixels16[size_t{y} * width], &img.pixels16[size_t{y + top} * img.width + left],
                  size_t{width} * 2);
    return out;
  }
  const size_t ch = img.channels();
  out.pixels.resize(size_t{width} * height * ch);
  for (uint32_t y = 0; y < height; ++y)
    std::memcpy(&out.pixels[size_t{y} * width * ch],
                &img.pixels[(size_t{y + top} * img.width + left) * ch], size_t{width} * ch);
  return out;
}

Image to_rgb(const Image& img) {
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.mode = Mode::RGB;
  const size_t n = size_t{img.width} * img.height;
  out.pixels.resize(n * 3);
  uint8_t* d = out.pixels.data();
  const uint8_t* s = img.pixels.data();
  for (size_t i = 0; i < n; ++i, d += 3) {
    switch (img.mode) {
      case Mode::Bit: d[0] = d[1] = d[2] = s[i] ? 255 : 0; break;
      case Mode::L: d[0] = d[1] = d[2] = s[i]; break;
      case Mode::I16: {
        const uint16_t v = img.pixels16[i];
        d[0] = d[1] = d[2] = static_cast<uint8_t>(v < 256 ? v : 255);
        break;
      }
      case Mode::P: std::memcpy(d, &img.palette[3 * size_t{s[i]}], 3); break;
      case Mode::LA: d[0] = d[1] = d[2] = s[2 * i]; break;
      case Mode::RGB: std::memcpy(d, s + 3 * i, 3); break;
      case Mode::RGBA: std::memcpy(d, s + 4 * i, 3); break;
      case Mode::CMYK: {
        const uint8_t* p = s + 4 * i;
        const int nk = 255 - p[3];
        for (int c = 0; c < 3; ++c) {
          const int v = nk - static_cast<int>(muldiv255(p[c], static_cast<unsigned>(nk)));
          d[c] = static_cast<uint8_t>(v <= 0 ? 0 : v < 256 ? v : 255);
        }
        break;
      }
    }
  }
  return out;
}

}  // namespace medquant::vision
