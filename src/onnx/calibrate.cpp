#include "onnx/calibrate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace medquant::onnx {

std::vector<float> histogram_edges(float first, float last, size_t bins) {
  if (first == last) {  // np.histogram widens an empty range, in the data's float32
    first -= 0.5f;
    last += 0.5f;
  }
  // np.linspace in float32: y = arange(n) * step (rounded), then + first (rounded).
  const float delta = last - first;
  const float step = delta / static_cast<float>(bins);
  std::vector<float> edges(bins + 1);
  for (size_t i = 0; i < bins; ++i) {
    volatile float y = static_cast<float>(i) * step;  // two roundings, never one fused multiply-add
    edges[i] = y + first;
  }
  edges[bins] = last;
  return edges;
}

size_t histogram_bin(const std::vector<float>& edges, float x) {
  // np.histogram's uniform-bin path: an index from float32 arithmetic, then
  // moved by one where it disagrees with the edges; the last bin is closed.
  const size_t n = edges.size() - 1;
  const float first = edges.front(), denom = edges.back() - first;
  volatile float scaled = (x - first) / denom;
  const float f = scaled * static_cast<float>(n);
  size_t idx = f <= 0 ? 0 : static_cast<size_t>(f);
  if (idx >= n) idx = n - 1;
  if (x < edges[idx] && idx > 0) --idx;
  else if (x >= edges[idx + 1] && idx != n - 1) ++idx;
  return idx;
}

namespace {

// numpy's pairwise float32 sum (np.sum of a contiguous float32 array).
float pairwise_sum(const float* a, size_t n) {
  if (n < 8) {
    float res = -0.0f;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    float r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

float np_sum(const std::vector<float>& v) { return 0.0f + pairwise_sum(v.data(), v.size()); }

// quant_utils.smooth_distribution: zeros become eps, the rest give it back.
bool smooth(const std::vector<int64_t>& p, std::vector<float>& out) {
  constexpr double kEps = 0.0001;
  size_t zeros = 0;
  for (int64_t v : p) zeros += v == 0;
  const size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  const float eps1 = static_cast<float>(kEps * static_cast<double>(zeros) / static_cast<double>(nonzeros));
  out.resize(p.size());
  for (size_t i = 0; i < p.size(); ++i)
    out[i] = p[i] == 0 ? static_cast<float>(kEps) : static_cast<float>(p[i]) + (-eps1);
  return true;
}

// calibrate.entropy: KL(p || q) of the normalised float32 distributions.
float kl_divergence(std::vector<float> p, std::vector<float> q) {
  const float sp = np_sum(p), sq = np_sum(q);
  for (auto& v : p) v = v / sp;
  for (auto& v : q) v = v / sq;
  std::vector<float> terms(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    if (!(p[i] > 0 && q[i] > 0)) terms[i] = p[i] == 0 && q[i] >= 0 ? 0.0f : INFINITY;
    else terms[i] = p[i] * std::log(p[i] / q[i]);
  }
  return np_sum(terms);
}

}  // namespace

TensorRange entropy_threshold(const std::vector<int64_t>& hist, const std::vector<float>& edges,
                              size_t num_quantized_bins) {
  const size_t num_bins = hist.size();
  const size_t zero = num_bins / 2, half_q = num_quantized_bins / 2;
  if (num_quantized_bins == 0 || half_q > zero)
    fail("entropy calibration: {} quantized bins need at least as many histogram bins ({})",
         num_quantized_bins, num_bins);
  float best = INFINITY;
  TensorRange out{edges[zero - half_q], edges[std::min(zero + half_q + 1, num_bins)]};
  bool first = true;
  for (size_t i = half_q; i <= zero; ++i) {
    const size_t start = zero - i, end = std::min(zero + i + 1, num_bins);
    const std::vector<int64_t> sliced(hist.begin() + static_cast<ptrdiff_t>(start),
                                      hist.begin() + static_cast<ptrdiff_t>(end));
    std::vector<int64_t> p = sliced;
    for (size_t k = 0; k < start; ++k) p.front() += hist[k];
    for (size_t k = end; k < num_bins; ++k) p.back() += hist[k];
    // Merge the slice into num_quantized_bins levels, then spread each level
    // evenly (integer division, as ORT's int64 array does) over its bins
    // where p is non-zero.
    const size_t merged = sliced.size() / num_quantized_bins;
    std::vector<int64_t> levels(num_quantized_bins, 0);
    for (size_t l = 0; l < num_quantized_bins; ++l)
      for (size_t k = l * merged; k < (l + 1) * merged; ++k) levels[l] += sliced[k];
    for (size_t k = num_quantized_bins * merged; k < sliced.size(); ++k) levels.back() += sliced[k];
    std::vector<int64_t> q(p.size(), 0);
    for (size_t l = 0; l < num_quantized_bins; ++l) {
      const size_t s = l * merged, e = s + merged;
      int64_t norm = 0;
      for (size_t k = s; k < e; ++k) norm += p[k] != 0;
      if (norm != 0)
        for (size_t k = s; k < e; ++k)
          q[k] = static_cast<int64_t>(static_cast<double>(levels[l]) / static_cast<double>(norm));
    }
    std::vector<float> ps, qs;
    const float div = smooth(p, ps) && smooth(q, qs) ? kl_divergence(ps, qs) : INFINITY;
    if (first || div < best) {  // np.argmin: the first of equal minima
      best = div;
      out = {edges[start], edges[end]};
      first = false;
    }
  }
  return out;
}

TensorRange percentile_threshold(const std::vector<int64_t>& hist, const std::vector<float>& edges,
                                 double percentile, bool symmetric) {
  int64_t total = 0;
  for (int64_t v : hist) total += v;
  // cdf = np.cumsum(hist / total) in float64; np.searchsorted (left).
  std::vector<double> cdf(hist.size());
  double acc = 0;
  for (size_t i = 0; i < hist.size(); ++i) {
    acc += static_cast<double>(hist[i]) / static_cast<double>(total);
    cdf[i] = acc;
  }
  auto search = [&](double v) {
    return static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), v) - cdf.begin());
  };
  if (symmetric) {
    const float t = edges[search(percentile / 100.0)];
    return {-t, t};
  }
  const double cut = (100.0 - percentile) / 200.0;
  return {edges[search(cut)], edges[search(1.0 - cut)]};
}

Calibrator::Calibrator(CalibrationOptions options, std::vector<std::string> tensors)
    : opt_(options), tensors_(std::move(tensors)) {
  symmetric_ = opt_.symmetric < 0 ? opt_.method == CalibrationMethod::Percentile : opt_.symmetric != 0;
  if (opt_.num_bins == 0) opt_.num_bins = opt_.method == CalibrationMethod::Percentile ? 2048 : 128;
  if (opt_.method == CalibrationMethod::Percentile && !(opt_.percentile >= 0 && opt_.percentile <= 100))
    fail("percentile calibration: percentile {} is not in [0, 100]", opt_.percentile);
  if (opt_.method == CalibrationMethod::Entropy && opt_.num_quantized_bins / 2 > opt_.num_bins / 2)
    fail("entropy calibration: {} quantized bins need at least as many histogram bins ({})",
         opt_.num_quantized_bins, opt_.num_bins);
  for (const auto& t : tensors_) state_[t];
}

int Calibrator::passes() const { return opt_.method == CalibrationMethod::MinMax ? 1 : 2; }

void Calibrator::start_histogram(State& s) const {
  if (opt_.method == CalibrationMethod::Percentile && symmetric_) {
    s.edges = histogram_edges(s.abs_lo, s.abs_hi, opt_.num_bins);  // np.histogram(|x|, bins)
  } else {
    const float t = std::max(std::fabs(s.lo), std::fabs(s.hi));
    s.edges = histogram_edges(-t, t, opt_.num_bins);  // range=(-threshold, threshold)
  }
  s.counts.assign(opt_.num_bins, 0);
}

void Calibrator::begin_pass(int pass) {
  pass_ = pass;
  if (pass == 1)
    for (auto& [name, s] : state_)
      if (s.seen) start_histogram(s);
}

void Calibrator::observe(const std::string& tensor, const float* values, size_t count) {
  auto it = state_.find(tensor);
  if (it == state_.end()) fail("calibration: '{}' is not a tensor being calibrated", tensor);
  State& s = it->second;
  if (pass_ == 0) {
    for (size_t i = 0; i < count; ++i) {
      const float v = values[i];
      if (std::isnan(v)) continue;
      const float a = std::fabs(v);
      if (!s.seen) {
        s.lo = s.hi = v;
        s.abs_lo = s.abs_hi = a;
        s.seen = true;
        continue;
      }
      s.lo = std::min(s.lo, v);
      s.hi = std::max(s.hi, v);
      s.abs_lo = std::min(s.abs_lo, a);
      s.abs_hi = std::max(s.abs_hi, a);
    }
    return;
  }
  if (!s.seen) return;
  const bool absolute = opt_.method == CalibrationMethod::Percentile && symmetric_;
  const float lo = s.edges.front(), hi = s.edges.back();
  for (size_t i = 0; i < count; ++i) {
    const float v = absolute ? std::fabs(values[i]) : values[i];
    if (!(v >= lo && v <= hi)) continue;  // NaN; np.histogram drops values outside the range
    ++s.counts[histogram_bin(s.edges, v)];
  }
}

std::map<std::string, TensorRange> Calibrator::compute() const {
  std::map<std::string, TensorRange> out;
  for (const auto& [name, s] : state_) {
    if (!s.seen) continue;
    TensorRange r{s.lo, s.hi};
    if (opt_.method == CalibrationMethod::MinMax) {
      if (symmetric_) {
        const float a = std::max(std::fabs(s.lo), std::fabs(s.hi));
        r = {-a, a};
      }
    } else {
      r = opt_.method == CalibrationMethod::Percentile
              ? percentile_threshold(s.counts, s.edges, opt_.percentile, symmetric_)
              : entropy_threshold(s.counts, s.edges, opt_.num_quantized_bins);
      r.lo = std::max(r.lo, s.lo);  // clipped to the data's [min, max]
      r.hi = std::min(r.hi, s.hi);
    }
    out[name] = r;
  }
  if (out.empty() && !tensors_.empty()) fail("calibration: no data was collected");
  return out;
}

}  // namespace medquant::onnx
