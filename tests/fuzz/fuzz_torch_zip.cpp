// libFuzzer target: any bytes as a torch.save zip either open, with every
// tensor (any view) gathered from inside its storage, or throw medquant::Error.
#include "checkpoint/torch_zip.h"
#include "core/error.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_input_file(data, size, "model.pt");
  try {
    const medquant::checkpoint::TorchZipFile f(path);
    for (const auto& s : f.storages()) {
      if (s.offset + s.nbytes > size) std::abort();
    }
    for (const auto& t : f.tensors()) {
      if (t.contiguous()) (void)f.data(t);
      (void)f.materialize(t);
    }
  } catch (const medquant::Error&) {
  }
  return 0;
}
