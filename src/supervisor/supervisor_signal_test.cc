// Signals that are not a stop (job control, a warning), and the end of the supervisor itself
// (KillAll, its destruction), under both mechanisms.
#include <gtest/gtest.h>

#include "supervisor/supervisor_test_util.h"

namespace sr::testing {
namespace {

using Ending = ProcessRecord::Ending;

class NonStopSignalTest : public SupervisorTest {};
class SupervisorEndTest : public SupervisorTest {};

TEST_P(NonStopSignalTest, SignalReachesEveryMember) {
  Outcome o;
  auto tree = Start(Shell(R"(
trap 'echo main-usr1' USR1
setsid sh -c 'trap "echo child-usr1; exit 0" USR1; echo child-ready; while :; do sleep 0.01; done' &
echo ready
while :; do sleep 0.01; done)"),
                    o);
  ASSERT_TRUE(WaitOutputs(o, {"ready", "child-ready"}));
  tree->Signal(SIGUSR1);
  ASSERT_TRUE(WaitOutputs(o, {"main-usr1", "child-usr1"}));
  tree->Kill();
  ASSERT_TRUE(Wait(o));
  ExpectRecordsGone(o);
  for (const auto& r : o.exit.records) EXPECT_EQ(r.warning_signal, 0) << "job control, no warning";
}

// A member that dies of the warning signal is known to have died of the runner's signal,
// though no stop was asked for (the step said only "signal: SIGUSR1").
TEST_P(NonStopSignalTest, WarnIsKeptInTheRecordOfEachMemberItReached) {
  Outcome o;
  auto tree = Start(Shell("echo ready; while :; do sleep 0.01; done"), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Warn(SIGUSR1);
  ASSERT_TRUE(Wait(o));
  EXPECT_FALSE(o.exit.stop_requested);
  EXPECT_EQ(o.exit.term_signal, SIGUSR1);
  ASSERT_FALSE(o.exit.records.empty());
  const ProcessRecord& main = o.exit.records[0];
  EXPECT_EQ(main.pid, tree->pid());
  EXPECT_EQ(main.warning_signal, SIGUSR1);
  EXPECT_NE(main.warning_time, std::chrono::system_clock::time_point{});
  EXPECT_EQ(main.signal_sent, 0) << "a warning is not a stop signal";
  EXPECT_EQ(main.ending, Ending::kEndedBySignal);
  EXPECT_EQ(main.end_signal, SIGUSR1);
  ExpectRecordsGone(o);
}

TEST_P(SupervisorEndTest, KillAllKillsTreesAndOrphans) {
  // An orphan that leaves the process group and clears its environment: the fallback cannot
  // attribute it to its tree; it is re-parented to us and KillAll gets it.
  Outcome first;
  Start(Shell(R"(
( env -i /usr/bin/setsid /bin/sh -c 'echo $$ > "$0"; exec sleep 1000' "$D/orphan" & )
while [ ! -s "$D/orphan" ]; do sleep 0.01; done
echo ready)"),
        first);
  ASSERT_TRUE(Wait(first));
  pid_t orphan = ReadPid("orphan");
  ExpectGoneLater(orphan);
  if (GetParam() == Mechanism::kCgroup) {
    EXPECT_TRUE(PidGone(orphan)) << "the leaf holds it";
  }

  Outcome second;
  auto tree = Start(Shell(kIgnoresTerm), second);
  ASSERT_TRUE(WaitOutput(second, "ready"));
  sup_->KillAll();
  EXPECT_TRUE(PidGone(orphan));
  EXPECT_TRUE(PidGone(tree->pid()));
  ASSERT_TRUE(Wait(second));
  EXPECT_TRUE(second.exit.stop_requested);
  EXPECT_TRUE(second.exit.killed);
  EXPECT_EQ(second.exit.records[0].ending, Ending::kKilledForced);
  EXPECT_EQ(sup_->live_trees(), 0u);
  ExpectRecordsGone(second);
}

TEST_P(SupervisorEndTest, DestroyingTheSupervisorKillsEverything) {
  Outcome o;
  auto tree = StartWithDaemon(R"("")", "exec sleep 1000", "sleep 1000", o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  ExpectGoneLater(ReadPid("daemon"));
  ExpectGoneLater(tree->pid());
  sup_.reset();  // TearDown checks that nothing survived and nothing is left to reap
  EXPECT_TRUE(tree->finished());
  EXPECT_FALSE(o.done) << "callbacks are dropped with the supervisor";
  tree->Kill();  // inert, must not crash
  EXPECT_TRUE(tree->Members().empty());
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, NonStopSignalTest,
                         ::testing::Values(Mechanism::kCgroup, Mechanism::kProcessGroup),
                         MechanismName);
INSTANTIATE_TEST_SUITE_P(Mechanisms, SupervisorEndTest,
                         ::testing::Values(Mechanism::kCgroup, Mechanism::kProcessGroup),
                         MechanismName);

}  // namespace
}  // namespace sr::testing
