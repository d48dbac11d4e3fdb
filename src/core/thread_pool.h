// A fixed pool of worker threads with a blocking parallel_for. One process-
// wide pool sized by --threads (default: hardware concurrency).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace medquant::core {

class ThreadPool {
 public:
  explicit ThreadPool(size_t threads);  // threads >= 1; the caller counts as one
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Calls fn(i) for every i in [begin, end), split in contiguous chunks over
  // the pool and the calling thread; returns when all are done. The first
  // exception thrown by fn is rethrown here (remaining chunks are skipped).
  void parallel_for(size_t begin, size_t end, const std::function<void(size_t)>& fn);

  // Calls fn(chunk_begin, chunk_end) on at most size() contiguous chunks.
  void parallel_chunks(size_t begin, size_t end,
                       const std::function<void(size_t, size_t)>& fn);

 private:
  void worker_loop(size_t index);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::mutex run_mutex_;  // one parallel_for at a time
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  std::vector<std::pair<size_t, size_t>> chunks_;
  size_t generation_ = 0;
  size_t pending_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
};

// The process-wide pool; set_default_threads() before first use (0 = all cores).
void set_default_threads(size_t threads);
size_t default_threads();
ThreadPool& default_pool();

}  // namespace medquant::core
