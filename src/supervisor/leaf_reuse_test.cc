// cgroup v2 leaves serve tree after tree (issue 17): a clean tree's empty leaf is the next
// tree's, one with leftovers or frozen is not.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/supervisor.h"
#include "supervisor/supervisor_test_util.h"

namespace sr::testing {
namespace {

class LeafReuseTest : public SupervisorTest {
 protected:
  // The leaf the tree's shell saw itself in (from /proc/self/cgroup).
  std::string LeafOf(const std::string& script) {
    Outcome o;
    Start(Shell(script + "; grep '^0::' /proc/self/cgroup"), o);
    EXPECT_TRUE(Wait(o));
    EXPECT_EQ(o.exit.exit_code, 0) << o.err;
    const size_t at = o.out.rfind("/tree-");
    EXPECT_NE(at, std::string::npos) << o.out;
    if (at == std::string::npos) return "";
    return o.out.substr(at + 1, o.out.find('\n', at) - at - 1);
  }
  std::string RunnerDir() const { return mechanism_.substr(11, mechanism_.size() - 12); }
  bool LeafExists(const std::string& name) const {
    struct stat sb {};
    return ::stat((RunnerDir() + "/" + name).c_str(), &sb) == 0;
  }
};

TEST_P(LeafReuseTest, CleanTreesTakeTurnsInOneLeaf) {
  const std::string first = LeafOf("true");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(LeafOf("true"), first);
  EXPECT_EQ(LeafOf(":"), first);
  EXPECT_TRUE(LeafExists(first));  // kept, empty, for the next tree
}

// A runner that goes idle keeps no cgroup (and no fd) of ended trees for long: the kept leaves
// are removed once no tree has ended into one for a while. Nothing here is timed: the test
// waits for it to happen.
TEST_P(LeafReuseTest, IdleLeavesAreLetGoWhenNoTreeFollows) {
  const std::string first = LeafOf("true");
  ASSERT_FALSE(first.empty());
  ASSERT_TRUE(LeafExists(first));
  EXPECT_TRUE(RunUntil([&] { return !LeafExists(first); })) << "the idle leaf was kept";
}

TEST_P(LeafReuseTest, TreeWithLeftoversGetsItsLeafRemoved) {
  const std::string clean = LeafOf("true");
  // The main process ends with a child still running: the leftovers' stop ends it.
  Outcome o;
  Start(Shell("sleep 30 & echo started"), o);
  ASSERT_TRUE(Wait(o));
  ASSERT_TRUE(o.exit.stop.has_value());
  EXPECT_FALSE(LeafExists(clean)) << "a leaf that saw a stop is removed, not reused";
  const std::string next = LeafOf("true");
  EXPECT_NE(next, clean);
}

TEST_P(LeafReuseTest, FrozenIdleLeafIsNotTaken) {
  const std::string first = LeafOf("true");
  ASSERT_FALSE(first.empty());
  // Someone of the same user freezes the idle leaf: a tree born into it would never run.
  ASSERT_TRUE(WriteFile(RunnerDir() + "/" + first + "/cgroup.freeze", "1", 0644).ok());
  const std::string next = LeafOf("true");  // completes: not born frozen
  EXPECT_NE(next, first);
  EXPECT_FALSE(LeafExists(first));
}

// A step owns its leaf's files: whatever it changed there (limits on sub-cgroups, a sub-cgroup
// it made) must not reach the next step, which may be another job's.
TEST_P(LeafReuseTest, LeafAStepChangedIsNotKeptForTheNext) {
  // The step's own leaf, from inside it.
  const std::string own = "$(grep -m1 ' cgroup2 ' /proc/self/mountinfo | cut -d' ' -f5)"
                          "$(grep '^0::' /proc/self/cgroup | cut -d: -f3)";
  for (const std::string& change : {"echo 0 > " + own + "/cgroup.max.descendants",
                                   "echo 1 > " + own + "/cgroup.max.depth",
                                   "mkdir " + own + "/nested; rmdir " + own + "/nested",
                                   "mkdir " + own + "/nested"}) {
    const std::string clean = LeafOf("true");
    ASSERT_TRUE(LeafExists(clean));
    const std::string changed = LeafOf(change);
    EXPECT_EQ(changed, clean) << "the clean leaf was taken again";
    if (change.find("rmdir") != std::string::npos) {
      EXPECT_TRUE(LeafExists(changed)) << change << ": as it was, so kept";
      continue;
    }
    EXPECT_FALSE(LeafExists(changed)) << change << ": kept although changed";
    // The next tree is born in a leaf as mkdir made it.
    Outcome o;
    Start(Shell("cat " + own + "/cgroup.max.descendants " + own + "/cgroup.max.depth; ls " + own +
                " | grep -c nested"), o);
    ASSERT_TRUE(Wait(o));
    EXPECT_EQ(o.out, "max\nmax\n0\n") << change;
  }
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, LeafReuseTest, ::testing::Values(Mechanism::kCgroup),
                         MechanismName);

}  // namespace
}  // namespace sr::testing
