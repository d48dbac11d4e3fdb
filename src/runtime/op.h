// Operators of the executor. An Op is built once from a graph node at load
// (attributes parsed and checked there: anything unsupported fails naming the
// node), then asked for its output types and shapes (`infer`, at plan time
// with the constant inputs known, and again at run time for nodes whose
// shapes depend on values only known then), optionally `prepare`d (weights
// packed once their values are known) and `run` on tensors whose outputs the
// executor has already allocated with the inferred shapes.
//
// Every op family lives in ops/<family>.cpp as a plain reference
// implementation; the fast paths call kernels/ (chosen by CPU features).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "onnx/graph.h"
#include "runtime/parallel.h"
#include "runtime/tensor.h"

namespace medquant::runtime {

struct TensorDesc {
  int32_t type = onnx::kUndefined;
  Shape shape;
};

// What an op sees of its inputs while shapes are being worked out.
class InferContext {
 public:
  InferContext(std::string_view where, std::span<const TensorDesc* const> descs,
               std::span<const Tensor* const> values)
      : where_(where), descs_(descs), values_(values) {}
  size_t count() const { return descs_.size(); }
  bool has(size_t i) const { return i < descs_.size() && descs_[i] != nullptr; }
  int32_t type(size_t i) const { return desc(i).type; }
  const Shape& shape(size_t i) const { return desc(i).shape; }
  size_t rank(size_t i) const { return desc(i).shape.size(); }
  // The input's elements when known (constants at plan time; everything at run time).
  const Tensor* value(size_t i) const { return i < values_.size() ? values_[i] : nullptr; }
  const TensorDesc& desc(size_t i) const;
  std::string_view where() const { return where_; }

 private:
  std::string_view where_;
  std::span<const TensorDesc* const> descs_;
  std::span<const Tensor* const> values_;
};

class Op {
 public:
  virtual ~Op() = default;
  // Fills `out` (sized to the node's output count; an unused optional output
  // may be left undefined). Returns false when an output shape depends on an
  // input value that is not known yet. Fails (Error) on inputs the op cannot
  // take: wrong types, ranks, mismatched shapes.
  virtual bool infer(const InferContext& ctx, std::vector<TensorDesc>& out) = 0;
  // Once per plan, after infer, with the constant inputs known.
  virtual void prepare(const InferContext& ctx) {}
  // in[i] == nullptr for an absent optional input; out[i] is allocated with
  // the inferred shape (nullptr for an output nobody reads).
  virtual void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, Parallel& pool) = 0;
  // Output 0 is input 0's bytes under a new shape (Reshape, Squeeze, ...):
  // the executor makes it a view and run() is not called.
  virtual bool is_view() const { return false; }

  std::string where;  // "node Softmax 'name'" for messages
};

// Reads a node's attributes and remembers which were read: attributes the op
// did not ask for are reported at load as unsupported.
class Attributes {
 public:
  explicit Attributes(const onnx::Node& node, std::string where) : node_(node), where_(std::move(where)) {}
  bool has(std::string_view name) const { return node_.attribute(name) != nullptr; }
  int64_t i(std::string_view name, int64_t fallback);
  float f(std::string_view name, float fallback);
  std::string s(std::string_view name, std::string fallback);
  std::vector<int64_t> ints(std::string_view name, std::vector<int64_t> fallback = {});
  std::vector<float> floats(std::string_view name);
  const ::onnx::TensorProto* tensor(std::string_view name);
  int64_t required_i(std::string_view name);
  // Marks an attribute as understood without reading it.
  void ignore(std::string_view name) { used_.insert(std::string(name)); }
  // Fails naming the first attribute nobody read.
  void finish() const;
  const std::string& where() const { return where_; }

 private:
  const ::onnx::AttributeProto* get(std::string_view name, ::onnx::AttributeProto::AttributeType type);
  const onnx::Node& node_;
  std::string where_;
  std::set<std::string> used_;
};

struct OpArgs {
  const onnx::Node& node;
  int64_t opset;          // version of the node's domain in the model
  Attributes& attrs;
  const std::string& where;
};

using OpFactory = std::function<std::unique_ptr<Op>(OpArgs&)>;

class OpRegistry {
 public:
  static const OpRegistry& instance();
  // `since`..`until` (inclusive): the opset versions whose semantics the factory implements.
  void add(std::string domain, std::string op_type, int64_t since, int64_t until, OpFactory factory);
  // Builds the op for `node`; fails naming the node when unsupported.
  std::unique_ptr<Op> create(const onnx::Node& node, int64_t opset, const std::string& where) const;
  bool supports(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> op_names() const;

 private:
  struct Entry {
    int64_t since, until;
    OpFactory factory;
  };
  std::map<std::string, std::vector<Entry>> entries_;
};

// Registration, one per op family (ops/*.cpp).
void register_elementwise_ops(OpRegistry& r);
void register_reduce_ops(OpRegistry& r);
void register_matmul_ops(OpRegistry& r);
void register_conv_ops(OpRegistry& r);
void register_shape_ops(OpRegistry& r);
void register_quant_ops(OpRegistry& r);
void register_normalization_ops(OpRegistry& r);
void register_contrib_ops(OpRegistry& r);

// ---- helpers shared by op implementations ----

// Normalises a possibly negative axis for `rank`; fails naming `where`.
int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view where);
// Numpy broadcasting of two shapes; fails naming `where` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view where);
// Row-major strides of `shape`, and the strides of an input of shape `in`
// broadcast to `out` (0 along broadcast dims), aligned to out's rank.
std::vector<int64_t> strides_of(const Shape& shape);
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

}  // namespace medquant::runtime
