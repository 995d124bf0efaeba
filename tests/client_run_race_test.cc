// `client run` with the id of a job that is closed between the client's Status and its Run: the
// server then runs the new file under that id, and the client must not say that it "already
// exists … was not run" (it did, before it compared start times). The window is opened by a
// proxy between the client and a real `serve` that closes the job as the Run passes through.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>

#include "proto/step.grpc.pb.h"
#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Forwards Status and Run to the real server; Close(id) goes first on every Run of that id.
class CloseBeforeRun final : public proto::StepRunner::Service {
 public:
  explicit CloseBeforeRun(LiveServer& real) : real_(real) {}

  grpc::Status Status(grpc::ServerContext*, const proto::StatusRequest* req,
                      proto::StatusResponse* resp) override {
    grpc::ClientContext ctx;
    return real_.stub().Status(&ctx, *req, resp);
  }
  grpc::Status Run(grpc::ServerContext*, const proto::RunRequest* req, proto::RunResponse* resp) override {
    if (grpc::Status closed = real_.CloseJob(req->id()); !closed.ok()) return closed;
    grpc::ClientContext ctx;
    return real_.stub().Run(&ctx, *req, resp);
  }

 private:
  LiveServer& real_;
};

class ClientRunRace : public TreeTest {
 protected:
  LiveServer server{dir};
};

TEST_F(ClientRunRace, AJobClosedBetweenStatusAndRunIsNotSaidToExist) {
  ASSERT_TRUE(server.Run(Request("j", Steps({{"old", "echo old"}}), dir.path())).ok());
  ASSERT_EQ(server.WaitEnded("j").status(), proto::StepResult::success);

  CloseBeforeRun proxy(server);
  const std::string proxy_socket = dir / "proxy.sock";
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + proxy_socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&proxy);
  std::unique_ptr<grpc::Server> listening = builder.BuildAndStart();
  ASSERT_TRUE(listening) << "cannot listen on " << proxy_socket;

  dir.Write("new.yml", "spec: {}\n---\nrun:\n  - name: new\n    script: touch ran-new\n");
  Output o = RunStepRunner({"client", "--socket", proxy_socket, "run", "new.yml", "--id", "j"},
                           ClientOptions(dir.path()));
  listening->Shutdown();
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.err, Not(HasSubstr("already exists"))) << o.err;
  // The job under the id is new.yml's, and it ran.
  EXPECT_EQ(server.WaitEnded("j").status(), proto::StepResult::success);
  EXPECT_TRUE(std::filesystem::exists(dir / "ran-new"));

  // The same through the real server alone: the job is there, and is said to be.
  o = RunStepRunner({"client", "--socket", server.socket(), "run", "new.yml", "--id", "j"},
                    ClientOptions(dir.path()));
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.err, HasSubstr("job \"j\" already exists (success); new.yml was not run")) << o.err;
}

}  // namespace
}  // namespace sr::test
