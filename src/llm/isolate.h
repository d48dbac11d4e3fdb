// Runs llama.cpp work in a child process (fork), for two reasons:
//   - llama.cpp stops the whole process on a failed GGML_ASSERT; a broken
//     model file must give medquant's "error: ..." instead of a crash;
//   - each model's peak resident memory is measured on its own (the child's
//     getrusage high-water mark, which also counts the few MB of medquant
//     itself that the child inherits).
// The parent must not have run llama.cpp (or OpenMP) itself before forking:
// the child initializes the backend on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace medquant::llm {

struct IsolatedResult {
  std::string output;        // what fn returned
  uint64_t peak_rss_bytes = 0;
  double seconds = 0;        // wall time of the child
};

// Calls fn() in a child process and returns its string. An Error thrown in
// the child is thrown again here with the same message; a child that dies
// (signal, abort) or exits without an answer gives Error "<what>: ...".
IsolatedResult run_isolated(const std::string& what, const std::function<std::string()>& fn);

}  // namespace medquant::llm
