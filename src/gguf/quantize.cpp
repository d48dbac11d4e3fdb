#include "gguf/quantize.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <mutex>

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "gguf/gguf.h"
#include "gguf/imatrix.h"
#include "gguf/validate.h"

namespace medquant::gguf {
namespace {

using quant::Type;

// Source bytes a worker checks and quantizes in one go: small enough to stay
// in its L2 cache between the check and the conversion.
constexpr uint64_t kTaskBytes = 256 << 10;

std::optional<core::DType> plain_dtype(Type t) {
  switch (t) {
    case Type::F32: return core::DType::F32;
    case Type::F16: return core::DType::F16;
    case Type::BF16: return core::DType::BF16;
    default: return std::nullopt;
  }
}

bool is_token_embd(const std::string& name) {
  return name == "token_embd.weight" || name == "per_layer_token_embd.weight";
}

// find_invalid_data over whole rows, spread over the pool.
std::optional<std::string> find_invalid_rows(Type type, std::span<const uint8_t> bytes,
                                             uint64_t row_bytes, core::ThreadPool& pool) {
  const size_t rows = static_cast<size_t>(bytes.size() / row_bytes);
  std::mutex mutex;
  std::optional<std::pair<size_t, std::string>> first;
  pool.parallel_chunks(0, rows, [&](size_t b, size_t e) {
    auto bad = find_invalid_data(type, bytes.subspan(b * row_bytes, (e - b) * row_bytes));
    if (!bad) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (!first || b < first->first) first.emplace(b, *bad);
  });
  if (!first) return std::nullopt;
  return fmt::format("{} (counting from row {} of this slab)", first->second, first->first);
}

void filter_imatrix(Imatrix& im, const QuantizeOptions& opt) {
  // Same matching as llama-quantize's --include-weights / --exclude-weights.
  for (const auto& part : opt.exclude_weights)
    std::erase_if(im.entries, [&](const auto& e) { return e.first.find(part) != std::string::npos; });
  if (!opt.include_weights.empty()) {
    decltype(im.entries) kept;
    for (const auto& part : opt.include_weights)
      for (auto& e : im.entries)
        if (e.first.find(part) != std::string::npos) kept.insert(e);
    im.entries = std::move(kept);
  }
}

}  // namespace

QuantizeResult quantize_gguf(const QuantizeOptions& opt, core::ThreadPool& pool) {
  const auto start = std::chrono::steady_clock::now();
  if (!opt.include_weights.empty() && !opt.exclude_weights.empty())
    fail("--include-weights and --exclude-weights cannot be used together");
  Reader in(opt.input);
  const Header& h = in.header();
  // llama-quantize reads all shards of a split model; one shard alone would
  // silently lose the others' tensors.
  if (const auto n = h.get_int("split.count"); n && *n > 1)
    fail("{}: shard of a model split in {} files; merge them first (llama-gguf-split --merge)",
         in.path(), *n);
  if (!opt.dry_run) {
    std::error_code ec;
    if (std::filesystem::equivalent(opt.input, opt.output, ec))
      fail("{}: input and output are the same file", opt.output);
  }

  Imatrix im;
  ImatrixMetadata im_meta;
  bool have_imatrix = false;
  if (!opt.imatrix.empty()) {
    im = load_imatrix(opt.imatrix);
    filter_imatrix(im, opt);
    have_imatrix = !im.entries.empty();
    for (const auto& [name, values] : im.entries)
      for (size_t i = 0; i < values.size(); ++i)
        if (!std::isfinite(values[i]))
          fail("{}: entry '{}' value {} is {}, not finite", opt.imatrix, name, i, values[i]);
    im_meta.file = opt.imatrix;
    if (!im.datasets.empty()) im_meta.dataset = im.datasets[0].substr(0, im.datasets[0].find('\0'));
    im_meta.entries = static_cast<uint32_t>(im.entries.size());
    im_meta.chunks = im.chunk_count;
    core::log_verbose("{}: {} importance matrix entries{}", opt.imatrix, im.entries.size(),
                      im.legacy ? " (legacy format)" : "");
  }

  PlanOptions plan_options = opt.plan;
  plan_options.has_imatrix = have_imatrix;
  const Plan plan = plan_quantization(h, plan_options, in.path());

  QuantizeResult result;
  result.n_fallback = plan.n_fallback;
  result.imatrix_entries = have_imatrix ? im.entries.size() : 0;
  std::vector<TensorInfo> out_tensors;
  std::vector<const float*> imatrix_of(plan.tensors.size(), nullptr);
  for (size_t k = 0; k < plan.tensors.size(); ++k) {
    const PlannedTensor& p = plan.tensors[k];
    const TensorInfo& t = h.tensors[p.source];
    if (p.quantize) {
      const auto& from = quant::traits(t.type);
      if (from.is_quantized && !opt.allow_requantize)
        fail("{}: tensor '{}' is already {}; requantizing to {} loses quality and is refused "
             "(--allow-requantize)",
             in.path(), t.name, from.name, quant::type_name(p.type));
      if (!plain_dtype(t.type) && !from.can_dequantize)
        fail("{}: tensor '{}': cannot convert from type {}", in.path(), t.name, from.name);
      if (!quant::traits(p.type).can_quantize)
        fail("{}: tensor '{}': medquant cannot make type {}", in.path(), t.name,
             quant::type_name(p.type));
      if (t.ne[3] > 1)
        fail("{}: tensor '{}' has 4 dimensions {}; only 2-D and 3-D tensors can be quantized",
             in.path(), t.name, t.shape_string());
      if (have_imatrix) {
        auto it = im.entries.find(t.name);
        if (it == im.entries.end()) {
          core::log_verbose("{}: no importance weights for {}", opt.imatrix, t.name);
        } else if (it->second.size() == static_cast<size_t>(t.ne[0] * t.ne[2])) {
          imatrix_of[k] = it->second.data();
        } else if (!is_token_embd(t.name)) {
          fail("{}: entry '{}' has {} values but the tensor needs {} ({} columns x {} experts)",
               opt.imatrix, t.name, it->second.size(), t.ne[0] * t.ne[2], t.ne[0], t.ne[2]);
        }
      }
    }
    TensorInfo o;
    o.name = t.name;
    o.ne = t.ne;
    o.n_dims = t.effective_n_dims();  // what ggml writes
    o.type = p.type;
    out_tensors.push_back(o);

    TensorResult r;
    r.name = t.name;
    r.shape = t.shape_string();
    r.from = t.type;
    r.to = p.type;
    r.elements = static_cast<uint64_t>(t.n_elements());
    r.bytes_in = t.n_bytes();
    r.bytes_out = o.n_bytes();
    r.quantized = p.quantize;
    r.fallback = p.fallback;
    r.imatrix = imatrix_of[k] != nullptr;
    result.elements += r.elements;
    result.bytes_in += r.bytes_in;
    result.bytes_out += r.bytes_out;
    result.tensors.push_back(std::move(r));
  }
  if (opt.dry_run) {
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return result;
  }

  Writer out(opt.output, quantized_kvs(h, opt.plan.mix.file_type, have_imatrix ? &im_meta : nullptr),
             out_tensors);
  core::Progress progress("quantizing", result.elements);

  // The work in slabs of whole rows (a slab never crosses experts: each has
  // its own importance weights), so that a background job can write one slab,
  // drop its source pages and map the next one's while the pool computes.
  struct Slab {
    size_t k;            // plan index
    int64_t r0, n;       // rows
  };
  std::vector<Slab> slabs;
  for (size_t k = 0; k < plan.tensors.size(); ++k) {
    const TensorInfo& t = h.tensors[plan.tensors[k].source];
    const uint64_t row_in = t.row_bytes();
    const int64_t n_rows = t.n_rows();
    if (row_in == 0 || n_rows == 0) continue;  // nothing to write; the writer pads
    const int64_t per_slab = std::max<int64_t>(1, static_cast<int64_t>(opt.slab_bytes / row_in));
    const int64_t per_expert = plan.tensors[k].quantize ? t.ne[1] : n_rows;
    for (int64_t r0 = 0; r0 < n_rows;) {
      const int64_t n = std::min({per_slab, n_rows - r0, per_expert - r0 % per_expert});
      slabs.push_back({k, r0, n});
      r0 += n;
    }
  }
  auto slab_range = [&](const Slab& s) {
    const TensorInfo& t = h.tensors[plan.tensors[s.k].source];
    return std::pair<uint64_t, uint64_t>{s.r0 * t.row_bytes(), (s.r0 + s.n) * t.row_bytes()};
  };

  // Two output buffers: while the pool quantizes the next slab into one, the
  // background job writes the other (the write is the only serial step).
  std::vector<uint8_t> dst_buffers[2];
  size_t dst_index = 0;
  std::future<void> background;
  auto finish_background = [&] {
    if (background.valid()) background.get();  // rethrows a write error
  };
  std::vector<quant::TensorStatsSum> stats(plan.tensors.size());
  std::mutex stats_mutex;
  if (!slabs.empty()) {
    const auto [b, e] = slab_range(slabs[0]);
    in.prefetch(h.tensors[plan.tensors[slabs[0].k].source], b, e);
  }

  for (size_t si = 0; si < slabs.size(); ++si) {
    const Slab& slab = slabs[si];
    const PlannedTensor& p = plan.tensors[slab.k];
    const TensorInfo& t = h.tensors[p.source];
    if (slab.r0 == 0) progress.set_label(t.name);
    const auto src = in.tensor_data(t);
    const uint64_t row_in = t.row_bytes();
    const int64_t ne0 = t.ne[0];
    // Plain variables, not a structured binding: lambdas below use them, and
    // clang before 16 cannot capture bindings.
    const uint64_t begin = slab_range(slab).first, end = slab_range(slab).second;
    auto after_write = [&, si, begin, end, &t = t] {
      in.release(t, begin, end);
      if (si + 1 < slabs.size()) {
        const auto [nb, ne] = slab_range(slabs[si + 1]);
        in.prefetch(h.tensors[plan.tensors[slabs[si + 1].k].source], nb, ne);
      }
    };

    if (!p.quantize) {
      finish_background();
      if (auto bad = find_invalid_rows(t.type, src.subspan(begin, end - begin), row_in, pool))
        fail("{}: tensor '{}' has invalid data: {} (in the bytes from data offset {})", in.path(),
             t.name, *bad, t.offset + begin);
      out.write(src.subspan(begin, end - begin));
      after_write();
      progress.add(static_cast<uint64_t>(slab.n * ne0));
      continue;
    }

    const uint64_t row_out = quant::row_size(p.type, ne0);
    const auto dtype = plain_dtype(t.type);
    const float* imatrix =
        imatrix_of[slab.k] ? imatrix_of[slab.k] + (slab.r0 / t.ne[1]) * ne0 : nullptr;
    std::vector<uint8_t>& dst = dst_buffers[dst_index];
    dst_index ^= 1;
    dst.resize(static_cast<size_t>(slab.n * row_out));

    // Each worker checks, converts and quantizes small runs of rows, so that a
    // run is read from memory once and checked while it is in cache.
    const int64_t rows_per_task = std::max<int64_t>(1, static_cast<int64_t>(kTaskBytes / row_in));
    const int64_t n_tasks = (slab.n + rows_per_task - 1) / rows_per_task;
    pool.parallel_chunks(0, static_cast<size_t>(n_tasks), [&](size_t tb, size_t te) {
      core::ThreadPool inline_pool(1);  // quantize_tensor runs on this worker only
      std::vector<float> f32;
      quant::TensorStatsSum local;
      for (size_t task = tb; task < te; ++task) {
        const int64_t a = static_cast<int64_t>(task) * rows_per_task;
        const int64_t n = std::min(rows_per_task, slab.n - a);
        const uint8_t* x_bytes = src.data() + begin + a * row_in;
        if (auto bad = find_invalid_data(t.type, {x_bytes, static_cast<size_t>(n * row_in)}))
          fail("{}: tensor '{}' has invalid data: {} (counting from row {})", in.path(), t.name,
               *bad, slab.r0 + a);
        const void* x = x_bytes;
        if (!dtype) {  // requantizing: decode to f32 first
          f32.resize(static_cast<size_t>(n * ne0));
          for (int64_t i = 0; i < n; ++i)
            quant::dequantize_row(t.type, x_bytes + i * row_in, f32.data() + i * ne0, ne0);
          x = f32.data();
        }
        uint8_t* y = dst.data() + a * row_out;
        const quant::TensorStats st =
            quant::quantize_tensor(p.type, dtype.value_or(core::DType::F32), x, y, n, ne0,
                                   imatrix, inline_pool, &progress);
        local.add(st, static_cast<uint64_t>(n * ne0));
        if (auto bad = find_invalid_data(p.type, {y, static_cast<size_t>(n * row_out)}))
          fail("{}: tensor '{}': quantized data is invalid: {} (counting from row {}); the "
               "source values are probably too large for {}",
               opt.output, t.name, *bad, slab.r0 + a, quant::type_name(p.type));
      }
      std::lock_guard<std::mutex> lock(stats_mutex);
      stats[slab.k].merge(local);
    });
    finish_background();  // the previous slab, from the other buffer
    background = std::async(std::launch::async, [&out, &dst, after_write] {
      out.write(dst);
      after_write();
    });
  }
  finish_background();
  for (size_t k = 0; k < plan.tensors.size(); ++k)
    if (plan.tensors[k].quantize) result.tensors[k].stats = stats[k].result();
  out.commit();
  progress.finish();
  result.file_size = out.bytes_written();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace medquant::gguf
