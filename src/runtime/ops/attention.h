// The fused attention operator the fusion pass substitutes for
//   Transpose(q, [0,2,1,3]) x Transpose(k, [0,2,3,1]) -> Mul or Div by a scalar
//   [-> Add(mask)] -> Softmax(last axis) -> x Transpose(v, [0,2,1,3]) -> Transpose([0,2,1,3]).
// Inputs q [B,T,H,D], k [B,Tk,H,D], v [B,Tk,H,Dv], optional additive mask
// [1 or B,1,1,Tk]; output [B,T,H,Dv].
#pragma once

#include <memory>

#include "runtime/op.h"

namespace medquant::runtime {

// scores * scale, or scores / scale when `divide` (as the model wrote it).
std::unique_ptr<Op> make_attention_op(float scale, bool divide);

}  // namespace medquant::runtime
