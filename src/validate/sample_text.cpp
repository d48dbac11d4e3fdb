#include "validate/sample_text.h"

namespace medquant::validate {
namespace {
// Generated from data/medical_sample.txt by src/validate/CMakeLists.txt.
constexpr unsigned char kText[] = {
#include "medical_sample_text.inc"
};
}  // namespace

std::string_view builtin_text() {
  return std::string_view(reinterpret_cast<const char*>(kText), sizeof kText);
}

}  // namespace medquant::validate
