// medquant bench model.onnx [--runs N] [--warmup N] [--json]: load time,
// latency median and p90 after warm-up, the median CPU time per run (the
// steadier figure on a busy machine), and peak RSS of medquant's executor
// (global --threads sets the thread count). Inputs are random for the
// declared shapes unless given as .npy.
#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/run_io.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace medquant::cli {

void add_bench_command(CLI::App& root, Commands& commands) {
  struct Options {
    std::string model;
    std::vector<std::string> inputs;
    int runs = 30, warmup = 5;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* app = root.add_subcommand("bench", "Time an ONNX model on medquant's executor");
  app->add_option("model", o->model, "The .onnx file")->required();
  app->add_option("-i,--input", o->inputs, "name=file.npy inputs (default: random for the declared shapes)");
  app->add_option("--runs", o->runs, "Timed runs (default 30)")->check(CLI::Range(1, 100000));
  app->add_option("--warmup", o->warmup, "Untimed runs first (default 5)")->check(CLI::Range(0, 100000));
  app->add_flag("--json", o->json, "One JSON object: load_ms, median_ms, p90_ms, peak_rss_mb, ...");
  commands.push_back({app, [o] {
    const size_t threads = core::default_threads();
    runtime::Session s = runtime::Session::load(o->model, {.threads = threads});
    auto feeds = o->inputs.empty() ? random_inputs(s, 1) : read_inputs(s, o->inputs);
    for (int i = 0; i < o->warmup; ++i) s.run(feeds);
    auto cpu_ms = [] {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
    };
    std::vector<double> ms, cpu;
    for (int i = 0; i < o->runs; ++i) {
      const double c0 = cpu_ms();
      const auto t0 = std::chrono::steady_clock::now();
      s.run(feeds);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      cpu.push_back(cpu_ms() - c0);
    }
    std::sort(ms.begin(), ms.end());
    std::sort(cpu.begin(), cpu.end());
    const double cpu_median = cpu[cpu.size() / 2];
    auto pct = [&](double q) {
      const double pos = q * static_cast<double>(ms.size() - 1);
      const size_t lo = static_cast<size_t>(pos);
      const size_t hi = std::min(lo + 1, ms.size() - 1);
      return ms[lo] + (ms[hi] - ms[lo]) * (pos - static_cast<double>(lo));
    };
    double mean = 0;
    for (double v : ms) mean += v;
    mean /= static_cast<double>(ms.size());
    // VmHWM of this process image (ru_maxrss would include the parent's RSS at fork).
    double rss_mb = 0;
    if (FILE* f = std::fopen("/proc/self/status", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f))
        if (std::strncmp(line, "VmHWM:", 6) == 0) rss_mb = std::strtod(line + 6, nullptr) / 1024.0;
      std::fclose(f);
    }
    if (rss_mb == 0) {
      struct rusage ru {};
      getrusage(RUSAGE_SELF, &ru);
      rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
    }
    const auto st = s.stats();
    if (o->json) {
      nlohmann::json j = {{"model", o->model}, {"threads", threads}, {"runs", o->runs}, {"warmup", o->warmup},
                          {"load_ms", st.load_ms}, {"median_ms", pct(0.5)}, {"p90_ms", pct(0.9)},
                          {"mean_ms", mean}, {"min_ms", ms.front()}, {"median_cpu_ms", cpu_median},
                          {"peak_rss_mb", rss_mb},
                          {"kernels", st.kernels}, {"steps", st.nodes}, {"fusions", st.fusions},
                          {"arena_mb", static_cast<double>(st.arena_bytes) / (1 << 20)}};
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("model        {}\nthreads      {}\nkernels      {}\nload         {:.1f} ms\n"
                 "median       {:.2f} ms\np90          {:.2f} ms\nmin          {:.2f} ms\ncpu/run      {:.2f} ms (median)\n"
                 "peak RSS     {:.1f} MiB\nsteps        {} ({} fused, arena {:.1f} MiB)\n",
                 o->model, threads, st.kernels, st.load_ms, pct(0.5), pct(0.9), ms.front(), cpu_median, rss_mb, st.nodes,
                 st.fusions, static_cast<double>(st.arena_bytes) / (1 << 20));
    }
    return 0;
  }});
}

}  // namespace medquant::cli
