// libFuzzer target: any bytes as a .npy file either parse into an array whose
// data is exactly shape x element size, or throw medquant::Error.
#include <cstdlib>

#include "core/error.h"
#include "core/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto a = medquant::core::parse_npy(data, size, "fuzz.npy");
    if (a.data.size() != static_cast<size_t>(a.element_count()) * medquant::core::dtype_size(a.dtype))
      std::abort();
  } catch (const medquant::Error&) {
  }
  return 0;
}
