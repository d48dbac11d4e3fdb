#include "onnx/graph.h"

#include <fmt/format.h>

#include <functional>
#include <queue>
#include <unordered_set>

#include "core/error.h"

namespace medquant::onnx {

const ::onnx::AttributeProto* Node::attribute(std::string_view attr_name) const {
  for (const auto& a : attributes)
    if (a.name() == attr_name) return &a;
  return nullptr;
}

int64_t Node::attribute_int(std::string_view attr_name, int64_t fallback) const {
  const auto* a = attribute(attr_name);
  return a ? a->i() : fallback;
}

float Node::attribute_float(std::string_view attr_name, float fallback) const {
  const auto* a = attribute(attr_name);
  return a ? a->f() : fallback;
}

void Node::set_attribute_int(std::string_view attr_name, int64_t value) {
  for (auto& a : attributes)
    if (a.name() == attr_name) {
      a.set_i(value);
      return;
    }
  ::onnx::AttributeProto a;
  a.set_name(std::string(attr_name));
  a.set_type(::onnx::AttributeProto::INT);
  a.set_i(value);
  attributes.push_back(std::move(a));
}

bool Node::has_subgraph() const {
  for (const auto& a : attributes)
    if (a.type() == ::onnx::AttributeProto::GRAPH || a.type() == ::onnx::AttributeProto::GRAPHS)
      return true;
  return false;
}

Node make_node(std::string op, std::vector<std::string> inputs, std::vector<std::string> outputs,
               std::string name) {
  Node n;
  n.op_type = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.name = std::move(name);
  return n;
}

std::string Node::describe(size_t index) const {
  if (!name.empty()) return fmt::format("{} '{}'", op_type, name);
  return fmt::format("{} #{}", op_type, index);
}

const Tensor* Graph::find_initializer(std::string_view tensor_name) const {
  auto it = initializer_index_.find(std::string(tensor_name));
  return it == initializer_index_.end() ? nullptr : &initializers_[it->second];
}

Tensor* Graph::find_initializer(std::string_view tensor_name) {
  auto it = initializer_index_.find(std::string(tensor_name));
  return it == initializer_index_.end() ? nullptr : &initializers_[it->second];
}

Tensor& Graph::add_initializer(Tensor tensor) {
  auto it = initializer_index_.find(tensor.name);
  if (it != initializer_index_.end()) {
    initializers_[it->second] = std::move(tensor);
    return initializers_[it->second];
  }
  initializer_index_.emplace(tensor.name, initializers_.size());
  initializers_.push_back(std::move(tensor));
  return initializers_.back();
}

bool Graph::remove_initializer(std::string_view tensor_name) {
  auto it = initializer_index_.find(std::string(tensor_name));
  if (it == initializer_index_.end()) return false;
  initializers_.erase(initializers_.begin() + static_cast<ptrdiff_t>(it->second));
  reindex_initializers();
  return true;
}

void Graph::reindex_initializers() {
  initializer_index_.clear();
  for (size_t i = 0; i < initializers_.size(); ++i)
    initializer_index_[initializers_[i].name] = i;  // a later duplicate wins, as in ONNX Runtime
}

const ::onnx::ValueInfoProto* Graph::find_value_info(std::string_view value_name) const {
  // Graph inputs and outputs win over value_info, as in ORT's quantizer.
  for (const auto* list : {&inputs, &outputs, &value_info})
    for (const auto& v : *list)
      if (v.name() == value_name) return &v;
  return nullptr;
}

int32_t Graph::elem_type(std::string_view value_name) const {
  if (const Tensor* t = find_initializer(value_name)) return t->type;
  const auto* vi = find_value_info(value_name);
  if (vi && vi->type().has_tensor_type()) return vi->type().tensor_type().elem_type();
  return kUndefined;
}

bool Graph::is_graph_output(std::string_view value_name) const {
  for (const auto& v : outputs)
    if (v.name() == value_name) return true;
  return false;
}

bool Graph::is_graph_input(std::string_view value_name) const {
  for (const auto& v : inputs)
    if (v.name() == value_name) return true;
  return false;
}

std::unordered_map<std::string, size_t> Graph::producers() const {
  std::unordered_map<std::string, size_t> out;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& o : nodes[i].outputs)
      if (!o.empty()) out[o] = i;
  return out;
}

namespace {

// Values a subgraph reads from enclosing scopes (names it uses but does not define).
void outer_scope_reads(const ::onnx::GraphProto& g, std::unordered_set<std::string>& out) {
  std::unordered_set<std::string> defined;
  for (const auto& v : g.input()) defined.insert(v.name());
  for (const auto& t : g.initializer()) defined.insert(t.name());
  for (const auto& n : g.node())
    for (const auto& o : n.output()) defined.insert(o);
  std::unordered_set<std::string> inner;
  for (const auto& n : g.node()) {
    for (const auto& i : n.input())
      if (!i.empty() && !defined.count(i)) out.insert(i);
    for (const auto& a : n.attribute()) {
      inner.clear();
      if (a.has_g()) outer_scope_reads(a.g(), inner);
      for (const auto& sg : a.graphs()) outer_scope_reads(sg, inner);
      for (const auto& name : inner)
        if (!defined.count(name)) out.insert(name);
    }
  }
  for (const auto& o : g.output())
    if (!defined.count(o.name())) out.insert(o.name());
}

std::vector<std::string> node_reads(const Node& n) {
  std::vector<std::string> reads;
  for (const auto& i : n.inputs)
    if (!i.empty()) reads.push_back(i);
  if (n.has_subgraph()) {
    std::unordered_set<std::string> outer;
    for (const auto& a : n.attributes) {
      if (a.has_g()) outer_scope_reads(a.g(), outer);
      for (const auto& sg : a.graphs()) outer_scope_reads(sg, outer);
    }
    reads.insert(reads.end(), outer.begin(), outer.end());
  }
  return reads;
}

}  // namespace

std::unordered_map<std::string, std::vector<size_t>> Graph::consumers() const {
  std::unordered_map<std::string, std::vector<size_t>> out;
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& name : node_reads(nodes[i])) {
      auto& list = out[name];
      if (list.empty() || list.back() != i) list.push_back(i);
    }
  return out;
}

std::vector<size_t> Graph::topological_order() const {
  const auto producer = producers();
  std::vector<size_t> pending(nodes.size(), 0);
  std::vector<std::vector<size_t>> users(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::unordered_set<size_t> deps;
    for (const auto& name : node_reads(nodes[i])) {
      auto it = producer.find(name);
      if (it != producer.end() && it->second != i) deps.insert(it->second);
    }
    pending[i] = deps.size();
    for (size_t d : deps) users[d].push_back(i);
  }
  // Min-heap on the index keeps file order wherever the dependencies allow.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<size_t> order;
  order.reserve(nodes.size());
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    order.push_back(i);
    for (size_t u : users[i])
      if (--pending[u] == 0) ready.push(u);
  }
  if (order.size() != nodes.size()) {
    for (size_t i = 0; i < nodes.size(); ++i)
      if (pending[i] != 0)
        fail("graph '{}': node {} is part of a cycle", name, nodes[i].describe(i));
  }
  return order;
}

void Graph::sort_topologically() {
  auto order = topological_order();
  std::vector<Node> sorted;
  sorted.reserve(nodes.size());
  for (size_t i : order) sorted.push_back(std::move(nodes[i]));
  nodes = std::move(sorted);
}

namespace {
void collect_names(const ::onnx::GraphProto& g, std::unordered_map<std::string, int>& out) {
  for (const auto& t : g.initializer()) out[t.name()] = 1;
  for (const auto* list : {&g.input(), &g.output(), &g.value_info()})
    for (const auto& v : *list) out[v.name()] = 1;
  for (const auto& n : g.node()) {
    for (const auto& i : n.input()) out[i] = 1;
    for (const auto& o : n.output()) out[o] = 1;
    for (const auto& a : n.attribute()) {
      if (a.has_g()) collect_names(a.g(), out);
      for (const auto& sg : a.graphs()) collect_names(sg, out);
    }
  }
}
}  // namespace

std::unordered_map<std::string, int> Graph::all_names() const {
  std::unordered_map<std::string, int> out;
  for (const auto& t : initializers_) out[t.name] = 1;
  for (const auto* list : {&inputs, &outputs, &value_info})
    for (const auto& v : *list) out[v.name()] = 1;
  for (const auto& n : nodes) {
    for (const auto& i : n.inputs) out[i] = 1;
    for (const auto& o : n.outputs) out[o] = 1;
    for (const auto& a : n.attributes) {
      if (a.has_g()) collect_names(a.g(), out);
      for (const auto& sg : a.graphs()) collect_names(sg, out);
    }
  }
  return out;
}

int64_t Model::opset(std::string_view domain) const {
  const bool onnx_domain = domain.empty() || domain == "ai.onnx";
  for (const auto& o : header.opset_import()) {
    const bool match = onnx_domain ? (o.domain().empty() || o.domain() == "ai.onnx")
                                   : o.domain() == domain;
    if (match) return o.version();
  }
  return 0;
}

void Model::set_opset(std::string_view domain, int64_t version) {
  const bool onnx_domain = domain.empty() || domain == "ai.onnx";
  for (auto& o : *header.mutable_opset_import()) {
    const bool match = onnx_domain ? (o.domain().empty() || o.domain() == "ai.onnx")
                                   : o.domain() == domain;
    if (match) {
      o.set_version(version);
      return;
    }
  }
  auto* o = header.add_opset_import();
  o->set_domain(std::string(domain));
  o->set_version(version);
}

std::string Model::metadata(std::string_view key) const {
  for (const auto& p : header.metadata_props())
    if (p.key() == key) return p.value();
  return {};
}

void Model::set_metadata(std::string_view key, std::string_view value) {
  for (auto& p : *header.mutable_metadata_props())
    if (p.key() == key) {
      p.set_value(std::string(value));
      return;
    }
  auto* p = header.add_metadata_props();
  p->set_key(std::string(key));
  p->set_value(std::string(value));
}

}  // namespace medquant::onnx
