// Hooks the plan's fusion pass uses to fold following nodes into a GEMM-based
// op: a per-column bias, an activation and (for integer GEMMs) the
// dequantizing Cast + Mul by the combined scale.
#pragma once

#include <vector>

#include "runtime/kernels/kernels.h"
#include "runtime/op.h"

namespace medquant::runtime {

class FusableLinear {
 public:
  virtual ~FusableLinear() = default;
  // True once prepare() found a constant 2-D weight (the fast packed path);
  // only then are epilogues fused.
  virtual bool packed() const = 0;
  virtual size_t output_columns() const = 0;
  // Where the output columns are: the last axis (GEMMs), or axis 1 (NCHW convolutions).
  virtual bool channels_first() const { return false; }
  virtual void set_bias(std::vector<float> bias) = 0;  // output_columns() values
  virtual void set_activation(kernels::Activation act) = 0;
  virtual bool has_bias() const = 0;
  virtual kernels::Activation activation() const = 0;
  // Integer GEMMs only: the output becomes float(acc) * scale, where scale is
  // an extra input (scalar or output_columns() values) appended after the
  // node's inputs; returns false if the op cannot.
  virtual bool set_dequantize() { return false; }
};

}  // namespace medquant::runtime
