// medquant's ONNX executor: runs FP32 and INT8 (dynamic or QDQ) transformer
// encoders without ONNX Runtime.
//
//   runtime::Session s = runtime::Session::load("vision.onnx", {.threads = 2});
//   Tensor pixels = Tensor::from<float>({1, 3, 224, 224}, values);
//   std::vector<Tensor> out = s.run({{"pixel_values", pixels}});
//   const float* embedding = out[0].data<float>();
//
// Loading checks every node (an operator or attribute the runtime does not
// implement is an Error naming the node, never a wrong answer), folds
// constants, fuses GEMM epilogues, packs weights and plans memory for the
// declared input shapes; a run with other input shapes plans again (kept
// until the shapes change again). One Session runs one inference at a time
// (run() is serialised); its worker threads are its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/plan.h"
#include "runtime/tensor.h"

namespace medquant::runtime {

struct SessionOptions {
  size_t threads = 0;  // 0 = all cores
  bool fuse = true;    // operator fusion (off: for tests that hold fused against plain)
};

struct SessionStats {
  double load_ms = 0;       // parse + build + first plan
  size_t nodes = 0;         // executed steps in the current plan
  size_t folded = 0;        // nodes folded into constants
  size_t fusions = 0;       // patterns fused
  size_t arena_bytes = 0;   // the memory plan's arena
  size_t plans = 0;         // how many times shapes were planned
  std::string kernels;      // the kernel table in use ("avx512vnni", ...)
};

class Session {
 public:
  static Session load(const std::string& path, SessionOptions options = {});
  // `name` is used in messages; external data cannot be resolved from memory.
  static Session load_from_memory(std::span<const uint8_t> bytes, SessionOptions options = {},
                                  const std::string& name = "<memory>");
  // A model already in memory (e.g. an edited copy); the session keeps it
  // alive, as constants are views of its initializers.
  static Session from_model(std::shared_ptr<const onnx::Model> model, SessionOptions options = {});
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  const std::vector<IoInfo>& inputs() const;
  const std::vector<IoInfo>& outputs() const;
  // The loaded model (metadata_props in model().header, graph as loaded).
  const onnx::Model& model() const;

  // Inputs by name (every graph input once); outputs in graph output order.
  std::vector<Tensor> run(const std::vector<std::pair<std::string, Tensor>>& inputs);
  std::map<std::string, Tensor> run_named(const std::map<std::string, Tensor>& inputs);

  SessionStats stats() const;

 private:
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  // Build + first plan of a parsed model; load_ms counts from `start`.
  static Session build(std::shared_ptr<const onnx::Model> model, SessionOptions options,
                       std::chrono::steady_clock::time_point start);
  std::unique_ptr<Impl> impl_;
};

// Every operator the runtime implements ("Add", "com.microsoft::Gelu", ...).
std::vector<std::string> supported_ops();

}  // namespace medquant::runtime
