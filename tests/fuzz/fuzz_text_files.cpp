// libFuzzer target for the small text formats read at run time: the same bytes
// as vocab.txt, labels.json and a label/template list must each load (and each
// listed template format) or throw medquant::Error.
#include <string_view>

#include "core/error.h"
#include "text/wordpiece.h"
#include "zeroshot/labels.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)medquant::text::Vocab::parse(text, "vocab.txt");
  } catch (const medquant::Error&) {
  }
  try {
    (void)medquant::zeroshot::parse_labels_json(text, "labels.json");
  } catch (const medquant::Error&) {
  }
  try {
    for (const auto& line : medquant::zeroshot::parse_list(text, "templates.txt")) {
      medquant::zeroshot::check_template(line);
      (void)medquant::zeroshot::apply_template(line, "chest X-ray");
    }
  } catch (const medquant::Error&) {
  }
  return 0;
}
