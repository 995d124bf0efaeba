// The gRPC service end to end: a live `step-runner serve` child, the generated C++ stub over the
// real unix socket, real step processes. No timing assertions: waits are on files and states, and
// the harness's timeouts are only safety nets.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proto/step.grpc.pb.h"
#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

TEST(Service, FollowLogsIsByteExact) {
  TestDir dir;
  LiveServer server(dir);
  std::string script =
      "while [ ! -f " + dir / "release" + " ]; do sleep 0.02; done\n"
      "printf 'first\\n\\n\\nsecond\\n'\n"
      "head -c 1048576 /dev/zero | tr '\\0' x; echo\n"
      "printf '\\n\\n'\n"
      "printf 'tail-without-newline'";
  ASSERT_TRUE(server.Run(Request("bytes", Steps({{"a", script}}), dir.path())).ok());

  // Two followers attached before the output exists see identical bytes.
  std::string a, b;
  grpc::Status sa, sb;
  std::thread fa([&] { a = server.Follow("bytes", 0, &sa); });
  std::thread fb([&] { b = server.Follow("bytes", 0, &sb); });
  dir.Write("release", "");
  fa.join();
  fb.join();
  ASSERT_TRUE(sa.ok()) << sa.error_message();
  ASSERT_TRUE(sb.ok()) << sb.error_message();
  EXPECT_EQ(a, b);

  std::string expected = "first\n\n\nsecond\n" + std::string(1 << 20, 'x') + "\n\n\ntail-without-newline";
  EXPECT_NE(a.find(expected), std::string::npos) << "log of " << a.size() << " bytes";
  EXPECT_EQ(a.size() - a.find(expected), expected.size()) << "nothing may follow the last byte";
  // The stream is the file, byte for byte.
  EXPECT_EQ(a, dir.Read(JobDir(dir, "bytes") + "/logs"));

  // Resuming from any offset continues exactly where a client stopped.
  for (size_t off : {size_t{0}, size_t{1}, a.size() / 2, a.size() - 1, a.size(), a.size() + 100}) {
    grpc::Status s;
    std::string rest = server.Follow("bytes", static_cast<int64_t>(off), &s);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(rest, off < a.size() ? a.substr(off) : "") << "offset " << off;
  }
  EXPECT_EQ(server.WaitEnded("bytes").status(), proto::StepResult::success);
}

// Followers at the same offset are sent one shared read of the log (service/log_messages.h):
// four of them, through a burst that leaves them behind and through small writes that find them
// waiting, each get the file byte for byte, whatever pieces they shared.
TEST(Service, FourFollowersSharingReadsEachGetEveryByteInOrder) {
  TestDir dir;
  LiveServer server(dir);
  std::string script =
      "while [ ! -f " + dir / "release" + " ]; do sleep 0.02; done\n"
      "seq 1 600000\n"                                              // ~4 MB at once
      "for i in $(seq 1 40); do seq $i 7 30000; sleep 0.01; done\n"  // then in small pieces
      "printf 'end-without-newline'";
  ASSERT_TRUE(server.Run(Request("four", Steps({{"a", script}}), dir.path())).ok());
  std::vector<std::string> got(4);
  std::vector<grpc::Status> statuses(4);
  std::vector<std::thread> followers;
  for (size_t i = 0; i < got.size(); ++i) {
    followers.emplace_back([&, i] { got[i] = server.Follow("four", 0, &statuses[i]); });
  }
  dir.Write("release", "");
  for (auto& t : followers) t.join();
  EXPECT_EQ(server.WaitEnded("four").status(), proto::StepResult::success);
  const std::string file = dir.Read(JobDir(dir, "four") + "/logs");
  ASSERT_GT(file.size(), size_t{4} << 20);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_TRUE(got[i] == file) << "follower " << i << ": " << got[i].size() << " bytes of "
                                << file.size();
  }
}

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
  EXPECT_TRUE(server.CancelJob("trap").ok());  // idempotent

  dir.Write("release", "");
  proto::Status end = server.WaitEnded("trap");
  EXPECT_EQ(end.status(), proto::StepResult::cancelled);
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

TEST(Service, FiftyConcurrentJobs) {
  TestDir dir;
  LiveServer server(dir);
  constexpr int kJobs = 50;
  for (int i = 0; i < kJobs; ++i) {
    std::string id = "job-" + std::to_string(i);
    ASSERT_TRUE(server.Run(Request(id, Steps({{"a", "echo start " + id + "; sleep 0.2; echo end " + id}}), dir.path())).ok());
  }
  std::vector<std::string> logs(kJobs);
  std::vector<grpc::Status> statuses(kJobs);
  std::vector<std::thread> followers;
  for (int i = 0; i < kJobs; ++i) {
    followers.emplace_back([&, i] { logs[i] = server.Follow("job-" + std::to_string(i), 0, &statuses[i]); });
  }
  for (auto& t : followers) t.join();
  EXPECT_EQ(server.All().jobs_size(), kJobs);
  for (int i = 0; i < kJobs; ++i) {
    std::string id = "job-" + std::to_string(i);
    EXPECT_TRUE(statuses[i].ok()) << statuses[i].error_message();
    EXPECT_THAT(logs[i], HasSubstr("start " + id + "\nend " + id + "\n"));
    EXPECT_EQ(server.WaitEnded(id).status(), proto::StepResult::success) << id;
  }
  for (int i = 0; i < kJobs; ++i) EXPECT_TRUE(server.CloseJob("job-" + std::to_string(i)).ok());
  EXPECT_EQ(server.All().jobs_size(), 0);
}

TEST(Service, AFollowerThatGoesAwayDoesNotDisturbTheServer) {
  TestDir dir;
  LiveServer server(dir);
  std::string script = "i=0; while [ ! -f " + dir / "release" + " ]; do i=$((i+1)); echo line $i; sleep 0.01; done; echo finished";
  ASSERT_TRUE(server.Run(Request("chatty", Steps({{"a", script}}), dir.path())).ok());
  for (int round = 0; round < 5; ++round) {
    grpc::ClientContext ctx;
    proto::FollowLogsRequest req;
    req.set_id("chatty");
    auto reader = server.stub().FollowLogs(&ctx, req);
    proto::FollowLogsResponse chunk;
    std::string got;
    while (got.find("line ") == std::string::npos) {  // mid-stream: the step is printing
      ASSERT_TRUE(reader->Read(&chunk));
      got += chunk.data();
    }
    ctx.TryCancel();
    while (reader->Read(&chunk)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(server.GetStatusOrDie("chatty").status(), proto::StepResult::running);
  dir.Write("release", "");
  grpc::Status s;
  std::string all = server.Follow("chatty", 0, &s);
  EXPECT_TRUE(s.ok());
  EXPECT_THAT(all, HasSubstr("line 1\n"));
  EXPECT_THAT(all, HasSubstr("finished\n"));
  EXPECT_EQ(server.WaitEnded("chatty").status(), proto::StepResult::success);
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
