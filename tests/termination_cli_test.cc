// The termination record and the warning before the deadline, through the real binary
// (issue: "Termination record and warning before the deadline").
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/records.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class TerminationCli : public TreeTest {};

TEST_F(TerminationCli, RecordSaysHowEachProcessEnded) {
  // Each process writes its pid once its trap is in place, and the step says "started" only
  // when all three have: a cancel must never find a trap not yet set (a busy machine delays
  // background shells). The trapper outlives its parent shell (which dies on TERM at once), so
  // it is re-parented to the runner and its exit status is known exactly.
  const std::string p0 = dir / "pid0", p1 = dir / "pid1", p2 = dir / "pid2";
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: three\n    script: |\n"
                     "      sleep 1000 & echo $! > " + p0 + "\n"
                     "      sh -c 'trap \"sleep 0.3; exit 3\" TERM; echo $$ > " + p1 + "; while :; do sleep 0.05; done' &\n"
                     "      sh -c 'trap \"\" TERM; echo $$ > " + p2 + "; while :; do sleep 0.05; done' &\n"
                     "      while [ ! -s " + p1 + " ] || [ ! -s " + p2 + " ]; do sleep 0.01; done\n"
                     "      touch " + dir / "started" + "\n      wait\n"
                     "finally:\n  - name: report\n    script: printf '%s\\n%s\\n' \"$S\" \"$T\" > " + dir / "final.txt" + "\n"
                     "    env: {S: \"${{ run.status }}\", T: \"${{ run.termination }}\"}\n");
  Child child({Binary(), "run", "-f", dir / "t.yml", "--grace", "2s", "--step-results-file",
               dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "started"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 130) << o.err;
  std::vector<pid_t> written;
  for (const std::string& f : {p0, p1, p2}) {
    std::vector<pid_t> one = ReadPids(f);
    ASSERT_EQ(one.size(), 1u) << f;
    written.push_back(one[0]);
  }

  json r = json::parse(dir.Read("r.json"));
  const json& t = r["subStepResults"][0]["termination"];
  EXPECT_EQ(t["reason"], "cancel_requested");
  const json* on_signal = FindPid(t["processes"], written[0]);
  const json* trapped = FindPid(t["processes"], written[1]);
  const json* ignored = FindPid(t["processes"], written[2]);
  ASSERT_TRUE(on_signal && trapped && ignored) << t.dump(1);
  EXPECT_EQ((*on_signal)["signal"], "SIGTERM");
  EXPECT_EQ((*on_signal)["ending"], "ended_by_signal");
  EXPECT_EQ((*trapped)["ending"], "exited");
  EXPECT_EQ((*trapped)["exitCode"], 3);
  EXPECT_EQ((*ignored)["ending"], "killed_after_grace");
  for (pid_t p : written) EXPECT_FALSE(ProcessAlive(p)) << p;

  // The log tells the same story, and the cleanup step could read the record.
  EXPECT_THAT(o.out, HasSubstr("step-runner: cancelling (cancel_requested)"));
  EXPECT_THAT(o.out, HasSubstr("needed SIGKILL: pid " + std::to_string(written[2])));
  std::string final_txt = dir.Read("final.txt");
  EXPECT_EQ(final_txt.substr(0, final_txt.find('\n')), "cancelled");
  json record = json::parse(final_txt.substr(final_txt.find('\n') + 1));
  EXPECT_EQ(record["reason"], "cancel_requested");
  EXPECT_TRUE(FindPid(record["processes"], written[2]) != nullptr) << record.dump();
}

TEST_F(TerminationCli, ForcedCancelIsMarkedKilledForced) {
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: stubborn\n    script: trap '' TERM; echo $$ > " +
                         dir / "pid" + "; touch " + dir / "ready" + "; while :; do sleep 0.05; done\n");
  Child child({Binary(), "run", "-f", dir / "t.yml", "--grace", "1h", "--step-results-file",
               dir / "r.json"}, {});
  ASSERT_TRUE(child.WaitForFile(dir / "ready"));  // `pid` is written in full by then
  child.Signal(SIGINT);
  // Wait until the cancel has started (the log line), then force.
  for (int i = 0; i < 2000 && child.StdoutSoFar().find("cancelling") == std::string::npos; ++i) {
    usleep(5000);
  }
  child.Signal(SIGINT);
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 130) << o.err;
  json r = json::parse(dir.Read("r.json"));
  const json& t = r["subStepResults"][0]["termination"];
  EXPECT_EQ(t["forced"], true);
  const json* main = FindPid(t["processes"], ReadPids(dir / "pid").at(0));
  ASSERT_TRUE(main) << t.dump(1);
  EXPECT_EQ((*main)["ending"], "killed_forced");
}

TEST_F(TerminationCli, WarningSignalAndDiagnoseComeBeforeTheTimeout) {
  std::string signals = dir / "signals";
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: stuck\n    script: |\n"
                     "      trap 'echo usr1 >> " + signals + "' USR1\n"
                     "      trap 'echo term >> " + signals + "; exit 0' TERM\n"
                     "      while :; do sleep 0.05; done\n"
                     "diagnose:\n  - name: missing\n    step: ./nope\n"
                     "  - name: dump\n    script: echo \"diagnose pids=${{ run.pids }}\"\n");
  // The warning comes 5 s in (both traps are set by then), the timeout 3 s after it (the
  // diagnose steps, which the timeout kills, have run by then).
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "8s", "--warn-before", "3s",
                            "--warn-signal", "SIGUSR1", "--grace", "5s"});
  EXPECT_EQ(o.exit_code, 124) << o.err;
  EXPECT_EQ(dir.Read("signals"), "usr1\nterm\n");
  EXPECT_THAT(o.out, HasSubstr("diagnose pids=["));
  // A diagnose: step that fails to load is said (its error was dropped), and the next one runs.
  EXPECT_THAT(o.out, HasSubstr("step-runner: diagnose: " + dir / "t.yml" +
                               ":10:5: step \"missing\": failed to load: loading file"));
  EXPECT_THAT(o.out, HasSubstr("deadline warning: SIGUSR1 sent"));
}

TEST_F(TerminationCli, WarnBeforeMustBeShorterThanTheTimeout) {
  dir.Write("t.yml", "spec: {}\n---\nexec:\n  command: [true]\n");
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "1s", "--warn-before", "2s"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("--warn-before"));
  Output sig = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "3s", "--warn-before", "1s",
                              "--warn-signal", "SIGWHAT"});
  EXPECT_EQ(sig.exit_code, 2);
  EXPECT_THAT(sig.err, HasSubstr("SIGWHAT"));
}

TEST_F(TerminationCli, DiagnoseOnAnExecDefinitionIsAnError) {
  dir.Write("t.yml", "spec: {}\n---\nexec:\n  command: [true]\ndiagnose:\n  - name: d\n    script: echo\n");
  Output o = RunStepRunner({"run", "-f", dir / "t.yml"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_THAT(o.err, HasSubstr("t.yml:5"));
  EXPECT_THAT(o.err, HasSubstr("diagnose"));
}

}  // namespace
}  // namespace sr::test
