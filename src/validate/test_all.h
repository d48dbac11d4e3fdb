// `medquant test-all <edge_deployment/>`: finds the builds of a deployment
// (the layout `medquant pipeline` writes) and validates each against its
// reference, like a test suite:
//
//   models/biomedclip/biomedclip_vision_int8.onnx   vs biomedclip_vision.onnx
//       -> `validate onnx` (+ labels.json beside the models or at the root, if any)
//   models/medgemma/*.gguf: the F32 / BF16 / F16 file (in that order of
//       preference; also looked for in .medquant/work/, where `pipeline`
//       keeps it) is the reference, every quantized file a build
//       -> `validate gguf`; vision projectors (mmproj): the F32 / BF16 / F16
//       projector is the reference of the others (synthetic images, the
//       reference text GGUF for libmtmd's vocabulary), a projector without
//       one is listed as SKIP with the reason.
//
// One line per build as it finishes, in the style
//   [PASS] MedGemma Q4_K_S - 9.3 tok/s, KLD 0.012, PPL +1.2%, top-1 93.1%
// An error while validating a build (unreadable file, llama.cpp refusing it)
// makes that build FAIL with the message; the others still run.
#pragma once

#include <functional>
#include <string>

#include "validate/gguf_validation.h"
#include "validate/report.h"

namespace medquant::validate {

struct TestAllOptions {
  std::string root;
  GgufOptions gguf;  // text, context, speed, thresholds; files and name are set per build
};

// "[PASS] name - summary", "[FAIL] name - summary (failed: kld_mean 0.5 > 0.1)",
// "[SKIP] name - reason".
std::string result_line(const Validation& v);

// "N passed, N failed, N skipped" and ALL TESTS PASSED / TESTS FAILED: names /
// NO TESTS RAN, one line each.
std::string format_summary(const Report& report);
// No failure and at least one pass: test-all's exit code 0.
bool all_passed(const Report& report);

// Runs everything; on_line is called with each result line as soon as it is
// known. Throws Error if the folder holds no build at all.
Report run_test_all(const TestAllOptions& options,
                    const std::function<void(const std::string&)>& on_line);

}  // namespace medquant::validate
