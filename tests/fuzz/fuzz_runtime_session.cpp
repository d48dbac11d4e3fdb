// libFuzzer target: any bytes as a .onnx model either build a runtime Session
// (node checks, shape inference, constant folding, fusion, packing, memory
// plan) or throw medquant::Error; a model that builds and declares small
// static inputs is also run once on zeros, which must succeed or throw.
#include <cstring>

#include "core/error.h"
#include "runtime/session.h"

namespace {
constexpr int64_t kMaxRunElements = 1 << 16;  // keep runs cheap: the loader is the target

bool small_static(const medquant::runtime::IoInfo& io) {
  if (!io.has_shape) return false;
  int64_t n = 1;
  for (int64_t d : io.shape) {
    if (d < 0 || d > kMaxRunElements) return false;
    n *= d;
    if (n > kMaxRunElements) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medquant::runtime;
  try {
    Session s = Session::load_from_memory({data, size}, {.threads = 1}, "fuzz.onnx");
    std::vector<std::pair<std::string, Tensor>> inputs;
    for (const IoInfo& io : s.inputs()) {
      if (!small_static(io)) return 0;
      Tensor t(io.type, io.shape);
      std::memset(t.raw(), 0, t.bytes());
      inputs.emplace_back(io.name, std::move(t));
    }
    s.run(inputs);
  } catch (const medquant::Error&) {
  }
  return 0;
}
