// 200 stop cycles of a tree holding a setsid daemon and a SIGTERM-ignoring child, in four
// concurrent lanes (which also checks that trees never claim each other's processes).
#include <gtest/gtest.h>

#include <cstdlib>

#include "supervisor/supervisor_test_util.h"

namespace sr::testing {
namespace {

constexpr int kLanes = 4;
// 50 per lane by default; STEP_RUNNER_TORTURE_CYCLES=250 gives the 1000-cycle run of the issue.
const int kCyclesPerLane = [] {
  const char* v = std::getenv("STEP_RUNNER_TORTURE_CYCLES");
  return v && std::atoi(v) > 0 ? std::atoi(v) : 50;
}();

// Everything ignores SIGTERM (the trap's SIG_IGN is inherited across fork and exec).
constexpr char kScript[] = R"(
trap '' TERM
( setsid sh -c 'echo daemon; exec sleep 1000' & )
sleep 1000 &
echo ready
wait)";

class TortureTest : public SupervisorTest {
 protected:
  struct Lane {
    std::string token;
    int cycles_done = 0;
    bool stopped = false;
    std::string out;
    std::shared_ptr<ProcessTree> tree;
  };

  void StartCycle(Lane& lane) {
    lane.stopped = false;
    lane.out.clear();
    ProcessSpec spec = Shell(kScript);
    spec.env[1] = "TEST_TAG=" + tag_ + "," + lane.token;
    auto tree = sup_->Spawn(
        spec,
        [&lane](OutputStream, std::string_view bytes) {
          lane.out.append(bytes);
          // Stop from inside an output callback, as an engine reacting to output might.
          if (!lane.stopped && lane.out.find("ready") != std::string::npos &&
              lane.out.find("daemon") != std::string::npos) {
            lane.stopped = true;
            lane.tree->Stop(StopPolicy{SIGTERM, std::chrono::milliseconds(50)});
          }
        },
        [this, &lane](TreeExit e) { OnExit(lane, std::move(e)); });
    ASSERT_TRUE(tree.ok()) << tree.error().message;
    lane.tree = *tree;
  }

  void OnExit(Lane& lane, TreeExit e) {
    ++lane.cycles_done;
    if (!e.stop_requested || !e.killed) {
      ++bad_cycles_;
      first_problem_ = "cycle ended without the stop: exit " + std::to_string(e.exit_code);
    }
    for (const auto& r : e.records) {
      if (!PidGone(r.pid)) ++survivors_;
    }
    // A full /proc scan per cycle is costly on two cores; every few cycles is enough, since a
    // survivor (a sleep 1000) would still be there for the final scan anyway.
    if (lane.cycles_done % 10 == 0) survivors_ += Survivors(lane.token).size();
    if (lane.cycles_done < kCyclesPerLane) StartCycle(lane);  // spawn from inside on_exit
  }

  int bad_cycles_ = 0;
  size_t survivors_ = 0;
  std::string first_problem_;
};

TEST_P(TortureTest, TwoHundredStopCyclesLeaveNoSurvivor) {
  std::vector<Lane> lanes(kLanes);
  for (int i = 0; i < kLanes; ++i) {
    lanes[i].token = tag_ + "L" + std::to_string(i);
    StartCycle(lanes[i]);
  }
  ASSERT_TRUE(RunUntil(
      [&] {
        for (const auto& l : lanes) {
          if (l.cycles_done < kCyclesPerLane) return false;
        }
        return true;
      },
      std::chrono::seconds(60 + 2 * kCyclesPerLane)));
  EXPECT_EQ(survivors_, 0u);
  EXPECT_TRUE(Survivors(tag_).empty());
  EXPECT_EQ(bad_cycles_, 0) << first_problem_;
  EXPECT_EQ(sup_->live_trees(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, TortureTest,
                         ::testing::Values(Mechanism::kCgroup, Mechanism::kProcessGroup),
                         MechanismName);

}  // namespace
}  // namespace sr::testing
