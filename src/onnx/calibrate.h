// Activation ranges for static quantization, with the semantics of
// onnxruntime.quantization.calibrate (the version pinned in
// tests/peer/requirements.txt), fed with the tensors medquant's executor
// computes on the calibration inputs:
//
//   MinMax      min and max of every sample, then the min of the mins and the
//               max of the maxes (ReduceMin/ReduceMax + nanmin/nanmax);
//               `symmetric` makes it [-absmax, absmax].
//   Percentile  a 2048-bin histogram of |x| over [min|x|, max|x|] (symmetric,
//               the default) or of x over [-t, t], t = max(|min|, |max|);
//               the threshold is the left edge of the first bin whose
//               cumulative share reaches 99.999% (asymmetric: 0.0005% cut on
//               each side), clipped to the data's [min, max].
//   Entropy     a 128-bin histogram of x over [-t, t]; the threshold pair
//               (edges i bins either side of zero) of least KL divergence
//               between the clipped distribution and its 128-level
//               quantization, clipped to [min, max]. With ORT's defaults
//               (128 bins, 128 quantized bins) there is one candidate: the
//               whole histogram, i.e. [min, max].
//
// ORT keeps every sample and builds each histogram once over all of them; a
// histogram depends only on the values and the range, so here the first pass
// gathers the range and a second pass over the same inputs fills the bins
// (numpy.histogram's float32 edges and bin rule), keeping memory at one
// sample's tensors.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace medquant::onnx {

enum class CalibrationMethod { MinMax, Percentile, Entropy };

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::MinMax;
  // CalibTensorRangeSymmetric; unset = ORT's default for the method
  // (MinMax/Entropy false, Percentile true).
  int symmetric = -1;
  size_t num_bins = 0;              // 0 = 2048 (percentile) or 128 (entropy)
  size_t num_quantized_bins = 128;  // entropy
  double percentile = 99.999;       // CalibPercentile
};

struct TensorRange {
  float lo = 0, hi = 0;
};

class Calibrator {
 public:
  Calibrator(CalibrationOptions options, std::vector<std::string> tensors);

  // 1 (MinMax) or 2 (histograms: range, then bins). Feed every sample once
  // per pass, in the same order.
  int passes() const;
  void begin_pass(int pass);
  // One sample's values of `tensor` (float32, any shape). NaN is ignored, as
  // numpy's nanmin/nanmax and histogram do.
  void observe(const std::string& tensor, const float* values, size_t count);
  // Ranges of every observed tensor. Throws Error if nothing was observed.
  std::map<std::string, TensorRange> compute() const;

  const std::vector<std::string>& tensors() const { return tensors_; }

 private:
  struct State {
    bool seen = false;
    float lo = 0, hi = 0;          // min/max of the values
    float abs_lo = 0, abs_hi = 0;  // min/max of |values|
    std::vector<float> edges;      // numpy.histogram bin edges (pass 2)
    std::vector<int64_t> counts;
  };
  void start_histogram(State& s) const;

  CalibrationOptions opt_;
  bool symmetric_ = false;
  std::vector<std::string> tensors_;
  std::map<std::string, State> state_;
  int pass_ = 0;
};

// ---- The pieces, exposed for tests (mirror numpy / calibrate.py) ----

// numpy.linspace(first, last, bins + 1) in float32: i * step + first, the
// last edge exactly `last` (first == last widens to +-0.5 as np.histogram does).
std::vector<float> histogram_edges(float first, float last, size_t bins);
// np.histogram's bin of x for uniform `edges` (x inside [edges.front(), edges.back()]).
size_t histogram_bin(const std::vector<float>& edges, float x);
// calibrate.py get_entropy_threshold: the (lo, hi) edges of least KL divergence.
TensorRange entropy_threshold(const std::vector<int64_t>& hist, const std::vector<float>& edges,
                              size_t num_quantized_bins);
// compute_percentile's thresholds (before clipping to min/max).
TensorRange percentile_threshold(const std::vector<int64_t>& hist, const std::vector<float>& edges,
                                 double percentile, bool symmetric);

}  // namespace medquant::onnx
