// libFuzzer target for the GGUF reader: any bytes must either parse into a
// header whose tensors lie inside the input, or throw medquant::Error; never
// crash, hang or read out of bounds (scripts/fuzz.sh builds and runs it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = medquant::gguf::parse({data, size}, "fuzz-input");
    for (const auto& t : h.tensors) {
      if (h.data_offset + t.offset + t.n_bytes() > size) std::abort();
    }
    for (const auto& kv : h.kvs) (void)kv.value.to_string(4);
  } catch (const medquant::Error&) {
  }
  return 0;
}
