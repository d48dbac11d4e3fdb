#include "validate/tensor_error.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/thread_pool.h"
#include "quant/quant.h"

namespace medquant::validate {

TensorErrors tensor_errors(const gguf::Reader& reference, const gguf::Reader& candidate,
                           core::ThreadPool& pool) {
  TensorErrors out;
  for (const auto& c : candidate.tensors()) {
    const gguf::TensorInfo* r = reference.header().find_tensor(c.name);
    if (!r) {
      out.skipped.push_back(fmt::format("{}: not in the reference", c.name));
      continue;
    }
    if (r->ne != c.ne) {
      out.skipped.push_back(fmt::format("{}: shape {} in the reference, {} in the build", c.name,
                                        r->shape_string(), c.shape_string()));
      continue;
    }
    if (r->type == c.type) continue;  // unchanged: no quantization error
    if (!quant::traits(r->type).can_dequantize || !quant::traits(c.type).can_dequantize) {
      out.skipped.push_back(fmt::format("{}: {} or {} cannot be decoded by medquant", c.name,
                                        quant::type_name(r->type), quant::type_name(c.type)));
      continue;
    }
    const int64_t n = c.ne[0];
    const int64_t rows = c.n_rows();
    const auto ref_data = reference.tensor_data(*r);
    const auto cand_data = candidate.tensor_data(c);
    const size_t ref_row = r->row_bytes(), cand_row = c.row_bytes();
    // Per-row sums, added up in row order afterwards: the result does not
    // depend on the number of threads.
    std::vector<double> sq_err(static_cast<size_t>(rows)), sq_ref(static_cast<size_t>(rows));
    std::vector<double> max_err(static_cast<size_t>(rows));
    pool.parallel_chunks(0, static_cast<size_t>(rows), [&](size_t begin, size_t end) {
      std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      for (size_t row = begin; row < end; ++row) {
        quant::dequantize_row(r->type, ref_data.data() + row * ref_row, a.data(), n);
        quant::dequantize_row(c.type, cand_data.data() + row * cand_row, b.data(), n);
        double e2 = 0, r2 = 0, m = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double d = static_cast<double>(b[static_cast<size_t>(i)]) - a[static_cast<size_t>(i)];
          e2 += d * d;
          r2 += static_cast<double>(a[static_cast<size_t>(i)]) * a[static_cast<size_t>(i)];
          m = std::max(m, std::fabs(d));
        }
        sq_err[row] = e2;
        sq_ref[row] = r2;
        max_err[row] = m;
      }
    });
    double e2 = 0, r2 = 0, m = 0;
    for (size_t row = 0; row < sq_err.size(); ++row) {
      e2 += sq_err[row];
      r2 += sq_ref[row];
      m = std::max(m, max_err[row]);
    }
    reference.release(*r, 0, r->n_bytes());
    candidate.release(c, 0, c.n_bytes());
    TensorError t;
    t.name = c.name;
    t.shape = c.shape_string();
    t.ref_type = std::string(quant::type_name(r->type));
    t.cand_type = std::string(quant::type_name(c.type));
    t.elements = static_cast<uint64_t>(c.n_elements());
    t.cand_bytes = c.n_bytes();
    const double count = static_cast<double>(c.n_elements());
    t.rmse = count > 0 ? std::sqrt(e2 / count) : 0;
    t.rms_reference = count > 0 ? std::sqrt(r2 / count) : 0;
    t.max_abs_err = m;
    out.tensors.push_back(std::move(t));
  }
  return out;
}

}  // namespace medquant::validate
