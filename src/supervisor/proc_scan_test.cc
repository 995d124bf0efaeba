// The /proc readers on the stop path (issue 17), which read stat and comm with one read each
// through a kept /proc fd: the same facts as before, for a live process, a zombie, a reaped one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/proc_scan.h"

namespace sr {
namespace {

TEST(ProcScan, StatOfALiveProcessAZombieAndAReapedOne) {
  // The child execs: a forked copy of a sanitizer build has the runtime's thread too (TSan).
  const pid_t child = ::fork();
  if (child == 0) {
    ::setpgid(0, 0);
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::optional<ProcStat> st;
  for (int i = 0; i < 2000; ++i) {
    st = ReadProcStat(child);
    if (!st || (st->pgrp == child && st->comm == "sleep")) break;
    ::usleep(1000);
  }
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->pid, child);
  EXPECT_EQ(st->ppid, ::getpid());
  EXPECT_EQ(st->pgrp, child);
  EXPECT_EQ(st->threads, 1);
  EXPECT_FALSE(st->ending());
  EXPECT_EQ(st->comm, ReadComm(child));
  ::kill(child, SIGKILL);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  auto zombie = ReadProcStat(child);
  ASSERT_TRUE(zombie.has_value()) << "a zombie is still there";
  EXPECT_TRUE(zombie->dead());
  EXPECT_EQ(zombie->start_ticks, st->start_ticks);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(ReadProcStat(child).has_value());
}

TEST(ProcScan, CommAndCommandOfALiveProcess) {
  const pid_t child = ::fork();
  if (child == 0) {
    ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // The exec is done once its arguments are readable (the task name is set before them).
  std::string cmdline;
  for (int i = 0; i < 2000 && cmdline != "sleep 30"; ++i) {
    cmdline = ReadCmdline(child);
    if (cmdline != "sleep 30") ::usleep(1000);
  }
  EXPECT_EQ(cmdline, "sleep 30");
  EXPECT_EQ(ReadComm(child), "sleep");
  EXPECT_EQ(ReadCommand(child), "sleep 30");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(ReadComm(child), "");
}

// A grandchild that exits 7 and is reaped by its own parent (our child), not by us: a pidfd held
// on it answers with its cgroup while it lives, and with its wait status once reaped (6.15).
TEST(ProcScan, PidfdOfAProcessReapedByItsOwnParentGivesItsStatus) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t parent = ::fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    const pid_t child = ::fork();
    if (child == 0) {
      char c;
      (void)!::read(go[0], &c, 1);
      ::_exit(7);
    }
    (void)!::write(ready[1], &child, sizeof child);
    int status = 0;
    ::waitpid(child, &status, 0);
    (void)!::write(ready[1], &child, sizeof child);
    char c;
    (void)!::read(go[0], &c, 1);  // stays until the test is done with its grandchild's pidfd
    ::_exit(0);
  }
  pid_t child = 0;
  ASSERT_EQ(::read(ready[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  UniqueFd pidfd = OpenPidfd(child);
  ASSERT_TRUE(pidfd.valid());
  const PidfdInfo live = QueryPidfd(pidfd.get());
  if (live.answer == PidfdInfo::Answer::kUnsupported) GTEST_SKIP() << "no PIDFD_GET_INFO (< 6.13)";
  EXPECT_EQ(live.answer, PidfdInfo::Answer::kAnswered);
  EXPECT_TRUE(live.cgroup_id.has_value());
  EXPECT_FALSE(live.reaped_status.has_value());
  ASSERT_EQ(::write(go[1], "x", 1), 1);  // the grandchild exits and its parent reaps it
  ASSERT_EQ(::read(ready[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  const PidfdInfo reaped = QueryPidfd(pidfd.get());
  EXPECT_EQ(reaped.answer, PidfdInfo::Answer::kReaped);
  if (reaped.reaped_status) {
    EXPECT_TRUE(WIFEXITED(*reaped.reaped_status));
    EXPECT_EQ(WEXITSTATUS(*reaped.reaped_status), 7);
  }
  ASSERT_EQ(::write(go[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(parent, &status, 0), parent);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
}

}  // namespace
}  // namespace sr
