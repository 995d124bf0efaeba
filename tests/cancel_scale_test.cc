// Many jobs through `serve` cancelled at once without cgroups (issue 17): the process-group
// fallback finds members through one shared census per round instead of a pass over /proc per
// job. Functional only — every job ends cancelled, every process (a setsid daemon included) is
// in its record, signalled and gone — never a timing: bench/cancel_scale measures how fast.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

constexpr int kJobs = 50;

// Ignores SIGTERM (so every process needs the SIGKILL after the grace), with a child in the
// group and a daemon that left the session; each writes its pid, then "ready" is written.
std::string Script(const std::string& dir, int i) {
  const std::string tag = dir + "/" + std::to_string(i);
  return "trap '' TERM\n"
         "( setsid sh -c 'echo $$ > " + tag + ".daemon; exec sleep 1000' & )\n"
         "sleep 1000 &\n"
         "echo $! > " + tag + ".child\n"
         "while [ ! -s " + tag + ".daemon ]; do sleep 0.01; done\n"
         "echo $$ > " + tag + ".main\n"
         "touch " + tag + ".ready\n"
         "wait\n";
}

Options Fallback(const TestDir& dir) {
  Options o = ServerOptions(dir);
  o.env["STEP_RUNNER_CGROUP"] = "off";
  return o;
}

class CancelScale : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
  LiveServer server{dir, {}, Fallback(dir)};
};

TEST_F(CancelScale, FiftyJobsCancelledAtOnceInFallbackModeLeaveNothing) {
  for (int i = 0; i < kJobs; ++i) {
    proto::RunRequest req = Request("j" + std::to_string(i), Steps({{"s", Script(dir.path(), i)}}),
                                    dir.path());
    req.mutable_graceful_exit_timeout()->set_nanos(200'000'000);
    ASSERT_TRUE(server.Run(req).ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    for (int i = 0; i < kJobs; ++i) {
      if (!dir.Exists(std::to_string(i) + ".ready")) return false;
    }
    return true;
  }));
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(server.CancelJob("j" + std::to_string(i)).ok());

  for (int i = 0; i < kJobs; ++i) {
    const std::string id = "j" + std::to_string(i);
    proto::Status end = server.WaitEnded(id);
    EXPECT_EQ(end.status(), proto::StepResult::cancelled) << id;
    std::set<int> recorded;
    for (const auto& p : end.termination().processes()) {
      recorded.insert(p.pid());
      // SIGTERM, or SIGKILL for one found only after the grace (a loaded machine): signalled.
      EXPECT_FALSE(p.signal().empty()) << id << ": " << p.DebugString();
      EXPECT_FALSE(p.command().empty()) << id;
    }
    const std::string tag = dir / std::to_string(i);
    for (const char* what : {".main", ".child", ".daemon"}) {
      const std::vector<pid_t> pids = ReadPids(tag + what);
      ASSERT_EQ(pids.size(), 1u) << id << what;
      EXPECT_TRUE(recorded.count(pids[0])) << id << what << " " << pids[0] << " not in the record: "
                                           << end.termination().DebugString();
      EXPECT_FALSE(ProcessAlive(pids[0])) << id << what << " " << pids[0] << " survived";
    }
  }
}

}  // namespace
}  // namespace sr::test
