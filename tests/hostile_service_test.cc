// Hostile clients of the gRPC service (issue 9): malformed ids (`/`, `..`, NUL, 10 KB) on every
// RPC, hostile step text, durations and offsets in requests, and a client that opens 1000
// FollowLogs streams and never reads. Each gets a clear error or a bounded result, nothing is
// created for a refused request, and the server keeps serving everyone else.
// No timing assertions: waits are on states, timeouts are safety nets.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "proto/step.grpc.pb.h"
#include "support/hostile.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

// Resident memory of a process in KiB (VmRSS), 0 if it cannot be read.
long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long value = 0;
  while (in >> key) {
    if (key == "VmRSS:") {
      in >> value;
      return value;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

// A job that must succeed and print `marker`, followed to its end: the server is still serving.
void ExpectServes(LiveServer& server, const TestDir& dir, const std::string& id) {
  ASSERT_TRUE(server.Run(Request(id, Steps({{"a", "echo served-" + id}}), dir.path())).ok());
  grpc::Status s;
  std::string log = server.Follow(id, 0, &s);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(log, HasSubstr("served-" + id + "\n"));
  EXPECT_EQ(server.WaitEnded(id).status(), proto::StepResult::success);
  EXPECT_TRUE(server.CloseJob(id).ok());
}

TEST(HostileService, MalformedIdsAreRefusedByEveryRpc) {
  TestDir dir;
  LiveServer server(dir);
  const std::vector<std::string> before = ListTree(dir.path());
  for (const std::string& id :
       {std::string(10 * 1024, 'a'), std::string(10 * 1024, '/'), std::string("a/b"), std::string("/"),
        std::string(".."), std::string("../../etc"), std::string("a..b"), std::string("a\0b", 3),
        std::string(1, '\0'), std::string("x/../../y")}) {
    const std::string shown = id.substr(0, 20);
    grpc::Status run = server.Run(Request(id, Steps({{"a", "touch " + dir / "ran"}}), dir.path()));
    EXPECT_EQ(run.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << shown;
    EXPECT_THAT(run.error_message(), HasSubstr("invalid job id")) << shown;
    EXPECT_LT(run.error_message().size(), 300u) << "the error quotes a 10 KB id";
    EXPECT_EQ(server.GetStatus(id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << shown;
    EXPECT_EQ(server.CancelJob(id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << shown;
    EXPECT_EQ(server.CancelJob(id, /*force=*/true).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(server.CloseJob(id).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << shown;
    grpc::Status follow;
    server.Follow(id, 0, &follow);
    EXPECT_EQ(follow.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << shown;
  }
  EXPECT_FALSE(dir.Exists("ran"));
  EXPECT_EQ(ListTree(dir.path()), before) << "a refused request created files";
  EXPECT_EQ(server.All().jobs_size(), 0);
  ExpectServes(server, dir, "after-ids");
}

TEST(HostileService, HostileStepTextIsAnErrorNamingTheProblem) {
  TestDir dir;
  LiveServer server(dir);
  std::string nested = "spec: {}\n---\nrun: []\noutputs: ";
  for (int i = 0; i < 10000; ++i) nested += "{a: ";
  nested += "1" + std::string(10000, '}') + "\n";
  struct Case {
    std::string steps, error;
  } cases[] = {
      {"spec: {}\n---\nrun:\n  - name: x\n    script: echo\n    env: {}\noutputs:\n  l: " + AliasBomb() + "\n",
       "<request>:8:3: value too large: more than 1000000 nodes after expanding aliases"},
      {nested, "<request>:4:"},
      {std::string("spec: {}\n---\nexec: {command: [a\0b]}\n", 34), "control character U+0000"},
      {"spec: {}\n---\nexec: {command: [\"\x1B[31mred\"]}\n", "control character U+001B"},
  };
  for (const auto& c : cases) {
    grpc::Status s = server.Run(Request("bad", c.steps, dir.path()));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.error;
    EXPECT_THAT(s.error_message(), HasSubstr(c.error));
  }
  EXPECT_THAT(server.Run(Request("bad", nested, dir.path())).error_message(),
              HasSubstr("nesting deeper than 64 levels"));
  // Non-UTF-8 bytes never reach step-runner: RunRequest.steps is a proto3 string, and protobuf's
  // parser refuses the message (gRPC answers without a message). The server goes on serving.
  for (const std::string& text : {std::string("spec: {}\n---\nexec: {command: [\"caf\xE9\"]}\n"),
                                  "\xFF\xFE" + std::string(1000, '\0')}) {
    EXPECT_NE(server.Run(Request("bad", text, dir.path())).error_code(), grpc::StatusCode::OK);
  }
  EXPECT_FALSE(dir.Exists(JobDir(dir, "bad")));

  // 50 MB of step text: refused by gRPC's receive limit (4 MiB) before step-runner sees it.
  std::string big = "spec: {}\n---\nexec:\n  command: [echo, \"" + std::string(50 << 20, 'x') + "\"]\n";
  grpc::Status huge = server.Run(Request("huge", big, dir.path()));
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << huge.error_message();
  // Just under gRPC's limit, over step-runner's own (4 MiB of text, with the request around it).
  std::string near = "spec: {}\n---\nexec:\n  command: [echo, \"" + std::string((4 << 20) - 20, 'x') + "\"]\n";
  grpc::Status over = server.Run(Request("near", near, dir.path()));
  EXPECT_NE(over.error_code(), grpc::StatusCode::OK);
  EXPECT_FALSE(dir.Exists(JobDir(dir, "huge")));
  EXPECT_FALSE(dir.Exists(JobDir(dir, "near")));

  // An expression nested 10 000 deep is the job's step failure, not the server's problem.
  std::string deep;
  for (int i = 0; i < 10000; ++i) deep += "${{ ";
  deep += "inputs.x";
  for (int i = 0; i < 10000; ++i) deep += " }}";
  ASSERT_TRUE(server.Run(Request("deep", Steps({{"a", "echo '" + deep + "'"}}), dir.path())).ok());
  proto::Status end = server.WaitEnded("deep");
  EXPECT_EQ(end.status(), proto::StepResult::failure);
  EXPECT_EQ(end.error().kind(), proto::StatusError::step_failure);
  EXPECT_THAT(end.error().message(), HasSubstr("was not found"));
  ExpectServes(server, dir, "after-text");
}

TEST(HostileService, HugeDurationsAndOffsets) {
  TestDir dir;
  LiveServer server(dir);
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  for (int field = 0; field < 3; ++field) {
    for (int64_t seconds : {kMax, int64_t{10} * 366 * 24 * 3600, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
      proto::RunRequest r = Request("d", Steps({{"a", "touch " + dir / "ran"}}), dir.path());
      google::protobuf::Duration* d = field == 0   ? r.mutable_timeout()
                                      : field == 1 ? r.mutable_graceful_exit_timeout()
                                                   : r.mutable_warn_before();
      if (field == 2) r.mutable_timeout()->set_seconds(3600);
      d->set_seconds(seconds);
      grpc::Status s = server.Run(r);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field << " " << seconds;
    }
  }
  EXPECT_FALSE(dir.Exists("ran"));

  // The largest accepted values (10 years) mean what they say: no deadline in the past.
  proto::RunRequest ok = Request("max", Steps({{"a", "echo fine"}}), dir.path());
  ok.mutable_timeout()->set_seconds(10LL * 365 * 24 * 3600);
  ok.mutable_graceful_exit_timeout()->set_seconds(10LL * 365 * 24 * 3600);
  ASSERT_TRUE(server.Run(ok).ok());
  EXPECT_EQ(server.WaitEnded("max").status(), proto::StepResult::success);

  // Offsets: negative is an error; past the end is an empty, successful stream.
  for (int64_t offset : {int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    grpc::Status s;
    server.Follow("max", offset, &s);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << offset;
  }
  for (int64_t offset : {kMax, kMax - 1, int64_t{1} << 40}) {
    grpc::Status s;
    EXPECT_EQ(server.Follow("max", offset, &s), "") << offset;
    EXPECT_TRUE(s.ok()) << offset << ": " << s.error_message();
  }
  ExpectServes(server, dir, "after-durations");
}

// 1000 streams on one connection whose client never reads: each stalls on HTTP/2 flow control
// with one message in flight. The server holds a bounded amount per stream, and everyone else
// is served meanwhile; when the client goes away, every stream ends.
TEST(HostileService, ThousandFollowersThatNeverReadDoNotStopTheServer) {
  TestDir dir;
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("big", Steps({{"a", "head -c 16777216 /dev/zero | tr '\\0' x"}}),
                                 dir.path()))
                  .ok());
  ASSERT_EQ(server.WaitEnded("big").status(), proto::StepResult::success);
  const long rss_before = RssKib(server.child().pid());

  grpc::ChannelArguments args;
  args.SetInt("sr.test.hostile-connection", 1);  // its own connection, not the test's
  auto channel = grpc::CreateCustomChannel("unix:" + server.socket(), grpc::InsecureChannelCredentials(), args);
  auto stub = proto::StepRunner::NewStub(channel);
  constexpr int kStreams = 1000;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<proto::FollowLogsResponse>>> readers;
  proto::FollowLogsRequest req;
  req.set_id("big");
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->FollowLogs(contexts.back().get(), req));
  }
  {
    // A unary call on the same connection, after the 1000 streams: they have all reached the server.
    grpc::ClientContext ctx;
    proto::StatusRequest sreq;
    proto::StatusResponse sresp;
    EXPECT_TRUE(stub->Status(&ctx, sreq, &sresp).ok());
  }

  // Others are served: a new job runs and is followed to its end, and the whole big log is read.
  ExpectServes(server, dir, "other");
  grpc::Status s;
  EXPECT_GE(server.Follow("big", 0, &s).size(), 16u << 20);  // the step's bytes and a line or two
  EXPECT_TRUE(s.ok()) << s.error_message();
  const long rss_stalled = RssKib(server.child().pid());
  std::printf("server RSS: %ld KiB before, %ld KiB with %d stalled streams\n", rss_before,
              rss_stalled, kStreams);
  // Bounded: well under 1 MiB per stalled stream (the log is 16 MiB; each stream could hold it).
  EXPECT_LT(rss_stalled - rss_before, kStreams * 512L) << "KiB for " << kStreams << " streams";

  // The client goes away: every stream ends, and the server still serves.
  for (auto& ctx : contexts) ctx->TryCancel();
  for (auto& reader : readers) EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  readers.clear();
  contexts.clear();
  ExpectServes(server, dir, "after-streams");
  EXPECT_TRUE(server.CloseJob("big").ok());
}

}  // namespace
}  // namespace sr::test
