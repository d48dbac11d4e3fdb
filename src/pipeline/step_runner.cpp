#include "pipeline/step_runner.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"

namespace medquant::pipeline {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr int kStampVersion = 1;

Json read_stamp(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return Json::object();
  try {
    Json j = Json::parse(core::read_text_file(path));
    if (j.is_object() && j.value("version", 0) == kStampVersion && j.contains("steps") &&
        j["steps"].is_object())
      return j["steps"];
  } catch (const std::exception& e) {
    core::log_warning("{}: unreadable ({}); every step runs again", path, e.what());
  }
  return Json::object();
}

void write_stamp(const std::string& path, const Json& steps) {
  fs::create_directories(fs::path(path).parent_path());
  core::write_file_atomic(path, Json{{"version", kStampVersion}, {"steps", steps}}.dump(2) + "\n");
}

}  // namespace

std::string StepContext::staged(const std::string& final_path) const {
  return (fs::path(staging_dir) / fs::path(final_path).filename()).string();
}

StepRunner::StepRunner(std::string root, std::string group, bool force)
    : root_(std::move(root)), group_(std::move(group)), force_(force) {
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec) fail("{}: cannot create the folder: {}", root_, ec.message());
}

std::string StepRunner::stamp_path() const {
  return (fs::path(root_) / ".medquant" / "steps.json").string();
}

std::string StepRunner::relative(const std::string& path) const {
  std::error_code ec;
  const fs::path rel = fs::relative(path, root_, ec);
  if (ec || rel.empty() || *rel.begin() == "..") return path;
  return rel.generic_string();
}

std::string StepRunner::hash_file(const std::string& path) {
  const fs::path p(path);
  const uint64_t size = fs::file_size(p);
  const int64_t mtime = fs::last_write_time(p).time_since_epoch().count();
  const std::string key = fs::absolute(p).lexically_normal().string();
  auto it = cache_.find(key);
  if (it != cache_.end() && std::get<0>(it->second) == size && std::get<1>(it->second) == mtime)
    return std::get<2>(it->second);
  std::string hash = core::sha256_file(path);
  cache_[key] = {size, mtime, hash};
  return hash;
}

std::string StepRunner::hash_path(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return hash_file(path);
  if (!fs::is_directory(path, ec)) fail("{}: no such file or folder", path);
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) files.push_back(fs::relative(e.path(), path).generic_string());
  std::sort(files.begin(), files.end());
  core::Sha256 h;
  for (const auto& f : files) {
    h.update(f);
    h.update("\0", 1);
    h.update(hash_file((fs::path(path) / f).string()));
    h.update("\n");
  }
  return h.hex_digest();
}

std::string StepRunner::step_key(const Step& step) {
  core::Sha256 h;
  h.update("medquant " MEDQUANT_VERSION "\n");  // another release may write other bytes
  h.update(step_id(step));
  h.update("\n");
  h.update(step.options);
  h.update("\n");
  for (const auto& in : step.inputs) {
    std::error_code ec;
    if (!fs::exists(in, ec)) fail("{} step {}: input {} is missing", group_, step.name, in);
    h.update(hash_path(in));
    h.update("\n");
  }
  for (const auto& out : step.outputs) {  // where the outputs go is part of the step too
    h.update(relative(out));
    h.update("\n");
  }
  return h.hex_digest();
}

StepResult StepRunner::run(const Step& step) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const std::string key = step_key(step);
  Json steps = read_stamp(stamp_path());

  const std::string id = step_id(step);
  if (!force_ && steps.contains(id) && steps[id].value("key", "") == key) {
    const Json& recorded = steps[id]["outputs"];
    bool up_to_date = recorded.is_object() && recorded.size() == step.outputs.size();
    for (const auto& out : step.outputs) {
      if (!up_to_date) break;
      std::error_code ec;
      const std::string rel = relative(out);
      up_to_date = fs::is_regular_file(out, ec) && recorded.contains(rel) &&
                   recorded[rel].get<std::string>() == hash_file(out);
    }
    if (up_to_date) {
      core::log_info("{}: skip {} (up to date), {:.2f} s", group_, step.name, elapsed());
      return {false, true, elapsed()};
    }
  }

  StepContext ctx;
  ctx.staging_dir = (fs::path(root_) / ".medquant" / "tmp" / (group_ + "-" + step.name)).string();
  fs::remove_all(ctx.staging_dir);
  fs::create_directories(ctx.staging_dir);

  StepOutcome outcome;
  try {
    outcome = step.run(ctx);
  } catch (const std::exception& e) {
    fail("{} step {}: {}", group_, step.name, e.what());
  }

  // Each output is complete in the staging folder: rename it into place.
  Json outputs = Json::object();
  std::string written;
  for (const auto& out : step.outputs) {
    const std::string staged = ctx.staged(out);
    std::error_code ec;
    if (!fs::is_regular_file(staged, ec)) fail("{} step {}: did not write {}", group_, step.name, out);
    const fs::path parent = fs::path(out).parent_path();
    if (!parent.empty()) fs::create_directories(parent);
    fs::rename(staged, out);
    outputs[relative(out)] = hash_file(out);
    written += (written.empty() ? "" : ", ") + relative(out);
  }
  fs::remove_all(ctx.staging_dir);

  steps = read_stamp(stamp_path());
  if (outcome.ok)
    steps[id] = Json{{"key", key}, {"outputs", outputs}};
  else
    steps.erase(id);
  write_stamp(stamp_path(), steps);
  ran_.push_back(step.name);

  std::string line = group_ + ": " + step.name;
  if (!outcome.summary.empty()) line += ": " + outcome.summary;
  if (!written.empty()) line += " -> " + written;
  core::log_info("{}, {:.2f} s", line, elapsed());
  return {true, outcome.ok, elapsed()};
}

}  // namespace medquant::pipeline
