// Stopping trees of badly behaved processes, under both mechanisms. No test asserts a duration:
// graces are short so the suite is quick, and the fixture's 30 s limit only prevents a hang.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "supervisor/supervisor_test_util.h"

namespace sr::testing {
namespace {

using Ending = ProcessRecord::Ending;

class StopTest : public SupervisorTest {};

TEST_P(StopTest, TrappedTermExitsCleanly) {
  Outcome o;
  // "ready" only once the child runs sleep: until its exec, the forked shell still has the trap
  // handler, and a SIGTERM caught there would be lost.
  auto tree = Start(Shell(R"(
trap 'echo bye > "$D/marker"; exit 0' TERM
sleep 1000 & child=$!
while read comm < /proc/$child/comm && [ "$comm" != sleep ]; do sleep 0.01; done
echo ready
wait)"),
                    o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::seconds(20)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(FileExists("marker"));
  EXPECT_TRUE(o.exit.stop_requested);
  EXPECT_EQ(o.exit.exit_code, 0);
  EXPECT_FALSE(o.exit.killed);
  ASSERT_GE(o.exit.records.size(), 2u);
  const ProcessRecord& main = o.exit.records[0];
  EXPECT_EQ(main.pid, tree->pid());
  EXPECT_EQ(main.ending, Ending::kExited);
  EXPECT_EQ(main.exit_code, 0);
  EXPECT_EQ(main.signal_sent, SIGTERM);
  EXPECT_THAT(main.command, ::testing::StartsWith("/bin/sh -c \ntrap"));
  for (size_t i = 1; i < o.exit.records.size(); ++i) {
    EXPECT_EQ(o.exit.records[i].ending, Ending::kEndedBySignal) << o.exit.records[i].command;
    EXPECT_EQ(o.exit.records[i].signal_sent, SIGTERM);
  }
  ExpectRecordsGone(o);
}

TEST_P(StopTest, IgnoredTermIsKilledAfterGrace) {
  Outcome o;
  auto tree = Start(Shell(kIgnoresTerm), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(100)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(o.exit.stop_requested);
  EXPECT_TRUE(o.exit.killed);
  EXPECT_EQ(o.exit.exit_code, -1);
  EXPECT_EQ(o.exit.term_signal, SIGKILL);
  ASSERT_EQ(o.exit.records.size(), 2u);  // sh and sleep
  for (const auto& r : o.exit.records) {
    EXPECT_EQ(r.ending, Ending::kKilledAfterGrace) << r.command;
    EXPECT_EQ(r.signal_sent, SIGTERM);
    EXPECT_NE(r.signal_time, std::chrono::system_clock::time_point{});
  }
  ExpectRecordsGone(o);
}

// The main process exec'd another program after it was started: the record names the program
// that got the signal (it named the shell the tree was started as).
TEST_P(StopTest, TheRecordNamesWhatTheMainProcessExecd) {
  Outcome o;
  auto tree = Start(Shell("trap '' TERM; exec sleep 1000"), o);
  ASSERT_NE(tree, nullptr);
  // Nothing wakes the loop meanwhile: poll from here. The command line, not the task name: an
  // exec sets the name before the new command line can be read.
  auto execd = [&] { return ReadCmdline(tree->pid()) == "sleep 1000"; };
  for (int i = 0; i < 3000 && !execd(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(execd());
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(100)});
  ASSERT_TRUE(Wait(o));
  ASSERT_EQ(o.exit.records.size(), 1u);
  EXPECT_EQ(o.exit.records[0].pid, tree->pid());
  EXPECT_EQ(o.exit.records[0].command, "sleep 1000");
  EXPECT_EQ(o.exit.records[0].ending, Ending::kKilledAfterGrace);
  ExpectRecordsGone(o);
}

// The main process obeys SIGTERM, its child ignores it. Through the grace the tree is known to
// be populated (the child's end is being watched for), so the fallback asks its census nothing:
// it used to make a pass over /proc on every 10 ms rescan of the grace, about a hundred here.
TEST_P(StopTest, ALingeringMemberCostsNoCensusPassesThroughTheGrace) {
  Outcome o;
  auto tree = Start(Shell(R"((trap '' TERM; exec sleep 1000) & child=$!
while read comm < /proc/$child/comm && [ "$comm" != sleep ]; do sleep 0.01; done
echo ready
wait)"),
                    o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  const uint64_t before = sup_->census_rounds();
  tree->Stop(StopPolicy{SIGTERM, std::chrono::seconds(1)});
  ASSERT_TRUE(Wait(o));
  // The stop's safety net, the SIGKILL's rounds and the last "anyone left?": a handful.
  EXPECT_LT(sup_->census_rounds() - before, 20u);
  ASSERT_EQ(o.exit.records.size(), 2u);  // sh and sleep
  EXPECT_EQ(o.exit.records[0].ending, Ending::kEndedBySignal);
  EXPECT_EQ(o.exit.records[1].ending, Ending::kKilledAfterGrace);
  EXPECT_THAT(o.exit.records[1].command, ::testing::StartsWith("sleep"));
  ExpectRecordsGone(o);
}

// The child obeys SIGTERM at once, but its parent (sleep, which ignores TERM) never reaps it:
// a zombie when the grace runs out. The SIGKILL that may still reach it did not end it: the
// record says SIGTERM did, and only the main process counts as killed.
TEST_P(StopTest, AZombieAtTheGracesEndWasNotKilledByUs) {
  Outcome o;
  auto tree = Start(Shell("sleep 1000 & trap '' TERM; echo ready; exec sleep 1000"), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(300)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(o.exit.killed);
  EXPECT_EQ(o.exit.term_signal, SIGKILL);
  ASSERT_EQ(o.exit.records.size(), 2u);  // sh (then sleep) and its child sleep
  EXPECT_EQ(o.exit.records[0].ending, Ending::kKilledAfterGrace);
  const ProcessRecord& child = o.exit.records[1];
  EXPECT_EQ(child.signal_sent, SIGTERM) << child.command;
  EXPECT_EQ(child.ending, Ending::kEndedBySignal) << child.command;
  EXPECT_EQ(child.end_signal, SIGTERM) << child.command;  // re-parented to us and reaped
  ExpectRecordsGone(o);
}

TEST_P(StopTest, SetsidDoubleForkDaemonDies) {
  Outcome o;
  auto tree = StartWithDaemon(R"("")", "exec sleep 1000", "sleep 1000 & wait", o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  pid_t daemon = ReadPid("daemon");
  ExpectGoneLater(daemon);
  auto st = ReadProcStat(daemon);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->session, daemon) << "the daemon should lead its own session";
  EXPECT_NE(st->ppid, tree->pid()) << "the daemon should be double-forked";
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(100)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(PidGone(daemon));
  EXPECT_TRUE(o.exit.killed);
  const ProcessRecord* r = RecordOf(o, daemon);
  ASSERT_NE(r, nullptr) << "the daemon is missing from the record";
  EXPECT_EQ(r->ending, Ending::kKilledAfterGrace);
  ExpectRecordsGone(o);
}

// A daemon that left the group and the session gets the stop signal of its own exactly once:
// found at once (in the leaf, or among the runner's children in the fallback), it must not get a
// second one from a later round. Its trap counts the signals (separate ones, not merged: the
// rounds that could repeat it come milliseconds apart), until SIGKILL after the grace.
TEST_P(StopTest, SetsidDaemonGetsTheStopSignalOnce) {
  Outcome o;
  auto tree = StartWithDaemon(R"("echo term >> \"$D/terms\"")", "while :; do sleep 0.01; done",
                              "sleep 1000 & wait", o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  pid_t daemon = ReadPid("daemon");
  ExpectGoneLater(daemon);
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(500)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(PidGone(daemon));
  auto terms = ReadFile(dir_ + "/terms");
  ASSERT_TRUE(terms.ok()) << "the daemon never ran its TERM trap";
  EXPECT_EQ(*terms, "term\n");
  const ProcessRecord* r = RecordOf(o, daemon);
  ASSERT_NE(r, nullptr) << "the daemon is missing from the record";
  EXPECT_EQ(r->signal_sent, SIGTERM);
  EXPECT_EQ(r->ending, Ending::kKilledAfterGrace);
  ExpectRecordsGone(o);
}

// Twenty trees, each with a daemon that left its group and session, stopped in one loop turn:
// more trees than the runner's quick look at its children used to serve (16), so the daemons
// waited for the census's rounds. Each daemon is in its own tree's record only, with the stop
// signal, which its trap saw once, and the SIGKILL after the grace. Each got it at once, in the
// turn of the stops (no census round runs in it): the trees after the first share the first's
// listing of the runner's children (ProcCensus::KnownOrphans).
TEST_P(StopTest, TwentyTreesStoppedAtOnceEachRecordItsOwnDaemon) {
  constexpr int kTrees = 20;
  std::vector<Outcome> o(kTrees);
  std::vector<std::shared_ptr<ProcessTree>> trees;
  for (int i = 0; i < kTrees; ++i) {
    const std::string d = dir_ + "/" + std::to_string(i);
    ASSERT_EQ(::mkdir(d.c_str(), 0700), 0);
    ProcessSpec spec = Shell(
        "( setsid sh -c 'trap \"echo term >> \\\"$D/terms\\\"\" TERM; echo $$ > \"$D/daemon\"; "
        "while :; do sleep 0.01; done' & )\n"
        "while [ ! -s \"$D/daemon\" ]; do sleep 0.01; done\necho ready\nsleep 1000 & wait");
    spec.env.back() = "D=" + d;
    trees.push_back(Start(spec, o[i]));
  }
  std::vector<pid_t> daemons;
  for (int i = 0; i < kTrees; ++i) {
    ASSERT_TRUE(WaitOutput(o[i], "ready"));
    daemons.push_back(ReadPid(std::to_string(i) + "/daemon"));
    ExpectGoneLater(daemons.back());
    // Re-parented to us once its subshell is gone (in cgroup mode the leaf finds it anyway).
    ASSERT_TRUE(RunUntil([&] {
      auto st = ReadProcStat(daemons.back());
      return st && st->ppid == ::getpid();
    }));
  }
  std::vector<bool> at_once(kTrees, false);
  bool stopped = false;
  loop_->Post([&] {
    for (auto& t : trees) t->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(500)});
    for (int i = 0; i < kTrees; ++i) {
      for (const ProcessRecord& r : trees[i]->StopRecords()) {
        at_once[i] = at_once[i] || r.pid == daemons[i];
      }
    }
    stopped = true;
  });
  ASSERT_TRUE(RunUntil([&] { return stopped; }));
  for (auto& out : o) ASSERT_TRUE(Wait(out));
  for (int i = 0; i < kTrees; ++i) {
    EXPECT_TRUE(at_once[i]) << "daemon " << i << " was not signalled with the rest of its tree";
    EXPECT_TRUE(PidGone(daemons[i]));
    for (int j = 0; j < kTrees; ++j) {
      if (j == i) continue;
      EXPECT_EQ(RecordOf(o[j], daemons[i]), nullptr) << "tree " << j << " claims daemon " << i;
    }
    const ProcessRecord* r = RecordOf(o[i], daemons[i]);
    ASSERT_NE(r, nullptr) << "daemon " << i << " is missing from its tree's record";
    EXPECT_EQ(r->signal_sent, SIGTERM);
    EXPECT_EQ(r->ending, Ending::kKilledAfterGrace);
    auto terms = ReadFile(dir_ + "/" + std::to_string(i) + "/terms");
    ASSERT_TRUE(terms.ok()) << "daemon " << i << " never ran its TERM trap";
    EXPECT_EQ(*terms, "term\n") << "daemon " << i;
    ExpectRecordsGone(o[i]);
  }
}

// `( cmd & )`: the subshell exits at once, so the sleep is re-parented to the runner while it
// stays in the tree's process group, out of reach of a walk from the main process. It gets the
// stop signal once and is in the record, like every other member.
TEST_P(StopTest, OrphanLeftInTheGroupIsSignalledOnceAndRecorded) {
  Outcome o;
  auto tree = Start(Shell(R"(
trap '' TERM
( sleep 1000 & echo $! > "$D/orphan" )
sleep 1000 &
echo ready
wait)"),
                    o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  pid_t orphan = ReadPid("orphan");
  ExpectGoneLater(orphan);
  // Re-parented to us once the subshell is gone (the loop keeps running meanwhile).
  ASSERT_TRUE(RunUntil([&] {
    auto st = ReadProcStat(orphan);
    return st && st->ppid == ::getpid();
  }));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(200)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(PidGone(orphan));
  for (const auto& r : o.exit.records) EXPECT_EQ(r.signal_sent, SIGTERM) << r.command;
  const ProcessRecord* r = RecordOf(o, orphan);
  ASSERT_NE(r, nullptr) << "orphan " << orphan << " missing from the record";
  EXPECT_EQ(r->ending, Ending::kKilledAfterGrace);
  EXPECT_EQ(o.exit.records.size(), 3u);  // sh, sleep, the orphan sleep
  ExpectRecordsGone(o);
}

TEST_P(StopTest, BackgroundChildHoldingStdoutIsStopped) {
  Outcome o;
  auto tree = Start(Shell("sleep 1000 & echo $! > \"$D/bg\"; echo ready; exit 0"), o);
  ASSERT_TRUE(Wait(o));
  pid_t bg = ReadPid("bg");
  EXPECT_TRUE(PidGone(bg));
  EXPECT_EQ(o.out, "ready\n");
  EXPECT_EQ(o.exit.exit_code, 0);
  EXPECT_FALSE(o.exit.stop_requested);
  EXPECT_FALSE(o.exit.killed);
  ASSERT_EQ(o.exit.records.size(), 2u);
  EXPECT_EQ(o.exit.records[0].pid, tree->pid());
  EXPECT_EQ(o.exit.records[0].ending, Ending::kExited);
  EXPECT_EQ(o.exit.records[1].pid, bg);
  EXPECT_EQ(o.exit.records[1].ending, Ending::kEndedBySignal);
  EXPECT_EQ(o.exit.records[1].end_signal, SIGTERM);
  ExpectRecordsGone(o);
}

TEST_P(StopTest, LeftoverIgnoringTermIsKilled) {
  Outcome o;
  Start(Shell("trap '' TERM; sleep 1000 & echo $! > \"$D/bg\"; exit 7"), o);
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(PidGone(ReadPid("bg")));
  EXPECT_EQ(o.exit.exit_code, 7);
  EXPECT_FALSE(o.exit.stop_requested);
  EXPECT_TRUE(o.exit.killed);
  ASSERT_EQ(o.exit.records.size(), 2u);
  EXPECT_EQ(o.exit.records[1].ending, Ending::kKilledAfterGrace);
  ExpectRecordsGone(o);
}

TEST_P(StopTest, FanOutOfFiftyChildren) {
  Outcome o;
  auto tree = Start(Shell("for i in $(seq 50); do sleep 1000 & done; echo ready; wait"), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  EXPECT_EQ(tree->Members().size(), 51u);
  tree->Stop(StopPolicy{SIGTERM, std::chrono::seconds(20)});
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.exit.records.size(), 51u);
  EXPECT_EQ(o.exit.term_signal, SIGTERM);
  EXPECT_FALSE(o.exit.killed);
  ExpectRecordsGone(o);
}

TEST_P(StopTest, ForkLoopsAreKilled) {
  // Two forkers that ignore SIGTERM, one of them in its own session, fork for as long as they
  // live; every child ignores SIGTERM too.
  Outcome o;
  auto tree = Start(Shell(R"(
trap '' TERM
( setsid sh -c 'echo forking; while :; do sleep 1000 & done' & )
echo ready
while :; do sleep 1000 & done)"),
                    o);
  ASSERT_TRUE(WaitOutputs(o, {"ready", "forking"}));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(100)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(o.exit.killed);
  EXPECT_TRUE(Survivors(tag_).empty());
  ExpectRecordsGone(o);
}

TEST_P(StopTest, KillIsForced) {
  Outcome o;
  auto tree = Start(Shell(kIgnoresTerm), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Kill();
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(o.exit.stop_requested);
  EXPECT_TRUE(o.exit.killed);
  EXPECT_EQ(o.exit.term_signal, SIGKILL);
  ASSERT_EQ(o.exit.records.size(), 2u);
  for (const auto& r : o.exit.records) {
    EXPECT_EQ(r.ending, Ending::kKilledForced);
    EXPECT_EQ(r.signal_sent, SIGKILL);
  }
  ExpectRecordsGone(o);
}

TEST_P(StopTest, SecondStopShortensGrace) {
  Outcome o;
  auto tree = Start(Shell(kIgnoresTerm), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::hours(1)});
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(50)});
  ASSERT_TRUE(Wait(o));  // would time out with the first grace
  EXPECT_EQ(o.exit.records[0].ending, Ending::kKilledAfterGrace);
  EXPECT_EQ(o.exit.records[0].signal_sent, SIGTERM);
  ExpectRecordsGone(o);
}

TEST_P(StopTest, KillEndsAStopInProgress) {
  Outcome o;
  auto tree = Start(Shell(kIgnoresTerm), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::hours(1)});
  tree->Kill();
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.exit.records[0].ending, Ending::kKilledForced);
  EXPECT_EQ(o.exit.records[0].signal_sent, SIGTERM);
  ExpectRecordsGone(o);
}

TEST_P(StopTest, ZeroGraceKillsAtOnce) {
  Outcome o;
  auto tree = Start(Shell(kIgnoresTerm), o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  tree->Stop(StopPolicy{SIGTERM, Duration(0)});
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(o.exit.killed);
  EXPECT_EQ(o.exit.records[0].ending, Ending::kKilledAfterGrace);
  EXPECT_EQ(o.exit.records[0].signal_sent, SIGKILL);
  ExpectRecordsGone(o);
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, StopTest,
                         ::testing::Values(Mechanism::kCgroup, Mechanism::kProcessGroup),
                         MechanismName);

}  // namespace
}  // namespace sr::testing
