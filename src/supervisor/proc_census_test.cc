// When the fallback's census rounds run: a safety-net round (WantLater) waits, and a request
// that cannot wait (Want) is not held back by it. A round that cannot read /proc for lack of fds
// says so rather than "nobody", and borrows the reserve's fds first. Orphans() finds each
// tree's daemons among the runner's children with any number of trees, and never a dead one.
#include "supervisor/proc_census.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "supervisor/guardian.h"
#include "supervisor/proc_scan.h"
#include "util/owner.h"

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

// A fallback tree as Orphans() sees it: its process group, marker and start time. Its one member
// of interest is a daemon: started by the group's leader with setsid, carrying the marker, and
// re-parented to this process (a subreaper) when the leader exits.
class DaemonTree : public ProcCensus::Subject {
 public:
  DaemonTree(std::shared_ptr<ProcCensus> census, int n)
      : census_(std::move(census)), token_(std::to_string(::getpid()) + "." + std::to_string(n)) {
    start_ticks_ = TicksSinceBoot();
    const std::string marker = std::string(kTreeMarkerKey) + "=" + token_;
    char* env[] = {const_cast<char*>(marker.c_str()), nullptr};
    int p[2];
    if (::pipe(p) != 0) return;
    const pid_t leader = ::fork();
    if (leader == 0) {
      ::setpgid(0, 0);
      const pid_t d = ::fork();
      if (d == 0) {
        ::setsid();
        ::execle("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr), env);
        ::_exit(127);
      }
      (void)!::write(p[1], &d, sizeof d);
      ::_exit(0);
    }
    ::close(p[1]);
    if (::read(p[0], &daemon_, sizeof daemon_) != sizeof daemon_) daemon_ = 0;
    ::close(p[0]);
    ::waitpid(leader, nullptr, 0);
    pgid_ = leader;
    groups_ = {leader};
    // Until its exec the daemon carries no marker: wait for it (for the environment itself,
    // which an exec sets up after the task name).
    for (int i = 0; i < 5000 && daemon_ > 0; ++i) {
      if (ReadEnviron(daemon_).find(marker) != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    census_->Add(this);
  }
  ~DaemonTree() override {
    census_->Remove(this);
    if (daemon_ > 0) {
      ::kill(daemon_, SIGKILL);
      ::waitpid(daemon_, nullptr, 0);
    }
  }
  pid_t daemon() const { return daemon_; }
  // Kills the daemon and leaves it a zombie, unreaped (its pid is still listed as a child).
  void KillDaemonLeaveZombie() {
    ::kill(daemon_, SIGKILL);
    siginfo_t info{};
    ::waitid(P_PID, daemon_, &info, WEXITED | WNOWAIT);
  }
  void ReapDaemon() {
    ::waitpid(daemon_, nullptr, 0);
    census_->Reaped(daemon_);
    daemon_ = 0;
  }
  pid_t pgid() const override { return pgid_; }
  const std::string& token() const override { return token_; }
  unsigned long long start_ticks() const override { return start_ticks_; }
  const std::unordered_set<pid_t>& groups() const override { return groups_; }
  void OnCensus(ProcCensus::Result) override {}
  void AfterCensus() override {}

 private:
  std::shared_ptr<ProcCensus> census_;
  std::string token_;
  unsigned long long start_ticks_ = 0;
  pid_t pgid_ = 0;
  pid_t daemon_ = 0;
  std::unordered_set<pid_t> groups_;
};

std::vector<pid_t> PidsOf(const std::optional<std::vector<ProcCensus::Found>>& found) {
  std::vector<pid_t> out;
  for (const auto& f : found.value_or(std::vector<ProcCensus::Found>{})) out.push_back(f.pid);
  return out;
}

// Twenty trees, each with its daemon among this process's children: every tree's look finds
// its own daemon and no other (it used to give up above 16 trees and leave them all to a round).
// A daemon that has died is not found, reaped or not: the record must not say it was signalled.
TEST_F(ProcCensusTest, OrphansFindsEachTreesOwnDaemonAmongManyTrees) {
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  std::vector<std::unique_ptr<DaemonTree>> trees;
  for (int i = 0; i < 20; ++i) {
    trees.push_back(std::make_unique<DaemonTree>(census_, i));
    ASSERT_GT(trees.back()->daemon(), 0);
  }
  for (int pass = 0; pass < 2; ++pass) {  // the second from what the first kept
    for (auto& t : trees) {
      auto found = census_->Orphans(t.get());
      ASSERT_TRUE(found.has_value());
      EXPECT_EQ(PidsOf(found), std::vector<pid_t>{t->daemon()});
    }
  }
  trees[3]->KillDaemonLeaveZombie();
  EXPECT_TRUE(census_->Orphans(trees[3].get())->empty());
  trees[3]->ReapDaemon();
  EXPECT_TRUE(census_->Orphans(trees[3].get())->empty());
  // A tree that ends takes its answers along; the others keep theirs.
  const pid_t fourth = trees[4]->daemon();
  trees.erase(trees.begin() + 4);
  EXPECT_EQ(PidsOf(census_->Orphans(trees[4].get())), std::vector<pid_t>{trees[4]->daemon()});
  EXPECT_FALSE(ReadProcStat(fourth).has_value());  // gone with its tree
}

}  // namespace
}  // namespace sr
