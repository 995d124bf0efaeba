// When the fallback's census rounds run: a safety-net round (WantLater) waits, and a request
// that cannot wait (Want) is not held back by it. A round that cannot read /proc for lack of fds
// says so rather than "nobody", and borrows the reserve's fds first.
#include "supervisor/proc_census.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>

#include "supervisor/proc_scan.h"

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
  void OnCensus(ProcCensus::Result result) override {
    ++answers;
    complete = result.complete;
  }
  void AfterCensus() override {}

  int answers = 0;
  bool complete = false;  // the last answer's

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

// Lowers this process's open-files limit to the lowest fd it does not hold (no open can
// succeed) for its lifetime.
class NoFreeFd {
 public:
  NoFreeFd() {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    int fd = 0;
    while (::fcntl(fd, F_GETFD) != -1) ++fd;
    rlimit none = saved_;
    none.rlim_cur = static_cast<rlim_t>(fd);
    ok_ = ::setrlimit(RLIMIT_NOFILE, &none) == 0;
  }
  ~NoFreeFd() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  bool ok_ = false;
};

TEST_F(ProcCensusTest, ARoundWithNoFdToReadProcIsIncompleteNotEmpty) {
  CountingSubject subject(census_, "1.1");
  (void)ReadProcStat(::getpid());  // /proc's own fd, opened once per process, is not the point
  {
    NoFreeFd full;
    ASSERT_TRUE(full.ok());
    census_->RunNow(&subject);
  }
  ASSERT_EQ(subject.answers, 1);
  EXPECT_FALSE(subject.complete);
  census_->RunNow(&subject);
  EXPECT_TRUE(subject.complete);
}

TEST_F(ProcCensusTest, ARoundWithNoFdBorrowsTheReserve) {
  CountingSubject subject(census_, "1.1");
  (void)ReadProcStat(::getpid());
  bool released = false;
  auto relief = std::make_shared<FdRelief>([&] { released = true; });
  census_->set_fd_relief(relief);
  {
    NoFreeFd full;
    ASSERT_TRUE(full.ok());
    census_->RunNow(&subject);
  }
  ASSERT_EQ(subject.answers, 1);
  EXPECT_TRUE(released);  // the spare fds went first
  EXPECT_TRUE(subject.complete);
}

}  // namespace
}  // namespace sr
