// Spawning, exit status, exec failures and output, under both mechanisms.
#include "supervisor/supervisor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>

#include <sstream>

#include "supervisor/spawn.h"
#include "supervisor/supervisor_test_util.h"
#include "util/signals.h"

namespace sr::testing {
namespace {

class SpawnTest : public SupervisorTest {};

TEST_P(SpawnTest, ExitCodes) {
  for (int code : {0, 3}) {
    Outcome o;
    Start(Shell("exit " + std::to_string(code)), o);
    ASSERT_TRUE(Wait(o));
    EXPECT_EQ(o.exit.exit_code, code);
    EXPECT_EQ(o.exit.term_signal, 0);
    EXPECT_FALSE(o.exit.stop_requested);
    EXPECT_FALSE(o.exit.killed);
    EXPECT_FALSE(o.exit.spawn_error.has_value());
    EXPECT_TRUE(o.exit.records.empty());
  }
  EXPECT_EQ(sup_->live_trees(), 0u);
}

TEST_P(SpawnTest, ExitBySignal) {
  Outcome o;
  auto tree = Start(Shell("kill -TERM $$"), o);
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.exit.exit_code, -1);
  EXPECT_EQ(o.exit.term_signal, SIGTERM);
  EXPECT_FALSE(o.exit.stop_requested);
  EXPECT_TRUE(tree->finished());
}

TEST_P(SpawnTest, MissingProgramIsSpawnError) {
  Outcome o;
  ProcessSpec spec = Shell("");
  spec.argv = {"no-such-program-sr"};
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  ASSERT_TRUE(o.exit.spawn_error.has_value());
  EXPECT_EQ(o.exit.spawn_error->message,
            "exec: \"no-such-program-sr\": executable file not found in $PATH");
  EXPECT_EQ(o.exit.exit_code, -1);
}

TEST_P(SpawnTest, MissingPathIsSpawnError) {
  Outcome o;
  ProcessSpec spec = Shell("");
  spec.argv = {"/nonexistent-sr/prog"};
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  ASSERT_TRUE(o.exit.spawn_error.has_value());
  EXPECT_EQ(o.exit.spawn_error->message,
            "fork/exec /nonexistent-sr/prog: no such file or directory");
  EXPECT_EQ(o.exit.exit_code, -1);
}

TEST_P(SpawnTest, NotExecutableIsSpawnError) {
  ASSERT_EQ(WriteFile(dir_ + "/script", "#!/bin/sh\nexit 0\n", 0644).ok(), true);
  Outcome o;
  ProcessSpec spec = Shell("");
  spec.argv = {dir_ + "/script"};
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  ASSERT_TRUE(o.exit.spawn_error.has_value());
  EXPECT_EQ(o.exit.spawn_error->message, "fork/exec " + dir_ + "/script: permission denied");
}

TEST_P(SpawnTest, BadWorkDirIsSpawnError) {
  Outcome o;
  ProcessSpec spec = Shell("exit 0");
  spec.work_dir = "/nonexistent-sr-dir";
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  ASSERT_TRUE(o.exit.spawn_error.has_value());
  EXPECT_EQ(o.exit.spawn_error->message, "chdir /nonexistent-sr-dir: no such file or directory");
  EXPECT_EQ(o.exit.exit_code, -1);
}

TEST_P(SpawnTest, WorkDirAndPathLookup) {
  Outcome o;
  ProcessSpec spec = Shell("");
  spec.argv = {"pwd"};
  spec.work_dir = dir_;
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.exit.exit_code, 0);
  EXPECT_EQ(o.out, dir_ + "\n");
}

TEST_P(SpawnTest, OutputIsExactAndSeparated) {
  Outcome o;
  Start(Shell("printf 'a\\n\\nb'; printf 'err1\\n' >&2; printf 'tail'"), o);
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.out, "a\n\nbtail");
  EXPECT_EQ(o.err, "err1\n");
}

TEST_P(SpawnTest, MegabyteBurstOnBothStreams) {
  Outcome o;
  Start(Shell("seq 1 200000 & seq 200000 -1 1 >&2; wait"), o);
  ASSERT_TRUE(Wait(o));
  std::string up, down;
  for (int i = 1; i <= 200000; ++i) up += std::to_string(i) + "\n";
  for (int i = 200000; i >= 1; --i) down += std::to_string(i) + "\n";
  ASSERT_GT(up.size(), 1u << 20);
  EXPECT_EQ(o.out.size(), up.size());
  EXPECT_TRUE(o.out == up);
  EXPECT_TRUE(o.err == down);
  EXPECT_EQ(o.exit.exit_code, 0);
}

// A destination that cannot take more (output_paused): the tree stops reading, so the step
// waits on its own full pipe, until the sink calls back; a stop still acts meanwhile, and once
// nobody is left the pipes are drained whatever the sink says.
TEST_P(SpawnTest, PausedOutputWaitsForRoomAndAStopStillActs) {
  bool paused = true;
  std::function<void()> resume;
  int asked = 0;
  auto spec_with = [&](ProcessSpec spec) {
    spec.output_paused = [&paused] { return paused; };
    spec.when_output_room = [&](std::function<void()> r) {
      ++asked;
      resume = std::move(r);
    };
    return spec;
  };
  Outcome o;
  Start(spec_with(Shell("echo first; seq 1 100000; echo $$ > \"$D/done\"")), o);
  // Paused from the first read: nothing arrives, and the writer is held by its full pipe.
  RunUntil([&] { return asked > 0; });
  ASSERT_EQ(asked, 1);
  EXPECT_EQ(o.out, "");
  EXPECT_FALSE(FileExists("done"));
  paused = false;
  resume();
  ASSERT_TRUE(Wait(o));
  std::string expected = "first\n";
  for (int i = 1; i <= 100000; ++i) expected += std::to_string(i) + "\n";
  EXPECT_TRUE(o.out == expected) << o.out.size();
  EXPECT_TRUE(FileExists("done"));

  // Paused for good: a stop kills the writer, and what its pipe still held is delivered.
  paused = true;
  asked = 0;
  Outcome stopped;
  auto tree = Start(spec_with(Shell("echo $$ > \"$D/writer\"; exec yes")), stopped);
  RunUntil([&] { return asked > 0; });
  ASSERT_EQ(asked, 1);
  ExpectGoneLater(ReadPid("writer"));
  tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(100)});
  ASSERT_TRUE(Wait(stopped));
  EXPECT_EQ(stopped.exit.term_signal, SIGTERM);
  EXPECT_GT(stopped.out.size(), 0u) << "the pipe's content was drained after the stop";
}

TEST_P(SpawnTest, CaptureOffSendsOutputNowhere) {
  Outcome o;
  ProcessSpec spec = Shell("echo out; echo err >&2; exit 5");
  spec.capture_output = false;
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.exit.exit_code, 5);
  EXPECT_EQ(o.out, "");
  EXPECT_EQ(o.err, "");
}

TEST_P(SpawnTest, EnvironmentIsExactPlusMarker) {
  Outcome o;
  Start(Shell("env"), o);
  ASSERT_TRUE(Wait(o));
  std::vector<std::string> keys;
  std::string marker;
  std::istringstream lines(o.out);
  for (std::string line; std::getline(lines, line);) {
    std::string key = line.substr(0, line.find('='));
    if (key == "PWD" || key == "SHLVL" || key == "_") continue;  // the shell adds these
    keys.push_back(key);
    if (key == "STEP_RUNNER_TREE") marker = line.substr(key.size() + 1);
  }
  EXPECT_THAT(keys, ::testing::UnorderedElementsAre("PATH", "TEST_TAG", "D", "STEP_RUNNER_TREE"));
  EXPECT_THAT(marker, ::testing::MatchesRegex(std::to_string(::getpid()) + "\\.[0-9]+-[0-9]+"));
}

TEST_P(SpawnTest, ExistingMarkerIsKept) {
  Outcome o;
  ProcessSpec spec = Shell("echo $STEP_RUNNER_TREE; env | grep -c ^STEP_RUNNER_TREE=");
  spec.env.push_back("STEP_RUNNER_TREE=1.2");
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  EXPECT_THAT(o.out, ::testing::MatchesRegex("1\\.2," + std::to_string(::getpid()) +
                                             "\\.[0-9]+-[0-9]+\n1\n"));
}

TEST_P(SpawnTest, SharedEnvironmentReplacesTheOwnOne) {
  Outcome o;
  ProcessSpec spec = Shell("echo \"$X $TEST_TAG\"");
  spec.env.push_back("X=own");
  spec.shared_env = std::make_shared<const std::vector<std::string>>(
      std::vector<std::string>{"PATH=/usr/bin:/bin", "X=shared"});
  Start(spec, o);
  ASSERT_TRUE(Wait(o));
  EXPECT_EQ(o.out, "shared \n");
}

TEST_P(SpawnTest, ChildStartsWithCleanSignalState) {
  // The runner blocks SIGCHLD and ignores SIGPIPE; neither may leak into a step.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  struct sigaction old {};
  ::sigaction(SIGPIPE, &ign, &old);
  Outcome o;
  Start(Shell("grep -E '^(SigBlk|SigIgn)' /proc/self/status"), o);
  ASSERT_TRUE(Wait(o));
  ::sigaction(SIGPIPE, &old, nullptr);
  EXPECT_EQ(o.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

// The child sets back only the signals that are not at their default (SignalsToReset), so a
// disposition the runner changes after its first spawn must reach that set: ignored ones would
// otherwise be inherited by the step, and a handler could run in a child that shares memory.
TEST_P(SpawnTest, DispositionsSetAfterTheFirstSpawnAreResetToo) {
  Outcome first;
  Start(Shell("true"), first);  // the kernel has been asked by now
  ASSERT_TRUE(Wait(first));
  const int realtime = SIGRTMIN + 5;  // a bit past 32 in the mask
  SetSignalDisposition(SIGHUP, SIG_IGN);
  SetSignalDisposition(realtime, SIG_IGN);
  SetSignalDisposition(SIGUSR1, [](int) {});
  const uint64_t reset = SignalsToReset();
  EXPECT_NE(reset & (uint64_t{1} << (SIGHUP - 1)), 0u);
  EXPECT_NE(reset & (uint64_t{1} << (realtime - 1)), 0u);
  EXPECT_NE(reset & (uint64_t{1} << (SIGUSR1 - 1)), 0u);
  EXPECT_EQ(reset & (uint64_t{1} << (SIGKILL - 1)), 0u);
  Outcome o;
  Start(Shell("grep -E '^(SigBlk|SigIgn)' /proc/self/status"), o);
  ASSERT_TRUE(Wait(o));
  for (int sig : {SIGHUP, realtime, SIGUSR1}) SetSignalDisposition(sig, SIG_DFL);
  EXPECT_EQ(o.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_P(SpawnTest, MembersIncludesSetsidDescendant) {
  Outcome o;
  auto tree = Start(Shell(R"(
setsid sh -c 'echo $$ > "$D/child"; exec sleep 1000' &
while [ ! -s "$D/child" ]; do sleep 0.01; done
echo ready; wait)"),
                    o);
  ASSERT_TRUE(WaitOutput(o, "ready"));
  pid_t child = ReadPid("child");
  ExpectGoneLater(child);
  auto members = tree->Members();
  EXPECT_THAT(members, ::testing::Contains(tree->pid()));
  EXPECT_THAT(members, ::testing::Contains(child));
  auto st = ReadProcStat(child);
  ASSERT_TRUE(st.has_value());
  EXPECT_NE(st->pgrp, tree->pid()) << "setsid did not take effect";
  tree->Kill();
  ASSERT_TRUE(Wait(o));
  EXPECT_TRUE(PidGone(child));
  EXPECT_TRUE(tree->Members().empty());
}

TEST_P(SpawnTest, ChildIsInItsLeafWithOrWithoutClone3) {
  // clone3 puts the child into its leaf as it is born; without it (old kernels, seccomp) the
  // child writes cgroup.procs itself. Both must give the same tree, and the same exec errors.
  const std::string leaf = "/step-runner-" + std::to_string(::getpid()) + "/tree-";
  for (bool clone3 : {true, false}) {
    SCOPED_TRACE(clone3 ? "clone3" : "clone");
    sup_.reset();  // one Supervisor at a time
    auto sup = Supervisor::Create(*loop_, Options(clone3));
    ASSERT_TRUE(sup.ok()) << sup.error().message;
    sup_ = std::move(sup).value();
    Outcome o;
    Start(Shell("grep '^0::' /proc/self/cgroup"), o);
    ASSERT_TRUE(Wait(o));
    Outcome bad;
    ProcessSpec spec = Shell("");
    spec.argv = {"/nonexistent-sr/prog"};
    Start(spec, bad);
    ASSERT_TRUE(Wait(bad));
    EXPECT_EQ(o.exit.exit_code, 0);
    if (GetParam() == Mechanism::kCgroup) {
      EXPECT_THAT(o.out, ::testing::HasSubstr(leaf));
    } else {
      EXPECT_THAT(o.out, ::testing::Not(::testing::HasSubstr(leaf)));
    }
    ASSERT_TRUE(bad.exit.spawn_error.has_value());
    EXPECT_EQ(bad.exit.spawn_error->message,
              "fork/exec /nonexistent-sr/prog: no such file or directory");
  }
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, SpawnTest,
                         ::testing::Values(Mechanism::kCgroup, Mechanism::kProcessGroup),
                         MechanismName);

TEST(SupervisorCreate, ProcessGroupOptionIsHonoured) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop.ok());
  Supervisor::Options options;
  options.mechanism = Supervisor::Options::Mechanism::kProcessGroup;
  std::vector<std::string> said;
  options.debug_log = [&said](const std::string& line) { said.push_back(line); };
  auto sup = Supervisor::Create(**loop, options);
  ASSERT_TRUE(sup.ok());
  EXPECT_EQ((*sup)->mechanism(), "process group + subreaper");
}

TEST(LookPath, FindsProgramInPathOrder) {
  auto p = LookPath("sh", "/nonexistent-sr:/usr/bin:/bin");
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(*p, ::testing::AnyOf("/usr/bin/sh", "/bin/sh"));
}

TEST(LookPath, NameWithSlashIsReturnedAsIs) {
  auto p = LookPath("./x/y", "");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "./x/y");
}

TEST(LookPath, NotFoundUsesGoWording) {
  auto p = LookPath("no-such-program-sr", "/usr/bin:/bin");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message, "exec: \"no-such-program-sr\": executable file not found in $PATH");
  EXPECT_FALSE(LookPath("sh", "").ok()) << "an empty PATH has no entries";
}

TEST(LookPath, SkipsDirectoriesAndNonExecutables) {
  std::string templ = "/tmp/lookpath-XXXXXX";
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  ASSERT_TRUE(WriteFile(templ + "/prog", "x", 0644).ok());
  ASSERT_EQ(::mkdir((templ + "/dirprog").c_str(), 0755), 0);
  ASSERT_TRUE(WriteFile(templ + "/good", "#!/bin/sh\n", 0755).ok());
  EXPECT_FALSE(LookPath("prog", templ).ok());
  EXPECT_FALSE(LookPath("dirprog", templ).ok());
  auto good = LookPath("good", "/nonexistent-sr:" + templ);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, templ + "/good");
  EXPECT_EQ(std::system(("rm -rf '" + templ + "'").c_str()), 0);
}

TEST(LookPath, RelativeEntryIsRefused) {
  // Go's exec.ErrDot: a program found through "." or a relative PATH entry is not run.
  std::string templ = "/tmp/lookpath-XXXXXX";
  ASSERT_NE(::mkdtemp(templ.data()), nullptr);
  ASSERT_TRUE(WriteFile(templ + "/good", "#!/bin/sh\n", 0755).ok());
  UniqueFd cwd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_EQ(::chdir(templ.c_str()), 0);
  auto p = LookPath("good", "/nonexistent-sr::/bin");
  ASSERT_EQ(::fchdir(cwd.get()), 0);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message,
            "exec: \"good\": cannot run executable found relative to current directory");
  EXPECT_EQ(std::system(("rm -rf '" + templ + "'").c_str()), 0);
}

TEST(ProcScan, EnvironTokens) {
  std::string env("A=1\0STEP_RUNNER_TREE=5.1,7.12\0B=2\0", 32);
  EXPECT_TRUE(EnvironHasToken(env, "STEP_RUNNER_TREE", "5.1"));
  EXPECT_TRUE(EnvironHasToken(env, "STEP_RUNNER_TREE", "7.12"));
  EXPECT_FALSE(EnvironHasToken(env, "STEP_RUNNER_TREE", "7.1"));
  EXPECT_FALSE(EnvironHasToken(env, "STEP_RUNNER", "5.1"));
}

TEST(ProcScan, ReadsOwnStatAndCmdline) {
  auto st = ReadProcStat(::getpid());
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->ppid, ::getppid());
  EXPECT_GT(st->start_ticks, 0u);
  EXPECT_FALSE(ReadCmdline(::getpid()).empty());
  EXPECT_LE(ReadCmdline(::getpid(), 4).size(), 4u);
}

}  // namespace
}  // namespace sr::testing
