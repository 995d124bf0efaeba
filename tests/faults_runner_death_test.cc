// The runner's own death (contract section 7 item 1), through the real binary: SIGHUP and
// SIGQUIT cancel like SIGTERM; after SIGKILL of `run` or `serve` no process of the job survives
// (the guardian, or the next start when the guardian is gone too), and the next start removes
// what the dead runner left in TMPDIR, in one log line. Both mechanisms: cgroup v2 and the
// fallback (STEP_RUNNER_CGROUP=off).
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A step that starts a setsid'd daemon and a SIGTERM-ignorer, writes the three pids (its own
// shell's too) to `pids` and then `started`.
std::string TreeScript(const TestDir& dir) {
  const std::string pids = dir / "pids";
  return "setsid sh -c 'echo $$ >> " + pids + "; exec sleep 300' &\n"
         "sh -c 'trap \"\" TERM; echo $$ >> " + pids + "; while :; do sleep 0.05; done' &\n"
         "echo $$ >> " + pids + "\n"
         "while [ $(wc -l < " + pids + ") -lt 3 ]; do sleep 0.01; done\n"
         "touch " + dir / "started" + "\nwait\n";
}

std::string TreeFile(const TestDir& dir) {
  std::string script = TreeScript(dir), indented;
  for (char c : script) indented += c == '\n' ? std::string("\n      ") : std::string(1, c);
  return "spec: {}\n---\nrun:\n  - name: tree\n    script: |\n      " + indented + "\n";
}

bool AllGone(const std::vector<pid_t>& pids) {
  ReapOrphans();  // the test is the subreaper: orphans of a killed runner come to us
  for (pid_t p : pids) {
    if (ProcessAlive(p)) return false;
  }
  return true;
}

// What a runner owns in TMPDIR: `step-runner-*` directories and cgroup records.
std::vector<std::string> RunnerEntries(const TestDir& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.path().c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind("step-runner-", 0) == 0 || name.rfind(".step-runner-cgroup-", 0) == 0) {
        out.push_back(name);
      }
    }
    ::closedir(d);
  }
  return out;
}

struct Mode {
  const char* name;
  bool cgroup;
  bool guardian;
};

Options RunnerOptions(const TestDir& dir, const Mode& m) {
  Options o = ServerOptions(dir);
  if (!m.cgroup) o.env["STEP_RUNNER_CGROUP"] = "off";
  if (!m.guardian) o.env["STEP_RUNNER_GUARDIAN"] = "off";
  return o;
}

class RunnerDeath : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
};

// The next `run` with the same TMPDIR: removes the leftovers and says so in one line.
void NextStartCleansUp(const TestDir& dir, const Mode& m, pid_t dead) {
  dir.Write("ok.yml", "spec: {}\n---\nrun:\n  - name: ok\n    script: 'true'\n");
  Output next = RunStepRunner({"run", "-f", dir / "ok.yml"}, RunnerOptions(dir, m));
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.err, HasSubstr("removed what dead step-runner instances (pid " +
                                  std::to_string(dead) + ")"));
  int lines = 0;
  for (size_t p = next.err.find("removed what dead"); p != std::string::npos;
       p = next.err.find("removed what dead", p + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1) << next.err;
  EXPECT_THAT(RunnerEntries(dir), IsEmpty());
}

TEST_P(RunnerDeath, HupAndQuitOfRunCancelLikeTerm) {
  dir.Write("t.yml", TreeFile(dir));
  for (int sig : {SIGHUP, SIGQUIT}) {
    ::unlink((dir / "pids").c_str());
    ::unlink((dir / "started").c_str());
    Child run({Binary(), "run", "-f", dir / "t.yml", "--grace", "500ms"}, RunnerOptions(dir, GetParam()));
    ASSERT_TRUE(run.WaitForFile(dir / "started"));
    run.Signal(sig);
    Output o = run.Wait();
    EXPECT_EQ(o.exit_code, 130) << strsignal(sig) << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("received: cancelling"));
    std::vector<pid_t> pids = ReadPids(dir / "pids");
    ASSERT_EQ(pids.size(), 3u);
    EXPECT_TRUE(AllGone(pids)) << strsignal(sig);
    EXPECT_THAT(RunnerEntries(dir), IsEmpty());
  }
}

TEST_P(RunnerDeath, SigkillOfRunLeavesNoProcess) {
  dir.Write("t.yml", TreeFile(dir));
  Child run({Binary(), "run", "-f", dir / "t.yml"}, RunnerOptions(dir, GetParam()));
  ASSERT_TRUE(run.WaitForFile(dir / "started"));
  run.Signal(SIGKILL);
  run.Wait();
  std::vector<pid_t> pids = ReadPids(dir / "pids");
  ASSERT_EQ(pids.size(), 3u);
  if (GetParam().guardian) {
    EXPECT_TRUE(WaitFor([&] { return AllGone(pids); }));
    NextStartCleansUp(dir, GetParam(), run.pid());
  } else {
    NextStartCleansUp(dir, GetParam(), run.pid());  // kills what is left, then removes
    EXPECT_TRUE(AllGone(pids));
  }
}

// The way an operator kills a runner by its command line — `pkill -9 -f "step-runner run …"` —
// matches every process with that command line: the guardian, a fork of the runner, must not be
// one of them, or nothing is left to kill the job's processes.
TEST_P(RunnerDeath, PkillOfTheRunnersCommandLineSparesTheGuardian) {
  if (!GetParam().guardian) GTEST_SKIP() << "about the guardian";
  dir.Write("t.yml", TreeFile(dir));
  Child run({Binary(), "run", "-f", dir / "t.yml"}, RunnerOptions(dir, GetParam()));
  ASSERT_TRUE(run.WaitForFile(dir / "started"));
  Output pkill = Child({"/usr/bin/pkill", "-KILL", "-f", Binary() + " run -f " + dir / "t.yml"}, {}).Wait();
  EXPECT_EQ(pkill.exit_code, 0) << pkill.err;
  run.Wait();
  std::vector<pid_t> pids = ReadPids(dir / "pids");
  ASSERT_EQ(pids.size(), 3u);
  EXPECT_TRUE(WaitFor([&] { return AllGone(pids); })) << "the guardian was killed with the runner";
  NextStartCleansUp(dir, GetParam(), run.pid());
}

TEST_P(RunnerDeath, SigkillOfServeLeavesNoProcess) {
  std::vector<pid_t> pids;
  pid_t server_pid = 0;
  {
    LiveServer server(dir, {}, RunnerOptions(dir, GetParam()));
    server_pid = server.child().pid();
    ASSERT_TRUE(server.Run(Request("tree", Steps({{"tree", TreeScript(dir)}}), dir.path())).ok());
    ASSERT_TRUE(server.child().WaitForFile(dir / "started"));
    server.child().Signal(SIGKILL);
    server.child().Wait();
    pids = ReadPids(dir / "pids");
  }
  ASSERT_EQ(pids.size(), 3u);
  if (GetParam().guardian) {
    EXPECT_TRUE(WaitFor([&] { return AllGone(pids); }));
  }
  NextStartCleansUp(dir, GetParam(), server_pid);
  EXPECT_TRUE(AllGone(pids));
}

TEST_P(RunnerDeath, HupAndQuitOfServeShutDownGracefully) {
  if (!GetParam().guardian) GTEST_SKIP() << "the guardian plays no part in a clean shutdown";
  for (int sig : {SIGHUP, SIGQUIT}) {
    ::unlink((dir / "pids").c_str());
    ::unlink((dir / "started").c_str());
    LiveServer server(dir, {}, RunnerOptions(dir, GetParam()));
    proto::RunRequest req = Request("tree", Steps({{"tree", TreeScript(dir)}}), dir.path());
    req.mutable_graceful_exit_timeout()->set_nanos(300'000'000);
    ASSERT_TRUE(server.Run(req).ok());
    ASSERT_TRUE(server.child().WaitForFile(dir / "started"));
    server.child().Signal(sig);
    Output o = server.child().Wait();
    EXPECT_EQ(o.exit_code, 0) << strsignal(sig) << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("shutting down"));
    std::vector<pid_t> pids = ReadPids(dir / "pids");
    ASSERT_EQ(pids.size(), 3u);
    EXPECT_TRUE(AllGone(pids)) << strsignal(sig);
    EXPECT_THAT(RunnerEntries(dir), IsEmpty());
  }
}

// A live runner's files are never touched by another runner's start, whatever its age.
TEST_P(RunnerDeath, LiveRunnersLeftoversAreKept) {
  if (!GetParam().guardian) GTEST_SKIP() << "one mode is enough";
  LiveServer server(dir, {}, RunnerOptions(dir, GetParam()));
  ASSERT_TRUE(server.Run(Request("keep", Steps({{"s", "sleep 30"}}), dir.path())).ok());
  dir.Write("ok.yml", "spec: {}\n---\nrun:\n  - name: ok\n    script: 'true'\n");
  Output next = RunStepRunner({"run", "-f", dir / "ok.yml"}, RunnerOptions(dir, GetParam()));
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.err, ::testing::Not(HasSubstr("removed")));
  EXPECT_TRUE(dir.Exists(JobDir(dir, "keep") + "/logs"));
  EXPECT_EQ(server.GetStatusOrDie("keep").status(), proto::StepResult::running);
  ASSERT_TRUE(server.CancelJob("keep", true).ok());
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, RunnerDeath,
                         ::testing::Values(Mode{"cgroup", true, true}, Mode{"fallback", false, true},
                                           Mode{"cgroupNoGuardian", true, false},
                                           Mode{"fallbackNoGuardian", false, false}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sr::test

namespace sr::test {
namespace {

// Every `.clone-*` / `.tree-*` directory in the git cache under `tmp`.
std::vector<std::string> GitTemps(const std::string& tmp) {
  std::vector<std::string> out;
  const std::string cache = tmp + "/step-runner-cache";
  if (!std::filesystem::exists(cache)) return out;
  auto is_temp = [](const std::string& name) { return name.rfind(".clone-", 0) == 0 || name.rfind(".tree-", 0) == 0; };
  for (const auto& entry : std::filesystem::directory_iterator(cache)) {
    if (is_temp(entry.path().filename())) {
      out.push_back(entry.path());  // a clone, made in the cache itself
    } else if (entry.is_directory()) {
      for (const auto& e : std::filesystem::directory_iterator(entry.path())) {
        if (is_temp(e.path().filename())) out.push_back(e.path());
      }
    }
  }
  return out;
}

// A runner killed while git clones into the cache leaves a marked temporary clone; the next
// start removes it and says so in its one line.
TEST(RunnerDeathGit, TemporaryCloneOfAKilledRunnerGoesAtTheNextStart) {
  BecomeSubreaper();
  TestDir dir;
  dir.Write("repo/steps/hello/step.yml", "spec: {}\n---\nexec:\n  command: [echo, hello]\n");
  const std::string repo = dir / "repo";
  ASSERT_EQ(std::system(("cd " + repo + " && git init -q -b main . && git add -A && git -c user.email=a@b "
                         "-c user.name=t commit -qm init && git tag v1").c_str()), 0);
  ::mkdir((dir / "tmp").c_str(), 0700);
  const std::string steps = dir.Write(
      "p.yml", "spec: {}\n---\nrun:\n  - name: remote\n    step: file://" + repo + "/-/hello@v1\n");
  // A `git` that stands still once started: the runner is killed while it "clones".
  const std::string fake = dir.Write("bin/git", "#!/bin/sh\ntouch " + dir / "cloning" + "\nexec sleep 300\n");
  ::chmod(fake.c_str(), 0755);
  Options o;
  o.cwd = dir.path();
  o.env["TMPDIR"] = dir / "tmp";
  o.env["PATH"] = dir / "bin" + ":" + std::string(std::getenv("PATH"));
  {
    Child run({Binary(), "run", "-f", steps}, o);
    ASSERT_TRUE(run.WaitForFile(dir / "cloning"));
    run.Signal(SIGKILL);
    run.Wait();
  }
  ASSERT_EQ(GitTemps(dir / "tmp").size(), 1u);  // left behind, marked

  o.env.erase("PATH");
  Output next = RunStepRunner({"run", "-f", steps}, o);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.out, HasSubstr("hello"));
  EXPECT_THAT(next.err, HasSubstr("1 temporary git clone"));
  EXPECT_THAT(GitTemps(dir / "tmp"), IsEmpty());
  ReapOrphans();
}

}  // namespace
}  // namespace sr::test
