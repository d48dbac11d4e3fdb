// The built-in evaluation text of `validate gguf` (when no --text is given):
// data/medical_sample.txt, embedded into the binary at build time so the
// program stays self-contained. Original prose written for medquant and
// dedicated to the public domain (CC0 1.0); see docs/validation.md.
#pragma once

#include <string_view>

namespace medquant::validate {

inline constexpr std::string_view kBuiltinTextName = "built-in medical sample (data/medical_sample.txt)";

// The file's bytes, unchanged (trailing newline included).
std::string_view builtin_text();

}  // namespace medquant::validate
