// medquant's codecs against ggml_quantize_chunk on the same 4096 x 2560 f32
// matrix (a Gemma-3-4B projection), one thread, for the k-quant mix of the
// usual presets; with and without an importance matrix.
//
//   bench_quant [--benchmark_repetitions=3] [--json_rows=FILE]
//
// After the Google Benchmark output it prints one line per type with both
// times and their ratio, and with --json_rows appends the same as JSON lines.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ggml.h"
#include "quant/kernels.h"
#include "quant/quant.h"

namespace {

using medquant::quant::Type;

constexpr int64_t kRows = 4096, kCols = 2560;

// Weights like a trained projection: normal values whose scale varies from
// row to row, plus a few outliers.
const std::vector<float>& input() {
  static const std::vector<float> x = [] {
    std::vector<float> v(kRows * kCols);
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (int64_t r = 0; r < kRows; ++r) {
      const float scale = 0.02f * std::exp(0.3f * normal(rng));
      for (int64_t i = 0; i < kCols; ++i) v[r * kCols + i] = scale * normal(rng);
      v[r * kCols + rng() % kCols] *= 20;
    }
    return v;
  }();
  return x;
}

const std::vector<float>& imatrix() {
  static const std::vector<float> w = [] {
    std::vector<float> v(kCols);
    std::mt19937 rng(99);
    std::exponential_distribution<float> e(1.f);
    for (auto& x : v) x = 0.05f + e(rng);
    return v;
  }();
  return w;
}

void run(benchmark::State& state, Type type, bool ours, bool with_imatrix) {
  const std::vector<float>& x = input();
  const float* im = with_imatrix ? imatrix().data() : nullptr;
  std::vector<uint8_t> out(kRows * medquant::quant::row_size(type, kCols));
  for (auto _ : state) {
    if (ours) {
      medquant::quant::quantize_rows(type, x.data(), out.data(), kRows, kCols, im);
    } else {
      ggml_quantize_chunk(static_cast<ggml_type>(type), x.data(), out.data(), 0, kRows, kCols, im);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kRows * kCols);
  state.SetLabel(ours ? std::string(medquant::quant::detail::kernels().isa) : "scalar");
}

// Collects the mean (or only) time of each benchmark for the summary table.
class Reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool aggregate = r.run_type == Run::RT_Aggregate;
      if (aggregate && r.aggregate_name != "mean") continue;
      const std::string name = r.run_name.function_name;
      if (!aggregate && seen_aggregate_.count(name)) continue;
      if (aggregate) seen_aggregate_[name] = true;
      // CPU time: one thread, and the build machine is shared.
      times_[name] = r.GetAdjustedCPUTime();  // ms (Unit set below)
    }
  }
  const std::map<std::string, double>& times() const { return times_; }

 private:
  std::map<std::string, double> times_;
  std::map<std::string, bool> seen_aggregate_;
};

const Type kTypes[] = {Type::Q4_K, Type::Q6_K, Type::Q5_K, Type::Q8_0,
                       Type::Q4_0, Type::Q3_K, Type::Q2_K};

std::string bench_name(const char* who, Type type, bool im) {
  return std::string(who) + "/" + std::string(medquant::quant::type_name(type)) +
         (im ? "/imatrix" : "");
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_rows;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--json_rows=", 12) == 0) {
      json_rows = argv[i] + 12;
    } else {
      args.push_back(argv[i]);
    }
  }
  int nargs = static_cast<int>(args.size());
  for (bool im : {false, true}) {
    for (Type t : kTypes) {
      for (bool ours : {false, true}) {
        benchmark::RegisterBenchmark(bench_name(ours ? "medquant" : "ggml", t, im).c_str(),
                                     [t, ours, im](benchmark::State& s) { run(s, t, ours, im); })
            ->Unit(benchmark::kMillisecond)
            ->Iterations(1);
      }
    }
  }
  benchmark::Initialize(&nargs, args.data());
  Reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::FILE* json = json_rows.empty() ? nullptr : std::fopen(json_rows.c_str(), "a");
  std::printf("\n%-16s %12s %12s %9s   (%lld x %lld f32, 1 thread, CPU time)\n", "type", "ggml ms",
              "medquant ms", "speedup", static_cast<long long>(kRows),
              static_cast<long long>(kCols));
  for (bool im : {false, true}) {
    for (Type t : kTypes) {
      const auto& times = reporter.times();
      auto g = times.find(bench_name("ggml", t, im));
      auto m = times.find(bench_name("medquant", t, im));
      if (g == times.end() || m == times.end()) continue;
      const std::string label = std::string(medquant::quant::type_name(t)) + (im ? " imatrix" : "");
      std::printf("%-16s %12.1f %12.1f %8.2fx\n", label.c_str(), g->second, m->second,
                  g->second / m->second);
      if (json) {
        std::fprintf(
            json,
            "{\"bench\":\"quant\",\"case\":\"%s\",\"rows\":%lld,\"cols\":%lld,"
            "\"threads\":1,\"time\":\"cpu\",\"peer\":\"ggml_quantize_chunk\",\"peer_ms\":%.3f,"
            "\"medquant_ms\":%.3f,\"speedup\":%.3f,\"kernels\":\"%s\"}\n",
            label.c_str(), static_cast<long long>(kRows), static_cast<long long>(kCols), g->second,
            m->second, g->second / m->second,
            std::string(medquant::quant::detail::kernels().isa).c_str());
      }
    }
  }
  if (json) std::fclose(json);
  benchmark::Shutdown();
  return 0;
}
