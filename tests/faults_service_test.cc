// Faults of the service's resources, through a live server (contract section 7): lost output on a
// full disk (a real 2 MB tmpfs), the fd limit (prlimit), the alias bomb, Status cut to fit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/alias_bomb.h"
#include "support/faults.h"
#include "support/harness.h"
#include "support/hostile.h"
#include "support/service_client.h"
#include "support/scarce.h"
#include "util/fd.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

// Lines of /proc/<pid>/<file> starting with `key`, e.g. ("status", "VmHWM:").
std::string ProcLine(pid_t pid, const std::string& file, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return line;
  }
  return "";
}

TEST_F(Faults, LostOutputOnAFullDiskFailsTheJob) {
  SmallDisk disk(dir / "disk");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  Options o = ServerOptions(dir);
  o.env["TMPDIR"] = dir / "disk";
  LiveServer server(dir, {}, o);
  // 10 MB of numbered lines into a 2 MB disk.
  ASSERT_TRUE(server.Run(Request("big", Steps({{"big", "seq 1 1500000"}}), dir.path())).ok());
  proto::Status big = server.WaitEnded("big");

  EXPECT_EQ(big.status(), proto::StepResult::failure);
  EXPECT_EQ(big.error().kind(), proto::StatusError::internal) << big.DebugString();
  EXPECT_THAT(big.error().message(), HasSubstr("writing job log " + dir / "disk/step-runner-output-big/logs"));
  EXPECT_THAT(big.error().message(), HasSubstr("No space left on device"));
  EXPECT_EQ(big.termination().reason(), proto::Termination::internal_error) << big.DebugString();
  // Every byte that could be written stayed: the log is an exact prefix of the output.
  grpc::Status st;
  std::string log = server.Follow("big", 0, &st);

  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_GT(log.size(), 1000000u);
  std::string expected;
  for (int i = 1; expected.size() < log.size(); ++i) expected += std::to_string(i) + "\n";
  // The log starts with the runner's "Running step" line, then the numbers, cut anywhere.
  const size_t first = log.find("1\n2\n3\n");
  ASSERT_NE(first, std::string::npos);
  // Lines the runner wrote once some space was free again (a step's temp file removed) may
  // follow; the numbers up to there are exact.
  std::string numbers = log.substr(first, log.find("step-runner:", first) - first);
  EXPECT_GT(numbers.size(), 1000000u);
  EXPECT_TRUE(numbers == expected.substr(0, numbers.size())) << "the log is not a prefix of the output";
  // The server stays healthy: once the space is free again, a job runs fine.
  ASSERT_TRUE(server.CloseJob("big").ok());
  ASSERT_TRUE(server.Run(Request("small", Steps({{"small", "echo fine"}}), dir.path())).ok());
  proto::Status small = server.WaitEnded("small");
  EXPECT_EQ(small.status(), proto::StepResult::success) << small.DebugString();
  ASSERT_TRUE(server.CloseJob("small").ok());
}

TEST_F(Faults, FdLimitIsRaisedAndSetupFailuresLeaveNothing) {
  // Soft 64, hard 4096: the server raises its own soft limit, steps get the original one.
  dir.Write("fd.yml", "spec: {}\n---\nrun:\n  - name: n\n    script: ulimit -n > " + dir / "n" + "\n");
  Options o = ServerOptions(dir);
  Output run = Child({"/usr/bin/prlimit", "--nofile=64:4096", Binary(), "run", "-f", dir / "fd.yml"}, o).Wait();
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(dir.Read("n"), "64\n");
  Child serve({"/usr/bin/prlimit", "--nofile=64:4096", Binary(), "serve", "--socket", dir / "s.sock"}, o);
  ASSERT_TRUE(serve.WaitForFile(dir / "s.sock"));
  EXPECT_THAT(ProcLine(serve.pid(), "limits", "Max open files"), HasSubstr("4096                 4096"));
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait().exit_code, 0);

  // Hard 64: 100 concurrent Runs. Each either runs or is refused with RESOURCE_EXHAUSTED; no
  // directory of a refused job stays, and no accepted job fails as the user's step failure.
  FullFdTable(dir, o);
  Child limited({"/usr/bin/prlimit", "--nofile=48:48", Binary(), "serve", "--socket", dir / "t.sock"}, o);
  ASSERT_TRUE(limited.WaitForFile(dir / "t.sock"));
  auto channel = grpc::CreateChannel("unix:" + dir / "t.sock", grpc::InsecureChannelCredentials());
  // The socket file exists from bind(), a moment before listen(): a connect in between is
  // refused, and gRPC then fails every RPC at once for its reconnect backoff (a second). So the
  // loop starts once the channel is up.
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)));
  auto stub = proto::StepRunner::NewStub(channel);
  int refused = 0, accepted = 0;
  std::vector<std::string> ids;
  for (int i = 0; i < 100; ++i) {
    grpc::ClientContext ctx;
    proto::RunResponse resp;
    std::string id = "j" + std::to_string(i);
    grpc::Status s = stub->Run(&ctx, Request(id, Steps({{"s", "sleep 2"}}), dir.path()), &resp);
    if (s.ok()) {
      ++accepted;
      ids.push_back(id);
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      ++refused;
      EXPECT_FALSE(dir.Exists("step-runner-output-" + id)) << id;
    }
  }
  EXPECT_GT(refused, 0);
  for (const auto& id : ids) {
    proto::Status end;
    ASSERT_TRUE(WaitFor([&] {
      grpc::ClientContext ctx;
      proto::StatusRequest req;
      req.set_id(id);
      proto::StatusResponse resp;
      if (!stub->Status(&ctx, req, &resp).ok() || resp.jobs_size() != 1) return false;
      end = resp.jobs(0);
      return end.status() == proto::StepResult::success || end.status() == proto::StepResult::failure;
    }));
    if (end.status() == proto::StepResult::failure) {
      EXPECT_EQ(end.error().kind(), proto::StatusError::internal) << end.DebugString();
    }
  }
  limited.Signal(SIGTERM);
  Output limited_end = limited.Wait();
  EXPECT_EQ(limited_end.exit_code, 0) << limited_end.err;
  std::printf("fd limit 48: %d accepted, %d refused\n", accepted, refused);
}

// gRPC's own listener gave up for good at the first accept4 that failed with EMFILE: a server
// whose fd table had filled up once never took a connection again. The server's accept loop
// pauses instead (src/service/listener.h): once the connections that filled the table are gone,
// a new client is served.
TEST_F(Faults, ServerTakesConnectionsAgainAfterItsFdTableWasFull) {
  Options o = ServerOptions(dir);
  FullFdTable(dir, o);
  Child limited({"/usr/bin/prlimit", "--nofile=32:32", Binary(), "serve", "--socket", dir / "f.sock"}, o);
  ASSERT_TRUE(limited.WaitForFile(dir / "f.sock"));
  auto open_fds = [&] {
    std::error_code ec;
    auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(limited.pid()) + "/fd", ec);
    return ec ? 0 : std::distance(it, std::filesystem::directory_iterator());
  };
  const std::string paused = "accepting a connection failed (Too many open files)";
  auto said_paused = [&] { return limited.StderrSoFar().find(paused) != std::string::npos; };
  {
    // Batches of 40 connections for a table of 32 (plain sockets: the server takes each before
    // any byte), until the server says an accept failed. Its fd count is no proof of that: gRPC
    // may take the last free fds itself and drop a connection, and the table then fills without
    // an accept failing (seen once under ASan). The socket's backlog (SOMAXCONN) holds them all.
    std::vector<UniqueFd> conns;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir / "f.sock";
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    for (int batch = 0; batch < 10 && !said_paused(); ++batch) {
      for (int i = 0; i < 40; ++i) {
        conns.emplace_back(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_EQ(::connect(conns.back().get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
            << "connection " << conns.size() << ": " << std::strerror(errno)
            << "; the server: " << limited.StderrSoFar();
      }
      for (int i = 0; i < 200 && !said_paused(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    ASSERT_TRUE(said_paused()) << conns.size() << " connections, " << open_fds()
                               << " fds open; the server: " << limited.StderrSoFar();
  }  // every connection closes here
  auto channel = grpc::CreateChannel("unix:" + dir / "f.sock", grpc::InsecureChannelCredentials());
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60)))
      << "the server took no connection after its fd table was full";
  grpc::ClientContext ctx;
  proto::StatusRequest req;
  proto::StatusResponse resp;
  EXPECT_TRUE(proto::StepRunner::NewStub(channel)->Status(&ctx, req, &resp).ok());
  limited.Signal(SIGTERM);
  Output end = limited.Wait();
  EXPECT_EQ(end.exit_code, 0) << end.err;
  EXPECT_THAT(end.err, HasSubstr(paused));
}

TEST_F(Faults, AliasBombStaysBounded) {
  // The bomb fits the 4 MiB per text; its 20 env variables pass the 16 MiB per job.
  const std::string steps = AliasBombSteps(20);
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("bomb", steps, dir.path())).ok());
  ASSERT_TRUE(server.Run(Request("other", Steps({{"s", "echo other"}}), dir.path())).ok());
  proto::Status end = server.WaitEnded("bomb");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_THAT(end.error().message(), HasSubstr("step \"bomb\""));
  EXPECT_THAT(end.error().message(), HasSubstr("exceed the limit of 16777216 bytes"));
  EXPECT_EQ(server.WaitEnded("other").status(), proto::StepResult::success);
  // Status(id) fits the default 4 MiB of every client (the stub's channel uses the default).
  EXPECT_LT(end.ByteSizeLong(), 4u << 20);
  std::string hwm = ProcLine(server.child().pid(), "status", "VmHWM:");
  long kb = std::atol(hwm.c_str() + 6);
  std::printf("alias bomb: server peak RSS %ld kB\n", kb);
#ifndef SR_SANITIZED
  // The bound is the server's; under ASan its allocator keeps up to 256 MB of freed memory in
  // quarantine (and shadow memory on top), so the figure says nothing there.
  EXPECT_LT(kb, 256 * 1024);
#endif

  // Past the bytes a text may build: INVALID_ARGUMENT at Run, naming the line.
  std::string huge = "[&a0 \"" + std::string(2000, 'x') + "\"";
  for (int i = 1; i < 6; ++i) {
    huge += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) huge += (k ? ",*a" : "*a") + std::to_string(i - 1);
    huge += "]";
  }
  huge += "]";
  grpc::Status refused = server.Run(Request(
      "huge", "spec:\n  inputs:\n    v: {type: array, default: " + huge + "}\n---\nrun:\n  - name: s\n    script: 'true'\n",
      dir.path()));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("value too large: more than 4194304 bytes after expanding aliases"));
}

TEST_F(Faults, LargeValuesInStatusAreCutToFit) {
  // An input of ~3 MB (built through aliases, under 4 MiB), and four env variables holding it,
  // land in the result tree.
  std::string big = "[&a0 \"" + std::string(300, 'y') + "\"";
  for (int i = 1; i < 5; ++i) {
    big += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) big += (k ? ",*a" : "*a") + std::to_string(i - 1);
    big += "]";
  }
  big += "]";
  std::string steps = "spec: {}\n---\nrun:\n  - name: big\n    step: ./arr\n    inputs:\n      v: " + big + "\n";
  dir.Write("arr/step.yml", "spec:\n  inputs:\n    v: {type: array}\n---\nenv:\n"
                            "  E1: ${{ inputs.v }}\n  E2: ${{ inputs.v }}\n  E3: ${{ inputs.v }}\n"
                            "exec:\n  command: ['true']\n");
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("big", steps, dir.path())).ok());
  // ~9 MB of env is past execve's limit, so the step fails; its result still holds the env.
  proto::Status end = server.WaitEnded("big");  // a default client: 4 MiB receive limit
  EXPECT_EQ(end.status(), proto::StepResult::failure) << end.error().message();
  EXPECT_LT(end.ByteSizeLong(), 4u << 20);
  EXPECT_THAT(end.result().DebugString(), HasSubstr("[truncated"));
}

// 19 000 environment variables of 100 bytes: cutting strings was not enough, and Status(id)
// lost the whole result tree. Large maps are cut to fit too, with a marker entry.
TEST_F(Faults, ManyEnvironmentVariablesInStatusAreCutNotTheTree) {
  proto::RunRequest req = Request("env", Steps({{"s", "exit 0"}}), dir.path());
  for (int i = 0; i < 19000; ++i) (*req.mutable_env())["K" + std::to_string(i)] = std::string(100, 'x');
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(req).ok());
  proto::Status end = server.WaitEnded("env");  // a default client: 4 MiB receive limit
  EXPECT_LT(end.ByteSizeLong(), 4u << 20);
  ASSERT_TRUE(end.has_result()) << end.ShortDebugString().substr(0, 400);
  ASSERT_EQ(end.result().sub_step_results_size(), 1);
  const auto& env = end.result().sub_step_results(0).env();
  ASSERT_TRUE(env.count("…")) << env.size();
  EXPECT_THAT(env.at("…"), HasSubstr("more entries]"));
}

}  // namespace
}  // namespace sr::test
