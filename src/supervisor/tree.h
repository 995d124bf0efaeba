// One process tree: its main process, its members (via a Members mechanism), its two output
// pipes and its stop sequence. A tree finishes when the main process has been reaped, no member
// is alive, every member it recorded has been reaped, and both pipes reached EOF; then on_exit
// runs on the next loop turn.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "loop/loop.h"
#include "supervisor/members.h"
#include "supervisor/supervisor.h"

namespace sr {

/// What a tree needs from the supervisor that owns it.
class TreeOwner {
 public:
  virtual ~TreeOwner() = default;
  /// Reaps every child that became waitable since the last reap (nothing to do, and no wait4,
  /// when no SIGCHLD is pending); non-reentrant: a no-op while a reap is running.
  virtual void ReapNow() = 0;
  /// The tree has delivered on_exit and can be forgotten.
  virtual void TreeDelivered(uint64_t id) = 0;
  /// Takes a pipe's read end that reached EOF (no writer is left, none can come) and is no
  /// longer watched, and closes it later: after the next spawn, off the path between one
  /// step's end and the next step's start, or at the latest when a few have gathered.
  virtual void CloseLater(UniqueFd fd) = 0;
};

class TreeImpl final : public ProcessTree, public std::enable_shared_from_this<TreeImpl> {
 public:
  struct Config {
    EventLoop* loop = nullptr;
    TreeOwner* owner = nullptr;
    uint64_t id = 0;
    std::string command;  // argv joined, for the main process's record
    StopPolicy leftovers;  // how members left after the main process are stopped
    Duration leftover_grace{};  // also: how long to wait for pipes held outside the tree
    Supervisor::OutputCallback on_output;
    std::function<OutputMove(OutputStream, int, size_t)> move_output;  // ProcessSpec::move_output
    std::function<bool()> output_paused;                               // ProcessSpec::output_paused
    std::function<void(std::function<void()>)> when_output_room;       // and when_output_room
    Supervisor::ExitCallback on_exit;
  };
  explicit TreeImpl(Config config);
  ~TreeImpl() override;

  /// The program could not be started at all (LookPath failed): finish on the next loop turn.
  void FailToStart(Error error);
  /// The main process runs (or failed to exec: `exec_error`). Pipe fds may be invalid when
  /// output is not captured. `out_write`/`err_write`: the runner's copies of the pipes' write
  /// ends, held until the main process is reaped (Pipe::held_write), or invalid.
  Status Start(pid_t pid, UniqueFd pidfd, std::unique_ptr<sr::Members> members, UniqueFd out,
               UniqueFd err, std::optional<Error> exec_error, UniqueFd out_write = {},
               UniqueFd err_write = {});
  /// Start() failed after the fork: kill the process quietly, never call back.
  void Abandon();

  // Supervisor side.
  uint64_t id() const { return id_; }
  bool Owns(pid_t pid) const;
  /// Records an exit status; the caller calls Progress() once after a batch of reaps.
  void OnReaped(pid_t pid, int status);
  /// Re-evaluates whether the tree has finished (or has leftovers to stop).
  void Progress();
  /// KillAll: SIGKILL again (catches forks that raced), drain the pipes, check for the end.
  /// With `close_pipes`, stop waiting for an EOF that a process outside the tree withholds.
  void Tick(bool close_pipes);
  bool done() const { return phase_ >= Phase::kFinished; }
  /// The supervisor is going away: drop callbacks, timers and watches.
  void Detach();

  // ProcessTree.
  pid_t pid() const override { return pid_; }
  std::vector<pid_t> Members() const override;
  void Signal(int signo) override;
  void Warn(int signo) override;
  size_t signalled() const override;
  int stop_signal() const override { return stop_ ? stop_facts_.signal : 0; }
  std::vector<ProcessRecord> StopRecords() const override;
  using ProcessTree::Stop;
  void Stop(StopOrder order) override;
  bool finished() const override { return phase_ == Phase::kDelivered; }

 private:
  // What the supervisor knows about one process it signalled or saw end.
  struct Member {
    ProcessRecord rec;
    UniqueFd pidfd;  // pins the identity; ESRCH on it means "reaped"
    EventLoop::WatchId exit_watch = 0;
    bool killed = false;  // got SIGKILL from us while alive
    bool status_known = false;
    bool gone = false;
  };
  struct Pipe {
    OutputStream stream;
    UniqueFd fd;
    EventLoop::WatchId watch = 0;
    // Set once a read found the pipe full: the pipe was grown to 1 MiB and is read in pieces of
    // up to 1 MiB (through `big`, allocated at the first read that needs it), so a chatty step
    // costs a few large reads and writes instead of many 64 KiB ones.
    bool grown = false;
    std::unique_ptr<char[]> big;
    bool refused_move = false;  // move_output said kRefused: read from now on
    bool paused = false;        // unwatched while the output's destination is full
    // The runner's own write end, closed when the main process is reaped: until then the pipe
    // cannot hang up. Its hang-up at the main process's exit woke the loop a moment before the
    // SIGCHLD did, on the same CPU as the exiting child more often than not: two more context
    // switches per step (docs/performance.md, issue 17 round 3). The drain after the reap
    // finds the end instead.
    UniqueFd held_write;
  };

  // Where the tree is. Each phase waits for one thing; these are the only transitions:
  //   kNew      → kRunning (Start) | kFinished (FailToStart)
  //   kRunning  → kStopping (Stop; or the leftovers' stop once the main process ended)
  //             | kKilling (a forced or zero-grace stop) | kSettling (main ended, nobody left)
  //   kStopping → kKilling (the deadline came, or an order forced it) | kSettling (all gone)
  //   kKilling  → kSettling (all gone)
  //   kSettling → kFinished (pipes at EOF, every recorded member reaped)
  //   kFinished → kDelivered (on_exit called, or dropped by Detach)
  // The stop itself is data: stop_ (the order, tightened by later ones) and phase_timer_ (its
  // deadline while kStopping; the wait for pipes held outside the tree while kSettling).
  enum class Phase { kNew, kRunning, kStopping, kKilling, kSettling, kFinished, kDelivered };
  bool live() const { return phase_ >= Phase::kRunning && phase_ < Phase::kFinished && loop_; }
  void Enter(Phase next);

  void BeginStop(const StopOrder& order, bool leftovers);
  void KillNow(ProcessRecord::Ending ending);
  void ArmPhaseTimer(Clock::time_point deadline, void (TreeImpl::*on_due)());
  void GraceRanOut();
  void PipesWaitedEnough();
  /// The fallback (no event fd): look at the members again after kRescanInterval. With
  /// `even_with_events`, also in cgroup mode (its events could not be watched).
  void ArmPoll(bool even_with_events = false);
  /// cgroup mode: Progress again when the leaf's `populated` changes.
  void WatchEvents();
  bool Settled();
  void Finish();
  void Deliver(TreeExit exit);
  bool main_reaped() const { return main_status_.has_value(); }
  void Disarm();
  TreeExit BuildExit();

  // A member got `signo` from us: a stop signal or SIGKILL (`stop`), or another (Signal, Warn).
  // `seen_as` is the task name a scan saw before the signal ("" when none did). The member's
  // record, or null past kMaxRecords.
  Member* OnVictim(pid_t pid, UniqueFd& pidfd, int signo, bool stop, const std::string& seen_as);
  Member* Find(pid_t pid);
  void ApplyStatus(Member& m, int status);
  void WatchEnd(Member& m);
  // Whether a signalled member whose end WatchEnd waits for is still alive (so the tree is).
  bool AwaitingAnEnd() const;
  void MarkGone(Member& m);
  void SetStatus(Member& m, int status);
  void LearnReapedStatus(Member& m);

  Status WatchPipe(Pipe& p);
  Status WatchReadable(Pipe& p);
  void ReadPipe(Pipe& p, bool drain);
  void GrowPipe(Pipe& p);
  /// `at_eof`: every writer is gone, so nobody can tell when the read end closes (CloseLater).
  void ClosePipe(Pipe& p, bool at_eof = false);
  void DrainPipes();
  /// The destination is full: both pipes leave the epoll set until ResumeOutput finds room.
  void PauseOutput();
  void ResumeOutput();
  bool PipesClosed() const { return !out_.fd.valid() && !err_.fd.valid(); }

  EventLoop* loop_;
  TreeOwner* owner_;
  const uint64_t id_;
  const std::string command_;
  const StopPolicy leftovers_;
  const Duration leftover_grace_;
  Supervisor::OutputCallback on_output_;
  std::function<OutputMove(OutputStream, int, size_t)> move_output_;
  std::function<bool()> output_paused_;
  std::function<void(std::function<void()>)> when_output_room_;
  bool awaiting_room_ = false;  // a resume is registered with when_output_room_
  Supervisor::ExitCallback on_exit_;

  Phase phase_ = Phase::kNew;
  pid_t pid_ = 0;
  UniqueFd main_pidfd_;
  std::unique_ptr<sr::Members> members_;
  Pipe out_{OutputStream::kStdout, {}, 0};
  Pipe err_{OutputStream::kStderr, {}, 0};
  EventLoop::WatchId events_watch_ = 0;

  std::optional<int> main_status_;  // wait status, once the main process has been reaped
  std::optional<Error> spawn_error_;

  std::optional<StopOrder> stop_;  // the stop in progress, its deadline tightened by later orders
  StopFacts stop_facts_;           // what the record says about it
  ProcessRecord::Ending kill_ending_ = ProcessRecord::Ending::kKilledAfterGrace;
  // Facts for TreeExit, not state: nothing decides on them.
  bool stop_requested_ = false;  // Stop before the main process ended
  bool any_killed_ = false;      // some member got SIGKILL from us
  EventLoop::TimerId phase_timer_ = 0;  // the current phase's deadline
  EventLoop::TimerId poll_timer_ = 0;   // fallback: look at the members again

  std::vector<std::unique_ptr<Member>> records_;
  std::unordered_map<pid_t, Member*> by_pid_;
};

}  // namespace sr
