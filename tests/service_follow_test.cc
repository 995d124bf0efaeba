// The service's FollowLogs end to end: byte-exact logs from any offset, followers sharing reads,
// fifty jobs followed at once, and a follower that goes away mid-stream.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace sr::test
