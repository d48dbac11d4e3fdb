#include "onnx/model_io.h"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <climits>
#include <filesystem>
#include <map>
#include <memory>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/mapped_file.h"

namespace medquant::onnx {
namespace fs = std::filesystem;

namespace {

constexpr size_t kPlaceholderLimit = 64 << 10;
// Protobuf refuses messages of 2 GiB or more; keep a margin for the graph.
constexpr uint64_t kInlineLimit = (uint64_t{2} << 30) - (uint64_t{64} << 20);
constexpr uint64_t kExternalAlign = 64;

Node node_from_proto(::onnx::NodeProto& p) {
  Node n;
  n.name = std::move(*p.mutable_name());
  n.op_type = std::move(*p.mutable_op_type());
  n.domain = std::move(*p.mutable_domain());
  n.doc_string = std::move(*p.mutable_doc_string());
  n.inputs.reserve(static_cast<size_t>(p.input_size()));
  for (auto& s : *p.mutable_input()) n.inputs.push_back(std::move(s));
  for (auto& s : *p.mutable_output()) n.outputs.push_back(std::move(s));
  n.attributes.reserve(static_cast<size_t>(p.attribute_size()));
  for (auto& a : *p.mutable_attribute()) n.attributes.push_back(std::move(a));
  return n;
}

void node_to_proto(const Node& n, ::onnx::NodeProto& p) {
  if (!n.name.empty()) p.set_name(n.name);
  p.set_op_type(n.op_type);
  if (!n.domain.empty()) p.set_domain(n.domain);
  if (!n.doc_string.empty()) p.set_doc_string(n.doc_string);
  for (const auto& s : n.inputs) p.add_input(s);
  for (const auto& s : n.outputs) p.add_output(s);
  for (const auto& a : n.attributes) *p.add_attribute() = a;
}

bool subgraphs_use_external_data(const ::onnx::GraphProto& g) {
  for (const auto& t : g.initializer())
    if (t.data_location() == ::onnx::TensorProto::EXTERNAL) return true;
  for (const auto& n : g.node())
    for (const auto& a : n.attribute()) {
      if (a.has_g() && subgraphs_use_external_data(a.g())) return true;
      for (const auto& sg : a.graphs())
        if (subgraphs_use_external_data(sg)) return true;
    }
  return false;
}


// ---- protobuf wire format, just enough to keep tensor bytes out of the parser ----
//
// A message is a run of fields: a varint tag (field_number << 3 | wire_type),
// then a varint (type 0), 8 bytes (1), a varint length + bytes (2) or 4 bytes
// (5). Loading walks ModelProto.graph (7) -> GraphProto.initializer (5) ->
// TensorProto.raw_data (9) and hands protobuf everything but raw_data, which
// stays a view into the mapped file. Saving writes the same layout back.

bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) return false;
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

struct WireField {
  uint32_t number;
  const uint8_t* begin;  // the tag
  const uint8_t* value;  // payload (after the length for type 2)
  size_t length;         // payload bytes (type 2 only)
  const uint8_t* end;
};

// Calls fn(field) for each field of the message in [p, end); false if malformed.
template <typename Fn>
bool walk_fields(const uint8_t* p, const uint8_t* end, Fn&& fn) {
  while (p < end) {
    WireField f{};
    f.begin = p;
    uint64_t tag;
    if (!read_varint(p, end, tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return false;
    f.number = static_cast<uint32_t>(tag >> 3);
    uint64_t v;
    switch (tag & 7) {
      case 0:
        if (!read_varint(p, end, v)) return false;
        break;
      case 1:
        if (end - p < 8) return false;
        p += 8;
        break;
      case 2:
        if (!read_varint(p, end, v) || v > static_cast<uint64_t>(end - p)) return false;
        f.value = p;
        f.length = static_cast<size_t>(v);
        p += v;
        break;
      case 5:
        if (end - p < 4) return false;
        p += 4;
        break;
      default: return false;  // groups (3, 4) do not occur in ONNX
    }
    f.end = p;
    fn(f);
  }
  return true;
}

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

constexpr uint32_t kModelGraph = 7, kGraphInitializer = 5, kTensorRawData = 9;

// Maps each external data file once, shared by the tensors that live in it.
class ExternalFiles {
 public:
  ExternalFiles(std::string model_path, fs::path dir)
      : model_path_(std::move(model_path)), dir_(std::move(dir)) {}

  void resolve(::onnx::TensorProto& proto, Tensor& t) {
    std::string location;
    uint64_t offset = 0;
    bool has_length = false;
    uint64_t length = 0;
    for (const auto& e : proto.external_data()) {
      if (e.key() == "location") location = e.value();
      else if (e.key() == "offset") offset = parse_number(e.value(), t.name, "offset");
      else if (e.key() == "length") {
        length = parse_number(e.value(), t.name, "length");
        has_length = true;
      }
    }
    if (location.empty())
      fail("{}: initializer '{}' is external but names no location", model_path_, t.name);
    fs::path rel(location);
    if (rel.is_absolute() || std::any_of(rel.begin(), rel.end(), [](const fs::path& p) {
          return p == "..";
        }))
      fail("{}: initializer '{}': external data location '{}' is outside the model's folder",
           model_path_, t.name, location);
    const std::string full = (dir_ / rel).string();
    auto& file = files_[full];
    if (!file) {
      std::error_code ec;
      if (!fs::exists(full, ec))
        fail("{}: initializer '{}': external data file {} is missing", model_path_, t.name, full);
      file = std::make_shared<core::MappedFile>(full);
    }
    const uint64_t expected = checked_byte_size(t, elem_size(t.type), model_path_);
    if (!has_length) length = expected;
    if (length != expected)
      fail("{}: initializer '{}': external length {} bytes, its shape needs {}", model_path_,
           t.name, length, expected);
    auto bytes = file->view(offset, length, fmt::format("initializer '{}'", t.name));
    t.set_view(file, bytes.data(), bytes.size(), true);
  }

 private:
  uint64_t parse_number(const std::string& s, const std::string& tensor, const char* what) {
    uint64_t v = 0;
    if (s.empty()) fail("{}: initializer '{}': empty external {}", model_path_, tensor, what);
    for (char c : s) {
      if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10)
        fail("{}: initializer '{}': bad external {} '{}'", model_path_, tensor, what, s);
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
  }

  std::string model_path_;
  fs::path dir_;
  std::map<std::string, std::shared_ptr<core::MappedFile>> files_;
};

}  // namespace

Model load_model(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail("{}: no such file", path);
  auto file = std::make_shared<core::MappedFile>(path);
  if (file->size() == 0) fail("{}: empty file, not an ONNX model", path);
  if (file->size() >= INT_MAX)
    fail("{}: {} bytes is past protobuf's 2 GiB limit; a model this big must keep its "
         "weights in external data files",
         path, file->size());
  auto corrupt = [&]() { fail("{}: not an ONNX model (truncated or not a protobuf ModelProto)", path); };
  // Split the file: tensor bytes stay in the mapping, the rest goes to protobuf.
  std::string model_rest, graph_rest;
  struct RawInit {
    std::string meta;  // the TensorProto without raw_data
    const uint8_t* raw = nullptr;
    size_t raw_size = 0;
  };
  std::vector<RawInit> raw_inits;
  bool saw_graph = false, inner_ok = true;
  const bool outer_ok = walk_fields(file->data(), file->data() + file->size(), [&](const WireField& f) {
    if (f.number != kModelGraph || !f.value) {
      model_rest.append(reinterpret_cast<const char*>(f.begin), static_cast<size_t>(f.end - f.begin));
      return;
    }
    saw_graph = true;
    inner_ok &= walk_fields(f.value, f.value + f.length, [&](const WireField& g) {
      if (g.number != kGraphInitializer || !g.value) {
        graph_rest.append(reinterpret_cast<const char*>(g.begin), static_cast<size_t>(g.end - g.begin));
        return;
      }
      RawInit r;
      inner_ok &= walk_fields(g.value, g.value + g.length, [&](const WireField& t) {
        if (t.number == kTensorRawData && t.value) {
          r.raw = t.value;
          r.raw_size = t.length;
        } else {
          r.meta.append(reinterpret_cast<const char*>(t.begin), static_cast<size_t>(t.end - t.begin));
        }
      });
      raw_inits.push_back(std::move(r));
    });
  });
  if (!outer_ok || !inner_ok) corrupt();
  ::onnx::ModelProto proto;
  ::onnx::GraphProto graph;
  if (!proto.ParseFromString(model_rest) || !graph.ParseFromString(graph_rest)) corrupt();
  if (!saw_graph || proto.ir_version() <= 0)
    fail("{}: not an ONNX model (no ir_version or graph)", path);
  if (proto.ir_version() >= 3 && proto.opset_import_size() == 0)
    fail("{}: not a valid ONNX model (no opset_import)", path);
  for (const auto& r : raw_inits) {
    auto* tp = graph.add_initializer();
    if (!tp->ParseFromString(r.meta)) corrupt();
  }

  Model model;
  model.path = path;
  model.header = std::move(proto);

  Graph& g = model.graph;
  g.name = graph.name();
  g.doc_string = graph.doc_string();
  for (auto& v : *graph.mutable_input()) g.inputs.push_back(std::move(v));
  for (auto& v : *graph.mutable_output()) g.outputs.push_back(std::move(v));
  for (auto& v : *graph.mutable_value_info()) g.value_info.push_back(std::move(v));
  g.nodes.reserve(static_cast<size_t>(graph.node_size()));
  for (auto& n : *graph.mutable_node()) {
    g.nodes.push_back(node_from_proto(n));
    for (const auto& a : g.nodes.back().attributes) {
      if ((a.has_g() && subgraphs_use_external_data(a.g())) ||
          std::any_of(a.graphs().begin(), a.graphs().end(), subgraphs_use_external_data))
        fail("{}: node {} has a subgraph with external data (not supported)", path,
             g.nodes.back().describe(g.nodes.size() - 1));
    }
  }
  ExternalFiles external(path, fs::path(path).parent_path());
  auto& inits = g.mutable_initializers();
  inits.reserve(static_cast<size_t>(graph.initializer_size()));
  for (auto& tp : *graph.mutable_initializer()) {
    if (tp.data_location() == ::onnx::TensorProto::EXTERNAL) {
      Tensor t;
      t.name = tp.name();
      t.type = tp.data_type();
      t.dims.assign(tp.dims().begin(), tp.dims().end());
      if (elem_size(t.type) == 0)
        fail("{}: initializer '{}': external {} data is not supported", path, t.name,
             elem_type_name(t.type));
      external.resolve(tp, t);
      inits.push_back(std::move(t));
    } else {
      const RawInit& r = raw_inits[inits.size()];
      if (r.raw) {
        // raw_data: checked against the shape, then viewed in place.
        Tensor t;
        t.name = tp.name();
        t.type = tp.data_type();
        t.dims.assign(tp.dims().begin(), tp.dims().end());
        t.doc_string = tp.doc_string();
        const uint64_t expected = checked_byte_size(t, elem_size(t.type), path);
        if (elem_size(t.type) == 0) {
          auto copy = std::make_shared<::onnx::TensorProto>(tp);
          copy->set_raw_data(r.raw, r.raw_size);
          t.set_opaque(std::move(copy));
        } else if (r.raw_size != expected) {
          fail("{}: initializer '{}' ({} {}) holds {} bytes, its shape needs {}", path, t.name,
               elem_type_name(t.type), fmt::join(t.dims, "x"), r.raw_size, expected);
        } else {
          t.set_view(file, r.raw, r.raw_size);
        }
        inits.push_back(std::move(t));
      } else {
        inits.push_back(tensor_from_proto(tp, path));
      }
    }
  }
  g.reindex_initializers();
  *g.extra.mutable_sparse_initializer() = std::move(*graph.mutable_sparse_initializer());
  *g.extra.mutable_quantization_annotation() = std::move(*graph.mutable_quantization_annotation());
  return model;
}

namespace {

void fill_graph(const Model& model, ::onnx::GraphProto& gp) {
  const Graph& g = model.graph;
  gp = g.extra;
  gp.set_name(g.name);
  if (!g.doc_string.empty()) gp.set_doc_string(g.doc_string);
  for (const auto& n : g.nodes) node_to_proto(n, *gp.add_node());
  for (const auto& v : g.inputs) *gp.add_input() = v;
  for (const auto& v : g.outputs) *gp.add_output() = v;
  for (const auto& v : g.value_info) *gp.add_value_info() = v;
}

}  // namespace

::onnx::ModelProto to_proto(const Model& model, bool placeholders) {
  ::onnx::ModelProto mp = model.header;
  auto* gp = mp.mutable_graph();
  fill_graph(model, *gp);
  for (const auto& t : model.graph.initializers()) {
    auto* tp = gp->add_initializer();
    if (placeholders && !t.opaque() && t.bytes().size() > kPlaceholderLimit) {
      tp->set_name(t.name);
      tp->set_data_type(t.type);
      for (int64_t d : t.dims) tp->add_dims(d);
      tp->set_raw_data(std::string(1, '\0'));
    } else {
      tensor_to_proto(t, *tp);
    }
  }
  return mp;
}

void save_model(const Model& model, const std::string& path, const SaveOptions& options) {
  uint64_t total = 0;
  for (const auto& t : model.graph.initializers()) total += t.bytes().size();
  bool external = options.external_data == SaveOptions::ExternalData::Always ||
                  (options.external_data == SaveOptions::ExternalData::Auto && total >= kInlineLimit);
  if (options.external_data == SaveOptions::ExternalData::Never && total >= kInlineLimit)
    fail("{}: {} of weights do not fit in one protobuf (2 GiB limit); use external data", path,
         core::human_bytes(total));

  // Everything but the initializers goes through protobuf; each initializer is
  // its TensorProto without raw_data, and the raw bytes are written straight
  // from the tensor (no copy of the weights into protobuf strings).
  ::onnx::ModelProto header = model.header;
  header.clear_graph();
  const std::string header_bytes = header.SerializeAsString();
  ::onnx::GraphProto gp;
  fill_graph(model, gp);
  const std::string graph_bytes = gp.SerializeAsString();

  std::unique_ptr<core::AtomicFile> data_file;
  const std::string location = fs::path(path).filename().string() + ".data";
  if (external) {
    fs::path data_path = fs::path(path).parent_path() / location;
    data_file = std::make_unique<core::AtomicFile>(data_path.string());
  }
  struct Record {
    std::string meta;
    std::span<const uint8_t> raw;  // appended as field 9 when not empty
    bool has_raw = false;
  };
  std::vector<Record> records;
  records.reserve(model.graph.initializers().size());
  uint64_t graph_size = graph_bytes.size();
  for (const auto& t : model.graph.initializers()) {
    Record r;
    ::onnx::TensorProto tp;
    const bool goes_external = external && !t.opaque() && t.bytes().size() >= options.threshold;
    if (t.opaque() || (t.storage == Tensor::Storage::Typed && !goes_external)) {
      tensor_to_proto(t, tp);
    } else {
      tp.set_name(t.name);
      tp.set_data_type(t.type);
      for (int64_t d : t.dims) tp.add_dims(d);
      if (!t.doc_string.empty()) tp.set_doc_string(t.doc_string);
      if (goes_external) {
        uint64_t pos = data_file->position();
        const uint64_t pad = (kExternalAlign - pos % kExternalAlign) % kExternalAlign;
        data_file->write_zeros(pad);
        pos += pad;
        data_file->write(t.bytes());
        tp.set_data_location(::onnx::TensorProto::EXTERNAL);
        auto add = [&](const char* k, std::string v) {
          auto* e = tp.add_external_data();
          e->set_key(k);
          e->set_value(std::move(v));
        };
        add("location", location);
        add("offset", std::to_string(pos));
        add("length", std::to_string(t.bytes().size()));
      } else {
        r.raw = t.bytes();
        r.has_raw = true;
      }
    }
    r.meta = tp.SerializeAsString();
    uint64_t size = r.meta.size();
    if (r.has_raw) size += 1 + varint_size(r.raw.size()) + r.raw.size();
    graph_size += 1 + varint_size(size) + size;
    records.push_back(std::move(r));
  }
  const uint64_t file_size = header_bytes.size() + 1 + varint_size(graph_size) + graph_size;
  if (file_size >= INT_MAX)
    fail("{}: the model is {} bytes, past protobuf's 2 GiB limit; use external data", path, file_size);

  core::AtomicFile out(path);
  std::string buf = header_bytes;
  buf.push_back(static_cast<char>(kModelGraph << 3 | 2));
  append_varint(buf, graph_size);
  buf += graph_bytes;
  out.write(buf);
  for (const auto& r : records) {
    buf.clear();
    uint64_t size = r.meta.size();
    if (r.has_raw) size += 1 + varint_size(r.raw.size()) + r.raw.size();
    buf.push_back(static_cast<char>(kGraphInitializer << 3 | 2));
    append_varint(buf, size);
    buf += r.meta;
    if (r.has_raw) {
      buf.push_back(static_cast<char>(kTensorRawData << 3 | 2));
      append_varint(buf, r.raw.size());
    }
    out.write(buf);
    if (r.has_raw) out.write(r.raw);
  }
  if (out.position() != file_size) fail("{}: wrote {} bytes, expected {} (a medquant bug)", path, out.position(), file_size);
  // The data file first: a model file never points at data that is not there.
  if (data_file) data_file->commit();
  out.commit();
}

void require_checkable_opsets(const Model& model) {
  const std::string where = model.path.empty() ? "model" : model.path;
  for (const auto& o : model.header.opset_import()) {
    const std::string& d = o.domain();
    if ((d.empty() || d == "ai.onnx") && o.version() > kMaxOnnxOpset)
      fail("{}: ai.onnx opset {} is newer than the ONNX library medquant checks models with "
           "(opsets up to {}); export the model with opset {} or lower",
           where, o.version(), kMaxOnnxOpset, kMaxOnnxOpset);
    if (d == "ai.onnx.ml" && o.version() > kMaxOnnxMlOpset)
      fail("{}: ai.onnx.ml opset {} is newer than supported (up to {})", where, o.version(),
           kMaxOnnxMlOpset);
  }
}

void check_model(const Model& model) {
  const std::string where = model.path.empty() ? "model" : model.path;
  require_checkable_opsets(model);
  for (const auto& t : model.graph.initializers()) {
    if (t.opaque()) continue;
    const uint64_t expected = static_cast<uint64_t>(t.element_count()) * elem_size(t.type);
    if (t.bytes().size() != expected)
      fail("{}: initializer '{}' holds {} bytes, its shape needs {}", where, t.name,
           t.bytes().size(), expected);
  }
  ::onnx::ModelProto mp = to_proto(model, true);
  // libonnx 1.12 knows IR version 8; newer IR versions only add types this
  // graph would have to use for the check to be wrong, so check as IR 8.
  if (mp.ir_version() > kMaxCheckerIrVersion) mp.set_ir_version(kMaxCheckerIrVersion);
  try {
    ::onnx::checker::check_model(mp);
  } catch (const std::exception& e) {
    fail("{}: ONNX checker: {}", where, e.what());
  }
}

void infer_shapes(Model& model) {
  const std::string where = model.path.empty() ? "model" : model.path;
  ::onnx::ModelProto mp = to_proto(model, true);
  try {
    ::onnx::shape_inference::InferShapes(mp, ::onnx::OpSchemaRegistry::Instance(),
                                          ::onnx::ShapeInferenceOptions(false, 0, false));
  } catch (const std::exception& e) {
    fail("{}: ONNX shape inference: {}", where, e.what());
  }
  auto& g = model.graph;
  g.value_info.assign(mp.graph().value_info().begin(), mp.graph().value_info().end());
  for (size_t i = 0; i < g.outputs.size() && i < static_cast<size_t>(mp.graph().output_size()); ++i)
    g.outputs[i] = mp.graph().output(static_cast<int>(i));
}

}  // namespace medquant::onnx
