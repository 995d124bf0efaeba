// Reading /proc: the few facts the supervisor needs about processes it did not start directly.
//
// Everything here is a snapshot that may be stale a microsecond later; callers that act on a pid
// open a pidfd first and re-check the process's start time (pid + start time name one process).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/fd.h"

namespace sr {

/// The fields of /proc/<pid>/stat the supervisor uses.
struct ProcStat {
  pid_t pid = 0;
  char state = '?';  // R, S, D, Z (zombie), X (dead), ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  unsigned long long start_ticks = 0;  // since boot, in clock ticks
  unsigned long flags = 0;             // PF_* flags
  long threads = 0;                    // num_threads
  std::string comm;                    // the task name (up to 15 bytes), as ps shows it
  /// A zombie or fully dead task.
  bool dead() const { return state == 'Z' || state == 'X'; }
  /// Dead, or in do_exit already (PF_EXITING): it will never run user code again.
  bool ending() const { return dead() || (flags & 0x4) != 0; }
};

/// Every pid under /proc (thread-group leaders only), in directory order.
std::vector<pid_t> ListPids();
/// nullopt when the process is gone (or /proc is unreadable).
std::optional<ProcStat> ReadProcStat(pid_t pid);
/// Our live (non-zombie) direct children: one pass over /proc.
std::vector<ProcStat> LiveChildren();
/// Whether this process has any child at all, running or a zombie: one waitid, no /proc read.
bool HasChildren();
/// The children of every thread of `pid` (/proc/<pid>/task/<tid>/children): a walk over one
/// tree instead of a pass over all of /proc. nullopt when the kernel has no such file
/// (CONFIG_PROC_CHILDREN) or the process is gone. A snapshot like any other: a child being
/// re-parented at that moment can be missing.
/// `threads` (ProcStat::threads) 1 reads the one thread's file without listing the task
/// directory.
std::optional<std::vector<pid_t>> ReadChildren(pid_t pid, long threads = 0);
/// argv joined with spaces, truncated to `limit` bytes; "" when gone or a kernel thread.
std::string ReadCmdline(pid_t pid, size_t limit = 256);
/// The task name (/proc/<pid>/comm: cheaper to read than stat); "" when gone.
std::string ReadComm(pid_t pid);
/// The command line, or the task name (/proc/<pid>/comm, kept until the process is reaped) when
/// the command line is no longer readable, e.g. right after SIGKILL.
std::string ReadCommand(pid_t pid, size_t limit = 256);
/// The environment the process was started with ("K=V\0K=V\0..."); "" when unreadable.
std::string ReadEnviron(pid_t pid);
/// The comma-separated values of `key` in an environment block, in order.
std::vector<std::string_view> EnvironTokens(std::string_view environ, std::string_view key);
/// Whether the environment block holds `key`=value with `token` among its comma-separated values.
bool EnvironHasToken(std::string_view environ, std::string_view key, std::string_view token);

/// pidfd_open(2), close-on-exec. Invalid fd when the process is gone.
UniqueFd OpenPidfd(pid_t pid);
/// Sends `signo` through a pidfd; false (errno set) when the process is gone.
bool PidfdSignal(int pidfd, int signo);
/// PIDFD_GET_INFO (Linux 6.13) about a pidfd's process: its cgroup id, and from Linux 6.15 the
/// wait status of a process that has been reaped, by us or by its own parent.
struct PidfdInfo {
  enum class Answer { kAnswered, kReaped, kUnsupported };
  Answer answer = Answer::kUnsupported;
  std::optional<uint64_t> cgroup_id;    // while it lives (or is a zombie)
  std::optional<int> reaped_status;     // a wait(2) status, once reaped (Linux 6.15)
};
PidfdInfo QueryPidfd(int pidfd);
/// Opens a pidfd for `pid` and checks that it still names the process that started at
/// `start_ticks` (so a recycled pid is never signalled). Invalid fd otherwise.
UniqueFd OpenVerifiedPidfd(pid_t pid, unsigned long long start_ticks);

}  // namespace sr
