// The deadline warning tells the truth about what it did: a step that dies of the warning signal
// the runner sent is recorded as such and fails saying so (it failed as a bare
// "exec: signal: SIGTERM", with no record that the runner had sent that signal); a diagnose
// step still running when the job's steps end by themselves is killed with reason job_ended
// (its record said timed_out, though no timeout had come).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/records.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// Does not handle SIGTERM: the warning's default action ends it (bash and its sleep). The warning
// may come before main.pid is written: the tests take the main process from the record (it comes
// first), and check it against main.pid when there is one (written whole, or not at all).
constexpr char kUnhandledWarning[] = "echo $$ > main.tmp && mv main.tmp main.pid\nsleep 300";

// The job's step waits for its diagnose step to be running, then ends by itself (no warning
// signal: the diagnose steps start all the same) with `exit_code`.
std::string WithSlowDiagnose(int exit_code) {
  return Steps({{"main", "while [ ! -s diag.pid ]; do sleep 0.05; done\nexit " +
                             std::to_string(exit_code)}}) +
         "diagnose:\n  - name: dump\n    script: |\n      echo $$ > diag.pid\n      sleep 300\n";
}

class WarningTruthCli : public TreeTest {};

TEST_F(WarningTruthCli, AStepKilledByTheWarningSignalFailsSayingSoAndIsRecorded) {
  dir.Write("t.yml", Steps({{"slow", kUnhandledWarning}}));
  // The warning comes a second in; the deadline would come long after the test's end.
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "300s", "--warn-before",
                            "299s", "--warn-signal", "SIGTERM", "--step-results-file",
                            dir / "r.json"},
                           {.cwd = dir.path()});
  // A step failure, not a timeout (the deadline never came) nor a cancel (none was asked for).
  ASSERT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"slow\": exec: signal: SIGTERM (the runner's deadline "
                               "warning signal)"));
  const json t = json::parse(dir.Read("r.json"))["subStepResults"][0]["termination"];
  ASSERT_TRUE(t.is_object()) << "no termination record for the step";
  EXPECT_EQ(t.value("reason", ""), "deadline_warning") << t.dump(1);
  EXPECT_EQ(t.value("warningSignal", ""), "SIGTERM") << t.dump(1);
  EXPECT_TRUE(t.contains("warningTime")) << t.dump(1);
  ASSERT_TRUE(t.contains("processes") && !t["processes"].empty()) << t.dump(1);
  const pid_t main = t["processes"][0].value("pid", 0);
  for (pid_t written : ReadPids(dir / "main.pid")) EXPECT_EQ(written, main) << t.dump(1);
  const json* rec = FindPid(t["processes"], main);
  ASSERT_TRUE(rec) << t.dump(1);
  EXPECT_EQ(rec->value("warningSignal", ""), "SIGTERM") << rec->dump();
  EXPECT_EQ(rec->value("ending", ""), "ended_by_signal") << rec->dump();
  EXPECT_EQ(rec->value("endSignal", ""), "SIGTERM") << rec->dump();
  // The cancel signal stays apart: none was sent.
  EXPECT_EQ(rec->value("signal", ""), "") << rec->dump();
  EXPECT_THAT(o.out, HasSubstr("step \"slow\": the deadline warning signal SIGTERM ended pid " +
                               std::to_string(main) + " ("));
}

// The shell outlives the warning (its trap), its `sleep` does not, and the shell then exits
// 128 + SIGTERM: the step's error says whose signal that was (a bare "exit status 143" did not).
TEST_F(WarningTruthCli, AShellExitingWithItsChildsDeathByTheWarningSaysWhoseSignal) {
  if (!KernelAtLeast(6, 15)) GTEST_SKIP() << "the status of a child its shell reaped needs Linux 6.15";
  dir.Write("t.yml", Steps({{"slow", "trap 'echo warned' TERM\nsleep 300"}}));
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "300s", "--warn-before",
                            "299s", "--warn-signal", "SIGTERM", "--step-results-file",
                            dir / "r.json"},
                           {.cwd = dir.path()});
  ASSERT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.out, HasSubstr("warned"));
  const json t = json::parse(dir.Read("r.json"))["subStepResults"][0]["termination"];
  ASSERT_TRUE(t.is_object()) << "no termination record for the step";
  EXPECT_EQ(t.value("reason", ""), "deadline_warning") << t.dump(1);
  pid_t sleep_pid = 0;
  for (const auto& p : t.value("processes", json::array())) {
    if (p.value("command", "").rfind("sleep", 0) == 0) sleep_pid = p.value("pid", 0);
  }
  ASSERT_NE(sleep_pid, 0) << t.dump(1);
  EXPECT_THAT(o.err, HasSubstr("step \"slow\": exec: exit status 143 (128 + SIGTERM: the runner's "
                               "deadline warning signal ended pid " + std::to_string(sleep_pid) + ")"));
  // "(sleep 300)", or "(sleep)" when the warning's scan named it by its task name.
  EXPECT_THAT(o.out, HasSubstr("the deadline warning signal SIGTERM ended pid " +
                               std::to_string(sleep_pid) + " (sleep"));
}

TEST_F(WarningTruthCli, ADiagnoseStepKilledAtTheJobsEndIsNotATimeout) {
  dir.Write("t.yml", WithSlowDiagnose(0));
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "300s", "--warn-before",
                            "299s", "--step-results-file", dir / "r.json"},
                           {.cwd = dir.path()});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const pid_t diag = ReadPids(dir / "diag.pid").at(0);
  EXPECT_FALSE(ProcessAlive(diag));
  const json r = json::parse(dir.Read("r.json"));
  const json* dump = nullptr;
  for (const auto& s : r["subStepResults"]) {
    if (s["step"].value("name", "") == "dump") dump = &s;
  }
  ASSERT_TRUE(dump) << r.dump(1);
  const json t = dump->value("termination", json::object());
  EXPECT_EQ(t.value("reason", ""), "job_ended") << t.dump(1);
  ASSERT_TRUE(t.contains("processes")) << t.dump(1);
  const json* rec = FindPid(t["processes"], diag);
  ASSERT_TRUE(rec) << t.dump(1);
  EXPECT_EQ(rec->value("ending", ""), "killed_forced") << rec->dump();
  EXPECT_THAT(o.out, HasSubstr("processes of diagnose steps still running (job_ended)"));
}

class WarningTruthService : public TreeTest {
 protected:
  LiveServer server{dir};
};

TEST_F(WarningTruthService, AStepKilledByTheWarningSignalFailsSayingSoAndIsRecorded) {
  proto::RunRequest req = Request("w", Steps({{"slow", kUnhandledWarning}}), dir.path());
  req.mutable_timeout()->set_seconds(300);
  req.mutable_warn_before()->set_seconds(299);
  req.set_warn_signal("SIGTERM");
  ASSERT_TRUE(server.Run(req).ok());
  const proto::Status end = server.WaitEnded("w");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_EQ(end.error().kind(), proto::StatusError::step_failure) << end.error().DebugString();
  EXPECT_THAT(end.error().message(), HasSubstr("(the runner's deadline warning signal)"));
  // The job's record: the warning, and the process it ended.
  ASSERT_TRUE(end.has_termination());
  const auto& t = end.termination();
  ASSERT_GE(t.processes_size(), 1) << t.DebugString();
  const pid_t main = t.processes(0).pid();
  for (pid_t written : ReadPids(dir / "main.pid")) EXPECT_EQ(written, main) << t.DebugString();
  EXPECT_EQ(t.warning_signal(), "SIGTERM") << t.DebugString();
  // Warned, never cancelled: the job's record says so (it said reason_unspecified).
  EXPECT_EQ(t.reason(), proto::Termination::deadline_warning) << t.DebugString();
  bool found = false;
  for (const auto& p : t.processes()) {
    if (p.pid() != main) continue;
    found = true;
    EXPECT_EQ(p.warning_signal(), "SIGTERM") << p.DebugString();
    EXPECT_EQ(p.ending(), proto::Termination::ProcessRecord::ended_by_signal) << p.DebugString();
    EXPECT_EQ(p.end_signal(), "SIGTERM") << p.DebugString();
  }
  EXPECT_TRUE(found) << t.DebugString();
  EXPECT_EQ(end.result().sub_step_results(0).termination().reason(),
            proto::Termination::deadline_warning);
}

// The job fails by itself; its diagnose step, killed at its end, makes it neither cancelled nor
// timed out, and is not in the job's record (it has its own).
TEST_F(WarningTruthService, ADiagnoseStepKilledAtTheJobsEndIsNotATimeout) {
  proto::RunRequest req = Request("d", WithSlowDiagnose(3), dir.path());
  req.mutable_timeout()->set_seconds(300);
  req.mutable_warn_before()->set_seconds(299);
  ASSERT_TRUE(server.Run(req).ok());
  const proto::Status end = server.WaitEnded("d");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_EQ(end.error().kind(), proto::StatusError::step_failure) << end.error().DebugString();
  EXPECT_THAT(end.error().message(), HasSubstr("exit status 3"));
  EXPECT_FALSE(end.has_cancel_time());
  const pid_t diag = ReadPids(dir / "diag.pid").at(0);
  EXPECT_EQ(end.termination().reason(), proto::Termination::deadline_warning)
      << end.termination().DebugString();
  for (const auto& p : end.termination().processes()) EXPECT_NE(p.pid(), diag) << p.DebugString();
  bool found = false;
  for (const auto& s : end.result().sub_step_results()) {
    if (s.step().name() != "dump") continue;
    found = true;
    EXPECT_EQ(s.termination().reason(), proto::Termination::job_ended) << s.DebugString();
  }
  EXPECT_TRUE(found) << end.result().DebugString();
}

}  // namespace
}  // namespace sr::test
