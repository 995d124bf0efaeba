// The fallback's shared look at /proc: one pass over /proc per round, for every tree that needs
// one, instead of one pass per tree.
//
// Without cgroups a tree's members are found by reading /proc: its process group, the groups its
// members created with setsid, children of members, and processes that carry the tree's marker
// in their environment. A pass reads the stat file of every process on the machine, so with many
// trees stopping at once, a pass per tree is quadratic: 200 cancelled jobs took seconds before
// the last one got its first signal. The census reads /proc once, decides for every young
// process which tree (if any) it belongs to, and hands each tree that asked its members.
//
// It knows nothing of stopping or signals: a Subject (a tree's membership, GroupMembers) asks for
// a round with Want(); the round runs on a later loop turn (or at once, RunNow()) and calls every
// subject that asked, first OnCensus() for all of them — where they send their signals, so that
// no signal waits for another tree's bookkeeping — then AfterCensus() for all of them, where they
// report what they did (which may ask for the next round).
//
// Single-threaded: the loop thread only.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "loop/loop.h"
#include "util/time.h"

namespace sr {

struct ProcStat;
class FdRelief;

class ProcCensus : public std::enable_shared_from_this<ProcCensus> {
 public:
  /// One live member of a tree as the round saw it.
  struct Found {
    pid_t pid;
    pid_t ppid;
    pid_t pgrp;
    unsigned long long start_ticks;
    std::string comm;
  };
  /// What a round found for one tree.
  struct Result {
    std::vector<Found> members;  // live (not exiting) members
    bool group_seen = false;     // a live process of the tree's own process group exists
    // False when the round could not read all of /proc (the runner out of fds, even after the
    // relief): `members` is what it did see, and an empty list does not mean "none".
    bool complete = true;
  };
  class Subject {
   public:
    virtual ~Subject() = default;
    /// The tree's process group (the main process's pid).
    virtual pid_t pgid() const = 0;
    /// "<runner pid>.<tree id>", the value its members carry in STEP_RUNNER_TREE.
    virtual const std::string& token() const = 0;
    /// The main process's start time: no member is older.
    virtual unsigned long long start_ticks() const = 0;
    /// Process groups its members were seen in (its own, and those created with setsid).
    virtual const std::unordered_set<pid_t>& groups() const = 0;
    /// The round's answer; signals go out here.
    virtual void OnCensus(Result result) = 0;
    /// After every subject's OnCensus: report, call back (may Want() the next round).
    virtual void AfterCensus() = 0;
  };

  /// `loop` runs the rounds that Want() schedules; null: only RunNow() runs them.
  static std::shared_ptr<ProcCensus> Create(EventLoop* loop);

  /// Every live fallback tree is known to the census, asking or not: its groups and marker
  /// decide membership cheaply, without reading environments over and over. Added while its main
  /// process (pgid()) is a child of the runner not reaped yet: Reaped() is called when it is.
  void Add(Subject* s);
  void Remove(Subject* s);
  /// `s` takes part in the next round, which is scheduled on the loop if it is not already.
  void Want(Subject* s);
  /// Want() for a round that is only a safety net: unless one is already on its way, it runs
  /// `after` from now, not on the next loop turn. A Want() meanwhile brings it forward.
  void WantLater(Subject* s, Duration after);
  /// Runs a round now if anyone wants one (with `s` in it, when given).
  void RunNow(Subject* s = nullptr);
  /// The runner's own children that are members of `s`: orphans re-parented to the runner, its
  /// subreaper (a daemon that left the tree's group and session), classified as a round would,
  /// without a pass over /proc. A child's classification is kept until the runner reaps it (its
  /// pid cannot name another process before that) or its tree is removed, so a call costs one
  /// read of the runner's children and a stat of `s`'s own orphans, whatever the number of
  /// trees: a burst of 200 cancels no longer waits for rounds to find the daemons. nullopt when
  /// a read was refused for lack of fds even after the relief (the round answers then).
  std::optional<std::vector<Found>> Orphans(Subject* s);
  /// The runner reaped `pid`: its pid may name a new process from now on.
  void Reaped(pid_t pid) { children_.erase(pid); }
  /// Rounds taken so far (tests and benchmarks).
  uint64_t rounds() const { return rounds_; }
  /// What a round does when it cannot read /proc for lack of fds (proc_scan.h).
  void set_fd_relief(std::shared_ptr<const FdRelief> relief) { relief_ = std::move(relief); }

 private:
  explicit ProcCensus(EventLoop* loop) : loop_(loop) {}
  // The next round, unless one is on its way: on the next loop turn, or at `not_before` (or
  // when the pause after the last round ends) if that is later.
  void Schedule(Clock::time_point not_before = {});
  // The next round at `at`, on a loop timer; `deferred`: it waits only for a WantLater delay.
  void ArmRound(Clock::time_point at, bool deferred);
  // A round the loop runs (posted or timed), unless it yields to timers first.
  void ScheduledRound();
  // Whether the round is put off because a loop timer is due before it would end.
  bool YieldToTimers();
  void Round();
  // Whose marker a process carries (its environment read once per process, cached).
  // `out_of_fds` is set when the environment could not be read for lack of fds.
  Subject* TokenOwner(const std::unordered_map<std::string_view, Subject*>& token_owner,
                      const ProcStat& st,
                      std::unordered_map<pid_t, std::pair<unsigned long long,
                                                          std::vector<std::string>>>& keep,
                      bool& out_of_fds);
  // Orphans() once: nullopt when the children file could not be read; `refused` is set when a
  // read was refused for lack of fds (the list may be short).
  std::optional<std::vector<Found>> LookForOrphans(Subject* s, bool& refused);
  // LookForOrphans from the answers kept, when the runner's children were listed and every one
  // of them classified earlier in this loop turn: the stops of one turn (a burst of Cancels, a
  // burst of graces running out) share that listing. Each call read ~400 pids and looked each
  // one up, ~130 µs of the loop at 200 jobs; this costs a lookup and a stat of each of the
  // tree's own orphans. A child re-parented since the listing is found by the census's
  // round, as one re-parented just after any listing is.
  std::vector<Found> KnownOrphans(Subject* s, bool& refused);
  // Which live tree owns every young process, for the trees `asking`; the environment read is
  // cached per process. `out_of_fds` is set when a read was refused for lack of fds (the answer
  // is incomplete).
  std::unordered_map<Subject*, Result> Classify(const std::unordered_set<Subject*>& asking,
                                                bool& out_of_fds);

  EventLoop* loop_;
  // A round reads the stat file of every process on the machine; with trees asking on every
  // loop turn (a burst of cancels, a burst of reaps) back-to-back rounds would leave the loop
  // little time for anything else. After a round for several trees, the next round waits as
  // long as the last one used the CPU (at most kMaxPause): in a burst rounds get at most about
  // half of the loop, and every request made meanwhile shares one.
  Clock::time_point next_round_{};
  std::vector<Subject*> subjects_;
  std::unordered_set<Subject*> wanting_;
  bool posted_ = false;  // a round is posted to the loop
  // The round that waits on a loop timer (0: none), when it is due, and whether it waits only
  // for a WantLater delay (then a Want() moves it up).
  EventLoop::TimerId round_timer_ = 0;
  Clock::time_point round_at_{};
  bool deferred_ = false;
  bool running_ = false;
  // A round costs loop time (a stat read per process on the machine); timers that come due
  // meanwhile (a burst of grace deadlines: each a tree's SIGKILL) go first. The round waits for
  // them, at most kMaxYield after it first yielded. last_cpu_: the last round's CPU time.
  Duration last_cpu_{};
  Clock::time_point yield_from_{};
  uint64_t rounds_ = 0;
  std::shared_ptr<const FdRelief> relief_;
  // Orphans()'s view of one child of the runner.
  struct Child {
    Subject* owner = nullptr;  // null: no live tree's, or ending
    unsigned long long start_ticks = 0;
    bool main = false;      // a tree's main process: its tree's, never an orphan
    bool settled = true;    // the answer may be kept (its environment could be read)
    uint64_t listed = 0;    // the last Orphans() call whose children list had it
  };
  // Every live tree's process groups and marker token: who owns a process that is not a
  // child of a member. Gathered once per round, or per Orphans() call that meets a new child.
  struct Owners {
    std::unordered_map<pid_t, Subject*> by_group;
    std::unordered_map<std::string_view, Subject*> by_token;
  };
  Owners GatherOwners() const;
  // Orphans()'s classification of a child it has not seen before (or whose pid was reused).
  Child ClassifyChild(const Owners& owners, const ProcStat& st, bool& out_of_fds);
  std::unordered_map<pid_t, Child> children_;
  uint64_t orphan_calls_ = 0;
  // The loop turn (EventLoop::turn) whose listing gave every child of the runner a kept answer;
  // 0: none (or a tree was added since, whose daemons may be among the children).
  uint64_t listed_turn_ = 0;
  // KnownOrphans()'s index of the kept answers: each tree's orphans, as of the last listing
  // (built on first use after it).
  std::unordered_map<Subject*, std::vector<pid_t>> orphans_by_owner_;
  bool orphans_indexed_ = false;
  // pid -> (start time, its STEP_RUNNER_TREE tokens): a process's marker never changes, so its
  // environment is read once, not once per round. Pruned to the processes of the last round.
  std::unordered_map<pid_t, std::pair<unsigned long long, std::vector<std::string>>> tokens_;
};

}  // namespace sr
