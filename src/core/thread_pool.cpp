#include "core/thread_pool.h"

#include <algorithm>
#include <memory>

namespace medquant::core {

ThreadPool::ThreadPool(size_t threads) {
  threads = std::max<size_t>(threads, 1);
  for (size_t i = 0; i + 1 < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  work_ready_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(size_t index) {
  size_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(mutex_);
    work_ready_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    // Worker i takes chunk i+1; the caller takes chunk 0.
    if (index + 1 >= chunks_.size()) continue;
    auto [b, e] = chunks_[index + 1];
    const auto* job = job_;
    lock.unlock();
    std::exception_ptr err;
    try {
      (*job)(b, e);
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    if (err && !error_) error_ = err;
    if (--pending_ == 0) work_done_.notify_all();
  }
}

void ThreadPool::parallel_chunks(size_t begin, size_t end,
                                 const std::function<void(size_t, size_t)>& fn) {
  if (end <= begin) return;
  const size_t n = end - begin;
  const size_t parts = std::min(n, size());
  if (parts == 1) {
    fn(begin, end);
    return;
  }
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    chunks_.clear();
    for (size_t p = 0; p < parts; ++p)
      chunks_.emplace_back(begin + n * p / parts, begin + n * (p + 1) / parts);
    job_ = &fn;
    pending_ = parts - 1;
    error_ = nullptr;
    ++generation_;
  }
  work_ready_.notify_all();
  std::exception_ptr err;
  try {
    fn(chunks_[0].first, chunks_[0].second);
  } catch (...) {
    err = std::current_exception();
  }
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  if (!err) err = error_;
  lock.unlock();
  if (err) std::rethrow_exception(err);
}

void ThreadPool::parallel_for(size_t begin, size_t end, const std::function<void(size_t)>& fn) {
  parallel_chunks(begin, end, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) fn(i);
  });
}

namespace {
size_t g_default_threads = 0;
std::unique_ptr<ThreadPool> g_pool;
std::mutex g_pool_mutex;
}  // namespace

void set_default_threads(size_t threads) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_default_threads = threads;
  g_pool.reset();
}

size_t default_threads() {
  if (g_default_threads > 0) return g_default_threads;
  return std::max<size_t>(1, std::thread::hardware_concurrency());
}

ThreadPool& default_pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_unique<ThreadPool>(default_threads());
  return *g_pool;
}

}  // namespace medquant::core
