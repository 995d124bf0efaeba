// Cleanup steps, per-step cancel control, builtins and masking through the real binary
// (issue: "Cleanup steps, per-step cancel control, cancel-aware builtins and masking").
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

class CleanupCli : public TreeTest {};

std::string Pipeline(const TestDir& dir, const std::string& main_script) {
  return "spec: {}\n---\nrun:\n  - name: make_resource\n    script: mkdir " + dir / "resource" +
         " && echo '{\"name\":\"where\",\"value\":\"" + dir / "resource" +
         "\"}' > /dev/null\n  - name: main\n    script: " + main_script +
         "\nfinally:\n  - name: cleanup\n    script: rmdir " + dir / "resource" +
         " && echo \"cleanup status=${{ run.status }}\" > " + dir / "cleanup.txt" + "\n";
}

TEST_F(CleanupCli, FinallyRunsAfterSuccess) {
  dir.Write("p.yml", Pipeline(dir, "echo working"));
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(dir.Read("cleanup.txt"), "cleanup status=success\n");
  EXPECT_FALSE(dir.Exists("resource"));
}

TEST_F(CleanupCli, FinallyRunsAfterFailureAndKeepsTheFailure) {
  dir.Write("p.yml", Pipeline(dir, "exit 7"));
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("step \"main\": exec: exit status 7"));
  EXPECT_EQ(dir.Read("cleanup.txt"), "cleanup status=failure\n");
  EXPECT_FALSE(dir.Exists("resource"));
}

TEST_F(CleanupCli, FinallyRunsAfterCtrlC) {
  dir.Write("p.yml", Pipeline(dir, "touch " + dir / "started" + "; sleep 100"));
  Child child({Binary(), "run", "-f", dir / "p.yml"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_EQ(dir.Read("cleanup.txt"), "cleanup status=cancelled\n");
  EXPECT_FALSE(dir.Exists("resource"));
}

TEST_F(CleanupCli, FinallyCanReadOutputsOfFinishedSteps) {
  dir.Write("p.yml", R"(spec: {}
---
run:
  - name: made
    step: dist://outputs
    inputs: {path: /tmp/some-resource}
  - name: boom
    script: exit 1
finally:
  - name: cleanup
    script: echo "removing ${{ steps.made.outputs.path }}"
)");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.out, HasSubstr("removing /tmp/some-resource"));
}

// A cancel or timeout that comes while finally: runs (the run: steps succeeded): the cleanup
// goes on, every finally step runs, and the job still ends cancelled (130) or timed out (124).
// It exited 0, and the results said success.
TEST_F(CleanupCli, ACancelDuringFinallyStillEndsTheJobAsOne) {
  dir.Write("f.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: echo main\nfinally:\n"
                     "  - name: f1\n    script: touch " + dir / "in-f1" + "; while [ ! -e " + dir / "go" + " ]; do sleep 0.02; done\n"
                     "  - name: f2\n    script: touch " + dir / "f2-ran" + "\n");
  Child child({Binary(), "run", "-f", dir / "f.yml", "--step-results-file", dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "in-f1"));
  child.Signal(SIGINT);
  dir.Write("go", "");
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.err, HasSubstr("stopped while finally: ran (cancelled)"));
  EXPECT_TRUE(dir.Exists("f2-ran"));
  EXPECT_NE(json::parse(dir.Read("r.json"))["status"], "success");

  ::unlink((dir / "in-f1").c_str());
  ::unlink((dir / "go").c_str());
  ::unlink((dir / "f2-ran").c_str());
  // The timeout comes once `main` has ended and f1 waits (the test waits for it to come).
  Child timed({Binary(), "run", "-f", dir / "f.yml", "--timeout", "5s"}, {});
  ASSERT_TRUE(timed.WaitForFile(dir / "in-f1"));
  // The timeout comes while f1 waits; then f1 is let go.
  for (int i = 0; i < 600 && timed.StdoutSoFar().find("cancelling (timed_out)") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dir.Write("go", "");
  Output t = timed.Wait();
  EXPECT_EQ(t.exit_code, 124) << t.err;
  EXPECT_THAT(t.err, HasSubstr("stopped while finally: ran (timed out)"));
  EXPECT_TRUE(dir.Exists("f2-ran"));
}

// Every finally: step that fails to load is said, each naming its file:line and step, and the
// steps between them still run; the job's error and exit code are those of before (the first
// failure, or run:'s). Only the first was said: a load failure leaves no result, only its error.
TEST_F(CleanupCli, EveryFinallyStepThatFailsToLoadIsReported) {
  dir.Write("steps/echo/step.yml", "spec:\n  inputs:\n    v: {type: string}\n---\nexec:\n  command: [echo, x]\n");
  dir.Write("bad/step.yml", "spec: {}\n---\nexec:\n  comand: [echo]\n");
  const std::string finally = "finally:\n  - name: a\n    step: ./nope\n  - name: b\n    script: touch " +
                              dir / "b-ran" + "\n  - name: c\n    step: ./steps/echo\n  - name: d\n    step: ./bad\n";
  const std::string a = "p.yml:7:5: step \"a\": failed to load: loading file \"nope/step.yml\"";
  const std::string c = "p.yml:11:5: step \"c\": failed to load: failed to parse spec definition: input \"v\" required";
  const std::string d = "p.yml:13:5: step \"d\": failed to load: bad/step.yml:4:3: unknown key \"comand\" in exec";
  auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  for (const bool run_fails : {false, true}) {
    SCOPED_TRACE(run_fails ? "after a failed run:" : "after a successful run:");
    ::unlink((dir / "b-ran").c_str());
    dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: " +
                           std::string(run_fails ? "exit 7" : "echo main") + "\n" + finally);
    Output o = RunStepRunner({"run", "-f", "p.yml"}, {.cwd = dir.path()});
    EXPECT_EQ(o.exit_code, 1) << o.err;
    EXPECT_TRUE(dir.Exists("b-ran"));
    const std::string all = o.out + o.err;
    if (run_fails) {
      EXPECT_THAT(o.err, HasSubstr("step-runner: step \"main\": exec: exit status 7"));
      EXPECT_THAT(o.out, HasSubstr("step-runner: finally: " + a));
    } else {
      EXPECT_THAT(o.err, HasSubstr("step-runner: " + a));  // the job's error, as before
    }
    EXPECT_THAT(o.out, HasSubstr("step-runner: finally: " + c));
    EXPECT_THAT(o.out, HasSubstr("step-runner: finally: " + d));
    for (const auto& each : {a, c, d}) EXPECT_EQ(count(all, each), 1u) << each << " in\n" << all;
  }
}

TEST_F(CleanupCli, SecondCtrlCKillsTheCleanupToo) {
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: touch " + dir / "started" +
                         "; sleep 100\nfinally:\n  - name: slow_cleanup\n    script: echo $$ > " +
                         dir / "cleanup.pid" + "; sleep 100\n");
  Child child({Binary(), "run", "-f", dir / "p.yml"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  ASSERT_TRUE(child.WaitForFile(dir / "cleanup.pid"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  for (pid_t p : ReadPids(dir / "cleanup.pid")) EXPECT_FALSE(ProcessAlive(p)) << p;
}

// A forced cancel that comes while the main steps are still in their grace skips `finally:`:
// the user asked for everything to stop now (as a force-cancelled GitLab job skips
// after_script). README "Cleanup" says so.
TEST_F(CleanupCli, ForcedCancelBeforeFinallySkipsIt) {
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: trap '' TERM INT; touch " +
                         dir / "started" + "; sleep 100\nfinally:\n  - name: cleanup\n    script: touch " +
                         dir / "cleanup-ran" + "\n");
  Child child({Binary(), "run", "-f", dir / "p.yml"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  // Two SIGINTs sent back to back may reach the runner as one: the second goes once the first
  // has started the graceful cancel.
  for (int i = 0; i < 1000 && child.StdoutSoFar().find("cancelling (") == std::string::npos; ++i) {
    ::usleep(10'000);
  }
  child.Signal(SIGINT);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.out, HasSubstr("forced cancel"));
  EXPECT_THAT(o.out, HasSubstr("needed SIGKILL"));
  EXPECT_THAT(o.out, Not(HasSubstr("Running step \"cleanup\"")));
  EXPECT_FALSE(dir.Exists("cleanup-ran"));
}

TEST_F(CleanupCli, PerStepCancelSignalIsSentAndObservedByATrap) {
  dir.Write("trapper/step.yml", "spec: {}\n---\ncancel: {signal: SIGINT, grace: 5s}\nexec:\n  command: [sh, -c, 'trap \"echo got-int > " +
                                    dir / "signal.txt" + "; exit 0\" INT; trap \"echo got-term > " +
                                    dir / "signal.txt" + "; exit 0\" TERM; touch " + dir / "started" +
                                    "; while true; do sleep 0.05; done']\n");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: t\n    step: ./trapper\n");
  Child child({Binary(), "run", "-f", dir / "p.yml"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGTERM);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_EQ(dir.Read("signal.txt"), "got-int\n");
}

TEST_F(CleanupCli, BadCancelOverrideIsAStepFileError) {
  dir.Write("bad.yml", "spec: {}\n---\ncancel: {signal: SIGNOPE}\nexec:\n  command: [true]\n");
  Output o = RunStepRunner({"run", "-f", dir / "bad.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("bad.yml:3"));
  EXPECT_THAT(o.err, HasSubstr("SIGNOPE"));
}

TEST_F(CleanupCli, SleepBuiltinIsCancelledPromptly) {
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: mark\n    script: touch " + dir / "started" +
                         "\n  - name: nap\n    step: dist://sleep\n    inputs: {duration: 1h}\n");
  Child child({Binary(), "run", "-f", dir / "p.yml", "--step-results-file", dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
}

TEST_F(CleanupCli, MaskedValuesNeverAppear) {
  const std::string secret = "hunter2-very-secret";
  dir.Write("p.yml", R"(spec: {}
---
run:
  - name: one_write
    script: echo "token is ${{ job.TOKEN }}"
  - name: split_write
    script: printf 'hunter2-ve'; sleep 0.1; printf '%s\n' 'ry-secret and more'
  - name: in_json
    step: dist://outputs
    inputs: {config: '{"auth":"${{ job.TOKEN }}"}'}
  - name: in_env
    script: echo "env $LEAK"
    env: {LEAK: "${{ job.TOKEN }}"}
)");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--masked-job", "TOKEN=" + secret,
                            "--step-results-file", dir / "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  std::string results = dir.Read("r.json");
  for (const std::string& where : {o.out, o.err, results}) {
    EXPECT_THAT(where, Not(HasSubstr(secret))) << where;
  }
  EXPECT_THAT(o.out, HasSubstr("token is [MASKED]"));
  EXPECT_THAT(o.out, HasSubstr("[MASKED] and more"));
  EXPECT_THAT(o.out, HasSubstr("env [MASKED]"));
  EXPECT_THAT(results, HasSubstr("[MASKED]"));
}

TEST_F(CleanupCli, SensitiveInputsAreMasked) {
  dir.Write("use/step.yml", "spec:\n  inputs:\n    password: {type: string, sensitive: true}\n---\nexec:\n  command: [echo, \"pw=${{ inputs.password }}\"]\n");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: u\n    step: ./use\n    inputs: {password: correct-horse}\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--step-results-file", dir / "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("pw=[MASKED]"));
  EXPECT_THAT(dir.Read("r.json"), Not(HasSubstr("correct-horse")));
}

// A secret shown inside a JSON object or array is escaped (`&` as \u0026, a newline as \n), and
// only its raw form was masked: `${{ inputs }}` and an echoed struct output showed it whole.
TEST_F(CleanupCli, SecretsInsideRenderedObjectsAreMasked) {
  dir.Write("p.yml", R"yml(spec:
  inputs:
    token: {type: string, sensitive: true, default: "abc&def"}
---
run:
  - name: whole
    script: echo 'inputs=${{ inputs }}'
  - name: cfg
    script: |
      printf '{"name":"cfg","value":{"key":"%s"}}\n' "${KEYV//$'\n'/\\n}" > "${{ output_file }}"
    env: {KEYV: "${{ job.KEY }}"}
  - name: shown
    script: echo 'cfg=${{ steps.cfg.outputs.cfg }}'
)yml");
  const std::string key = "line-one-secret\nline-two-secret";
  Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--masked-job", "KEY=" + key,
                            "--step-results-file", dir / "r.json"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string results = dir.Read("r.json");
  for (const std::string& where : {o.out, o.err, results}) {
    for (const char* part : {"abc", "line-one", "line-two"}) EXPECT_THAT(where, Not(HasSubstr(part))) << where;
  }
  EXPECT_THAT(o.out, HasSubstr("inputs={\"token\":\"[MASKED]\"}"));
  EXPECT_THAT(o.out, HasSubstr("cfg={\"key\":\"[MASKED]\"}"));
}

// A cancel that comes while the cleanup runs ends the job as cancelled (exit 130) also when the
// cleanup's budget then runs out and stops a cleanup step, which so fails: it ended as a failure
// (exit 1) of that step, "(timed out)" though no timeout was set. The step's failure is said.
TEST_F(CleanupCli, ACancelDuringFinallyWhoseBudgetRunsOutIsStillACancel) {
  dir.Write("f.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: echo main\nfinally:\n"
                     "  - name: f1\n    script: |\n      trap 'exit 5' TERM\n      : > ready\n"
                     "      sleep 1000 & wait\nfinally_timeout: 1s\n");
  Child run({Binary(), "run", "-f", dir / "f.yml", "--step-results-file", dir / "r.json"},
            {.cwd = dir.path()});
  ASSERT_TRUE(run.WaitForFile(dir / "ready"));
  run.Signal(SIGINT);
  Output o = run.Wait();
  EXPECT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.err, HasSubstr("stopped while finally: ran (cancelled)"));
  EXPECT_THAT(o.out, HasSubstr("step-runner: finally: step \"f1\": exec: exit status 5"));
  EXPECT_EQ(json::parse(dir.Read("r.json"))["status"], "cancelled");
}

// Every failing finally: step is said, also one that ran: the second failure was in no line
// (only the first is the job's error), which hid a cleanup step that could not even start.
TEST_F(CleanupCli, EveryFailingFinallyStepIsSaid) {
  dir.Write("f.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: echo main\nfinally:\n"
                     "  - name: f1\n    script: exit 3\n  - name: f2\n    script: exit 4\n");
  Output o = RunStepRunner({"run", "-f", dir / "f.yml"}, {.cwd = dir.path()});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"f1\": exec: exit status 3"));
  EXPECT_THAT(o.out, HasSubstr("f.yml:9:5: step \"f2\": exec: exit status 4"));
  EXPECT_THAT(o.out, Not(HasSubstr("step \"f1\": exec")));
}

}  // namespace
}  // namespace sr::test
