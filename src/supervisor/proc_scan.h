// Reading /proc: the few facts the supervisor needs about processes it did not start directly.
//
// Everything here is a snapshot that may be stale a microsecond later; callers that act on a pid
// open a pidfd first and re-check the process's start time (pid + start time name one process).
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <functional>
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
/// The same; nullopt when /proc cannot be listed (the runner is out of fds): not "nobody".
std::optional<std::vector<pid_t>> TryListPids();
/// nullopt when the process is gone (or /proc is unreadable).
std::optional<ProcStat> ReadProcStat(pid_t pid);
/// The same; sets `out_of_fds` when the read was refused for lack of fds (EMFILE, ENFILE): then
/// nullopt does not mean "gone".
std::optional<ProcStat> ReadProcStat(pid_t pid, bool& out_of_fds);
/// Our live (non-zombie) direct children: one pass over /proc.
std::vector<ProcStat> LiveChildren();
/// Whether this process has any child at all, running or a zombie: one waitid, no /proc read.
bool HasChildren();
/// The children of every thread of `pid` (/proc/<pid>/task/<tid>/children): a walk over one
/// tree instead of a pass over all of /proc. nullopt when the kernel has no such file
/// (CONFIG_PROC_CHILDREN) or the process is gone. A snapshot like any other: a child being
/// re-parented at that moment can be missing.
/// `threads` (ProcStat::threads) 1 reads the one thread's file without listing the task
/// directory. `out_of_fds` is set when a file could not be opened for lack of fds: nullopt then
/// does not mean "no such file" (and a list may be short).
std::optional<std::vector<pid_t>> ReadChildren(pid_t pid, long threads, bool& out_of_fds);
/// argv joined with spaces, truncated to `limit` bytes; "" when gone or a kernel thread.
std::string ReadCmdline(pid_t pid, size_t limit = 256);
/// The task name (/proc/<pid>/comm: cheaper to read than stat); "" when gone.
std::string ReadComm(pid_t pid);
/// The command line, or the task name (/proc/<pid>/comm, kept until the process is reaped) when
/// the command line is no longer readable, e.g. right after SIGKILL.
std::string ReadCommand(pid_t pid, size_t limit = 256);
/// The environment the process was started with ("K=V\0K=V\0..."); "" when unreadable.
std::string ReadEnviron(pid_t pid);
/// The same; sets `out_of_fds` when the read was refused for lack of fds: then "" does not mean
/// "no environment" (the twin of ReadProcStat's overload, for a census that must not miss one).
std::string ReadEnviron(pid_t pid, bool& out_of_fds);
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
/// Whether an open failed for lack of file descriptors (EMFILE, ENFILE): the process is not gone,
/// the runner is short.
inline bool OutOfFds(int err) { return err == EMFILE || err == ENFILE; }

/// What the stop's path does when an open fails for lack of fds (a runner at its fd limit must
/// still find and signal every member). One object shared by the supervisor, its census and its
/// trees' members, which may outlive it: the supervisor calls Detach() when it goes.
class FdRelief {
 public:
  /// `release_spare`: lets go of the fds the supervisor keeps only for speed
  /// (Supervisor::ReleaseSpareFds). Takes the reserve: two fds held for reads only.
  explicit FdRelief(std::function<void()> release_spare);
  /// Lets the spare fds go; false when there is nothing to call any more.
  bool ReleaseSpare() const;
  /// Runs `attempt` (false: an open failed for lack of fds) up to three times until it is not
  /// short: as is, after the spare fds are let go, and with the reserve's fds closed while it
  /// runs (taken again after it). For reads that hold their fds only while they run (a leaf's
  /// member list, a pass over /proc: at most two at a time): whatever holds every other fd,
  /// they get theirs. False when it was short all three times.
  bool Attempt(const std::function<bool()>& attempt) const;
  /// Takes back what the reserve lacks (a lent fd another thread took meanwhile, or one the
  /// table had no room for): nothing to do, and no syscall, when it is whole.
  void TakeReserve() const;
  void Detach() { release_ = nullptr; }

 private:
  std::function<void()> release_;
  mutable std::vector<UniqueFd> reserve_;
};

/// A member pinned before its signal. `no_fd`: the process was alive when listed, but no pidfd
/// could be had even after the relief (the runner is at its fd limit): it is signalled by pid
/// and recorded without a pin.
struct Pin {
  UniqueFd fd;
  bool no_fd = false;
  bool ok() const { return fd.valid() || no_fd; }
};
/// pidfd_open, once more after the spare fds are let go when it fails for lack of fds (a pin is
/// kept: never the reserve's fds).
Pin PinProcess(pid_t pid, const FdRelief* relief);
/// Sends `signo` through the pin when there is one, else by pid (the process was listed alive a
/// moment ago: its pid can be recycled only once it is reaped and the pid counter has wrapped).
bool SignalPinned(pid_t pid, const UniqueFd& pin, int signo);

/// Opens a pidfd for `pid` and checks that it still names the process that started at
/// `start_ticks` (so a recycled pid is never signalled). Invalid fd otherwise.
UniqueFd OpenVerifiedPidfd(pid_t pid, unsigned long long start_ticks);

}  // namespace sr
