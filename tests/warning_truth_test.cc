// The deadline warning tells the truth about what it did: a step that dies of the warning signal
// the runner sent is recorded as such and fails saying so (it failed as a bare
// "exec: signal: SIGTERM", with no record that the runner had sent that signal).
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

// Does not handle SIGTERM: the warning's default action ends it (bash and its sleep).
constexpr char kUnhandledWarning[] = "echo $$ > main.pid\nsleep 300";

class WarningTruthCli : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
};

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
  const pid_t main = ReadPids(dir / "main.pid").at(0);
  const json t = json::parse(dir.Read("r.json"))["subStepResults"][0]["termination"];
  ASSERT_TRUE(t.is_object()) << "no termination record for the step";
  EXPECT_EQ(t.value("reason", ""), "deadline_warning") << t.dump(1);
  EXPECT_EQ(t.value("warningSignal", ""), "SIGTERM") << t.dump(1);
  EXPECT_TRUE(t.contains("warningTime")) << t.dump(1);
  ASSERT_TRUE(t.contains("processes")) << t.dump(1);
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

class WarningTruthService : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
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
  const pid_t main = ReadPids(dir / "main.pid").at(0);
  ASSERT_TRUE(end.has_termination());
  const auto& t = end.termination();
  EXPECT_EQ(t.warning_signal(), "SIGTERM") << t.DebugString();
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

}  // namespace
}  // namespace sr::test
