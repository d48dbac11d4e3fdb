// The graph IR: an ONNX model in plain C++ containers that are easy to
// rewrite (insert, drop and rename nodes and initializers), with the analyses
// a pass needs (producers, consumers, topological order) computed on demand.
//
// What maps to what (onnx.proto):
//   ModelProto   -> Model: ir_version, opset imports, producer, metadata_props
//                   and anything else (functions, training info) kept in
//                   `header`, a ModelProto whose graph is left empty.
//   GraphProto   -> Graph: nodes in file order, initializers (Tensor), graph
//                   inputs/outputs/value_info as ValueInfoProto. Sparse
//                   initializers and quantization annotations are kept in
//                   `extra`, a GraphProto holding only those.
//   NodeProto    -> Node: attributes stay AttributeProto, so subgraphs of
//                   If/Loop/Scan travel untouched (passes do not look inside).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "onnx/tensor.h"

namespace medquant::onnx {

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" = ai.onnx
  std::vector<std::string> inputs;   // "" = optional input left out
  std::vector<std::string> outputs;
  std::vector<::onnx::AttributeProto> attributes;
  std::string doc_string;

  const ::onnx::AttributeProto* attribute(std::string_view attr_name) const;
  int64_t attribute_int(std::string_view attr_name, int64_t fallback) const;
  float attribute_float(std::string_view attr_name, float fallback) const;
  void set_attribute_int(std::string_view attr_name, int64_t value);
  bool has_subgraph() const;
  // "MatMul 'name'" (or "MatMul #index" when unnamed), for messages.
  std::string describe(size_t index) const;
};

// A node of the default domain, as the quantizers insert them.
Node make_node(std::string op, std::vector<std::string> inputs, std::vector<std::string> outputs,
               std::string name);

class Graph {
 public:
  std::string name;
  std::string doc_string;
  std::vector<Node> nodes;
  std::vector<::onnx::ValueInfoProto> inputs, outputs, value_info;
  ::onnx::GraphProto extra;  // sparse_initializer, quantization_annotation

  // Initializers keep their file order; lookups by name go through an index.
  const std::vector<Tensor>& initializers() const { return initializers_; }
  std::vector<Tensor>& mutable_initializers() { return initializers_; }
  const Tensor* find_initializer(std::string_view tensor_name) const;
  Tensor* find_initializer(std::string_view tensor_name);
  // Replaces an initializer of the same name, or appends.
  Tensor& add_initializer(Tensor tensor);
  bool remove_initializer(std::string_view tensor_name);
  void reindex_initializers();  // after editing mutable_initializers() directly

  // The ValueInfoProto of a graph input, output or value_info entry.
  const ::onnx::ValueInfoProto* find_value_info(std::string_view value_name) const;
  // Element type known for a value (initializer or value info), 0 if unknown.
  int32_t elem_type(std::string_view value_name) const;
  bool is_graph_output(std::string_view value_name) const;
  bool is_graph_input(std::string_view value_name) const;

  // value name -> index of the node that produces it.
  std::unordered_map<std::string, size_t> producers() const;
  // value name -> indices of the nodes that read it (once per node).
  std::unordered_map<std::string, std::vector<size_t>> consumers() const;
  // Node indices in an order where producers come first (stable: file order
  // where it is free); throws Error naming a node on a cycle or a missing value.
  std::vector<size_t> topological_order() const;
  void sort_topologically();

  // Every value name used anywhere (initializers, io, value_info, node
  // inputs/outputs, including inside subgraphs): for picking fresh names.
  std::unordered_map<std::string, int> all_names() const;

 private:
  std::vector<Tensor> initializers_;
  std::unordered_map<std::string, size_t> initializer_index_;
};

class Model {
 public:
  ::onnx::ModelProto header;  // graph field unused
  Graph graph;
  std::string path;  // where it was loaded from (for messages), may be empty

  // Version of an operator set ("" and "ai.onnx" are the same); 0 if absent.
  int64_t opset(std::string_view domain = "") const;
  void set_opset(std::string_view domain, int64_t version);
  std::string metadata(std::string_view key) const;
  void set_metadata(std::string_view key, std::string_view value);
};

}  // namespace medquant::onnx
