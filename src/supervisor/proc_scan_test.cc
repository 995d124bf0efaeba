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

}  // namespace
}  // namespace sr
