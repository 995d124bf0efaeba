// The process supervisor: spawn, signal, wait, kill-tree, reap. It knows nothing about steps.
//
// Every spawned process leads a *tree*: a new process group, marked with an environment variable
// that its descendants inherit, and — where a writable cgroup v2 hierarchy exists — a leaf cgroup
// of its own. The runner is a child subreaper (PR_SET_CHILD_SUBREAPER), so descendants that
// daemonize (setsid + double fork) are re-parented to it and stay reachable. Stopping a tree is an
// explicit sequence: the stop signal to every member at once, wait up to the grace, SIGKILL every
// member (cgroup.kill when available), reap. A tree is finished only when its main process has
// exited, no member is alive and its output pipes are drained, so no descendant can hold a log
// open past the tree's end.
//
// Threading: create the Supervisor on the thread that will run the EventLoop, before any other
// thread exists (it blocks SIGCHLD for the whole process and reaps through a signalfd). All
// callbacks run on the loop thread; all methods must be called there. Only one Supervisor may
// exist in a process at a time: it owns SIGCHLD and reaps every child of the process.
//
// Callback order: a tree's on_output calls all come before its on_exit (a tree finishes only
// after both pipes reached EOF), and on_exit always runs on a later loop turn than the call that
// caused it (never from inside Spawn, Stop, Kill or KillAll).
//
// Mechanisms and their limits are described in docs/cancellation.md.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loop/loop.h"
#include "supervisor/controllers.h"
#include "util/result.h"
#include "util/time.h"

namespace sr {

/// How to start one process.
struct ProcessSpec {
  /// argv[0] is resolved against the PATH found in `env` when it contains no '/'.
  std::vector<std::string> argv;
  /// Exactly the child's environment, "KEY=value" entries. Nothing is inherited.
  std::vector<std::string> env;
  /// Working directory; empty = the runner's own.
  std::string work_dir;
  /// When false, stdout/stderr go to /dev/null and no output callback is called.
  bool capture_output = true;
  /// The resource group (Supervisor::controllers()) the tree runs in: its limits apply and its
  /// counters account for it. Null: the tree is accounted only through wait4 (TreeExit::rusage).
  std::shared_ptr<ResourceGroup> resources;
};

enum class OutputStream { kStdout, kStderr };

/// How one member of a tree ended, for the termination record.
struct ProcessRecord {
  enum class Ending { kExited, kEndedBySignal, kKilledAfterGrace, kKilledForced, kStillRunning };
  pid_t pid = 0;
  std::string command;  // /proc/<pid>/cmdline, spaces between args, truncated to 256 bytes
  int signal_sent = 0;  // first signal we sent it (stop, warning, leftover or SIGKILL); 0 = none
  std::chrono::system_clock::time_point signal_time{};
  std::chrono::system_clock::time_point end_time{};
  Ending ending = Ending::kExited;
  int exit_code = 0;   // with kExited
  int end_signal = 0;  // the signal that ended it; 0 when unknown (not our child, see below)
  // Only processes we reap (the main process and orphans re-parented to us) have a known exit
  // status. A member reaped by its own parent is kEndedBySignal if it vanished before our
  // SIGKILL and killed otherwise.
};

/// What the caller learns when a tree has finished.
struct TreeExit {
  /// The main process: exit status 0-255, or -1 if it died from a signal / could not start.
  int exit_code = -1;
  int term_signal = 0;             // signal that ended the main process, 0 if it exited
  bool stop_requested = false;     // Stop() or Kill() was called before the main process ended
  bool killed = false;             // any member needed SIGKILL (grace ran out or forced)
  std::optional<Error> spawn_error;  // exec failed: program not found, not executable, bad dir
  /// Every member the supervisor signalled or saw end during a stop, main process first. Empty
  /// when nothing was signalled. At most 256 entries (a fork bomb is killed, not listed).
  /// Every pid listed here has been reaped by the time on_exit runs.
  std::vector<ProcessRecord> records;
  /// wait4 totals of the members the runner reaped itself (the main process and orphans): CPU
  /// time and block I/O summed, peak memory the largest single process. Approximate: members
  /// reaped by their own parent are counted only through that parent.
  ResourceUsage rusage;
};

/// How to stop a tree: the signal to send first, and how long to wait before SIGKILL.
struct StopPolicy {
  int signal = SIGTERM;
  Duration grace = std::chrono::seconds(30);  // 0 = SIGKILL at once
};

/// A running tree. Owned by the Supervisor until it finishes; callers hold a shared_ptr handle
/// that stays valid (and inert) afterwards.
class ProcessTree {
 public:
  virtual ~ProcessTree() = default;
  virtual pid_t pid() const = 0;
  /// The pids of every live member (main process and descendants, including daemonized ones).
  virtual std::vector<pid_t> Members() const = 0;
  /// Sends `signo` to every live member now (used for the pre-deadline warning signal).
  virtual void Signal(int signo) = 0;
  /// How many members the supervisor has sent a signal to so far (stop, warning or SIGKILL).
  /// Cheap: counts what Stop/Kill/Signal recorded, without looking at /proc.
  virtual size_t signalled() const = 0;
  /// Starts the stop sequence: policy.signal to every member at once, SIGKILL to every member
  /// when the grace runs out. Calling again may shorten the grace (never lengthen it). After the
  /// main process has ended by itself it does not set TreeExit::stop_requested, but still
  /// applies to the leftover members.
  virtual void Stop(StopPolicy policy) = 0;
  /// SIGKILL every member now (a forced cancel). Also ends a Stop() in progress.
  virtual void Kill() = 0;
  virtual bool finished() const = 0;
};

class Supervisor {
 public:
  struct Options {
    enum class Mechanism { kAuto, kCgroup, kProcessGroup };
    /// kAuto: cgroup v2 leaf per tree when a writable hierarchy is found, else process group.
    /// The environment variable STEP_RUNNER_CGROUP=off forces kProcessGroup (tests use it).
    Mechanism mechanism = Mechanism::kAuto;
    /// After the main process exits by itself, leftover members get SIGTERM and, after this,
    /// SIGKILL: a step's processes never outlive the step.
    Duration leftover_grace = std::chrono::seconds(2);
  };
  using OutputCallback = std::function<void(OutputStream, std::string_view)>;
  using ExitCallback = std::function<void(TreeExit)>;

  static Result<std::unique_ptr<Supervisor>> Create(EventLoop& loop, Options options);
  static Result<std::unique_ptr<Supervisor>> Create(EventLoop& loop) {
    return Create(loop, Options());
  }
  /// Kills everything (KillAll) and removes the cgroup directory. on_exit callbacks not yet
  /// delivered are dropped: to get them, call KillAll() and run the loop until live_trees() == 0.
  virtual ~Supervisor() = default;

  /// Starts a process as the leader of a new tree. `on_output` gets its stdout/stderr bytes as
  /// they arrive; `on_exit` is called exactly once when the tree has finished (also when exec
  /// failed: then spawn_error is set). Returns an error only if the runner itself failed (fork,
  /// pipe); an exec failure is reported through on_exit.
  virtual Result<std::shared_ptr<ProcessTree>> Spawn(const ProcessSpec& spec,
                                                     OutputCallback on_output,
                                                     ExitCallback on_exit) = 0;

  /// The resource controllers found at Create (none when cgroups are off).
  virtual Controllers& controllers() = 0;
  /// "cgroup v2 (<path>)" or "process group + subreaper".
  virtual std::string mechanism() const = 0;
  /// Number of trees not yet finished.
  virtual size_t live_trees() const = 0;
  /// SIGKILLs every live tree and any re-parented orphan, and reaps them (shutdown path).
  virtual void KillAll() = 0;
};

/// Resolves a bare program name against a PATH value ("a:b:c"); a name with '/' is returned as
/// is. Error "executable file not found in $PATH" (Go's wording) when nothing matches. Like Go's
/// exec.ErrDot, a match found through a relative entry ("" or ".") is an error, not a path.
Result<std::string> LookPath(const std::string& program, const std::string& path_value);

}  // namespace sr
