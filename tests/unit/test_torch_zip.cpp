// checkpoint/torch_zip: torch.save files written by torch (tests/fixtures/torch,
// tools/make_torch_fixtures.py) read back exactly as torch.load describes them
// (names, dtypes, shapes, strides, offsets, shared storages, Parameters, the
// sha256 of every tensor's elements); broken and malicious files each
// rejected with a specific message; every truncation and many corruptions of
// a good file give an Error, never a crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/torch_zip.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"

using namespace medquant;
using namespace medquant::checkpoint;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

const fs::path kDir = fs::path(MEDQUANT_FIXTURES) / "torch";

Json load_json(const fs::path& p) { return Json::parse(core::read_text_file(p.string())); }

std::string read_bytes(const fs::path& p) { return core::read_text_file(p.string()); }

std::string sha256_hex(const std::vector<uint8_t>& bytes) {
  return core::sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// Checks a file against torch.load's description of it.
void expect_matches(const TorchZipFile& f, const Json& want) {
  const auto& tensors = f.tensors();
  ASSERT_EQ(tensors.size(), want["tensors"].size()) << f.path();
  std::map<int, size_t> group_to_storage;  // torch's storage groups -> our storage index
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TorchTensorInfo& t = tensors[i];
    const Json& w = want["tensors"][i];
    SCOPED_TRACE(f.path() + " tensor " + t.name);
    EXPECT_EQ(t.name, w["name"].get<std::string>());
    EXPECT_EQ(core::dtype_name(t.dtype), w["dtype"].get<std::string>());
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    const bool empty = t.num_elements() == 0;
    if (!empty) {  // torch may describe the strides of an empty tensor differently
      EXPECT_EQ(t.stride, w["stride"].get<std::vector<int64_t>>());
      EXPECT_EQ(t.storage_offset, w["storage_offset"].get<uint64_t>());
    }
    EXPECT_EQ(t.contiguous(), w["contiguous"].get<bool>());
    EXPECT_EQ(t.is_parameter, w["is_parameter"].get<bool>());
    EXPECT_EQ(t.requires_grad, w["requires_grad"].get<bool>());
    EXPECT_EQ(f.storages()[t.storage].nbytes, w["storage_nbytes"].get<uint64_t>());
    // Same sharing of storages as torch: a bijection between the groups.
    const int group = w["storage_group"].get<int>();
    auto [it, fresh] = group_to_storage.emplace(group, t.storage);
    if (!empty) {
      EXPECT_EQ(it->second, t.storage) << "storage sharing differs from torch's";
    }
    const std::vector<uint8_t> bytes = f.materialize(t);
    EXPECT_EQ(bytes.size(), t.nbytes());
    EXPECT_EQ(sha256_hex(bytes), w["sha256"].get<std::string>());
    if (t.contiguous()) {
      auto span = f.data(t);
      EXPECT_TRUE(std::equal(span.begin(), span.end(), bytes.begin(), bytes.end()));
    } else {
      EXPECT_THROW(f.data(t), Error);
    }
    EXPECT_EQ(f.find(t.name), &t);
  }
  std::map<std::string, std::string> want_meta;
  for (const auto& [k, v] : want["metadata"].items()) want_meta[k] = v.get<std::string>();
  EXPECT_EQ(f.metadata(), want_meta);
}

class TorchFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchFixture, ReadsWhatTorchReads) {
  const Json expected = load_json(kDir / "expected.json");
  const TorchZipFile f((kDir / GetParam()).string());
  expect_matches(f, expected["good"][GetParam()]);
  EXPECT_EQ(f.version(), "3");
}

INSTANTIATE_TEST_SUITE_P(Good, TorchFixture,
                         ::testing::Values("dtypes.pt", "views.pt", "nested.pt", "module.pt",
                                           "protocol4.pt", "attrs.pt", "zip64.pt"),
                         [](const auto& info) {
                           std::string n = info.param;
                           return n.substr(0, n.find('.'));
                         });

TEST(TorchZip, ViewsAreViewsOfOneStorage) {
  const TorchZipFile f((kDir / "views.pt").string());
  const auto& base = f.at("base");
  const auto& rows = f.at("rows");
  EXPECT_EQ(rows.storage, base.storage);
  EXPECT_EQ(rows.storage_offset, 10u);
  EXPECT_TRUE(rows.contiguous());
  // A contiguous view is a span inside the storage, not a copy.
  EXPECT_EQ(f.data(rows).data(), f.data(base).data() + 10 * 4);
  EXPECT_FALSE(f.at("transposed").contiguous());
  EXPECT_EQ(f.at("expanded").stride, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(f.at("encoder.weight").storage, f.at("decoder.weight").storage);
  EXPECT_TRUE(f.at("emb").is_parameter);
  EXPECT_TRUE(f.at("emb").requires_grad);
  EXPECT_FALSE(f.at("frozen").requires_grad);
  EXPECT_THROW(f.at("nope"), Error);
  // Storages hold their record bytes: 6x5 floats.
  EXPECT_EQ(f.storages()[base.storage].nbytes, 120u);
  EXPECT_EQ(f.storage_data(f.storages()[base.storage]).size(), 120u);
}

TEST(TorchZip, TransposeMaterialisesRowMajor) {
  const TorchZipFile f((kDir / "views.pt").string());
  const auto& base = f.at("base");
  const auto& t = f.at("transposed");
  auto src = f.data(base);
  std::vector<float> b(30), tt(30);
  std::memcpy(b.data(), src.data(), 120);
  auto m = f.materialize(t);
  std::memcpy(tt.data(), m.data(), 120);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 6; ++j) EXPECT_EQ(tt[i * 6 + j], b[j * 5 + i]);
}

TEST(TorchZip, BrokenAndMaliciousFilesAreRefused) {
  const Json expected = load_json(kDir / "expected.json");
  ASSERT_GE(expected["bad"].size(), 20u);
  for (const Json& bad : expected["bad"]) {
    const std::string file = bad["file"].get<std::string>();
    SCOPED_TRACE(file + ": " + bad["why"].get<std::string>());
    const std::string path = (kDir / file).string();
    try {
      TorchZipFile f(path);
      ADD_FAILURE() << "read without error";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(bad["error"].get<std::string>()));
      EXPECT_THAT(e.what(), HasSubstr(path));
    }
  }
}

// The message names the global exactly as the pickle does.
TEST(TorchZip, MaliciousGlobalMessageIsExact) {
  const std::string path = (kDir / "bad_os_system.pt").string();
  try {
    TorchZipFile f(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              path + ": refusing to unpickle global 'os.system' (only torch state dicts are read)");
  }
}

// One scratch file rewritten in place (creating a file per case is slow on
// some file systems).
class ScratchFile {
 public:
  ScratchFile() {
    path_ = (fs::temp_directory_path() / ("medquant_torch_zip_" + std::to_string(::getpid()) + ".pt"))
                .string();
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  }
  ~ScratchFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& write(std::string_view bytes) const {
    if (::pwrite(fd_, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()) ||
        ::ftruncate(fd_, static_cast<off_t>(bytes.size())) != 0)
      throw std::runtime_error("cannot write " + path_);
    return path_;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Prefixes of a good file are refused with an Error (never a crash): every
// cut inside the zip directory at the end, and a sample before it.
TEST(TorchZip, EveryTruncationIsAnError) {
  const std::string good = read_bytes(kDir / "views.pt");
  const size_t cd = good.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  ScratchFile scratch;
  for (size_t n = 0; n < good.size(); n += n + 64 < cd ? 7 : 1) {
    const std::string& p = scratch.write(std::string_view(good).substr(0, n));
    EXPECT_THROW(TorchZipFile{p}, Error) << "prefix of " << n << " bytes";
  }
}

// Corrupting any byte of the pickle or the zip structure either still reads
// or gives an Error; tensors that do read stay inside the file.
TEST(TorchZip, CorruptBytesNeverCrash) {
  const std::string good = read_bytes(kDir / "views.pt");
  ScratchFile scratch;
  // The pickle (at the start) and the central directory + end record (at the end).
  const size_t cd = good.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  std::vector<size_t> positions;
  for (size_t i = 0; i < std::min<size_t>(good.size(), 1500); ++i) positions.push_back(i);
  for (size_t i = cd; i < good.size(); ++i) positions.push_back(i);
  size_t read_ok = 0, refused = 0;
  for (size_t pos : positions) {
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0xff}, static_cast<uint8_t>(good[pos] ^ 0x01)}) {
      std::string bytes = good;
      if (static_cast<uint8_t>(bytes[pos]) == v) continue;
      bytes[pos] = static_cast<char>(v);
      const std::string& p = scratch.write(bytes);
      try {
        TorchZipFile f(p);
        for (const auto& t : f.tensors()) {
          ASSERT_LE(t.offset() + (t.contiguous() ? t.nbytes() : 0), f.file_size());
          (void)f.materialize(t);
        }
        ++read_ok;
      } catch (const Error&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(refused, 0u);
  EXPECT_GT(read_ok, 0u);  // e.g. bytes inside tensor names or float data
}

// The tiny BiomedCLIP checkpoint: every tensor's bytes equal torch's.
TEST(TorchZip, TinyBiomedClipCheckpoint) {
  const Json want = load_json(kDir / "tiny_biomedclip_tensors.json");
  const fs::path bin = fs::path(MEDQUANT_FIXTURES) / want["file"].get<std::string>();
  EXPECT_EQ(core::sha256_file(bin.string()), want["file_sha256"].get<std::string>())
      << "fixture changed: re-run tools/make_torch_fixtures.py";
  const TorchZipFile f(bin.string());
  EXPECT_EQ(f.archive_name(), "open_clip_pytorch_model");
  expect_matches(f, want);
  EXPECT_EQ(f.tensors().size(), 72u);
  for (const auto& t : f.tensors()) EXPECT_TRUE(t.contiguous()) << t.name;
}

}  // namespace
