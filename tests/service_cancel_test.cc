// How the service stops jobs, end to end: Cancel and its grace, the timeout and its warning, Close
// of a running job, reaping after the retention, and SIGTERM (once, twice) to the server.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "proto/step.grpc.pb.h"
#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

TEST(Service, CancelRunsTheStepsCleanupThenReportsCancelled) {
  TestDir dir;
  LiveServer server(dir);
  std::string script = "trap 'touch " + dir / "cleaning" + "; while [ ! -f " + dir / "release" +
                       " ]; do sleep 0.02; done; touch " + dir / "cleaned" + "; exit 3' TERM\n"
                       "touch " + dir / "ready" + "\nwhile :; do sleep 0.02; done";
  proto::RunRequest req = Request("trap", Steps({{"trapper", script}, {"never", "touch " + dir / "never"}}), dir.path());
  req.mutable_graceful_exit_timeout()->set_seconds(120);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));

  ASSERT_TRUE(server.CancelJob("trap").ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("cleaning"); }));
  proto::Status during = server.GetStatusOrDie("trap");
  EXPECT_EQ(during.status(), proto::StepResult::cancelling);
  EXPECT_TRUE(during.has_cancel_time());
  EXPECT_FALSE(during.has_end_time());
  // A Cancel (and the end) publish the job's outline only; Status(id) builds the trees when asked.
  ASSERT_TRUE(during.has_termination());
  EXPECT_EQ(during.termination().reason(), proto::Termination::cancel_requested);
  EXPECT_GT(during.termination().processes_size(), 0);
  ASSERT_GE(during.result().sub_step_results_size(), 1);
  EXPECT_EQ(during.result().sub_step_results(0).step().name(), "trapper");
  auto listed = [&server] {
    grpc::ClientContext ctx;
    proto::StatusResponse listing;
    EXPECT_TRUE(server.stub().Status(&ctx, proto::StatusRequest(), &listing).ok());
    EXPECT_EQ(listing.jobs_size(), 1);
    return listing.jobs_size() == 1 ? listing.jobs(0) : proto::Status();
  };
  EXPECT_EQ(listed().status(), proto::StepResult::cancelling);
  EXPECT_TRUE(listed().has_cancel_time());
  EXPECT_TRUE(server.CancelJob("trap").ok());  // idempotent

  dir.Write("release", "");
  proto::Status end = server.WaitEnded("trap");
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
  EXPECT_EQ(listed().status(), proto::StepResult::cancelled);
  EXPECT_TRUE(listed().has_end_time());
  EXPECT_EQ(listed().error().kind(), proto::StatusError::cancelled);
  EXPECT_EQ(end.error().kind(), proto::StatusError::cancelled);
  EXPECT_THAT(end.message(), HasSubstr("trapper"));
  EXPECT_TRUE(end.has_cancel_time());
  EXPECT_TRUE(end.has_end_time());
  EXPECT_TRUE(dir.Exists("cleaned"));
  EXPECT_FALSE(dir.Exists("never"));
  ASSERT_TRUE(end.has_termination());
  EXPECT_EQ(end.termination().reason(), proto::Termination::cancel_requested);
  EXPECT_FALSE(end.termination().forced());
  EXPECT_GT(end.termination().processes_size(), 0);
  ASSERT_GE(end.result().sub_step_results_size(), 1);
  EXPECT_EQ(end.result().sub_step_results(0).status(), proto::StepResult::cancelled);

  // Cancel of a finished job is OK and changes nothing; status and logs stay until Close.
  EXPECT_TRUE(server.CancelJob("trap", true).ok());
  proto::Status again = server.GetStatusOrDie("trap");
  EXPECT_EQ(again.status(), proto::StepResult::cancelled);
  EXPECT_FALSE(again.termination().forced());
  grpc::Status fs;
  EXPECT_FALSE(server.Follow("trap", 0, &fs).empty());
  EXPECT_TRUE(server.CloseJob("trap").ok());
  EXPECT_EQ(server.GetStatus("trap").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(Service, CancelKillsAStepThatIgnoresTheSignalAfterTheGrace) {
  TestDir dir;
  LiveServer server(dir);
  proto::RunRequest req = Request(
      "deaf", Steps({{"deaf", "trap '' TERM; touch " + dir / "ready" + "; while :; do sleep 0.02; done"}}),
      dir.path());
  req.mutable_graceful_exit_timeout()->set_nanos(200 * 1000 * 1000);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
  ASSERT_TRUE(server.CancelJob("deaf").ok());
  proto::Status end = server.WaitEnded("deaf");
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
  EXPECT_EQ(end.error().kind(), proto::StatusError::cancelled);
  bool killed = false;
  for (const auto& p : end.termination().processes()) {
    killed |= p.ending() == proto::Termination::ProcessRecord::killed_after_grace;
  }
  EXPECT_TRUE(killed) << end.termination().DebugString();
}

TEST(Service, TimeoutIsAFailureOfKindTimedOut) {
  TestDir dir;
  LiveServer server(dir);
  proto::RunRequest req = Request("slow", Steps({{"slow", "sleep 60"}}), dir.path());
  req.mutable_timeout()->set_nanos(300 * 1000 * 1000);
  ASSERT_TRUE(server.Run(req).ok());
  proto::Status end = server.WaitEnded("slow");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_EQ(end.error().kind(), proto::StatusError::timed_out);
  EXPECT_TRUE(end.has_cancel_time());
  EXPECT_EQ(end.termination().reason(), proto::Termination::timed_out);
  // The root result agrees with the job's state; the step the deadline stopped is `cancelled`.
  EXPECT_EQ(end.result().status(), proto::StepResult::failure);
  ASSERT_EQ(end.result().sub_step_results_size(), 1) << end.DebugString();
  EXPECT_EQ(end.result().sub_step_results(0).status(), proto::StepResult::cancelled);
}

TEST(Service, CloseOfARunningJobLeavesNoProcessAndNoFiles) {
  TestDir dir;
  LiveServer server(dir);
  std::string script = "setsid sh -c 'echo $$ > " + dir / "daemon.pid.tmp" + "; mv " + dir / "daemon.pid.tmp" +
                       " " + dir / "daemon.pid" + "; exec sleep 300' &\n"
                       "while [ ! -f " + dir / "daemon.pid" + " ]; do sleep 0.02; done\n"
                       "touch " + dir / "ready" + "\nsleep 300";
  proto::RunRequest req = Request("daemon", Steps({{"a", script}}), dir.path());
  req.mutable_graceful_exit_timeout()->set_nanos(300 * 1000 * 1000);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
  std::vector<pid_t> pids = ReadPids(dir / "daemon.pid");
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_TRUE(dir.Exists(JobDir(dir, "daemon") + "/logs"));

  ASSERT_TRUE(server.CloseJob("daemon").ok());
  EXPECT_FALSE(ProcessAlive(pids[0])) << "daemon " << pids[0] << " survived Close";
  EXPECT_FALSE(dir.Exists(JobDir(dir, "daemon")));
  EXPECT_EQ(server.GetStatus("daemon").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(server.CloseJob("daemon").ok());  // idempotent
}

TEST(Service, SigtermCancelsRunningJobsRemovesTheSocketAndExitsZero) {
  TestDir dir;
  LiveServer server(dir);
  for (int i = 0; i < 3; ++i) {
    std::string n = std::to_string(i);
    std::string script = "trap 'touch " + dir / ("cleaned" + n) + "; exit 1' TERM; touch " +
                         dir / ("ready" + n) + "; while :; do sleep 0.02; done";
    proto::RunRequest req = Request("job" + n, Steps({{"a", script}}), dir.path());
    req.mutable_graceful_exit_timeout()->set_seconds(60);
    ASSERT_TRUE(server.Run(req).ok());
  }
  // A finished job's files go too.
  ASSERT_TRUE(server.Run(Request("done", Steps({{"a", "true"}}), dir.path())).ok());
  server.WaitEnded("done");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready" + std::to_string(i)); }));
  }
  // A follower is ended by the shutdown too.
  grpc::Status follow_status;
  std::string followed;
  std::atomic<bool> attached{false};
  std::thread follower([&] { followed = server.Follow("job0", 0, &follow_status, [&] { attached = true; }); });
  ASSERT_TRUE(WaitFor([&] { return attached.load(); }));

  server.child().Signal(SIGTERM);
  Output out = server.child().Wait();
  follower.join();
  EXPECT_EQ(out.exit_code, 0) << out.err;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(dir.Exists("cleaned" + std::to_string(i))) << i;
  EXPECT_FALSE(dir.Exists(server.socket()));
  for (const char* id : {"job0", "job1", "job2", "done"}) EXPECT_FALSE(dir.Exists(JobDir(dir, id))) << id;
  EXPECT_TRUE(follow_status.ok()) << follow_status.error_message();
  EXPECT_THAT(out.err, HasSubstr("shutting down"));
}

TEST(Service, ASecondSignalKillsJobsThatIgnoreTheFirst) {
  TestDir dir;
  LiveServer server(dir);
  std::string script = "trap '' TERM; echo $$ > " + dir / "pid.tmp" + "; mv " + dir / "pid.tmp" + " " +
                       dir / "pid" + "; while :; do sleep 0.02; done";
  proto::RunRequest req = Request("deaf", Steps({{"a", script}}), dir.path());
  req.mutable_graceful_exit_timeout()->set_seconds(600);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("pid"); }));
  pid_t pid = ReadPids(dir / "pid").at(0);
  server.child().Signal(SIGTERM);
  // Once shutting down, the server refuses new jobs (UNAVAILABLE); the job's Status is still
  // answered, and says it is being cancelled.
  ASSERT_TRUE(WaitFor([&] {
    return server.Run(Request("late", Steps({{"a", "true"}}), dir.path())).error_code() ==
           grpc::StatusCode::UNAVAILABLE;
  }));
  EXPECT_EQ(server.GetStatusOrDie("deaf").status(), proto::StepResult::cancelling);
  EXPECT_TRUE(ProcessAlive(pid));
  server.child().Signal(SIGTERM);
  Output out = server.child().Wait();
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_FALSE(dir.Exists(server.socket()));
}

TEST(Service, WarningBeforeTheDeadlineSignalsTheSteps) {
  TestDir dir;
  LiveServer server(dir);
  std::string script = "trap 'touch " + dir / "warned" + "' USR1\ntouch " + dir / "ready" +
                       "\nwhile :; do sleep 0.02; done";
  proto::RunRequest req = Request("warn", Steps({{"a", script}}), dir.path());
  req.mutable_timeout()->set_seconds(300);
  req.mutable_warn_before()->set_seconds(295);  // at 5 s: the trap is set by then
  req.set_warn_signal("SIGUSR1");
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("warned"); }));
  ASSERT_TRUE(server.CancelJob("warn").ok());
  proto::Status end = server.WaitEnded("warn");
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
  EXPECT_TRUE(end.termination().has_warning_time()) << end.termination().DebugString();
}

TEST(Service, FinishedJobsAreReapedAfterTheRetention) {
  TestDir dir;
  LiveServer server(dir, {"--retention", "100ms"});
  ASSERT_TRUE(server.Run(Request("old", Steps({{"a", "true"}}), dir.path())).ok());
  // Not waited for as "ended" first: on a slow machine (TSan) the job can end and be forgotten
  // before a poll sees it ended. Forgotten is what only a finished job can be.
  ASSERT_TRUE(WaitFor([&] { return server.GetStatus("old").error_code() == grpc::StatusCode::NOT_FOUND; }));
  EXPECT_FALSE(dir.Exists(JobDir(dir, "old")));
}

}  // namespace
}  // namespace sr::test
