// The executor's inner workings (not the public API; see session.h).
//
// Load (build_graph): the ONNX graph becomes a list of nodes in topological
// order over integer value ids, each node with its Op already created (so an
// unsupported op or attribute fails here, naming the node). Names that no
// initializer, input or earlier node defines, duplicate producers and cycles
// are errors.
//
// Plan (make_plan), for one set of concrete input shapes:
//   1. shapes and types of every value, in order; a node whose inputs are all
//      known constants is run right away (constant folding) — Shape and Size
//      only need their input's shape, so shape arithmetic folds too; a node
//      whose output shape depends on a value only known at run time makes
//      it and everything downstream "dynamic" (allocated when run);
//   2. prepare(): weights of constant inputs are packed;
//   3. the first plan also fuses (fusion.cpp) and then plans again; until then
//      DequantizeLinear of a constant (QDQ weights) is not folded: fusion may
//      run the GEMM on the quantized weight, and folding would hold a float
//      copy of every weight (and the float GEMM's packing of it) at load;
//   4. a memory plan: each static intermediate gets an offset in one arena;
//      values whose lifetimes do not overlap share bytes (greedy by size);
//      view ops (Reshape, Squeeze, ...) alias their input and extend its life.
// Execute runs the steps; graph outputs are always fresh owned tensors.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "onnx/graph.h"
#include "runtime/op.h"

namespace medquant::runtime {

struct IoInfo {
  std::string name;
  int32_t type = 0;
  std::vector<int64_t> shape;           // -1 where the model leaves a dim symbolic or unknown
  std::vector<std::string> dim_names;   // symbolic names ("" when fixed or unnamed)
  bool has_shape = false;               // false: the model declares no shape at all
};

struct GraphNode {
  std::unique_ptr<Op> op;
  std::vector<int> in, out;  // value ids, -1 for an absent optional one
  std::string op_type, domain, where;
  const onnx::Node* source = nullptr;  // the model's node (attributes), owned by LoadedGraph::model
  bool removed = false;      // fused into another node
};

struct LoadedGraph {
  std::shared_ptr<const onnx::Model> model;  // keeps initializer bytes alive
  std::string source;                        // file name, for messages
  std::vector<std::string> names;            // value id -> name
  std::vector<GraphNode> nodes;              // topological order
  std::vector<int> inputs, outputs;
  std::vector<IoInfo> input_info, output_info;
  std::unordered_map<int, Tensor> initializers;
  bool fused = false;
  size_t fusions = 0;
};

LoadedGraph build_graph(std::shared_ptr<const onnx::Model> model);

enum class ValueKind { Unused, Input, Constant, Arena, Dynamic, Output, View };

struct PlannedValue {
  TensorDesc desc;
  bool known = false;  // desc known at plan time
  ValueKind kind = ValueKind::Unused;
  Tensor constant;     // kind == Constant
  size_t offset = 0;   // kind == Arena
  int producer = -1, last_use = -1;
};

struct PlanStep {
  int node = 0;
  bool dynamic = false;
  bool view = false;
  std::vector<int> release;  // dynamic values whose last use is this step
};

struct Plan {
  std::vector<Shape> input_shapes;
  std::vector<PlannedValue> values;
  std::vector<PlanStep> steps;
  size_t arena_bytes = 0;
  std::shared_ptr<uint8_t[]> arena;
  size_t folded = 0;
  bool deferred = false;  // constant DequantizeLinears left for the plan after fusion
};

// Input descs in graph input order.
Plan make_plan(LoadedGraph& g, const std::vector<TensorDesc>& inputs, Parallel& pool);
// Rewrites fusable patterns of g (using a plan's known shapes and constants); returns how many.
size_t fuse_graph(LoadedGraph& g, const Plan& plan);
std::vector<Tensor> execute(LoadedGraph& g, Plan& plan, const std::vector<const Tensor*>& inputs, Parallel& pool);

// Largest single tensor or arena the executor will allocate (half the RAM, at most 16 GiB).
size_t max_allocation_bytes();

}  // namespace medquant::runtime
