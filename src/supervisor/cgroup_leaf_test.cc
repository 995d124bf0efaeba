// CgroupLeaf's member reads on the stop's critical path (issue 17): Procs() parses cgroup.procs
// without a stream, and HasLive() answers "a live member?" through a pidfd, with the same answer
// as a read of cgroup.procs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "supervisor/cgroup.h"
#include "supervisor/proc_scan.h"
#include "util/fd.h"

namespace sr {
namespace {

// A child that waits for SIGKILL; born in `leaf` when given (it writes "0" to cgroup.procs).
pid_t Sleeper(CgroupLeaf* leaf) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (leaf && ::write(leaf->procs_fd(), "0", 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  return pid;
}

bool Listed(CgroupLeaf& leaf, pid_t pid) {
  const auto procs = leaf.Procs();
  return std::find(procs.begin(), procs.end(), pid) != procs.end();
}

class CgroupLeafTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = CgroupRoot::Create();
    if (!root.ok()) GTEST_SKIP() << "no usable cgroup v2: " << root.error().message;
    root_ = std::move(*root);
    auto leaf = root_->CreateLeaf("leaf-test");
    ASSERT_TRUE(leaf.ok()) << leaf.error().message;
    leaf_ = std::move(*leaf);
  }
  void TearDown() override {
    for (pid_t p : children_) {
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    if (leaf_) leaf_->Remove();
  }
  pid_t Child(bool in_leaf) {
    const pid_t p = Sleeper(in_leaf ? leaf_.get() : nullptr);
    children_.push_back(p);
    return p;
  }
  std::unique_ptr<CgroupRoot> root_;
  std::unique_ptr<CgroupLeaf> leaf_;
  std::vector<pid_t> children_;
};

TEST_F(CgroupLeafTest, ProcsListsEveryMemberOfAManyMemberLeaf) {
  // Members in and out of the leaf, pids of every length the machine has.
  std::vector<pid_t> in;
  for (int i = 0; i < 40; ++i) in.push_back(Child(true));
  const pid_t out = Child(false);
  for (pid_t p : in) {
    for (int t = 0; t < 2000 && !Listed(*leaf_, p); ++t) ::usleep(1000);
  }
  auto procs = leaf_->Procs();
  std::sort(procs.begin(), procs.end());
  std::sort(in.begin(), in.end());
  EXPECT_EQ(procs, in);
  EXPECT_FALSE(Listed(*leaf_, out));
}

TEST_F(CgroupLeafTest, HasLiveAgreesWithCgroupProcs) {
  const pid_t in = Child(true);
  const pid_t out = Child(false);
  for (int t = 0; t < 2000 && !Listed(*leaf_, in); ++t) ::usleep(1000);
  UniqueFd in_fd = OpenPidfd(in), out_fd = OpenPidfd(out);
  ASSERT_TRUE(in_fd.valid() && out_fd.valid());
  auto live = leaf_->HasLive(in_fd.get());
  if (!live) GTEST_SKIP() << "the kernel has no PIDFD_GET_INFO with a cgroup id (< 6.13)";
  EXPECT_TRUE(*live);
  EXPECT_EQ(leaf_->HasLive(out_fd.get()), std::optional<bool>(false)) << "outside the leaf";
  // A zombie is still in the leaf's css_set but not in cgroup.procs: not a live member.
  ::kill(in, SIGKILL);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, in, &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(Listed(*leaf_, in));
  EXPECT_EQ(leaf_->HasLive(in_fd.get()), std::optional<bool>(false)) << "a zombie";
  // Reaped: the pidfd still pins the identity, and the answer stays no.
  ASSERT_EQ(::waitpid(in, nullptr, 0), in);
  children_.erase(std::find(children_.begin(), children_.end(), in));
  EXPECT_EQ(leaf_->HasLive(in_fd.get()), std::optional<bool>(false)) << "reaped";
}

}  // namespace
}  // namespace sr
