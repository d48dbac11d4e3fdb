// libFuzzer target: any bytes as an image either decode into width x height x
// channels samples, or throw medquant::Error.
#include <cstdlib>

#include "core/error.h"
#include "vision/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medquant::vision;
  try {
    const Image im = decode_image({data, size}, "fuzz-image");
    const uint64_t n = uint64_t{im.width} * im.height;
    const bool sized = im.mode == Mode::I16 ? im.pixels16.size() == n
                                            : im.pixels.size() == n * im.channels();
    if (n == 0 || !sized) std::abort();
  } catch (const medquant::Error&) {
  }
  return 0;
}
