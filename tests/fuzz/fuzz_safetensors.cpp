// libFuzzer target: any bytes as a .safetensors file either open, with every
// tensor's bytes inside the file, or throw medquant::Error.
#include "checkpoint/safetensors.h"
#include "core/error.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_input_file(data, size, "model.safetensors");
  try {
    const medquant::checkpoint::SafetensorsFile f(path);
    uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      if (t.offset() + t.nbytes() > size) std::abort();
      for (uint8_t b : f.data(t)) sum += b;  // ASan checks each byte is mapped
      (void)t.num_elements();
    }
    for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
    (void)sum;
  } catch (const medquant::Error&) {
  }
  return 0;
}
