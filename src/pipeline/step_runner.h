// The step runner of `medquant pipeline`: each step declares its inputs
// (files or folders), the options that change its result, and its outputs;
// a stamp file per deployment (<root>/.medquant/steps.json) records, per
// step, the SHA-256 of inputs + options and the SHA-256 of every output:
//
//   {"version": 1, "steps": {"biomedclip/export": {"key": "<sha256>",
//       "outputs": {"models/biomedclip/biomedclip_vision.onnx": "<sha256>", ...}}}}
//
// A step is skipped when its key matches and every output still hashes to
// the recorded value; otherwise (or with force) it runs. Content hashes, not
// timestamps: a file is hashed at most once per run (cached by path, size and
// mtime for this run only; outputs just written are entered in that cache).
//
// A running step writes its outputs into a staging folder
// (<root>/.medquant/tmp/<group>-<step>/, emptied first); the runner renames each
// complete file into its final place and only then records the stamp, so a
// killed run leaves temporaries only under .medquant/, never a half file in
// the layout, and a re-run redoes exactly the unfinished steps.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace medquant::pipeline {

struct StepContext {
  std::string staging_dir;
  // Where the step writes the output whose final path is `final_path`.
  std::string staged(const std::string& final_path) const;
};

struct StepOutcome {
  std::string summary;  // what it did, for the log line ("3 nodes quantized")
  bool ok = true;       // false: the outputs are placed but no stamp is written (a FAIL)
};

struct Step {
  std::string name;                  // "export", unique within a deployment
  std::vector<std::string> inputs;   // files or folders (folders: every file, by relative path)
  std::string options;               // canonical text of the options that affect the outputs
  std::vector<std::string> outputs;  // final paths (absolute or relative to the working folder)
  std::function<StepOutcome(const StepContext&)> run;
};

struct StepResult {
  bool ran = false;  // false: skipped (up to date)
  bool ok = true;
  double seconds = 0;
};

class StepRunner {
 public:
  // root: the deployment folder (created if missing); group: the pipeline
  // ("biomedclip"), which names its steps in the shared stamp file and the
  // log lines; force: run every step.
  StepRunner(std::string root, std::string group, bool force);

  // Runs or skips `step`, with one log line either way. An Error thrown by the
  // step is rethrown as "step <name>: <message>".
  StepResult run(const Step& step);

  // SHA-256 of a file, or of a folder (relative paths + file hashes, sorted).
  std::string hash_path(const std::string& path);

  const std::string& root() const { return root_; }
  std::string stamp_path() const;
  std::vector<std::string> ran_steps() const { return ran_; }

 private:
  std::string step_key(const Step& step);
  std::string hash_file(const std::string& path);
  std::string relative(const std::string& path) const;

  std::string step_id(const Step& step) const { return group_ + "/" + step.name; }

  std::string root_;
  std::string group_;
  bool force_ = false;
  std::map<std::string, std::tuple<uint64_t, int64_t, std::string>> cache_;  // path -> size, mtime, hash
  std::vector<std::string> ran_;
};

}  // namespace medquant::pipeline
