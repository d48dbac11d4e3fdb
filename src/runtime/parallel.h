// The executor's fork-join pool: `threads - 1` workers plus the calling
// thread share the tasks of one parallel region through an atomic counter.
// Workers spin briefly between regions (an encoder runs hundreds of short
// regions per inference, and a condition-variable wake-up costs more than
// many of them), then sleep. Unlike core::ThreadPool it is owned by one
// Session, so two sessions never contend for one pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace medquant::runtime {

class Parallel {
 public:
  explicit Parallel(size_t threads);  // 0 = all cores
  ~Parallel();
  Parallel(const Parallel&) = delete;
  Parallel& operator=(const Parallel&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Calls fn(i) for every i in [0, tasks), spread over the pool; returns when
  // all are done; rethrows the first exception.
  template <typename Fn>
  void run(size_t tasks, Fn&& fn) {
    if (tasks == 0) return;
    if (tasks == 1 || workers_.empty()) {
      for (size_t i = 0; i < tasks; ++i) fn(i);
      return;
    }
    using F = std::remove_reference_t<Fn>;
    dispatch(tasks, [](void* ctx, size_t i) { (*static_cast<F*>(ctx))(i); }, &fn);
  }

  // Splits [0, n) into about size()*grain_factor contiguous ranges of at
  // least `min_chunk` and calls fn(begin, end) for each.
  template <typename Fn>
  void ranges(size_t n, size_t min_chunk, Fn&& fn) {
    if (n == 0) return;
    size_t chunks = std::min<size_t>(size() * 4, (n + min_chunk - 1) / std::max<size_t>(min_chunk, 1));
    chunks = std::max<size_t>(chunks, 1);
    if (chunks == 1) return fn(size_t{0}, n);
    run(chunks, [&](size_t c) { fn(n * c / chunks, n * (c + 1) / chunks); });
  }

 private:
  using Call = void (*)(void*, size_t);
  void dispatch(size_t tasks, Call call, void* ctx);
  void work();  // claims tasks of the current region until none are left
  void worker_loop();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<size_t> next_{0};
  std::atomic<size_t> checked_in_{0};  // workers finished with the current region
  std::atomic<bool> failed_{false};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  size_t tasks_ = 0;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace medquant::runtime
