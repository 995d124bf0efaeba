// `run` on a full disk (a real tmpfs filled to the last byte): a clear error naming the file,
// and nothing left behind on the disk — no empty record, no cut results file, no temp dir.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/small_disk.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class DiskFaults : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
};

// Writes `path` until the disk refuses another byte.
void FillUp(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const std::string chunk(4096, 'x');
  while (::write(fd, chunk.data(), chunk.size()) > 0) {
  }
  while (::write(fd, "x", 1) > 0) {
  }
  ::close(fd);
}

std::vector<std::string> Entries(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

TEST_F(DiskFaults, RunOnAFullTmpdirFailsClearlyAndLeavesNothing) {
  SmallDisk disk(dir / "disk", "256k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  FillUp(dir / "disk/fill");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: echo hello\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"}, {.env = {{"TMPDIR", dir / "disk"}}});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, StartsWith("step-runner: " + dir / "disk/"));
  EXPECT_THAT(o.err, HasSubstr("No space left on device"));
  EXPECT_THAT(o.out, ::testing::Not(HasSubstr("hello")));
  EXPECT_EQ(Entries(dir / "disk"), std::vector<std::string>{"fill"}) << "left on the full disk";
  // Space again: the same command runs.
  std::filesystem::remove(dir / "disk/fill");
  Output again = RunStepRunner({"run", "-f", dir / "p.yml"}, {.env = {{"TMPDIR", dir / "disk"}}});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("hello"));
  EXPECT_TRUE(Entries(dir / "disk").empty());
}

TEST_F(DiskFaults, ResultsFileOnAFullDiskIsAnErrorAndNoCutFile) {
  SmallDisk disk(dir / "disk", "256k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  FillUp(dir / "disk/fill");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: echo hello\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--step-results-file", dir / "disk/r.json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello"));
  EXPECT_THAT(o.err, HasSubstr("writing step results"));
  EXPECT_THAT(o.err, HasSubstr(dir / "disk/r.json"));
  EXPECT_THAT(o.err, HasSubstr("No space left on device"));
  EXPECT_FALSE(dir.Exists("disk/r.json")) << "a cut results file was left behind";
}

}  // namespace
}  // namespace sr::test
