// DockerGuard against a real daemon, in process: the endpoint forwards (stdin, exec, log
// streams, chunked uploads), labels what the job creates, and the stop at the job's end stops,
// records and removes every container of the job.
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <thread>

#include "docker/daemon.h"
#include "docker/docker.h"
#include "loop/loop.h"
#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using P = proto::Termination::ProcessRecord;

class GuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    daemon_ = DockerDaemon::Get(&why);
    if (!daemon_) GTEST_SKIP() << "skipped: " << why;
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop.value());
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    if (!loop_) return;
    OnLoop([this] { guard_.reset(); });
    loop_->Stop();
    thread_.join();
  }

  template <class F>
  void OnLoop(F f) {
    std::promise<void> done;
    loop_->Post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  // The job's endpoint, as a step would get it.
  std::string StartGuard(const std::string& job_id) {
    OnLoop([&] {
      docker::GuardOptions o;
      o.daemon_socket = daemon_->socket();
      o.socket_path = dir_ / "docker.sock";
      o.job_id = job_id;
      o.log = [this](std::string_view line) {
        std::lock_guard<std::mutex> lock(mu_);
        log_ += std::string(line) + "\n";
      };
      auto g = docker::DockerGuard::Start(*loop_, std::move(o));
      ASSERT_TRUE(g.ok()) << g.error().message;
      guard_ = std::move(*g);
    });
    return guard_->docker_host();
  }

  std::vector<docker::ContainerRecord> StopGuard(Duration grace, bool forced = false) {
    std::promise<std::vector<docker::ContainerRecord>> records;
    OnLoop([&] {
      guard_->Stop(grace, forced, [&](std::vector<docker::ContainerRecord> r) {
        records.set_value(std::move(r));
      });
    });
    return records.get_future().get();
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  // `docker ARGS` through the job's endpoint; fails the test unless it exits 0.
  std::string Via(const std::string& host, const std::string& args) {
    auto r = daemon_->Docker(args, host);
    EXPECT_EQ(r.exit_code, 0) << "docker " << args << ":\n" << r.out;
    while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
    return r.out;
  }

  const docker::ContainerRecord* Find(const std::vector<docker::ContainerRecord>& records,
                                      const std::string& name) {
    for (const auto& r : records) {
      if (r.name() == name) return &r;
    }
    ADD_FAILURE() << "no record for container " << name;
    return nullptr;
  }

  DockerDaemon* daemon_ = nullptr;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::unique_ptr<docker::DockerGuard> guard_;
  TestDir dir_;
  std::mutex mu_;
  std::string log_;
  const std::string img_ = DockerDaemon::kImage;
};

TEST_F(GuardTest, DetachedContainerIsLabelledStoppedRecordedAndRemoved) {
  const std::string host = StartGuard("g-detached");
  const std::string id = Via(host, "run -d --network none --name g-detached-sleep " + img_ + " sleep 1000");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(daemon_->Out("inspect -f '{{index .Config.Labels \"io.step-runner.job\"}}' " + id),
            "g-detached");
  EXPECT_EQ(daemon_->Out("inspect -f '{{index .Config.Labels \"io.step-runner.instance\"}}' " + id),
            docker::InstanceId());

  auto records = StopGuard(std::chrono::seconds(1));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].id(), id);
  EXPECT_EQ(records[0].name(), "g-detached-sleep");
  EXPECT_EQ(records[0].image(), img_);
  EXPECT_EQ(records[0].signal(), "SIGTERM");
  // sleep as PID 1 has no TERM handler, and PID 1 ignores what it does not handle.
  EXPECT_EQ(records[0].ending(), P::killed_after_grace);
  EXPECT_EQ(records[0].exit_code(), 137);
  EXPECT_TRUE(daemon_->ContainersWithLabel("io.step-runner.job=g-detached").empty());
  EXPECT_THAT(Log(), HasSubstr("g-detached-sleep (image " + img_ + "): killed (SIGKILL) after the grace; removed"));
  // The endpoint is closed once the job has ended.
  EXPECT_NE(daemon_->Docker("ps", host).exit_code, 0);
}

TEST_F(GuardTest, StopSignalFirstThenKillEachContainerAsItEnds) {
  const std::string host = StartGuard("g-term");
  const std::string marks = dir_ / "marks";
  ASSERT_EQ(::mkdir(marks.c_str(), 0777), 0);
  // Handles TERM: writes the marker, exits 0 within the grace.
  Via(host, "run -d --network none --name g-term-trap -v " + marks + ":/m " + img_ +
                " sh -c 'trap \"echo term > /m/marker; exit 0\" TERM; touch /m/ready; "
                "while :; do sleep 0.1; done'");
  // Under an init (docker-init) the TERM reaches sleep, which dies of it.
  Via(host, "run -d --network none --init --name g-term-init " + img_ + " sleep 1000");
  // Ignores TERM: killed when the grace runs out.
  Via(host, "run -d --network none --name g-term-deaf " + img_ + " sleep 1000");
  // Already ended before the job did.
  EXPECT_EQ(daemon_->Docker("run --network none --name g-term-done " + img_ + " sh -c 'exit 4'", host)
                .exit_code, 4);
  for (int i = 0; i < 300 && !dir_.Exists("marks/ready"); ++i) ::usleep(20000);

  auto records = StopGuard(std::chrono::seconds(3));
  ASSERT_EQ(records.size(), 4u);
  if (auto* r = Find(records, "g-term-trap")) {
    EXPECT_EQ(r->signal(), "SIGTERM");
    EXPECT_EQ(r->ending(), P::exited);
    EXPECT_EQ(r->exit_code(), 0);
  }
  EXPECT_EQ(dir_.Read("marks/marker"), "term\n");
  if (auto* r = Find(records, "g-term-init")) {
    EXPECT_EQ(r->ending(), P::ended_by_signal);
    EXPECT_EQ(r->exit_code(), 128 + SIGTERM);
  }
  if (auto* r = Find(records, "g-term-deaf")) {
    EXPECT_EQ(r->ending(), P::killed_after_grace);
  }
  if (auto* r = Find(records, "g-term-done")) {
    EXPECT_EQ(r->signal(), "");
    EXPECT_EQ(r->ending(), P::exited);
    EXPECT_EQ(r->exit_code(), 4);
  }
  EXPECT_TRUE(daemon_->ContainersWithLabel("io.step-runner.job=g-term").empty());
  EXPECT_THAT(Log(), HasSubstr("g-term-trap (image " + img_ + "): exited after SIGTERM with code 0"));
  EXPECT_THAT(Log(), HasSubstr("g-term-init (image " + img_ + "): ended by SIGTERM"));
  EXPECT_THAT(Log(), HasSubstr("g-term-done (image " + img_ + "): had exited with code 4"));
}

TEST_F(GuardTest, ForcedStopKillsAtOnce) {
  const std::string host = StartGuard("g-forced");
  Via(host, "run -d --network none --name g-forced-1 " + img_ + " sleep 1000");
  auto records = StopGuard(std::chrono::seconds(60), /*forced=*/true);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].signal(), "SIGKILL");
  EXPECT_EQ(records[0].ending(), P::killed_forced);
  EXPECT_TRUE(daemon_->ContainersWithLabel("io.step-runner.job=g-forced").empty());
}

TEST_F(GuardTest, KeepLabelLeavesTheContainerRunningOnTheRecord) {
  const std::string host = StartGuard("g-keep");
  const std::string kept = Via(host, "run -d --network none --name g-keep-db --label io.step-runner.keep=true " +
                                         img_ + " sleep 1000");
  Via(host, "run -d --network none --name g-keep-other " + img_ + " sleep 1000");
  auto records = StopGuard(Duration(0));
  ASSERT_EQ(records.size(), 2u);
  if (auto* r = Find(records, "g-keep-db")) {
    EXPECT_TRUE(r->kept());
  }
  if (auto* r = Find(records, "g-keep-other")) {
    EXPECT_FALSE(r->kept());
  }
  EXPECT_EQ(daemon_->Out("inspect -f '{{.State.Running}}' " + kept), "true");
  EXPECT_EQ(daemon_->ContainersWithLabel("io.step-runner.job=g-keep").size(), 1u);
  EXPECT_THAT(Log(), HasSubstr("g-keep-db (image " + img_ + "): kept running (labelled io.step-runner.keep=true)"));
  daemon_->Docker("rm -f " + kept);
}

TEST_F(GuardTest, StdinExecAndChunkedUploadsGoThrough) {
  const std::string host = StartGuard("g-io");
  auto piped = [&](const std::string& input, const std::string& args) {
    return Shell("echo " + input + " | DOCKER_HOST=" + host + " docker " + args).out;
  };
  EXPECT_EQ(piped("hello-stdin", "run -i --rm --network none " + img_ + " cat"), "hello-stdin\n");
  const std::string id = Via(host, "run -d --network none " + img_ + " sleep 1000");
  EXPECT_EQ(Via(host, "exec " + id + " echo from-exec"), "from-exec");
  EXPECT_EQ(piped("piped-to-exec", "exec -i " + id + " cat"), "piped-to-exec\n");
  // docker cp sends the tar archive with a chunked request body.
  dir_.Write("upload.txt", "uploaded through the proxy\n");
  Via(host, "cp " + dir_ / "upload.txt" + " " + id + ":/tmp/upload.txt");
  EXPECT_EQ(Via(host, "exec " + id + " cat /tmp/upload.txt"), "uploaded through the proxy");
  // Many requests on one keep-alive connection: docker ps reuses its connection.
  EXPECT_THAT(Via(host, "ps --no-trunc -q"), HasSubstr(id));
  // A create under another API version prefix is labelled too.
  const std::string older = Shell("DOCKER_API_VERSION=1.40 DOCKER_HOST=" + host + " docker create " +
                                  img_ + " true").out;
  EXPECT_EQ(daemon_->Out("inspect -f '{{index .Config.Labels \"io.step-runner.job\"}}' " + older),
            "g-io");
  auto records = StopGuard(Duration(0));
  EXPECT_EQ(records.size(), 2u);
}

TEST_F(GuardTest, LogsFollowStreamsWhileTheContainerRuns) {
  const std::string host = StartGuard("g-logs");
  const std::string id = Via(host, "run -d --network none " + img_ +
                                       " sh -c 'echo first-line; sleep 1000'");
  Options o;
  o.env["DOCKER_HOST"] = host;
  o.timeout = std::chrono::seconds(60);
  Child follow({"/bin/sh", "-c", "exec docker logs -f " + id}, o);
  bool seen = false;
  for (int i = 0; i < 1500 && !seen; ++i) {
    seen = follow.StdoutSoFar().find("first-line") != std::string::npos;
    if (!seen) ::usleep(20000);
  }
  EXPECT_TRUE(seen) << "docker logs -f printed nothing through the proxy";
  EXPECT_EQ(daemon_->Out("inspect -f '{{.State.Running}}' " + id), "true");
  // The job's end removes the container: the stream ends and so does the follower.
  StopGuard(Duration(0));
  Output out = follow.Wait();
  EXPECT_EQ(out.signal, 0);
}

TEST_F(GuardTest, NetworksTheJobCreatedAreRemoved) {
  const std::string host = StartGuard("g-net");
  auto created = daemon_->Docker("network create --internal g-net-n", host);
  if (created.exit_code != 0) GTEST_SKIP() << "this daemon cannot create networks: " << created.out;
  daemon_->Docker("network create --internal g-net-outside");  // not the job's
  // Labelled like a container: a runner killed now leaves it to the next start's cleanup.
  EXPECT_EQ(daemon_->Out("network inspect -f '{{index .Labels \"io.step-runner.instance\"}}' g-net-n"),
            docker::InstanceId());
  StopGuard(Duration(0));
  EXPECT_EQ(daemon_->Out("network ls -q --filter name=^g-net-n$"), "");
  EXPECT_NE(daemon_->Out("network ls -q --filter name=^g-net-outside$"), "");
  EXPECT_THAT(Log(), HasSubstr("removed network"));
  daemon_->Docker("network rm g-net-outside");
}

TEST_F(GuardTest, ContainersOfDeadInstancesGoAtTheNextStart) {
  // A pid that was alive a moment ago: the instance that held it is dead.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  std::string mine = docker::InstanceId();
  std::string prefix = mine.substr(0, mine.find('.', mine.find('.') + 1));  // boot.pidns
  const std::string dead = prefix + "." + std::to_string(child) + ".12345";
  ASSERT_FALSE(docker::InstanceAlive(dead));
  ASSERT_TRUE(docker::InstanceAlive(mine));
  auto labelled = [&](const std::string& name, const std::string& instance, bool keep) {
    return daemon_->Out("run -d --network none --name " + name + " --label io.step-runner.instance=" +
                        instance + (keep ? " --label io.step-runner.keep=true " : " ") + img_ +
                        " sleep 1000");
  };
  const std::string orphan = labelled("g-dead-orphan", dead, false);
  const std::string alive = labelled("g-dead-alive", mine, false);
  const std::string kept = labelled("g-dead-kept", dead, true);
  // Networks the same way (the proxy labels a job's network creates too).
  const bool networks = daemon_->Docker("network create --internal --label io.step-runner.instance=" +
                                        dead + " g-dead-net").exit_code == 0;
  if (networks) {
    daemon_->Docker("network create --internal --label io.step-runner.instance=" + mine + " g-alive-net");
  }
  std::promise<Result<docker::DeadInstanceCleanup>> removed;
  OnLoop([&] {
    docker::RemoveDeadInstanceLeftovers(*loop_, daemon_->socket(), [&](auto r) {
      removed.set_value(std::move(r));
    });
  });
  auto r = removed.get_future().get();
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->containers.size(), 1u);
  EXPECT_THAT(r->containers[0], HasSubstr("g-dead-orphan"));
  EXPECT_EQ(daemon_->Docker("inspect " + orphan).exit_code, 1);
  EXPECT_EQ(daemon_->Out("inspect -f '{{.State.Running}}' " + alive), "true");
  EXPECT_EQ(daemon_->Out("inspect -f '{{.State.Running}}' " + kept), "true");
  if (networks) {
    ASSERT_EQ(r->networks.size(), 1u) << r->Line();
    EXPECT_THAT(r->Line(), HasSubstr("removed 1 container(s) and 1 network(s) of dead runner instances"));
    EXPECT_THAT(r->Line(), HasSubstr("g-dead-net"));
    EXPECT_EQ(daemon_->Out("network ls -q --filter name=^g-dead-net$"), "");
    EXPECT_NE(daemon_->Out("network ls -q --filter name=^g-alive-net$"), "");
    daemon_->Docker("network rm g-alive-net");
  }
  daemon_->Docker("rm -f " + alive + " " + kept);
}

}  // namespace
}  // namespace sr::test
