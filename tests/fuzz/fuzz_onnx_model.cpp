// libFuzzer target: any bytes as a .onnx file either load into our IR or
// throw medquant::Error (protobuf's own parser is not what is tested here:
// the conversion of whatever it accepts is): every initializer it accepts
// holds exactly the bytes its shape needs.
#include <cstdlib>

#include "core/error.h"
#include "fuzz_input.h"
#include "onnx/model_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_input_file(data, size, "model.onnx");
  try {
    const auto m = medquant::onnx::load_model(path);
    for (const auto& t : m.graph.initializers()) {
      if (t.opaque()) continue;
      const size_t esize = medquant::onnx::elem_size(t.type);
      if (t.bytes().size() != medquant::onnx::checked_byte_size(t, esize, path)) std::abort();
    }
  } catch (const medquant::Error&) {
  }
  return 0;
}
