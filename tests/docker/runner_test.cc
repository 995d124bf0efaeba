// The real binary with a real daemon: `run` and `serve` give their jobs a Docker endpoint and
// stop the job's containers at its end — success, Ctrl-C, Close — with the record saying how
// each ended; passthrough opts out; a SIGKILLed runner's containers go at the next start.
#include <signal.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "docker/daemon.h"
#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

class RunnerDockerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    daemon_ = DockerDaemon::Get(&why);
    if (!daemon_) GTEST_SKIP() << "skipped: " << why;
    options_.cwd = dir_.path();
    options_.env["DOCKER_HOST"] = daemon_->host();
    options_.env["TMPDIR"] = dir_.path();
    options_.timeout = std::chrono::seconds(90);
  }

  bool Exists(const std::string& name) {
    return !daemon_->Out("ps -aq --filter name=^" + name + "$").empty();
  }
  // Polls (the safety net is the only time limit) until the container exists.
  bool WaitForContainer(const std::string& name) {
    for (int i = 0; i < 3000; ++i) {
      if (Exists(name)) return true;
      ::usleep(20000);
    }
    return false;
  }

  // A job whose one step starts a detached container named `name` and then waits to be stopped.
  void WriteSleepingJob(const std::string& name) {
    dir_.Write("job.yml", "spec: {}\n---\nrun:\n  - name: start\n    script: |\n"
                          "      docker run -d --network none --name \"" + name +
                          "\" busybox sleep 1000\n      sleep 1000\n");
  }
  // The termination record names one container, `name`, and says how it ended (`key`: "ending"
  // or "signal").
  static void ExpectOneContainer(const json& termination, const std::string& name,
                                 const std::string& key, const std::string& value) {
    ASSERT_EQ(termination["containers"].size(), 1u) << termination.dump();
    EXPECT_EQ(termination["containers"][0]["name"], name);
    EXPECT_EQ(termination["containers"][0][key], value);
  }

  DockerDaemon* daemon_ = nullptr;
  TestDir dir_;
  Options options_;
};

TEST_F(RunnerDockerTest, JobSuccessStopsTheContainerItLeftRunning) {
  dir_.Write("job.yml", R"(spec: {}
---
run:
  - name: start
    script: |
      case "$DOCKER_HOST" in unix://*/docker.sock) echo per-job endpoint;; esac
      docker run -d --network none --name r-success busybox sleep 1000 >/dev/null
)");
  Output out = RunStepRunner({"run", "-f", "job.yml", "--grace", "1s", "--step-results-file", "r.json"},
                             options_);
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_THAT(out.out, HasSubstr("per-job endpoint"));
  EXPECT_THAT(out.out, HasSubstr("r-success (image busybox): killed (SIGKILL) after the grace; removed"));
  EXPECT_FALSE(Exists("r-success"));
  json r = json::parse(dir_.Read("r.json"));
  EXPECT_EQ(r["termination"]["reason"], "step_ended");
  ExpectOneContainer(r["termination"], "r-success", "ending", "killed_after_grace");
}

TEST_F(RunnerDockerTest, CtrlCStopsTheDetachedContainerAndRecordsIt) {
  dir_.Write("job.yml", R"(spec: {}
---
run:
  - name: start
    script: |
      docker run -d --network none --name r-cancel busybox sh -c 'trap "exit 0" TERM; while :; do sleep 0.1; done'
      touch started
      sleep 1000
)");
  Child run({Binary(), "run", "-f", "job.yml", "--grace", "10s", "--step-results-file", "r.json"},
            options_);
  ASSERT_TRUE(run.WaitForFile(dir_ / "started"));
  run.Signal(SIGINT);
  Output out = run.Wait();
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_FALSE(Exists("r-cancel"));
  EXPECT_THAT(out.out, HasSubstr("r-cancel (image busybox): exited after SIGTERM with code 0; removed"));
  json r = json::parse(dir_.Read("r.json"));
  EXPECT_EQ(r["termination"]["reason"], "cancel_requested");
  ExpectOneContainer(r["termination"], "r-cancel", "signal", "SIGTERM");
}

TEST_F(RunnerDockerTest, PassthroughGivesTheRealDockerHost) {
  dir_.Write("job.yml", R"(spec: {}
---
run:
  - name: start
    script: |
      echo "host=$DOCKER_HOST"
      docker run -d --network none --name "r-pass-$NAME" busybox sleep 1000 >/dev/null
)");
  for (const std::vector<std::string>& flag :
       {std::vector<std::string>{"--docker=passthrough", "--env", "NAME=flag"},
        std::vector<std::string>{"--job", "STEP_RUNNER_DOCKER=passthrough", "--env", "NAME=job"}}) {
    std::vector<std::string> args = {"run", "-f", "job.yml", "--grace", "0s"};
    args.insert(args.end(), flag.begin(), flag.end());
    Output out = RunStepRunner(args, options_);
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_THAT(out.out, HasSubstr("host=" + daemon_->host()));
    EXPECT_THAT(out.out, Not(HasSubstr("docker: container")));
  }
  EXPECT_TRUE(Exists("r-pass-flag"));
  EXPECT_TRUE(Exists("r-pass-job"));
  daemon_->Docker("rm -f r-pass-flag r-pass-job");
  Output bad = RunStepRunner({"run", "-f", "job.yml", "--docker=sometimes"}, options_);
  EXPECT_EQ(bad.exit_code, 2);
}

TEST_F(RunnerDockerTest, CloseOfARunningGrpcJobStopsItsContainers) {
  const std::string sock = dir_ / "s.sock";
  Child serve({Binary(), "serve", "--socket", sock}, options_);
  ASSERT_TRUE(serve.WaitForFile(sock));
  WriteSleepingJob("r-close");
  Output submitted = RunStepRunner({"client", "--socket", sock, "run", dir_ / "job.yml", "--id",
                                    "close-me", "--grace", "1s"}, options_);
  ASSERT_EQ(submitted.exit_code, 0) << submitted.err;
  ASSERT_TRUE(WaitForContainer("r-close"));
  Output closed = RunStepRunner({"client", "--socket", sock, "close", "close-me"}, options_);
  EXPECT_EQ(closed.exit_code, 0) << closed.err;
  // Close returns once the job has ended, and the job ends after its containers.
  EXPECT_FALSE(Exists("r-close"));
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait().exit_code, 0);
}

TEST_F(RunnerDockerTest, StatusListsTheContainersOfACancelledJob) {
  const std::string sock = dir_ / "s.sock";
  Child serve({Binary(), "serve", "--socket", sock}, options_);
  ASSERT_TRUE(serve.WaitForFile(sock));
  WriteSleepingJob("r-status");
  ASSERT_EQ(RunStepRunner({"client", "--socket", sock, "run", dir_ / "job.yml", "--id", "st",
                           "--grace", "1s"}, options_).exit_code, 0);
  ASSERT_TRUE(WaitForContainer("r-status"));
  EXPECT_EQ(RunStepRunner({"client", "--socket", sock, "cancel", "st"}, options_).exit_code, 0);
  Output logs = RunStepRunner({"client", "--socket", sock, "logs", "st"}, options_);
  EXPECT_THAT(logs.out, HasSubstr("r-status (image busybox): killed (SIGKILL) after the grace; removed"));
  Output status = RunStepRunner({"client", "--socket", sock, "status", "st", "--json"}, options_);
  json s = json::parse(status.out);
  if (s.contains("jobs")) s = s["jobs"][0];
  ExpectOneContainer(s["termination"], "r-status", "ending", "killed_after_grace");
  EXPECT_FALSE(Exists("r-status"));
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait().exit_code, 0);
}

TEST_F(RunnerDockerTest, TimeoutAndServerShutdownStopContainersToo) {
  WriteSleepingJob("r-end-$NAME");
  Output timed = RunStepRunner({"run", "-f", "job.yml", "--timeout", "2s", "--grace", "0s",
                                "--env", "NAME=timeout"}, options_);
  EXPECT_EQ(timed.exit_code, 124) << timed.err;
  EXPECT_THAT(timed.out, HasSubstr("r-end-timeout (image busybox): killed"));
  EXPECT_FALSE(Exists("r-end-timeout"));

  const std::string sock = dir_ / "s.sock";
  Child serve({Binary(), "serve", "--socket", sock}, options_);
  ASSERT_TRUE(serve.WaitForFile(sock));
  ASSERT_EQ(RunStepRunner({"client", "--socket", sock, "run", dir_ / "job.yml", "--id", "sd",
                           "--grace", "1s", "--env", "NAME=shutdown"}, options_).exit_code, 0);
  ASSERT_TRUE(WaitForContainer("r-end-shutdown"));
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait().exit_code, 0);
  EXPECT_FALSE(Exists("r-end-shutdown"));
}

TEST_F(RunnerDockerTest, ContainersOfAKilledRunnerGoAtTheNextStart) {
  const std::string sock = dir_ / "s.sock";
  {
    Child serve({Binary(), "serve", "--socket", sock}, options_);
    ASSERT_TRUE(serve.WaitForFile(sock));
    WriteSleepingJob("r-orphan");
    ASSERT_EQ(RunStepRunner({"client", "--socket", sock, "run", dir_ / "job.yml", "--id", "o"},
                            options_).exit_code, 0);
    ASSERT_TRUE(WaitForContainer("r-orphan"));
    serve.Signal(SIGKILL);
    serve.Wait();
  }
  EXPECT_TRUE(Exists("r-orphan"));  // nobody stopped it: the runner died
  dir_.Write("noop.yml", "spec: {}\n---\nrun:\n  - name: noop\n    script: 'true'\n");
  Output next = RunStepRunner({"run", "-f", "noop.yml"}, options_);
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_THAT(next.err, HasSubstr("removed 1 container(s) of dead runner instances"));
  EXPECT_THAT(next.err, HasSubstr("r-orphan"));
  EXPECT_FALSE(Exists("r-orphan"));
}

}  // namespace
}  // namespace sr::test
