// The termination record tells what happened (issue 13), through the service: Status's record and
// log, Status during the grace, the warning, leftovers, every command, and run.termination.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/records.h"
#include "support/service_client.h"
#include "support/termination_truth.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class TerminationTruthService : public TreeTest {
 protected:
  proto::Status CancelWhenReady(const std::string& id, proto::RunRequest req) {
    EXPECT_TRUE(server.Run(req).ok());
    EXPECT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
    EXPECT_TRUE(server.CancelJob(id).ok());
    return server.WaitEnded(id);
  }
  LiveServer server{dir};
};

TEST_F(TerminationTruthService, RecordAndLogStateTheEffectiveGrace) {
  dir.Write("inner/step.yml", kShortGraceStep);
  proto::Status end = CancelWhenReady("g", Request("g", kRunInner, dir.path()));
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
  ASSERT_TRUE(end.has_termination());
  EXPECT_EQ(end.termination().grace().seconds(), 1) << end.termination().DebugString();
  ASSERT_EQ(end.termination().processes_size(), 1);
  EXPECT_EQ(end.termination().processes(0).signal(), "SIGINT");
  grpc::Status fs;
  EXPECT_THAT(server.Follow("g", 0, &fs), HasSubstr("SIGINT to 1 processes, grace 1s"));
}

// Status read during the grace has the processes the cancel signalled: the one still running
// as still_running, the one that obeyed as it ended (the record had no processes until the end).
TEST_F(TerminationTruthService, StatusDuringTheGraceListsWhatTheCancelDid) {
  proto::RunRequest req = Request(
      "d", Steps({{"d", "(trap '' TERM; : > ready; while :; do sleep 0.05; done) &\nwait"}}), dir.path());
  req.mutable_graceful_exit_timeout()->set_seconds(600);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
  ASSERT_TRUE(server.CancelJob("d").ok());
  // The shell obeys SIGTERM; its TERM-ignoring subshell runs on until the forced cancel.
  proto::Status during;
  ASSERT_TRUE(WaitFor([&] {
    during = server.GetStatusOrDie("d");
    int ended = 0, running = 0;
    for (const auto& p : during.termination().processes()) {
      ended += p.ending() == proto::Termination::ProcessRecord::ended_by_signal;
      running += p.ending() == proto::Termination::ProcessRecord::still_running;
    }
    return ended >= 1 && running >= 1;
  })) << during.termination().DebugString();
  EXPECT_EQ(during.status(), proto::StepResult::cancelling);
  for (const auto& p : during.termination().processes()) EXPECT_EQ(p.signal(), "SIGTERM") << p.DebugString();
  ASSERT_TRUE(server.CancelJob("d", true).ok());
  const proto::Status end = server.WaitEnded("d");
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
  for (const auto& p : end.termination().processes()) {
    EXPECT_NE(p.ending(), proto::Termination::ProcessRecord::still_running) << p.DebugString();
  }
}

TEST_F(TerminationTruthService, WarningSignalIsKeptApartFromTheCancelSignal) {
  proto::RunRequest req = Request("w", Steps({{"w", kWarnedScript}}), dir.path());
  req.mutable_timeout()->set_seconds(300);
  req.mutable_warn_before()->set_seconds(295);
  req.set_warn_signal("SIGQUIT");
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("warned"); }));
  ASSERT_TRUE(server.CancelJob("w").ok());
  proto::Status end = server.WaitEnded("w");
  EXPECT_EQ(end.termination().warning_signal(), "SIGQUIT") << end.termination().DebugString();
  EXPECT_TRUE(end.termination().has_warning_time());
  for (const auto& p : end.termination().processes()) EXPECT_NE(p.signal(), "SIGQUIT");
  ASSERT_GE(end.termination().processes_size(), 1);
  EXPECT_EQ(end.termination().processes(0).signal(), "SIGTERM");
}

TEST_F(TerminationTruthService, LeftoverDaemonIsStoppedRecordedAndNamed) {
  ASSERT_TRUE(server.Run(Request("d", Steps({{"d", kDaemonScript}}), dir.path())).ok());
  proto::Status end = server.WaitEnded("d");
  ASSERT_EQ(end.status(), proto::StepResult::success);
  const pid_t daemon = ReadPids(dir / "daemon.pid").at(0);
  EXPECT_FALSE(ProcessAlive(daemon));
  const auto& t = end.result().sub_step_results(0).termination();
  EXPECT_EQ(t.reason(), proto::Termination::step_ended) << t.DebugString();
  bool found = false;
  for (const auto& p : t.processes()) found |= p.pid() == daemon && p.signal() == "SIGTERM";
  EXPECT_TRUE(found) << t.DebugString();
  grpc::Status fs;
  EXPECT_THAT(server.Follow("d", 0, &fs), HasSubstr("pid " + std::to_string(daemon) + " ("));
}

TEST_F(TerminationTruthService, EveryProcessOfABusyTreeHasACommand) {
  proto::RunRequest req = Request("b", Steps({{"busy", kBusyChildrenScript}}), dir.path());
  req.mutable_graceful_exit_timeout()->set_nanos(500000000);
  proto::Status end = CancelWhenReady("b", req);
  ExpectEveryCommandSet(ToJson(end.termination())["processes"]);
}

TEST_F(TerminationTruthService, RunTerminationHasTheNamesOfStatus) {
  dir.Write("inner/step.yml", kShortGraceStep);
  proto::Status end =
      CancelWhenReady("k", Request("k", WithReport(kRunInner, dir / "final.json"), dir.path()));
  json seen = json::parse(dir.Read("final.json"));
  std::set<std::string> from_run, from_status;
  Keys(seen, &from_run);
  Keys(ToJson(end.termination()), &from_status);
  EXPECT_EQ(from_run, from_status) << seen.dump(1);
}

}  // namespace
}  // namespace sr::test
