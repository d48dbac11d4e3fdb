// A progress bar on stderr: drawn only when stderr is a terminal and output
// is not quiet; silent when piped. Thread-safe add().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace medquant::core {

enum class ProgressUnit { Items, Bytes };

class Progress {
 public:
  Progress(std::string label, uint64_t total, ProgressUnit unit = ProgressUnit::Items);
  ~Progress();  // finishes the line if it was drawn
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(uint64_t n);
  void set_label(std::string label);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw(bool final);

  std::string label_;
  uint64_t total_;
  ProgressUnit unit_;
  std::atomic<uint64_t> done_{0};
  bool enabled_;
  bool finished_ = false;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace medquant::core
