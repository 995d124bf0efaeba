// Status of a job the moment Run has answered (a regression found by bench/soak): Run answers
// before the event loop has started the job, so a Status sent right after it used to read
// `unspecified`. Every Status of a registered job must say running, cancelling or an end state.
#include <gtest/gtest.h>

#include <string>

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

}  // namespace
}  // namespace sr::test
