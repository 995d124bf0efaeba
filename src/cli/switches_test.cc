#include "cli/switches.h"

#include <gtest/gtest.h>

#include "loop/loop.h"

namespace sr::cli {
namespace {

TEST(Switches, DefaultsWithAnEmptyEnvironment) {
  Switches s = ReadSwitches({});
  EXPECT_EQ(s.temp_base, "/tmp");
  EXPECT_FALSE(s.cgroup_off);
  EXPECT_FALSE(s.debug);
  EXPECT_FALSE(s.guardian_off);
  Supervisor::Options o = SupervisorOptionsFor(s);
  EXPECT_EQ(o.mechanism, Supervisor::Options::Mechanism::kAuto);
  EXPECT_FALSE(o.debug_log);
}

TEST(Switches, EachVariableSetsItsSwitch) {
  Switches s = ReadSwitches({{"TMPDIR", "/var/tmp/x"}, {"STEP_RUNNER_CGROUP", "off"},
                             {"STEP_RUNNER_DEBUG", ""}, {"PATH", "/bin"}});
  EXPECT_EQ(s.temp_base, "/var/tmp/x");
  EXPECT_TRUE(s.cgroup_off);
  EXPECT_TRUE(s.debug);
  EXPECT_EQ(s.env.at("PATH"), "/bin");
  EXPECT_EQ(ReadSwitches({{"TMPDIR", ""}}).temp_base, "/tmp");
  EXPECT_FALSE(ReadSwitches({{"STEP_RUNNER_CGROUP", "on"}}).cgroup_off);
  EXPECT_TRUE(ReadSwitches({{"STEP_RUNNER_GUARDIAN", "off"}}).guardian_off);
  EXPECT_FALSE(ReadSwitches({{"STEP_RUNNER_GUARDIAN", "on"}}).guardian_off);
}

TEST(Switches, ARelativeTmpdirIsMadeAbsoluteAgainstTheStartCwd) {
  EXPECT_EQ(AbsoluteTempBase("tmp", "/tmp/p"), "/tmp/p/tmp");
  EXPECT_EQ(AbsoluteTempBase("./a/b", "/w"), "/w/./a/b");
  EXPECT_EQ(AbsoluteTempBase("tmp", "/"), "/tmp");
  EXPECT_EQ(AbsoluteTempBase("/abs", "/w"), "/abs");
  EXPECT_EQ(AbsoluteTempBase("", "/w"), "");
  EXPECT_EQ(AbsoluteTempBase("tmp", ""), "tmp");
}

TEST(Switches, CgroupOffMakesASupervisorUseProcessGroups) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  auto sup = Supervisor::Create(**loop, SupervisorOptionsFor(ReadSwitches({{"STEP_RUNNER_CGROUP", "off"}})));
  ASSERT_TRUE(sup.ok());
  EXPECT_EQ((*sup)->mechanism(), "process group + subreaper");
}

TEST(Switches, ProcessEnvSeesTheRealEnvironment) {
  ::setenv("SR_SWITCHES_TEST", "a=b", 1);
  EXPECT_EQ(ProcessEnv().at("SR_SWITCHES_TEST"), "a=b");  // split at the first '='
  ::unsetenv("SR_SWITCHES_TEST");
}

}  // namespace
}  // namespace sr::cli
