#include "core/progress.h"

#include <fmt/format.h>

#include <cstdio>

#include "core/log.h"

namespace medquant::core {

Progress::Progress(std::string label, uint64_t total, ProgressUnit unit)
    : label_(std::move(label)),
      total_(total),
      unit_(unit),
      enabled_(verbosity() >= Verbosity::Normal && stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

void Progress::add(uint64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock() || now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(false);
}

void Progress::set_label(std::string label) {
  std::lock_guard<std::mutex> lock(mutex_);
  label_ = std::move(label);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  const uint64_t done = std::min<uint64_t>(done_, total_);
  const double frac = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.resize(kWidth, '.');
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string counts = unit_ == ProgressUnit::Bytes
                           ? fmt::format("{}/{}", human_bytes(done), human_bytes(total_))
                           : fmt::format("{}/{}", done, total_);
  std::string label = label_.size() > 40 ? "..." + label_.substr(label_.size() - 37) : label_;
  fmt::print(stderr, "\r\033[K{} [{}] {:3.0f}% {} {:.1f}s{}", label, bar, frac * 100, counts, secs,
             final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace medquant::core
