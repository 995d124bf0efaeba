// RunRequest validation and the error edge, without a server.
#include <cstdint>

#include <gtest/gtest.h>

#include "service/job.h"
#include "service/service.h"
#include "service/status.h"

namespace sr::service {
namespace {

proto::RunRequest Minimal(const std::string& id) {
  proto::RunRequest r;
  r.set_id(id);
  r.set_steps("spec: {}\n---\nrun: []\n");
  return r;
}

TEST(ValidateJobId, RejectsWhatCouldLeaveTheJobDir) {
  EXPECT_TRUE(ValidateJobId("job-1").ok());
  for (const std::string& bad : {std::string(), std::string("a/b"), std::string(".."),
                                std::string("x\0y", 3), std::string(129, 'a')}) {
    Status s = ValidateJobId(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().kind, Error::Kind::kInvalid) << bad;
  }
}

TEST(ParseRunRequest, DefaultsAndTheServerEnvironment) {
  auto job = ParseRunRequest(Minimal("a"), {{"PATH", "/bin"}});
  ASSERT_TRUE(job.ok()) << job.error().message;
  EXPECT_EQ(job->grace, std::chrono::seconds(30));
  EXPECT_EQ(job->timeout.count(), 0);
  EXPECT_EQ(job->env.at("PATH"), "/bin");
  EXPECT_EQ(job->env.at("CI_STEPS_LOG_LEVEL"), "info");
}

TEST(ParseRunRequest, WarningNeedsAShorterTimeoutAndAKnownSignal) {
  proto::RunRequest r = Minimal("w");
  r.mutable_warn_before()->set_seconds(5);
  auto no_timeout = ParseRunRequest(r, {});
  ASSERT_FALSE(no_timeout.ok());
  EXPECT_EQ(no_timeout.error().message, "warn_before needs a timeout");
  r.mutable_timeout()->set_seconds(5);
  auto not_shorter = ParseRunRequest(r, {});
  ASSERT_FALSE(not_shorter.ok());
  EXPECT_NE(not_shorter.error().message.find("must be shorter than timeout"), std::string::npos);
  r.mutable_timeout()->set_seconds(10);
  r.set_warn_signal("SIGNOPE");
  auto bad_signal = ParseRunRequest(r, {});
  ASSERT_FALSE(bad_signal.ok());
  EXPECT_NE(bad_signal.error().message.find("SIGNOPE"), std::string::npos);
  r.set_warn_signal("SIGQUIT");
  auto ok = ParseRunRequest(r, {});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->warn_signal, SIGQUIT);
}

// SIGKILL at the warning killed the step (a failure, and a termination record without a reason)
// instead of letting it be diagnosed; SIGSTOP froze it until the deadline.
TEST(ParseRunRequest, TheWarningSignalCannotEndOrFreezeTheStep) {
  proto::RunRequest r = Minimal("w");
  r.mutable_timeout()->set_seconds(10);
  r.mutable_warn_before()->set_seconds(5);
  for (const char* sig : {"SIGKILL", "9", "SIGSTOP", "stop"}) {
    r.set_warn_signal(sig);
    auto job = ParseRunRequest(r, {});
    ASSERT_FALSE(job.ok()) << sig;
    EXPECT_EQ(job.error().kind, Error::Kind::kInvalid) << sig;
    EXPECT_EQ(job.error().message.rfind("warn_signal: SIG", 0), 0u) << job.error().message;
    EXPECT_NE(job.error().message.find("cannot be a warning"), std::string::npos) << sig;
  }
  r.set_warn_signal("SIGKILL");
  EXPECT_EQ(ParseRunRequest(r, {}).error().message,
            "warn_signal: SIGKILL cannot be a warning: it ends the process (use timeout)");
}

// protobuf's Duration holds nanos within ±999,999,999, of the sign of seconds; {0 s, 2e9 ns} was
// taken as 2 s. Every Duration field of RunRequest is checked, and the error names it.
// Limits below what a process can run in are refused before the job exists (a 1-byte memory
// limit failed the step with "resources (): mkdir ...: Cannot allocate memory").
TEST(ParseRunRequest, LimitsBelowTheSmallestAreRefused) {
  proto::RunRequest r = Minimal("l");
  r.mutable_resources()->set_memory_bytes(4096);
  EXPECT_EQ(ParseRunRequest(r, {}).error().message,
            "resources: memory_bytes 4096 is below the smallest memory limit, 1048576 (1Mi)");
  r.mutable_resources()->set_memory_bytes(1 << 20);
  r.mutable_resources()->set_cpus(0.005);
  EXPECT_EQ(ParseRunRequest(r, {}).error().message, "resources: cpus 0.005 is below the smallest CPU limit, 0.01");
  r.mutable_resources()->set_cpus(0.01);
  EXPECT_TRUE(ParseRunRequest(r, {}).ok());
}

TEST(ParseRunRequest, AnInvalidDurationIsRefusedNamingTheField) {
  using Field = google::protobuf::Duration* (proto::RunRequest::*)();
  const std::pair<Field, std::string> fields[] = {
      {&proto::RunRequest::mutable_timeout, "timeout"},
      {&proto::RunRequest::mutable_graceful_exit_timeout, "graceful_exit_timeout"},
      {&proto::RunRequest::mutable_warn_before, "warn_before"},
  };
  const std::pair<int64_t, int32_t> invalid[] = {{0, 2000000000}, {1, 1000000000}, {0, -1000000000},
                                                 {1, -5},         {-1, 5},         {0, INT32_MIN}};
  for (const auto& [field, name] : fields) {
    for (const auto& [seconds, nanos] : invalid) {
      proto::RunRequest r = Minimal("d");
      r.mutable_timeout()->set_seconds(100);  // so that warn_before is otherwise acceptable
      (r.*field)()->set_seconds(seconds);
      (r.*field)()->set_nanos(nanos);
      auto job = ParseRunRequest(r, {});
      ASSERT_FALSE(job.ok()) << name << " " << seconds << "s " << nanos << "ns";
      EXPECT_EQ(job.error().kind, Error::Kind::kInvalid);
      EXPECT_EQ(job.error().message.rfind(name + ": invalid duration: ", 0), 0u)
          << job.error().message;
    }
  }
  proto::RunRequest r = Minimal("d");
  r.mutable_timeout()->set_nanos(2000000000);
  EXPECT_EQ(ParseRunRequest(r, {}).error().message,
            "timeout: invalid duration: nanos 2000000000 out of range [-999999999, 999999999]");
  // The largest valid nanos is still a duration.
  r.mutable_timeout()->set_seconds(1);
  r.mutable_timeout()->set_nanos(999999999);
  auto ok = ParseRunRequest(r, {});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->timeout, std::chrono::nanoseconds(1999999999));
}

TEST(ParseRunRequest, VariablesSplitIntoJobFileAndSecret) {
  proto::RunRequest r = Minimal("v");
  auto* plain = r.mutable_job()->add_variables();
  plain->set_key("A");
  plain->set_value("1");
  auto* file = r.mutable_job()->add_variables();
  file->set_key("F");
  file->set_value("content");
  file->set_file(true);
  auto* masked = r.mutable_job()->add_variables();
  masked->set_key("TOKEN");
  masked->set_value("s3cr3t");
  masked->set_masked(true);
  auto job = ParseRunRequest(r, {});
  ASSERT_TRUE(job.ok()) << job.error().message;
  EXPECT_EQ(job->job_vars.at("A"), "1");
  ASSERT_EQ(job->file_vars.size(), 1u);
  EXPECT_EQ(job->file_vars[0].first, "F");
  EXPECT_EQ(job->secrets, std::vector<std::string>{"s3cr3t"});
}

TEST(ParseRunRequest, BadStepTextIsInvalidAndNamesTheLine) {
  proto::RunRequest r = Minimal("s");
  r.set_steps("spec: {}\n---\nrun:\n  - name: a\n    bogus: 1\n");
  auto job = ParseRunRequest(r, {});
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.error().kind, Error::Kind::kInvalid);
  EXPECT_NE(job.error().message.find("bogus"), std::string::npos) << job.error().message;
}

TEST(JobDir, IsUnderTheTempBaseTheCliPassed) {
  EXPECT_EQ(JobDir("/var/tmp", "a"), "/var/tmp/step-runner-output-a");
}

TEST(ToGrpcStatus, EachKindHasItsCode) {
  EXPECT_EQ(ToGrpcStatus(InvalidError("x")).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(JobNotFound("j")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(JobNotFound("j")).error_message(), "no job with id \"j\"");
  EXPECT_EQ(ToGrpcStatus(FailedError("x")).error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_EQ(ShuttingDown().error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace sr::service
