// The gRPC service end to end, through a live `step-runner serve` and its stub: the answers to
// requests (codes, idempotent Run, failed steps, job variables) and the server's socket at start.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

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

TEST(Service, StatusCodes) {
  TestDir dir;
  LiveServer server(dir);
  auto& stub = server.stub();

  // Unknown ids: NOT_FOUND with the Go wording, except Close which is idempotent.
  {
    grpc::ClientContext ctx;
    proto::StatusRequest req;
    req.set_id("nope");
    proto::StatusResponse resp;
    grpc::Status s = stub.Status(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_EQ(s.error_message(), "no job with id \"nope\"");
  }
  EXPECT_EQ(server.CancelJob("nope").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(server.CloseJob("nope").error_code(), grpc::StatusCode::OK);
  grpc::Status fs;
  server.Follow("nope", 0, &fs);
  EXPECT_EQ(fs.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(fs.error_message(), "no job with id \"nope\"");

  // Malformed ids.
  for (const std::string& id : {std::string(), std::string(129, 'a'), std::string("a/b"),
                                std::string("a\0b", 3), std::string("a..b")}) {
    EXPECT_EQ(server.Run(Request(id, Steps({{"a", "true"}}), dir.path())).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << id;
    if (!id.empty()) {
      EXPECT_EQ(server.CancelJob(id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << id;
    }
  }
  EXPECT_TRUE(server.Run(Request(std::string(128, 'a'), Steps({{"a", "true"}}), dir.path())).ok());

  // Step text that does not parse names the problem and its line.
  grpc::Status bad = server.Run(Request("bad", "spec: {}\n---\nrun:\n  - name: a\n    scrip: true\n", dir.path()));
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("scrip"));
  EXPECT_THAT(bad.error_message(), HasSubstr("<request>:5"));

  // Negative durations and offsets; a warning that is not before the deadline.
  proto::RunRequest neg = Request("neg", Steps({{"a", "true"}}), dir.path());
  neg.mutable_graceful_exit_timeout()->set_seconds(-1);
  EXPECT_EQ(server.Run(neg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  neg = Request("neg", Steps({{"a", "true"}}), dir.path());
  neg.mutable_timeout()->set_nanos(-5);
  EXPECT_EQ(server.Run(neg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  neg = Request("neg", Steps({{"a", "true"}}), dir.path());
  neg.mutable_timeout()->set_seconds(1);
  neg.mutable_warn_before()->set_seconds(1);
  EXPECT_EQ(server.Run(neg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  neg = Request("neg", Steps({{"a", "true"}}), dir.path());
  neg.set_warn_signal("SIGNOPE");
  EXPECT_EQ(server.Run(neg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A warning that would kill (or freeze) the step instead of letting it report.
  neg.mutable_timeout()->set_seconds(10);
  neg.mutable_warn_before()->set_seconds(5);
  neg.set_warn_signal("SIGKILL");
  grpc::Status kill_warning = server.Run(neg);
  EXPECT_EQ(kill_warning.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(kill_warning.error_message(),
            "warn_signal: SIGKILL cannot be a warning: it ends the process (use timeout)");
  neg.set_warn_signal("SIGSTOP");
  EXPECT_EQ(server.Run(neg).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Not a protobuf Duration at all: nanos out of ±999,999,999 (it was taken as 2 s).
  for (auto field : {&proto::RunRequest::mutable_timeout, &proto::RunRequest::mutable_warn_before,
                     &proto::RunRequest::mutable_graceful_exit_timeout}) {
    proto::RunRequest invalid = Request("invalid", Steps({{"a", "true"}}), dir.path());
    invalid.mutable_timeout()->set_seconds(100);
    (invalid.*field)()->set_seconds(0);
    (invalid.*field)()->set_nanos(2000000000);
    grpc::Status s = server.Run(invalid);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(": invalid duration: nanos 2000000000 out of range"));
  }
  server.Follow("nope", -1, &fs);
  EXPECT_EQ(fs.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // A setup error answers with the error and leaves nothing behind.
  dir.Write("a-file", "");
  grpc::Status setup = server.Run(Request("setup", Steps({{"a", "true"}}), dir / "a-file/sub"));
  EXPECT_EQ(setup.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << setup.error_message();
  EXPECT_FALSE(dir.Exists(JobDir(dir, "setup")));
  EXPECT_EQ(server.GetStatus("setup").error_code(), grpc::StatusCode::NOT_FOUND);

  // None of the rejected requests left a job behind.
  proto::StatusResponse all = server.All();
  ASSERT_EQ(all.jobs_size(), 1);
  EXPECT_EQ(all.jobs(0).id(), std::string(128, 'a'));
}

TEST(Service, RunWithARegisteredIdIsAnAtomicNoOp) {
  TestDir dir;
  LiveServer server(dir);
  std::string count = dir / "count";
  proto::RunRequest req = Request(
      "once", Steps({{"a", "echo x >> " + count + "; while [ ! -f " + dir / "release" + " ]; do sleep 0.02; done"}}),
      dir.path());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (server.Run(req).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  // A retry with other steps changes nothing either.
  EXPECT_TRUE(server.Run(Request("once", Steps({{"b", "touch " + dir / "other"}}), dir.path())).ok());
  dir.Write("release", "");
  EXPECT_EQ(server.WaitEnded("once").status(), proto::StepResult::success);
  EXPECT_EQ(dir.Read("count"), "x\n");
  EXPECT_FALSE(dir.Exists("other"));
}

TEST(Service, FailedStepIsAStepFailure) {
  TestDir dir;
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("fail", Steps({{"build", "exit 2"}}), dir.path())).ok());
  proto::Status end = server.WaitEnded("fail");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_EQ(end.error().kind(), proto::StatusError::step_failure);
  EXPECT_EQ(end.message(), "step \"build\": exec: exit status 2");
  EXPECT_FALSE(end.has_termination());
  EXPECT_FALSE(end.has_cancel_time());
}

// Status(id) brings the result tree up to date when asked (a step only marks it stale): one
// Status, without polling, already shows every step that ended and the one running.
TEST(Service, StatusOfARunningJobShowsEveryStepSoFar) {
  TestDir dir;
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("tree", Steps({{"one", "true"}, {"two", "exit 0"},
                                               {"three", "touch " + dir / "ready" + "; sleep 300"}}),
                                 dir.path())).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
  proto::Status now = server.GetStatusOrDie("tree");
  EXPECT_EQ(now.status(), proto::StepResult::running);
  ASSERT_EQ(now.result().sub_step_results_size(), 3) << now.DebugString();
  EXPECT_EQ(now.result().sub_step_results(0).status(), proto::StepResult::success);
  EXPECT_EQ(now.result().sub_step_results(1).status(), proto::StepResult::success);
  EXPECT_EQ(now.result().sub_step_results(2).status(), proto::StepResult::running);
  ASSERT_TRUE(server.CloseJob("tree").ok());
}

TEST(Service, JobVariablesFilesEnvAndMasking) {
  TestDir dir;
  LiveServer server(dir);
  proto::RunRequest req = Request(
      "vars",
      Steps({{"a", "echo plain=${{ job.PLAIN }} env=$MY_ENV level=$CI_STEPS_LOG_LEVEL\n"
                   "cat '${{ job.CONFIG }}'; echo\n"
                   "stat -c mode=%a '${{ job.CONFIG }}'\n"
                   "echo path=${{ job.CONFIG }}\n"
                   "echo token=${{ job.TOKEN }}"}}),
      dir.path());
  (*req.mutable_env())["MY_ENV"] = "from-request";
  auto* plain = req.mutable_job()->add_variables();
  plain->set_key("PLAIN");
  plain->set_value("v1");
  auto* file = req.mutable_job()->add_variables();
  file->set_key("CONFIG");
  file->set_value("file-content");
  file->set_file(true);
  auto* token = req.mutable_job()->add_variables();
  token->set_key("TOKEN");
  token->set_value("s3cr3t-value");
  token->set_masked(true);
  ASSERT_TRUE(server.Run(req).ok());
  proto::Status end = server.WaitEnded("vars");
  ASSERT_EQ(end.status(), proto::StepResult::success) << end.message();
  grpc::Status fs;
  std::string log = server.Follow("vars", 0, &fs);
  EXPECT_THAT(log, HasSubstr("plain=v1 env=from-request level="));
  EXPECT_THAT(log, HasSubstr("file-content\nmode=600\n"));
  EXPECT_THAT(log, HasSubstr("path=" + JobDir(dir, "vars") + "/CONFIG\n"));
  EXPECT_THAT(log, HasSubstr("token=[MASKED]\n"));
  EXPECT_EQ(log.find("s3cr3t-value"), std::string::npos);
  EXPECT_EQ(end.DebugString().find("s3cr3t-value"), std::string::npos);

  // A file variable must be a plain file name inside the job dir.
  proto::RunRequest escape = Request("escape", Steps({{"a", "true"}}), dir.path());
  auto* bad = escape.mutable_job()->add_variables();
  bad->set_key("../../etc/evil");
  bad->set_file(true);
  EXPECT_EQ(server.Run(escape).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(Service, StaleSocketIsReplacedLiveOneIsAnError) {
  TestDir dir;
  {
    LiveServer first(dir);
    Output second = RunStepRunner({"serve", "--socket", first.socket()}, ServerOptions(dir));
    EXPECT_EQ(second.exit_code, 1);
    EXPECT_THAT(second.err, HasSubstr("another server is listening"));
    first.child().Signal(SIGKILL);  // dies without removing its socket
    first.child().Wait();
    ASSERT_TRUE(dir.Exists(first.socket()));
  }
  LiveServer replacement(dir);
  EXPECT_EQ(replacement.All().jobs_size(), 0);
  struct stat st {};
  ASSERT_EQ(::stat(replacement.socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A missing DIR is created, private (contract section 7 item 6); a file in its place is not.
  Child made({Binary(), "serve", dir / "missing/sub"}, ServerOptions(dir));
  ASSERT_TRUE(made.WaitForFile(dir / "missing/sub/step-runner.sock"));
  ASSERT_EQ(::stat((dir / "missing/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  made.Signal(SIGTERM);
  EXPECT_EQ(made.Wait().exit_code, 0);
  dir.Write("file", "");
  Output bad_dir = RunStepRunner({"serve", dir / "file"}, ServerOptions(dir));
  EXPECT_EQ(bad_dir.exit_code, 2);
  EXPECT_THAT(bad_dir.err, HasSubstr(dir / "file"));
}

}  // namespace
}  // namespace sr::test
