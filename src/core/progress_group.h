// Several progress bars drawn as one block of lines on stderr, redrawn in
// place (for work that runs in parallel, e.g. one bar per file being
// downloaded plus a total). Like Progress: drawn only when stderr is a
// terminal and output is not quiet; silent when piped. Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/progress.h"

namespace medquant::core {

class ProgressGroup {
 public:
  ProgressGroup();
  ~ProgressGroup();  // leaves the last state of the bars on screen
  ProgressGroup(const ProgressGroup&) = delete;
  ProgressGroup& operator=(const ProgressGroup&) = delete;

  // A new bar at the bottom of the block; returns its id.
  size_t add(std::string label, uint64_t total, ProgressUnit unit = ProgressUnit::Bytes);
  void advance(size_t id, uint64_t n);
  // Sets the done count (a download that restarts from zero goes back).
  void set_done(size_t id, uint64_t done);
  void set_total(size_t id, uint64_t total);
  // Removes the bar; with keep_line its final state is printed above the block.
  void remove(size_t id, bool keep_line);
  // Prints a line above the bars (a warning, a finished item) without tearing them.
  void message(const std::string& line);
  bool enabled() const { return enabled_; }

 private:
  struct Bar {
    size_t id;
    std::string label;
    uint64_t total;
    uint64_t done = 0;
    ProgressUnit unit;
    std::chrono::steady_clock::time_point start;
  };
  std::string format(const Bar& bar) const;
  void redraw_locked(bool force);
  void clear_locked();

  bool enabled_;
  std::mutex mutex_;
  std::vector<Bar> bars_;
  size_t next_id_ = 0;
  size_t lines_drawn_ = 0;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace medquant::core
