// libFuzzer target: any bytes as a .onnx file either load into our IR or
// throw medquant::Error (protobuf's own parser is not what is tested here:
// the conversion of whatever it accepts is).
#include "core/error.h"
#include "fuzz_input.h"
#include "onnx/model_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_input_file(data, size, "model.onnx");
  try {
    (void)medquant::onnx::load_model(path);
  } catch (const medquant::Error&) {
  }
  return 0;
}
