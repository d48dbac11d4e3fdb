// Graph clean-ups that run before quantization (the part of onnxruntime's
// quant_pre_process that changes quantization decisions): constants become
// initializers, so a MatMul whose B is a Constant or a transposed weight
// counts as "constant B"; Identity/Dropout pass-throughs and dead nodes go.
#pragma once

#include <cstddef>

#include "onnx/graph.h"

namespace medquant::onnx {

struct PassStats {
  size_t constants_folded = 0;
  size_t nodes_removed = 0;
  size_t initializers_removed = 0;
};

// Constant nodes -> initializers; Transpose, Cast (float<->float), Reshape,
// Squeeze, Unsqueeze and Identity of initializers -> new initializers.
PassStats fold_constants(Graph& graph);

// Identity and inference-mode Dropout (single output used) are bypassed
// (not in graphs with subgraphs, which may read them by name):
// their consumers read the input directly. Graph outputs are kept by name.
PassStats remove_pass_through(Graph& graph);

// Nodes none of whose outputs are used (by a node, a subgraph or the graph
// outputs), repeatedly; then initializers nothing reads.
PassStats remove_dead_nodes(Graph& graph);

// All of the above, until nothing changes.
PassStats simplify(Graph& graph);

}  // namespace medquant::onnx
