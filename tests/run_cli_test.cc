// The `run` command end to end: real binary, real step files in a temp dir, real processes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RunCli, ChainsStepsWithInputsOutputsAndExports) {
  TestDir dir;
  dir.Write("greet/step.yml", R"(spec:
  inputs:
    who: {type: string}
    times: {type: number, default: 2}
  outputs:
    greeting: {type: string}
---
exec:
  command: [sh, -c, 'printf "{\"name\":\"greeting\",\"value\":\"hello %s x%s\"}\n" "$1" "$2" > "$3"; echo "{\"name\":\"GREETED\",\"value\":\"$1\"}" > "$4"', sh, "${{ inputs.who }}", "${{ inputs.times }}", "${{ output_file }}", "${{ export_file }}"]
)");
  dir.Write("pipeline.yml", R"(spec: {}
---
run:
  - name: first
    step: ./greet
    inputs: {who: world}
  - name: second
    step: ./greet
    inputs:
      who: "${{ steps.first.outputs.greeting }}"
      times: 3
  - name: third
    script: echo "greeted=$GREETED second=${{ steps.second.outputs.greeting }}"
outputs:
  final: ${{ steps.second.outputs.greeting }}
)");
  Output o = RunStepRunner({"run", "-f", dir / "pipeline.yml", "--step-results-file", dir / "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("greeted=hello world x2 second=hello hello world x2 x3"));
  auto results = nlohmann::json::parse(dir.Read("r.json"));
  EXPECT_EQ(results["status"], "success");
  EXPECT_EQ(results["outputs"]["final"], "hello hello world x2 x3");
  ASSERT_EQ(results["subStepResults"].size(), 3u);
  EXPECT_EQ(results["subStepResults"][0]["outputs"]["greeting"], "hello world x2");
  EXPECT_EQ(results["subStepResults"][0]["exports"]["GREETED"], "world");
  EXPECT_EQ(results["subStepResults"][2]["execResult"]["exitCode"], nullptr);  // 0 is omitted
}

// libcurl and libarchive (dozens of shared objects) are opened by the first OCI step only: a
// plain run must not have them mapped (docs/performance.md, finding 6). The step's parent is the
// runner; the OCI tests (oci_registry) show the lazy load working.
TEST(RunCli, PlainRunMapsNeitherLibcurlNorLibarchive) {
  TestDir dir;
  dir.Write("maps.yml", "spec: {}\n---\nexec:\n  command: [sh, -c, 'cat /proc/$PPID/maps']\n");
  Output o = RunStepRunner({"run", "-f", dir / "maps.yml"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("step-runner"));  // the runner's own maps were read
  EXPECT_THAT(o.out, Not(HasSubstr("libcurl")));
  EXPECT_THAT(o.out, Not(HasSubstr("libarchive")));
#ifdef SR_STATIC_GRPC
  EXPECT_THAT(o.out, Not(HasSubstr("libgrpc")));  // linked statically (STEP_RUNNER_STATIC_GRPC)
#endif
}

// The runner asks the kernel once which signals it did not get at their default (here: ignored
// by the shell that started it, as `nohup` or a background job would), and every step's
// process sets exactly those back before exec (spawn.cc): a step starts with nothing ignored
// or blocked, however the runner was started (no handler survives exec anyway).
TEST(RunCli, StepsStartWithDefaultSignalsWhenTheRunnerInheritedIgnoredOnes) {
  TestDir dir;
  dir.Write("status/step.yml", R"(spec: {}
---
exec:
  command: [grep, -E, '^Sig(Blk|Ign)', /proc/self/status]
)");
  dir.Write("pipeline.yml", R"(spec: {}
---
run:
  - name: first
    step: ./status
  - name: second
    step: ./status
)");
  // The shell ignores three signals and execs the runner, which inherits that; the runner's own
  // SigIgn is recorded to show the test sets up what it means to.
  Child child({"/bin/sh", "-c",
               "trap '' HUP USR2 WINCH; grep '^SigIgn' /proc/$$/status > \"$0/runner-sigign\"; "
               "exec \"$1\" run -f \"$0/pipeline.yml\"",
               dir.path(), Binary()},
              {});
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string clean =
      "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
  EXPECT_EQ(o.out, "Running step \"first\"\n" + clean + "Running step \"second\"\n" + clean);
  // SIGHUP (1), SIGUSR2 (12) and SIGWINCH (28), and whatever the test itself inherited.
  const std::string runner = dir.Read("runner-sigign");
  ASSERT_EQ(runner.rfind("SigIgn:\t", 0), 0u) << runner;
  EXPECT_EQ(std::stoull(runner.substr(8), nullptr, 16) & 0x8000801, 0x8000801u) << runner;
}

TEST(RunCli, FailingStepExitsOneAndNamesTheStep) {
  TestDir dir;
  dir.Write("f.yml", "spec: {}\n---\nrun:\n  - name: build\n    script: exit 3\n  - name: never\n    script: touch never\n");
  Output o = RunStepRunner({"run", "-f", dir / "f.yml"}, {.cwd = dir.path()});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("step-runner: step \"build\": exec: exit status 3"));
  EXPECT_FALSE(dir.Exists("never"));
}

TEST(RunCli, StepFileErrorExitsTwoWithLine) {
  TestDir dir;
  dir.Write("bad.yml", "spec: {}\n---\nexec:\n  comand: [true]\n");
  Output o = RunStepRunner({"run", "-f", dir / "bad.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("bad.yml:4"));
  EXPECT_THAT(o.err, HasSubstr("comand"));
}

TEST(RunCli, ExpressionErrorNamesExpression) {
  TestDir dir;
  dir.Write("e.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: echo ${{ env.NOPE_NOT_SET }}\n");
  Output o = RunStepRunner({"run", "-f", dir / "e.yml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("NOPE_NOT_SET"));
}

TEST(RunCli, CtrlCCancelsGracefullyAndExits130) {
  BecomeSubreaper();
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: wait\n    script: touch " + dir / "started" +
                         "; sleep 100\n");
  Child child({Binary(), "run", "-f", dir / "s.yml"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.err, HasSubstr("again to force"));
  ReapOrphans();
}

// The state letter of /proc/<pid>/stat ('T' stopped), or 0 when it is gone.
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() ? 0 : text[paren + 2];
}

// Polls until every pid's state is (or, with `is` false, is no longer) `state`; safety limit only.
bool StatesBecome(const std::vector<pid_t>& pids, char state, bool is) {
  for (int i = 0; i < 3000; ++i) {
    bool all = true;
    for (pid_t p : pids) all = all && ((ProcessState(p) == state) == is);
    if (all) return true;
    ::usleep(10000);
  }
  return false;
}

// Ctrl-Z: the steps are in process groups (and cgroups) of their own, so the terminal stopped
// only the runner and the steps ran on. The runner now stops them with itself, and lets them go
// on at `fg` (SIGCONT); a Ctrl-C afterwards cancels as usual. Both mechanisms.
TEST(RunCli, CtrlZStopsTheStepsWithTheRunnerAndFgLetsThemGoOn) {
  BecomeSubreaper();
  for (const std::string cgroup : {"", "off"}) {
    TestDir dir;
    dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: ticker\n    script: |\n"
                       "      (sleep 300) &\n      echo $$ $! > " + dir / "pids" + "\n"
                       "      while :; do sleep 0.05; done\n");
    Options o;
    if (!cgroup.empty()) o.env["STEP_RUNNER_CGROUP"] = cgroup;
    Child child({Binary(), "run", "-f", dir / "s.yml"}, o);
    ASSERT_TRUE(child.WaitForFile(dir / "pids"));
    std::vector<pid_t> pids;
    for (int i = 0; i < 200 && pids.size() < 2; ++i, ::usleep(10000)) pids = ReadPids(dir / "pids");
    ASSERT_EQ(pids.size(), 2u);
    child.Signal(SIGTSTP);
    EXPECT_TRUE(StatesBecome({child.pid(), pids[0], pids[1]}, 'T', true)) << cgroup;
    child.Signal(SIGCONT);
    EXPECT_TRUE(StatesBecome({child.pid(), pids[0], pids[1]}, 'T', false)) << cgroup;
    child.Signal(SIGINT);
    Output out = child.Wait();
    EXPECT_EQ(out.exit_code, 130) << cgroup << out.err;
    EXPECT_THAT(out.err, HasSubstr("step-runner: stopped, with the ")) << cgroup;
    EXPECT_THAT(out.err, HasSubstr("step-runner: continued")) << cgroup;
    ReapOrphans();
  }
}

TEST(RunCli, TrappedTermRunsCleanupAndIsCancelled) {
  TestDir dir;
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: trap\n    script: |\n      trap 'echo cleaned > " +
                         dir / "marker" + "; exit 0' TERM\n      touch " + dir / "started" +
                         "\n      while true; do sleep 0.05; done\n");
  Child child({Binary(), "run", "-f", dir / "t.yml", "--step-results-file", dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGTERM);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_EQ(dir.Read("marker"), "cleaned\n");
  auto r = nlohmann::json::parse(dir.Read("r.json"));
  EXPECT_EQ(r["status"], "cancelled");
  EXPECT_EQ(r["subStepResults"][0]["status"], "cancelled");
}

// `run … | head`: the reader is gone, so the job's output is lost. The job is cancelled and
// cleaned up (step stopped, temp dir removed) and `run` says why, instead of dying of SIGPIPE
// with its temp dir left behind, or running on with nobody reading.
TEST(RunCli, ClosedStdoutCancelsTheJobAndLeavesNothing) {
  BecomeSubreaper();
  TestDir dir;
  const std::string tmp = dir / "tmp";
  ASSERT_EQ(::mkdir(tmp.c_str(), 0700), 0);
  dir.Write("y.yml", "spec: {}\n---\nrun:\n  - name: chatty\n    script: echo $$ > " +
                         dir / "pid" + "; exec yes hello\n");
  const std::string line = "'" + Binary() + "' run -f '" + dir / "y.yml" +
                           "' | head -c 6; echo \"rc=${PIPESTATUS[0]}\" >&2";
  Child child({"/bin/bash", "-c", line}, {.env = {{"TMPDIR", tmp}}});
  Output o = child.Wait();
  EXPECT_EQ(o.out.size(), 6u);  // head read its 6 bytes and left
  EXPECT_THAT(o.err, HasSubstr("rc=1"));
  EXPECT_THAT(o.err, HasSubstr("writing the job's output to stdout: Broken pipe"));
  auto pids = ReadPids(dir / "pid");
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_FALSE(ProcessAlive(pids[0]));
  EXPECT_EQ(::rmdir(tmp.c_str()), 0) << "the run left something in its TMPDIR";
  ReapOrphans();
}

// `run … | reader`: every byte reaches the reader in order, and the pipe was grown to 1 MiB so
// that a step's large reads are not written in 64 KiB pieces, each a wait for the reader
// (docs/performance.md, session 23). The reader asks the pipe its size once it has read it all;
// the bytes are compared with the step's output and the line `run` writes before it.
TEST(RunCli, StdoutPipeIsGrownAndGetsEveryByte) {
  TestDir dir;
  dir.Write("big.yml", "spec: {}\n---\nrun:\n  - name: big\n    script: seq 1 300000\n");
  const std::string reader =
      "import fcntl, hashlib, sys; data = sys.stdin.buffer.read(); "
      "print(len(data), hashlib.sha1(data).hexdigest(), fcntl.fcntl(0, fcntl.F_GETPIPE_SZ))";
  const std::string line = "'" + Binary() + "' run -f '" + dir / "big.yml" +
                           "' 2>/dev/null | /usr/bin/python3 -c '" + reader + "'; { echo 'Running step \"big\"'; seq 1 300000; } | "
                           "/usr/bin/python3 -c 'import hashlib, sys; d = sys.stdin.buffer.read(); "
                           "print(len(d), hashlib.sha1(d).hexdigest())'";
  Child child({"/bin/bash", "-c", line}, {});
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 0) << o.err;
  std::istringstream lines(o.out);
  std::string got_size, got_sum, pipe_size, want_size, want_sum;
  lines >> got_size >> got_sum >> pipe_size >> want_size >> want_sum;
  EXPECT_EQ(got_size, want_size) << o.out;
  EXPECT_EQ(got_sum, want_sum) << o.out;
  EXPECT_EQ(pipe_size, std::to_string(1 << 20)) << o.out;
}

TEST(RunCli, TimeoutExits124) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: slow\n    script: sleep 100\n");
  Output o = RunStepRunner({"run", "-f", dir / "s.yml", "--timeout", "200ms", "--grace", "1s",
                            "--step-results-file", dir / "r.json"});
  EXPECT_EQ(o.exit_code, 124) << o.err;
  EXPECT_THAT(o.err, HasSubstr("timed out"));
  // The root is the job, which a timeout ends `failure` (it said `cancelled`); the step the
  // deadline stopped stays `cancelled` (docs/cancellation.md, "What the results say").
  auto results = nlohmann::json::parse(dir.Read("r.json"));
  EXPECT_EQ(results["status"], "failure");
  ASSERT_EQ(results["subStepResults"].size(), 1u);
  EXPECT_EQ(results["subStepResults"][0]["status"], "cancelled");

  // A root exec step is the root: `failure` too.
  dir.Write("e.yml", "spec: {}\n---\nexec:\n  command: [sleep, \"100\"]\n");
  Output e = RunStepRunner({"run", "-f", dir / "e.yml", "--timeout", "200ms", "--grace", "1s",
                            "--step-results-file", dir / "e.json"});
  EXPECT_EQ(e.exit_code, 124) << e.err;
  EXPECT_EQ(nlohmann::json::parse(dir.Read("e.json"))["status"], "failure");
}

TEST(RunCli, GitReferencedStepFromFileRepository) {
  TestDir dir;
  dir.Write("src/steps/hello/step.yml",
            "spec:\n  inputs:\n    name: {type: string}\n---\nexec:\n  command: [echo, "
            "\"hi ${{ inputs.name }}\"]\n");
  std::string repo = dir / "src";
  std::string cmd = "cd " + repo + " && git init -q -b main . && git add -A && git -c user.email=a@b -c user.name=t commit -qm init && git tag v1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: remote\n    step: file://" + repo +
                         "/-/hello@v1\n    inputs: {name: git}\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"},
                           {.env = {{"TMPDIR", dir.path()}}});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hi git"));
}

TEST(RunCli, RunsAReferenceWithInputsFromFlags) {
  TestDir dir;
  dir.Write("add/step.yml", "spec:\n  inputs:\n    n: {type: number}\n---\nexec:\n  command: [echo, \"n=${{ inputs.n }}\"]\n");
  Output o = RunStepRunner({"run", "./add", "--inputs", "n=3"}, {.cwd = dir.path()});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("n=3"));
  Output bad = RunStepRunner({"run", "./add", "--inputs", "n=x"}, {.cwd = dir.path()});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("input \"n\": declared number, got \"x\" (not a number)"));
}

// `run step.yml` is a remote reference in Go's grammar (no "./"): when a file of that name is
// there, the error says how to run it.
TEST(RunCli, AFileNamedWithoutDotSlashGetsAHint) {
  TestDir dir;
  dir.Write("step.yml", "spec: {}\n---\nexec:\n  command: [echo, ran]\n");
  Output o = RunStepRunner({"run", "step.yml"}, {.cwd = dir.path()});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("expecting url@rev. got \"step.yml\" (to run the file step.yml, give "
                               "./step.yml or -f step.yml)"));
  dir.Write("sub/x.yml", "spec: {}\n---\nexec:\n  command: [echo, ran]\n");
  Output nested = RunStepRunner({"run", "sub/x.yml"}, {.cwd = dir.path()});
  EXPECT_EQ(nested.exit_code, 2);
  EXPECT_THAT(nested.err, HasSubstr("(to run the file sub/x.yml, give ./sub/x.yml or -f sub/x.yml)"));
  Output directory = RunStepRunner({"run", "sub"}, {.cwd = dir.path()});
  EXPECT_EQ(directory.exit_code, 2);
  EXPECT_THAT(directory.err, HasSubstr("(to run the step in the directory sub, give ./sub)"));
  Output elsewhere = RunStepRunner({"run", "step.yml"});
  EXPECT_EQ(elsewhere.exit_code, 2);
  EXPECT_THAT(elsewhere.err, Not(HasSubstr("to run the file")));
  for (const char* form : {"./step.yml", "-f"}) {
    std::vector<std::string> args = {"run", form};
    if (args[1] == "-f") args.push_back("step.yml");
    Output ok = RunStepRunner(args, {.cwd = dir.path()});
    EXPECT_EQ(ok.exit_code, 0) << form << ": " << ok.err;
    EXPECT_THAT(ok.out, HasSubstr("ran")) << form;
  }
}

// The inputs an item gives a step are wrong in three ways; each is the same kind of error: a
// step failure found while running (exit 1, as Go), in Go's words, naming its line: the input's,
// or the item's for a missing one. A missing input was exit 2 without Go's "failed to load:", and
// none named the line; then all named the item's.
TEST(RunCli, WrongInputsOfAnItemAreOneKindOfErrorNamingTheirLine) {
  TestDir dir;
  dir.Write("steps/echo/step.yml", "spec:\n  inputs:\n    v: {type: string}\n---\nexec:\n  command: [echo, \"${{ inputs.v }}\"]\n");
  struct Case {
    std::string inputs, place, why;
  };
  const std::vector<Case> cases = {
      {"", "6:5", "failed to parse spec definition: input \"v\" required, but not defined"},
      {"    inputs: {v: x, extra: 1}\n", "8:20", "step does not accept input with name \"extra\""},
      {"    inputs:\n      v: 5\n", "9:7", "input \"v\": declared string, got number"}};
  for (const auto& [inputs, place, why] : cases) {
    dir.Write("i.yml", "spec: {}\n---\nrun:\n  - name: first\n    script: echo first\n  - name: a\n    step: ./steps/echo\n" + inputs);
    Output o = RunStepRunner({"run", "-f", dir / "i.yml"}, {.cwd = dir.path()});
    EXPECT_EQ(o.exit_code, 1) << o.err;
    EXPECT_THAT(o.err, HasSubstr("i.yml:" + place + ": step \"a\": failed to load: " + why));
    EXPECT_THAT(o.out, HasSubstr("first"));
  }
}

// Go's CI_STEPS_DEBUG=true quotes the line of an output file that could not be read.
TEST(RunCli, StepsDebugQuotesTheBadOutputLine) {
  TestDir dir;
  dir.Write("d.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: echo 'not json' > \"${{ output_file }}\"\n");
  Output plain = RunStepRunner({"run", "-f", dir / "d.yml"}, {.cwd = dir.path()});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_THAT(plain.err, HasSubstr("failed to unmarshal JSON at line 1: invalid JSON\n"));
  Output debug = RunStepRunner({"run", "-f", dir / "d.yml"}, {.cwd = dir.path(), .env = {{"CI_STEPS_DEBUG", "true"}}});
  EXPECT_EQ(debug.exit_code, 1);
  EXPECT_THAT(debug.err, HasSubstr("failed to unmarshal JSON at line 1: invalid JSON, line: not json\n"));
}

TEST(RunCli, JobVariablesAreNotInTheEnvironment) {
  TestDir dir;
  dir.Write("j.yml", "spec: {}\n---\nrun:\n  - name: j\n    script: echo \"job=${{ job.TOKEN }} env=${TOKEN:-unset}\"\n");
  Output o = RunStepRunner({"run", "-f", dir / "j.yml", "--job", "TOKEN=abc"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("job=abc env=unset"));
}

}  // namespace
}  // namespace sr::test
