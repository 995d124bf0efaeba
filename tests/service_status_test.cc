// Status of a job the moment Run has answered (a regression found by bench/soak): Run answers
// before the event loop has started the job, so a Status sent right after it used to read
// `unspecified`. Every Status of a registered job must say running, cancelling or an end state.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <google/protobuf/util/json_util.h>

#include <string>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

TEST(Service, StatusRightAfterRunIsNeverUnspecified) {
  TestDir dir;
  LiveServer server(dir);
  // Many rounds: the window is between Run's answer and the loop's next turn.
  for (int i = 0; i < 100; ++i) {
    const std::string id = "j" + std::to_string(i);
    ASSERT_TRUE(server.Run(Request(id, Steps({{"a", "true"}}), dir.path())).ok());
    proto::Status st = server.GetStatusOrDie(id);
    EXPECT_NE(st.status(), proto::StepResult::unspecified) << id;
    const proto::StatusResponse all = server.All();
    for (const auto& job : all.jobs()) {
      EXPECT_NE(job.status(), proto::StepResult::unspecified) << job.id();
    }
  }
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(server.CloseJob("j" + std::to_string(i)).ok());
}

// Process names and the server's own environment are bytes, not UTF-8. A proto3 client refuses
// a message with a string that is not UTF-8 ("No message returned"), so one such byte made every
// Status of the job fail. Each stray byte is now written as \xNN.
TEST(Service, StatusOfAJobWithBytesThatAreNotUtf8CanBeRead) {
  BecomeSubreaper();
  TestDir dir;
  LiveServer server(dir, {}, ServerOptions(dir, {{"SR_LATIN", "caf\xe9"}}));
  // The child ignores SIGTERM (kept across exec), so its command line is read while it lives.
  proto::RunRequest req = Request("latin", Steps({{"latin", "bash -c 'trap \"\" TERM; "
                                                             "exec -a \"$(printf \"sl\\xe9ep\")\" sleep 60' &\n"
                                                             "touch " + dir / "ready" + "\nwait"}}),
                                  dir.path());
  req.mutable_graceful_exit_timeout()->set_nanos(300'000'000);
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("ready"); }));
  // "ready" comes before the background bash has exec'd the renamed sleep: wait for it.
  ASSERT_TRUE(WaitFor([] {
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      std::ifstream cmdline(e.path() / "cmdline");
      std::string argv0;
      if (std::getline(cmdline, argv0, '\0') && argv0 == "sl\xe9" "ep") return true;
    }
    return false;
  }));
  proto::Status running;
  ASSERT_TRUE(server.GetStatus("latin", &running).ok()) << "a running job's Status";
  EXPECT_EQ(running.result().env().at("SR_LATIN"), "caf\\xe9");
  ASSERT_TRUE(server.CancelJob("latin").ok());
  const proto::Status ended = server.WaitEnded("latin");
  ASSERT_EQ(ended.status(), proto::StepResult::cancelled);
  std::string text;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(ended.termination(), &text).ok());
  bool named = false;
  const nlohmann::json record = nlohmann::json::parse(text);
  for (const auto& p : record["processes"]) {
    named |= p.value("command", "") == "sl\\xe9ep 60";
  }
  EXPECT_TRUE(named) << text;
  const proto::StatusResponse all = server.All();
  ASSERT_EQ(all.jobs_size(), 1);
  ASSERT_TRUE(server.CloseJob("latin").ok());
  ReapOrphans();
}

}  // namespace
}  // namespace sr::test
