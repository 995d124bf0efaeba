// A server whose fd table is full still removes its jobs' directories: at Close, and all of
// them at shutdown (README "Shutdown"; contract section 2, Close; section 7 item 1). Its jobs
// fail for lack of fds (`pipe2: Too many open files`); their directories must not stay.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/scarce.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class FdCleanup : public TreeTest {};

std::vector<std::string> JobDirsIn(const std::string& base) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(base)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-runner-output-", 0) == 0) found.push_back(name);
  }
  return found;
}

TEST_F(FdCleanup, CloseAndShutdownRemoveJobDirsWithTheFdTableFull) {
  dir.Write("work/.keep", "");
  Options o = ServerOptions(dir);
  FullFdTable(dir, o);
  // 22: room for a few Run calls, not for their jobs (20 before the supervisor's two reserve fds
  // for a stop at the limit).
  Child limited({"/usr/bin/prlimit", "--nofile=22:22", Binary(), "serve", "--socket", dir / "f.sock"}, o);
  ASSERT_TRUE(limited.WaitForFile(dir / "f.sock"));
  std::vector<std::string> accepted;
  {
    auto channel = grpc::CreateChannel("unix:" + dir / "f.sock", grpc::InsecureChannelCredentials());
    ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(30)));
    auto stub = proto::StepRunner::NewStub(channel);
    auto status_of = [&](const std::string& id, proto::Status* out) {
      grpc::ClientContext ctx;
      proto::StatusRequest req;
      req.set_id(id);
      proto::StatusResponse resp;
      if (!stub->Status(&ctx, req, &resp).ok() || resp.jobs_size() != 1) return false;
      *out = resp.jobs(0);
      return true;
    };
    for (int i = 0; i < 5; ++i) {
      const std::string id = "j" + std::to_string(i);
      grpc::ClientContext ctx;
      proto::RunResponse resp;
      grpc::Status s = stub->Run(
          &ctx, Request(id, Steps({{"s", "echo start; sleep 2; echo end"}}), dir / "work"), &resp);
      if (s.ok()) accepted.push_back(id);
    }
    ASSERT_FALSE(accepted.empty()) << "no job was accepted: the test tests nothing";
    for (const auto& id : accepted) {
      proto::Status end;
      ASSERT_TRUE(WaitFor([&] {
        return status_of(id, &end) && (end.status() == proto::StepResult::success ||
                                       end.status() == proto::StepResult::failure);
      })) << id;
    }
    grpc::ClientContext ctx;
    proto::CloseRequest req;
    req.set_id(accepted[0]);
    proto::CloseResponse resp;
    ASSERT_TRUE(stub->Close(&ctx, req, &resp).ok());
    EXPECT_FALSE(dir.Exists("step-runner-output-" + accepted[0])) << "Close left the job's directory";
  }  // the connection closes here
  limited.Signal(SIGTERM);
  Output end = limited.Wait();
  EXPECT_EQ(end.exit_code, 0) << end.err;
  EXPECT_THAT(JobDirsIn(dir.path()), ::testing::IsEmpty()) << end.err;
  EXPECT_THAT(end.err, Not(HasSubstr("left for the next start")));
}

}  // namespace
}  // namespace sr::test
