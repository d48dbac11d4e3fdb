#include "runtime/parallel.h"

#include <sched.h>

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace medquant::runtime {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
constexpr int kSpins = 4000;   // ~ tens of microseconds of pause
constexpr int kYields = 50;    // then give the core away a few times, then sleep
}  // namespace

Parallel::Parallel(size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

Parallel::~Parallel() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void Parallel::work(Region& r) {
  for (;;) {
    const size_t i = r.next.fetch_add(1, std::memory_order_acq_rel);
    if (i >= r.tasks) return;
    if (!r.failed.load(std::memory_order_relaxed)) {
      try {
        r.call(r.ctx, i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(r.error_mutex);
        if (!r.error) r.error = std::current_exception();
        r.failed.store(true);
      }
    }
    r.done.fetch_add(1, std::memory_order_acq_rel);
  }
}

void Parallel::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      ++spins;
      if (spins < kSpins) {
        cpu_relax();
      } else if (spins < kSpins + kYields) {
        sched_yield();
      } else {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_.fetch_add(1);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        sleeping_.fetch_sub(1);
      }
    }
    std::shared_ptr<Region> r;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      seen = generation_.load();
      r = region_;
    }
    if (r) work(*r);  // a region already finished hands out no task
  }
}

void Parallel::dispatch(size_t tasks, Call call, void* ctx) {
  auto r = std::make_shared<Region>();
  r->call = call;
  r->ctx = ctx;
  r->tasks = tasks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    region_ = r;
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (sleeping_.load() > 0) wake_.notify_all();
  work(*r);
  // Wait for tasks claimed by workers; a worker that never woke claims none later
  // (next >= tasks), so only running work is waited for.
  int spins = 0;
  while (r->done.load(std::memory_order_acquire) < tasks) {
    if (++spins < kSpins) cpu_relax();
    else sched_yield();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (region_ == r) region_.reset();
  }
  if (r->error) std::rethrow_exception(r->error);
}

}  // namespace medquant::runtime
