// medquant run model.onnx --input name=file.npy ... -o outdir/: runs a model
// with medquant's executor; every graph output is written as outdir/<name>.npy.
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include "cli/command.h"
#include "cli/run_io.h"
#include "core/error.h"
#include "core/log.h"
#include "core/thread_pool.h"

namespace medquant::cli {

namespace {

struct TypeMap {
  core::DType dtype;
  int32_t elem;
};
const TypeMap kTypes[] = {
    {core::DType::F32, onnx::kFloat}, {core::DType::F16, onnx::kFloat16}, {core::DType::F64, onnx::kDouble},
    {core::DType::I8, onnx::kInt8},   {core::DType::U8, onnx::kUint8},    {core::DType::I16, onnx::kInt16},
    {core::DType::I32, onnx::kInt32}, {core::DType::I64, onnx::kInt64},   {core::DType::Bool, onnx::kBool},
    {core::DType::U16, onnx::kUint16}, {core::DType::U32, onnx::kUint32}, {core::DType::U64, onnx::kUint64},
};

std::string file_name_for(const std::string& output) {
  std::string s = output;
  for (char& c : s)
    if (c == '/' || c == '\\' || c == ':' || c == '\0') c = '_';
  if (s.empty() || s == "." || s == "..") s = "output_" + s;
  return s + ".npy";
}

}  // namespace

runtime::Tensor tensor_from_npy(const core::NpyArray& a, const std::string& where) {
  for (const auto& m : kTypes)
    if (m.dtype == a.dtype) {
      runtime::Tensor t(m.elem, a.shape);
      if (!a.data.empty()) std::memcpy(t.raw(), a.data.data(), a.data.size());
      return t;
    }
  fail("{}: .npy element type {} is not supported", where, core::dtype_name(a.dtype));
}

core::NpyArray npy_from_tensor(const runtime::Tensor& t, const std::string& where) {
  for (const auto& m : kTypes)
    if (m.elem == t.type()) {
      core::NpyArray a;
      a.dtype = m.dtype;
      a.shape = t.shape();
      const auto* p = static_cast<const uint8_t*>(t.raw());
      a.data.assign(p, p + t.bytes());
      return a;
    }
  fail("{}: {} tensors cannot be written as .npy", where, onnx::elem_type_name(t.type()));
}

std::vector<std::pair<std::string, runtime::Tensor>> read_inputs(const runtime::Session& s,
                                                                 const std::vector<std::string>& specs) {
  std::vector<std::pair<std::string, runtime::Tensor>> feeds;
  for (const auto& spec : specs) {
    std::string name, path;
    const size_t eq = spec.find('=');
    if (eq == std::string::npos) {
      if (s.inputs().size() != 1)
        fail("--input {}: the model has {} inputs; name each one (--input name=file.npy)", spec, s.inputs().size());
      name = s.inputs()[0].name;
      path = spec;
    } else {
      name = spec.substr(0, eq);
      path = spec.substr(eq + 1);
    }
    feeds.emplace_back(name, tensor_from_npy(core::read_npy(path), path));
  }
  return feeds;
}

std::vector<std::pair<std::string, runtime::Tensor>> random_inputs(const runtime::Session& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<std::pair<std::string, runtime::Tensor>> feeds;
  for (const auto& info : s.inputs()) {
    runtime::Shape shape;
    for (int64_t d : info.shape) shape.push_back(d < 0 ? 1 : d);
    runtime::Tensor t(info.type, shape);
    if (info.type == onnx::kFloat)
      for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = dist(rng);
    else
      std::memset(t.raw(), 0, t.bytes());
    feeds.emplace_back(info.name, std::move(t));
  }
  return feeds;
}

void add_run_command(CLI::App& root, Commands& commands) {
  struct Options {
    std::string model, out_dir;
    std::vector<std::string> inputs;
    bool no_fusion = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* app = root.add_subcommand("run", "Run an ONNX model with medquant's executor (.npy in, .npy out)");
  app->add_option("model", o->model, "The .onnx file")->required();
  app->add_option("-i,--input", o->inputs, "name=file.npy for each graph input (just file.npy for a single input)")->required();
  app->add_option("-o,--output-dir", o->out_dir, "Folder for <output name>.npy files")->required();
  app->add_flag("--no-fusion", o->no_fusion, "Run the nodes as written, without operator fusion (to compare with the fused run)");
  commands.push_back({app, [o] {
    namespace fs = std::filesystem;
    runtime::Session s = runtime::Session::load(o->model, {.threads = core::default_threads(), .fuse = !o->no_fusion});
    auto feeds = read_inputs(s, o->inputs);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<runtime::Tensor> out = s.run(feeds);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::error_code ec;
    fs::create_directories(o->out_dir, ec);
    if (ec) fail("{}: cannot create the folder: {}", o->out_dir, ec.message());
    for (size_t i = 0; i < out.size(); ++i) {
      const std::string& name = s.outputs()[i].name;
      const std::string path = (fs::path(o->out_dir) / file_name_for(name)).string();
      core::write_npy(path, npy_from_tensor(out[i], name));
      fmt::print("{}\t{}\t{}\n", name, runtime::shape_string(out[i].shape()), path);
    }
    const auto st = s.stats();
    core::log_info("load {:.1f} ms, run {:.2f} ms ({} steps, {} fused, kernels {})", st.load_ms, ms, st.nodes,
                   st.fusions, st.kernels);
    return 0;
  }});
}

}  // namespace medquant::cli
