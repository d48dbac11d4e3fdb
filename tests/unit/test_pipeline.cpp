// The pipeline step runner: stamps skip up-to-date steps, any change of an
// input byte, an option, or an output redoes the step, --force redoes all,
// failures leave no file under a final name and no stamp.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "pipeline/pipelines.h"
#include "pipeline/step_runner.h"

namespace {

namespace fs = std::filesystem;
using medquant::pipeline::Step;
using medquant::pipeline::StepContext;
using medquant::pipeline::StepOutcome;
using medquant::pipeline::StepRunner;

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class StepRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "medquant-pipeline-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    input_ = dir_ / "in" / "a.txt";
    write(input_, "hello");
    write(dir_ / "in" / "folder" / "x.bin", "xx");
    output_ = (dir_ / "out" / "models" / "upper.txt").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Upper-cases a.txt into the output (+ the options text); counts its runs.
  Step upper_step(std::string options = "") {
    return {"upper", {input_.string(), (dir_ / "in" / "folder").string()}, options, {output_},
            [this, options](const StepContext& ctx) -> StepOutcome {
              ++runs_;
              std::string s = read(input_);
              for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
              medquant::core::write_file_atomic(ctx.staged(output_), s + options);
              return {"upper-cased"};
            }};
  }
  bool run(const Step& step, bool force = false) {
    StepRunner runner((dir_ / "out").string(), "test", force);
    return runner.run(step).ran;
  }

  fs::path dir_, input_;
  std::string output_;
  int runs_ = 0;
};

TEST_F(StepRunnerTest, SkipsWhenStampsMatch) {
  EXPECT_TRUE(run(upper_step()));
  EXPECT_EQ(read(output_), "HELLO");
  EXPECT_FALSE(run(upper_step()));
  EXPECT_FALSE(run(upper_step()));
  EXPECT_EQ(runs_, 1);
  // The stamp records the output's SHA-256 under its path relative to the deployment.
  const auto stamp = nlohmann::json::parse(read(dir_ / "out" / ".medquant" / "steps.json"));
  EXPECT_EQ(stamp["steps"]["test/upper"]["outputs"]["models/upper.txt"],
            medquant::core::sha256_hex("HELLO"));
}

TEST_F(StepRunnerTest, RedoesWhenAnInputByteChanges) {
  EXPECT_TRUE(run(upper_step()));
  write(input_, "hellp");  // same size
  EXPECT_TRUE(run(upper_step()));
  EXPECT_EQ(read(output_), "HELLP");
  write(dir_ / "in" / "folder" / "x.bin", "xy");  // a file inside an input folder
  EXPECT_TRUE(run(upper_step()));
  write(dir_ / "in" / "folder" / "new.bin", "");  // a new file in it
  EXPECT_TRUE(run(upper_step()));
  EXPECT_FALSE(run(upper_step()));
  EXPECT_EQ(runs_, 4);
}

TEST_F(StepRunnerTest, RedoesWhenOptionsChange) {
  EXPECT_TRUE(run(upper_step("a")));
  EXPECT_TRUE(run(upper_step("b")));
  EXPECT_EQ(read(output_), "HELLOb");
  EXPECT_FALSE(run(upper_step("b")));
}

TEST_F(StepRunnerTest, RedoesWhenAnOutputIsDeletedOrModified) {
  EXPECT_TRUE(run(upper_step()));
  fs::remove(output_);
  EXPECT_TRUE(run(upper_step()));
  EXPECT_EQ(read(output_), "HELLO");
  write(output_, "HELLo");  // same size, other content
  EXPECT_TRUE(run(upper_step()));
  EXPECT_EQ(read(output_), "HELLO");
  EXPECT_FALSE(run(upper_step()));
}

TEST_F(StepRunnerTest, ForceRedoes) {
  EXPECT_TRUE(run(upper_step()));
  EXPECT_TRUE(run(upper_step(), true));
  EXPECT_TRUE(run(upper_step(), true));
  EXPECT_EQ(runs_, 3);
  EXPECT_FALSE(run(upper_step()));
}

TEST_F(StepRunnerTest, GroupsKeepTheirOwnStamps) {
  StepRunner a((dir_ / "out").string(), "a", false), b((dir_ / "out").string(), "b", false);
  Step s = upper_step();
  EXPECT_TRUE(a.run(s).ran);
  EXPECT_TRUE(b.run(s).ran);  // same step name, another pipeline
  EXPECT_FALSE(a.run(s).ran);
  EXPECT_FALSE(b.run(s).ran);
}

TEST_F(StepRunnerTest, AFailingStepNamesItselfAndLeavesNoFinalFile) {
  Step s = upper_step();
  s.run = [this](const StepContext& ctx) -> StepOutcome {
    write(ctx.staged(output_), "HALF");  // a partial output, then the failure
    medquant::fail("disk full");
  };
  try {
    run(s);
    FAIL() << "no error";
  } catch (const medquant::Error& e) {
    EXPECT_EQ(std::string(e.what()), "test step upper: disk full");
  }
  EXPECT_FALSE(fs::exists(output_));
  EXPECT_TRUE(run(upper_step()));  // nothing stamped: the next run does it
  EXPECT_EQ(read(output_), "HELLO");
}

TEST_F(StepRunnerTest, AStepThatDoesNotWriteItsOutputIsAnError) {
  Step s = upper_step();
  s.run = [](const StepContext&) -> StepOutcome { return {}; };
  EXPECT_THROW(run(s), medquant::Error);
}

TEST_F(StepRunnerTest, AMissingInputIsAnError) {
  Step s = upper_step();
  s.inputs.push_back((dir_ / "nope").string());
  try {
    run(s);
    FAIL() << "no error";
  } catch (const medquant::Error& e) {
    EXPECT_NE(std::string(e.what()).find("input " + (dir_ / "nope").string() + " is missing"), std::string::npos);
  }
}

TEST_F(StepRunnerTest, AFailedValidationPlacesOutputsButIsNotStamped) {
  Step s = upper_step();
  s.run = [this](const StepContext& ctx) -> StepOutcome {
    ++runs_;
    medquant::core::write_file_atomic(ctx.staged(output_), "report: FAIL");
    return {"FAIL", false};
  };
  EXPECT_FALSE(StepRunner((dir_ / "out").string(), "test", false).run(s).ok);
  EXPECT_EQ(read(output_), "report: FAIL");
  EXPECT_TRUE(run(s));  // runs again
  EXPECT_EQ(runs_, 2);
}

TEST(PipelineOptions, UnknownOrUnquantizedTypesAndBadImatrixTextAreRefused) {
  medquant::pipeline::MedGemmaOptions o;
  o.type = "Q4_K_S";
  EXPECT_NO_THROW(medquant::pipeline::check_medgemma_options(o));
  EXPECT_EQ(medquant::pipeline::medgemma_file_name(o.type), "medgemma-4b-q4_k_s.gguf");
  for (const char* bad : {"Q9_K", "F16", "bf16", ""}) {
    o.type = bad;
    EXPECT_THROW(medquant::pipeline::check_medgemma_options(o), medquant::Error) << bad;
  }
  o.type = "q8_0";
  o.imatrix_text = "no-such-medical.txt";  // a missing text
  EXPECT_THROW(medquant::pipeline::check_medgemma_options(o), medquant::Error);
  o.imatrix_text = __FILE__;  // an existing text, with --imatrix too
  EXPECT_NO_THROW(medquant::pipeline::check_medgemma_options(o));
  o.imatrix = __FILE__;
  EXPECT_THROW(medquant::pipeline::check_medgemma_options(o), medquant::Error);
}

TEST(PipelineOptions, MissingFromFolderIsAClearError) {
  medquant::pipeline::BiomedClipOptions o;
  o.from = "./no/such/folder";
  o.out = (fs::temp_directory_path() / "medquant-never-written").string();
  try {
    medquant::pipeline::run_biomedclip(o);
    FAIL() << "no error";
  } catch (const medquant::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--from ./no/such/folder: no such folder"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(o.out));
}

}  // namespace
