#include "core/progress_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "core/log.h"

namespace medquant::core {

ProgressGroup::ProgressGroup()
    : enabled_(verbosity() >= Verbosity::Normal && stderr_is_terminal()) {}

ProgressGroup::~ProgressGroup() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (enabled_ && !bars_.empty()) redraw_locked(true);
}

size_t ProgressGroup::add(std::string label, uint64_t total, ProgressUnit unit) {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t id = next_id_++;
  bars_.push_back({id, std::move(label), total, 0, unit, std::chrono::steady_clock::now()});
  redraw_locked(true);
  return id;
}

void ProgressGroup::advance(size_t id, uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Bar& b : bars_)
    if (b.id == id) b.done += n;
  redraw_locked(false);
}

void ProgressGroup::set_done(size_t id, uint64_t done) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Bar& b : bars_)
    if (b.id == id) b.done = done;
  redraw_locked(false);
}

void ProgressGroup::set_total(size_t id, uint64_t total) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Bar& b : bars_)
    if (b.id == id) b.total = total;
  redraw_locked(false);
}

void ProgressGroup::remove(size_t id, bool keep_line) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(bars_.begin(), bars_.end(), [&](const Bar& b) { return b.id == id; });
  if (it == bars_.end()) return;
  std::string line = format(*it);
  bars_.erase(it);
  if (!enabled_) return;
  clear_locked();
  if (keep_line) fmt::print(stderr, "{}\n", line);
  redraw_locked(true);
}

void ProgressGroup::message(const std::string& line) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!enabled_) {
    fmt::print(stderr, "{}\n", line);
    return;
  }
  clear_locked();
  fmt::print(stderr, "{}\n", line);
  redraw_locked(true);
}

std::string ProgressGroup::format(const Bar& bar) const {
  const uint64_t done = std::min(bar.done, bar.total);
  const double frac = bar.total ? static_cast<double>(done) / static_cast<double>(bar.total) : 1.0;
  constexpr int kWidth = 24;
  std::string fill(static_cast<size_t>(frac * kWidth), '#');
  fill.resize(kWidth, '.');
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - bar.start).count();
  std::string counts;
  if (bar.unit == ProgressUnit::Bytes) {
    counts = fmt::format("{}/{}", human_bytes(done), human_bytes(bar.total));
    if (secs > 0.5) counts += fmt::format(" {}/s", human_bytes(static_cast<uint64_t>(done / secs)));
  } else {
    counts = fmt::format("{}/{}", done, bar.total);
  }
  std::string label = bar.label.size() > 36 ? "..." + bar.label.substr(bar.label.size() - 33)
                                            : bar.label;
  return fmt::format("{:<36} [{}] {:3.0f}% {}", label, fill, frac * 100, counts);
}

// Moves the cursor to the top of the block and clears it.
void ProgressGroup::clear_locked() {
  if (lines_drawn_ > 0) fmt::print(stderr, "\r\033[{}A\033[J", lines_drawn_);
  lines_drawn_ = 0;
}

void ProgressGroup::redraw_locked(bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  std::string out;
  if (lines_drawn_ > 0) out += fmt::format("\r\033[{}A\033[J", lines_drawn_);
  for (const Bar& b : bars_) out += format(b) + "\n";
  lines_drawn_ = bars_.size();
  std::fputs(out.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace medquant::core
