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
#include "util/kill_deadline.h"
#include "util/output_stream.h"
#include "util/result.h"
#include "util/time.h"

namespace sr {

/// How to stop a tree, relative to the moment it is applied: the signal to send first, and how
/// long to wait before SIGKILL.
struct StopPolicy {
  int signal = SIGTERM;
  Duration grace = std::chrono::seconds(30);  // 0 = SIGKILL at once
};

/// A stop instruction as the caller computed it: the signal to send first and when SIGKILL
/// comes. The supervisor applies it and reports what happened; it does not know why.
struct StopOrder {
  int signal = SIGTERM;
  Clock::time_point issued_at{};  // when the caller decided; the grace counts from here
  KillDeadline kill;
  static StopOrder From(StopPolicy p, Clock::time_point now = Clock::now()) {
    return StopOrder{p.signal, now, KillDeadline::After(now, p.grace)};
  }
  static StopOrder Forced(Clock::time_point now = Clock::now()) {
    return StopOrder{SIGKILL, now, KillDeadline{now, true}};
  }
};

/// How to start one process.
struct ProcessSpec {
  /// argv[0] is resolved against the PATH found in `env` when it contains no '/'.
  std::vector<std::string> argv;
  /// Exactly the child's environment, "KEY=value" entries. Nothing is inherited.
  std::vector<std::string> env;
  /// When set, the child's environment instead of `env`: a caller that starts many processes
  /// with one environment (the steps of a job) keeps one list instead of a copy per process.
  std::shared_ptr<const std::vector<std::string>> shared_env;
  const std::vector<std::string>& environment() const { return shared_env ? *shared_env : env; }
  /// Working directory; empty = the runner's own.
  std::string work_dir;
  /// When false, stdout/stderr go to /dev/null and no output callback is called.
  bool capture_output = true;
  /// The resource group (Supervisor::controllers()) the tree runs in: its limits apply and its
  /// counters account for it. Null: the tree is accounted only through wait4 (TreeExit::rusage).
  std::shared_ptr<ResourceGroup> resources;
  /// One pipe for both stdout and stderr (reported as stdout), so their order is kept, as when
  /// a program writes both to one file. For destinations that are one file anyway (a job log).
  bool merge_stderr = false;
  /// How members left behind when the main process exits by itself are stopped (a background
  /// job, a daemon): a tree never outlives its main process. Unset = SIGTERM and
  /// Options::leftover_grace.
  std::optional<StopPolicy> leftovers;
  /// Optional, with capture_output: moves up to `max` bytes of a stream from its pipe `fd`
  /// straight to where they go (splice), instead of reading them for on_output. Once it answers
  /// kRefused for a pipe, that pipe is read and on_output gets its bytes from then on.
  std::function<OutputMove(OutputStream, int fd, size_t max)> move_output;
  /// Optional, with capture_output: true while the output's destination cannot take more (a
  /// terminal or pipe nobody reads). The tree then leaves its pipes unread, so the step blocks
  /// on its own writes, and hands `when_output_room` a callback to call (on the loop) once there
  /// is room; the loop itself never waits, so a cancel, a timeout and a grace still act. Once no
  /// member is left the pipes are drained whatever it says (what is left is bounded by their
  /// size).
  std::function<bool()> output_paused;
  std::function<void(std::function<void()>)> when_output_room;
};

/// How one member of a tree ended, for the termination record.
struct ProcessRecord {
  enum class Ending { kExited, kEndedBySignal, kKilledAfterGrace, kKilledForced, kStillRunning };
  pid_t pid = 0;
  /// argv joined with spaces, truncated to 256 bytes: read when the supervisor first saw the
  /// process (spawn or a membership scan), else its task name; kNeverSeen when it was gone
  /// before either could be read; kNameUnread when the runner had no fd to read it with.
  std::string command;
  static constexpr char kNeverSeen[] = "(ended before its command line could be read)";
  static constexpr char kNameUnread[] = "(not read: the runner was out of file descriptors)";
  /// The stop signal it got, or SIGKILL when the kill came first; 0 = none. A warning signal
  /// is not a stop signal and is not recorded here.
  int signal_sent = 0;
  std::chrono::system_clock::time_point signal_time{};
  /// The warning signal it got from ProcessTree::Warn, and when; 0 = none. Kept apart: a
  /// process that dies of it was ended by the runner, though no stop was asked for.
  int warning_signal = 0;
  std::chrono::system_clock::time_point warning_time{};
  std::chrono::system_clock::time_point end_time{};
  Ending ending = Ending::kExited;
  int exit_code = 0;   // with kExited
  int end_signal = 0;  // the signal that ended it; 0 when unknown (not our child, see below)
  // Only processes we reap (the main process and orphans re-parented to us) have a known exit
  // status. A member reaped by its own parent is kEndedBySignal if it vanished before our
  // SIGKILL and killed otherwise.
};

/// How a tree was stopped, when it was.
struct StopFacts {
  /// The main process had ended by itself and members were left: the stop came from
  /// ProcessSpec::leftovers, not from a Stop() call (a later Stop() may still tighten it).
  bool leftovers = false;
  int signal = 0;  // the first signal of the stop (the stop order's, or SIGKILL when forced)
  std::chrono::system_clock::time_point started{};  // wall clock, for records
  /// From the first order to the SIGKILL deadline that applied in the end (0 when forced at once).
  Duration grace{0};
  bool forced = false;  // SIGKILL came from a forced order, not from the grace running out
};

/// What the caller learns when a tree has finished.
struct TreeExit {
  /// The main process: exit status 0-255, or -1 if it died from a signal / could not start.
  int exit_code = -1;
  int term_signal = 0;             // signal that ended the main process, 0 if it exited
  bool stop_requested = false;     // Stop() or Kill() was called before the main process ended
  bool killed = false;             // any member needed SIGKILL (grace ran out or forced)
  std::optional<Error> spawn_error;  // exec failed: program not found, not executable, bad dir
  std::optional<StopFacts> stop;     // set when a stop (requested or for leftovers) began
  /// Every member the supervisor signalled or saw end during a stop, main process first. Empty
  /// when nothing was signalled. At most 256 entries (a fork bomb is killed, not listed).
  /// Every pid listed here has been reaped by the time on_exit runs.
  std::vector<ProcessRecord> records;
  /// wait4 totals of the members the runner reaped itself (the main process and orphans): CPU
  /// time and block I/O summed, peak memory the largest single process. Approximate: members
  /// reaped by their own parent are counted only through that parent.
  ResourceUsage rusage;
};

/// A running tree. Owned by the Supervisor until it finishes; callers hold a shared_ptr handle
/// that stays valid (and inert) afterwards.
class ProcessTree {
 public:
  virtual ~ProcessTree() = default;
  virtual pid_t pid() const = 0;
  /// The pids of every live member (main process and descendants, including daemonized ones).
  virtual std::vector<pid_t> Members() const = 0;
  /// Sends `signo` to every live member now, outside any stop (job control: SIGSTOP, SIGCONT).
  /// The members are recorded (their command lines read) but `signal_sent` stays the stop signal.
  virtual void Signal(int signo) = 0;
  /// Signal, as the pre-deadline warning: each member's record also keeps `warning_signal`, so
  /// one that dies of it is known to have died of the runner's signal.
  virtual void Warn(int signo) = 0;
  /// How many members the supervisor has sent a stop signal or SIGKILL to so far. Cheap: counts
  /// what Stop recorded, without looking at /proc.
  virtual size_t signalled() const = 0;
  /// The signal the stop in progress sent first: its order's signal, or SIGKILL when the order's
  /// deadline had already come (a zero grace); 0 before any stop.
  virtual int stop_signal() const = 0;
  /// What the stop in progress has done so far, for a record read during the grace: every
  /// member it signalled, as known now; one not seen to end yet is kStillRunning.
  virtual std::vector<ProcessRecord> StopRecords() const = 0;
  /// Applies a stop order: order.signal to every member at once, SIGKILL to every member when
  /// order.kill comes (at once when forced or passed). An order while a stop is in progress only
  /// tightens its deadline (KillDeadline::Tighten); its signal is not sent again. After the
  /// main process has ended by itself it does not set TreeExit::stop_requested, but still
  /// applies to the leftover members.
  virtual void Stop(StopOrder order) = 0;
  void Stop(StopPolicy policy) { Stop(StopOrder::From(policy)); }
  /// SIGKILL every member now (a forced order).
  void Kill() { Stop(StopOrder::Forced()); }
  virtual bool finished() const = 0;
};

class Supervisor {
 public:
  struct Options {
    enum class Mechanism { kAuto, kCgroup, kProcessGroup };
    /// kAuto: cgroup v2 leaf per tree when a writable hierarchy is found, else process group.
    /// (The CLI maps STEP_RUNNER_CGROUP=off to kProcessGroup; the supervisor reads no
    /// environment.)
    Mechanism mechanism = Mechanism::kAuto;
    /// Where the supervisor says which mechanism it chose and why; null = silent.
    std::function<void(const std::string&)> debug_log;
    /// false: spawn as on a kernel without clone3 (the child joins its cgroup by writing
    /// cgroup.procs). Tests use it; true also falls back by itself where clone3 is refused.
    bool clone3 = true;
    /// After the main process exits by itself, leftover members of a tree whose ProcessSpec
    /// says nothing get SIGTERM and, after this, SIGKILL: processes never outlive their tree.
    Duration leftover_grace = std::chrono::seconds(2);
    /// false: no per-step resource groups (limits refused, usage from wait4); the CLI maps
    /// STEP_RUNNER_CONTROLLERS=off to it. The v2 leaf for kill and membership stays.
    bool controllers = true;
    /// true: every step gets accounting groups, not only steps with limits (exact usage at the
    /// cost of a cgroup v1 migration per step); STEP_RUNNER_ACCOUNTING=full.
    bool full_accounting = false;
    /// The runner's $TMPDIR: the owner record of its cgroup goes there, so that the next runner
    /// with the same TMPDIR can remove what a dead one left ("" = no record; tests).
    std::string temp_base;
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
  /// Closes the descriptors kept only for speed (pipes made ahead, ended trees' read ends whose
  /// close is put off until the next spawn): what a caller short of fds (EMFILE) does before it
  /// tries once more. Spawn does it itself.
  virtual void ReleaseSpareFds() = 0;
  /// Passes over /proc the fallback's census has made so far (none with cgroup leaves): what a
  /// stop costs the machine beyond its own members (tests, benchmarks).
  virtual uint64_t census_rounds() const = 0;
};

/// Resolves a bare program name against a PATH value ("a:b:c"); a name with '/' is returned as
/// is. Error "executable file not found in $PATH" (Go's wording) when nothing matches. Like Go's
/// exec.ErrDot, a match found through a relative entry ("" or ".") is an error, not a path.
Result<std::string> LookPath(const std::string& program, const std::string& path_value);

}  // namespace sr
