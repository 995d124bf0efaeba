// When the fallback's census rounds run: a safety-net round (WantLater) waits, and a request
// that cannot wait (Want) is not held back by it.
#include "supervisor/proc_census.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

namespace sr {
namespace {

// A tree the census knows of. Its members are of no interest here (its start time is in the far
// future, so no process is young enough to be one): only when it gets its answers.
class CountingSubject : public ProcCensus::Subject {
 public:
  CountingSubject(std::shared_ptr<ProcCensus> census, std::string token)
      : census_(std::move(census)), token_(std::move(token)) {
    census_->Add(this);
  }
  ~CountingSubject() override { census_->Remove(this); }
  pid_t pgid() const override { return ::getpid(); }
  const std::string& token() const override { return token_; }
  unsigned long long start_ticks() const override { return ~0ULL; }
  const std::unordered_set<pid_t>& groups() const override { return groups_; }
  void OnCensus(ProcCensus::Result) override { ++answers; }
  void AfterCensus() override {}

  int answers = 0;

 private:
  std::shared_ptr<ProcCensus> census_;
  std::string token_;
  std::unordered_set<pid_t> groups_{::getpid()};
};

class ProcCensusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(*loop);
    census_ = ProcCensus::Create(loop_.get());
  }
  // Runs the loop until `done`, or until a guard far beyond any round's delay in these tests
  // (so a failing test ends instead of hanging).
  void RunUntil(const std::function<bool()>& done) {
    const auto guard = loop_->After(std::chrono::seconds(60), [this] { loop_->Stop(); });
    loop_->RunUntil(done);
    loop_->CancelTimer(guard);
  }

  std::unique_ptr<EventLoop> loop_;
  std::shared_ptr<ProcCensus> census_;
};

TEST_F(ProcCensusTest, ASafetyNetRoundDoesNotRunOnTheNextTurn) {
  CountingSubject late(census_, "1.1");
  census_->WantLater(&late, std::chrono::hours(1));
  // A task posted now runs in the turn where a round wanted at once would have run.
  bool turned = false;
  loop_->Post([&] { turned = true; });
  RunUntil([&] { return turned; });
  EXPECT_EQ(census_->rounds(), 0u);
  EXPECT_EQ(late.answers, 0);
}

TEST_F(ProcCensusTest, AWantedRoundDoesNotWaitForASafetyNetRound) {
  CountingSubject late(census_, "1.1");
  CountingSubject urgent(census_, "1.2");
  census_->WantLater(&late, std::chrono::hours(1));
  census_->Want(&urgent);
  RunUntil([&] { return urgent.answers > 0; });
  EXPECT_EQ(urgent.answers, 1);
  // The safety net's tree shares the round that ran; nothing is left waiting for the hour.
  EXPECT_EQ(late.answers, 1);
  EXPECT_EQ(census_->rounds(), 1u);
  EXPECT_FALSE(loop_->NextTimerDue().has_value());
}

TEST_F(ProcCensusTest, AnEarlierSafetyNetMovesALaterOneUp) {
  CountingSubject first(census_, "1.1");
  CountingSubject second(census_, "1.2");
  census_->WantLater(&first, std::chrono::hours(1));
  census_->WantLater(&second, std::chrono::milliseconds(1));
  RunUntil([&] { return second.answers > 0; });
  EXPECT_EQ(first.answers, 1);
  EXPECT_EQ(second.answers, 1);
  EXPECT_FALSE(loop_->NextTimerDue().has_value());
}

}  // namespace
}  // namespace sr
