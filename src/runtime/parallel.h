// The executor's fork-join pool: `threads - 1` workers plus the calling
// thread share the tasks of one parallel region through an atomic counter.
// Workers spin briefly between regions (an encoder runs hundreds of short
// regions per inference and a condition-variable wake-up costs more than many
// of them), then yield, then sleep; the caller waits only for tasks that were
// claimed, never for a worker that is not running (the machine may be busy
// with other processes). Unlike core::ThreadPool it belongs to one Session.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
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
  // all are done; rethrows the first exception (later tasks are skipped).
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

  // Splits [0, n) into about 4 * size() contiguous ranges of at least
  // `min_chunk` and calls fn(begin, end) for each. More ranges than threads
  // come in a multiple of size(), so threads that start together end together.
  template <typename Fn>
  void ranges(size_t n, size_t min_chunk, Fn&& fn) {
    if (n == 0) return;
    if (workers_.empty()) return fn(size_t{0}, n);
    size_t chunks = std::min<size_t>(size() * 4, (n + min_chunk - 1) / std::max<size_t>(min_chunk, 1));
    if (chunks > size()) chunks -= chunks % size();
    chunks = std::max<size_t>(chunks, 1);
    if (chunks == 1) return fn(size_t{0}, n);
    run(chunks, [&](size_t c) { fn(n * c / chunks, n * (c + 1) / chunks); });
  }

 private:
  using Call = void (*)(void*, size_t);
  struct Region {
    Call call = nullptr;
    void* ctx = nullptr;
    size_t tasks = 0;
    std::atomic<size_t> next{0}, done{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::exception_ptr error;
  };
  void dispatch(size_t tasks, Call call, void* ctx);
  static void work(Region& r);
  void worker_loop();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Region> region_;  // guarded by mutex_
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
  bool stop_ = false;  // guarded by mutex_
};

}  // namespace medquant::runtime
