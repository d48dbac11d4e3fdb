// .npy <-> runtime tensors and random feeds, shared by `medquant run` and `medquant bench`.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/npy.h"
#include "runtime/session.h"

namespace medquant::cli {

runtime::Tensor tensor_from_npy(const core::NpyArray& a, const std::string& where);
core::NpyArray npy_from_tensor(const runtime::Tensor& t, const std::string& where);
// "name=file.npy" (or "file.npy" when the model has one input) -> named tensors.
std::vector<std::pair<std::string, runtime::Tensor>> read_inputs(const runtime::Session& s,
                                                                 const std::vector<std::string>& specs);
// Random inputs for the declared shapes (symbolic dims = 1): floats ~ U(-1, 1), integers 0.
std::vector<std::pair<std::string, runtime::Tensor>> random_inputs(const runtime::Session& s, unsigned seed);

}  // namespace medquant::cli
