// Numpy-style broadcast iteration for the elementwise reference ops: the
// output is walked in runs along its (collapsed) innermost dimension; each
// input advances by 0 or 1 element per step within a run.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "runtime/op.h"

namespace medquant::runtime {

template <size_t N>
struct BroadcastWalk {
  Shape dims;                                   // collapsed output dims
  std::array<std::vector<int64_t>, N> strides;  // per input, per collapsed dim

  BroadcastWalk(const Shape& out, const std::array<const Shape*, N>& in) {
    std::array<std::vector<int64_t>, N> full;
    for (size_t k = 0; k < N; ++k) full[k] = broadcast_strides(*in[k], out);
    // Drop size-1 dims, then merge neighbours that are contiguous for every input.
    for (size_t d = 0; d < out.size(); ++d) {
      if (out[d] == 1) continue;
      bool merge = !dims.empty();
      for (size_t k = 0; k < N && merge; ++k)
        merge = strides[k].back() == full[k][d] * out[d];
      if (merge) {
        dims.back() *= out[d];
        for (size_t k = 0; k < N; ++k) strides[k].back() = full[k][d];
      } else {
        dims.push_back(out[d]);
        for (size_t k = 0; k < N; ++k) strides[k].push_back(full[k][d]);
      }
    }
    if (dims.empty()) {
      dims.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
  }

  int64_t outer() const {
    int64_t o = 1;
    for (size_t d = 0; d + 1 < dims.size(); ++d) o *= dims[d];
    return o;
  }
  int64_t run_length() const { return dims.back(); }

  // fn(out_offset, std::array<int64_t, N> in_offsets, len, std::array<int64_t, N> steps)
  // for the runs [o_begin, o_end) of outer().
  template <typename Fn>
  void for_each_run(int64_t o_begin, int64_t o_end, Fn&& fn) const {
    for (int64_t d : dims)
      if (d == 0) return;
    const size_t r = dims.size();
    const int64_t len = dims[r - 1];
    std::array<int64_t, N> steps;
    for (size_t k = 0; k < N; ++k) steps[k] = strides[k][r - 1];
    std::vector<int64_t> idx(r, 0);
    std::array<int64_t, N> off{};
    int64_t rem = o_begin;
    for (size_t d = r - 1; d-- > 0;) {
      idx[d] = rem % dims[d];
      rem /= dims[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx[d] * strides[k][d];
    }
    for (int64_t o = o_begin; o < o_end; ++o) {
      fn(o * len, off, len, steps);
      for (size_t d = r - 1; d-- > 0;) {
        ++idx[d];
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
        if (idx[d] < dims[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * dims[d];
        idx[d] = 0;
      }
    }
  }
  template <typename Fn>
  void for_each_run(Fn&& fn) const { for_each_run(0, outer(), fn); }
};

}  // namespace medquant::runtime
