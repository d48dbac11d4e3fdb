// libFuzzer target: any bytes as tokenizer.model either read into pieces or
// throw medquant::Error naming the offset.
#include "core/error.h"
#include "fuzz_input.h"
#include "models/gemma3/sentencepiece.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = fuzz_input_file(data, size, "tokenizer.model");
  try {
    (void)medquant::models::gemma3::read_sentencepiece_model(path);
  } catch (const medquant::Error&) {
  }
  return 0;
}
