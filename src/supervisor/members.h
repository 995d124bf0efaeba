// How a tree finds, signals and kills its members. Two mechanisms behind one interface:
//
//  - CgroupMembers: the tree's cgroup v2 leaf is the member list. Signalling sends one group
//    signal (kill(-pgid)) to the main process's group, then reads the leaf in rounds, signalling
//    members outside that group, until a round finds nobody new (a child forked meanwhile shows up in the next); killing is
//    cgroup.kill; "gone" is `populated 0`, announced through EPOLLPRI on cgroup.events.
//  - GroupMembers (fallback): the tree's process group plus every process whose environment
//    carries the tree's marker (descendants that called setsid). The group gets its signal
//    first, with one kill(-pgid), and the main process's descendants theirs at once (a walk
//    over the tree); the rest is found by the supervisor's shared census (proc_census.h), one
//    pass over /proc per round for every tree that asked. There is no event for "an unrelated
//    process died", so the tree asks again on a short timer while it waits for them.
//
// Both report each member they signalled to a VictimFn (GroupMembers: from SignalAll/KillAll
// for what it signalled at once, from a later census round for the rest), with a pidfd that pins its identity and
// the task name the scan saw before the signal (from /proc/<pid>/stat, which never waits on the
// process). The report comes after the signal: reading /proc/<pid>/cmdline can block while the
// process forks, and the signal must not wait for that; a member that is gone by then keeps the
// name it was seen with. A member that could not be pinned (the runner at its fd limit) is
// reported with an invalid pidfd, and ProcessRecord::kNameUnread when its name could not be
// read either.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "supervisor/cgroup.h"
#include "supervisor/proc_census.h"
#include "supervisor/proc_scan.h"
#include "util/fd.h"

namespace sr {

class Members {
 public:
  /// `pidfd` pins the member; the callee may take it (the record keeps it), else it is closed.
  using VictimFn = std::function<void(pid_t pid, UniqueFd& pidfd, const std::string& seen_as)>;
  virtual ~Members() = default;

  /// Live (non-zombie) members now.
  virtual std::vector<pid_t> List() = 0;
  /// Sends `signo` to every member once, as close to "at once" as the mechanism allows.
  virtual void SignalAll(int signo, const VictimFn& on_victim) = 0;
  /// SIGKILL to every member, including children forked while it runs.
  virtual void KillAll(const VictimFn& on_victim) = 0;
  /// Whether any member is alive.
  virtual bool Populated() = 0;
  /// Populated() for a caller that can wait for the answer: nullopt = it comes later, and the
  /// callback given to OnAnswer() is called then (the fallback asks the shared census, whose
  /// round runs on a later loop turn for every tree that asked).
  virtual std::optional<bool> PopulatedSoon() { return Populated(); }
  virtual void OnAnswer(std::function<void()> /*on_answer*/) {}
  /// An fd that polls EPOLLPRI when Populated() may have changed, or -1 (scan on a timer).
  virtual int event_fd() const = 0;
  /// The main process has been reaped: its pid no longer pins the process group id.
  virtual void MainReaped() {}
  /// Releases kernel objects (the leaf directory) once the tree has finished. `clean`: it ended
  /// without a stop (nothing outlived the main process), so its leaf may serve another tree.
  virtual void Release(bool clean) { (void)clean; }
  /// What a stop does when an open fails for lack of fds (proc_scan.h): set by the supervisor.
  void set_fd_relief(std::shared_ptr<const FdRelief> relief) { relief_ = std::move(relief); }

 protected:
  // A runner at its fd limit still signals every member: the spare fds give way first, and a
  // member that still cannot be pinned is signalled by pid (Pin::no_fd) and recorded unpinned.
  Pin PinMember(pid_t pid) const { return PinProcess(pid, relief_.get()); }
  /// ReadProcStat, once more after the relief when it fails for lack of fds; `short_of_fds` is
  /// set when it still does (nullopt then does not mean "gone").
  std::optional<ProcStat> StatMember(pid_t pid, bool& short_of_fds) const;
  /// ReadChildren, the same way.
  std::optional<std::vector<pid_t>> ChildrenOf(pid_t pid, long threads, bool& short_of_fds) const;
  /// The task name (ReadComm) with the relief; ProcessRecord::kNameUnread when it could not be
  /// read for lack of fds, "" when the process is gone.
  std::string NameMember(pid_t pid) const;
  // FdRelief::Attempt, or one try without a relief.
  bool Attempt(const std::function<bool()>& attempt) const {
    return relief_ ? relief_->Attempt(attempt) : attempt();
  }
  // `read(bool& refused)` through Attempt(); `short_of_fds` is set when it was refused each time.
  template <typename Read>
  auto WithRelief(Read read, bool& short_of_fds) const {
    decltype(read(short_of_fds)) value;
    const bool done = Attempt([&] {
      bool refused = false;
      value = read(refused);
      return !refused;
    });
    if (!done) short_of_fds = true;
    return value;
  }
  std::shared_ptr<const FdRelief> relief_;
};

class CgroupMembers : public Members {
 public:
  /// Takes back an empty leaf for the next tree (instead of rmdir now and mkdir then).
  using Recycler = std::function<void(std::unique_ptr<CgroupLeaf>)>;
  /// `pgid` is the main process's pid, the id of the process group it leads. With `recycle`, a
  /// leaf that ends idle after a clean end goes there instead of being removed.
  CgroupMembers(std::unique_ptr<CgroupLeaf> leaf, pid_t pgid, Recycler recycle = nullptr)
      : leaf_(std::move(leaf)), pgid_(pgid), recycle_(std::move(recycle)) {}
  CgroupLeaf& leaf() { return *leaf_; }
  std::vector<pid_t> List() override { return leaf_ ? leaf_->Procs() : std::vector<pid_t>{}; }
  void SignalAll(int signo, const VictimFn& on_victim) override;
  void KillAll(const VictimFn& on_victim) override;
  bool Populated() override { return leaf_ && leaf_->Populated(); }
  int event_fd() const override { return leaf_ ? leaf_->events_fd() : -1; }
  void Release(bool clean) override;
  void MainReaped() override { main_reaped_ = true; }

 private:
  // The leaf's members; once more after the relief when the read fails for lack of fds.
  std::optional<std::vector<pid_t>> ReadProcs() const;
  std::unique_ptr<CgroupLeaf> leaf_;  // null once recycled
  pid_t pgid_;
  // While the main process is unreaped its pid cannot name another group, so kill(-pgid) is safe.
  bool main_reaped_ = false;
  Recycler recycle_;
};

class GroupMembers : public Members, private ProcCensus::Subject {
 public:
  /// `marker_token` is "<runner pid>.<tree id>", found in STEP_RUNNER_TREE; `start_ticks` is the
  /// main process's start time: no descendant can be older, which keeps scans cheap. Only the
  /// runner's descendants are considered (we are their subreaper, so every member is one).
  /// `census` is the supervisor's shared scanner; the tree is known to it until Release().
  GroupMembers(pid_t pgid, std::string marker_token, unsigned long long start_ticks,
               std::shared_ptr<ProcCensus> census);
  ~GroupMembers() override;
  /// Runs a census round now.
  std::vector<pid_t> List() override;
  /// The main process's group and its descendants get the signal at once (a walk over the tree,
  /// not over /proc); members found only by the census (re-parented daemons, which left the
  /// group) get theirs in its next rounds, on later loop turns.
  void SignalAll(int signo, const VictimFn& on_victim) override;
  void KillAll(const VictimFn& on_victim) override;
  /// Runs a census round now.
  bool Populated() override;
  std::optional<bool> PopulatedSoon() override;
  void OnAnswer(std::function<void()> on_answer) override { on_answer_ = std::move(on_answer); }
  int event_fd() const override { return -1; }
  void MainReaped() override;
  void Release(bool clean) override;

 private:
  using Found = ProcCensus::Found;
  // Whether a round sends the group signal. kSend becomes kSent (or kNone when the group id is
  // no longer safe to use); after kSent, newcomers to the group are left alone.
  enum class GroupSignal { kSend, kSent, kNone };
  struct Victim {
    pid_t pid;
    UniqueFd fd;
    std::string comm;
  };
  // One SignalAll or KillAll, carried over census rounds until a round finds nobody new.
  struct Request {
    int signo;
    VictimFn on_victim;
    GroupSignal group = GroupSignal::kSend;
    unsigned long long group_ticks = 0;  // TicksSinceBoot() just before the group signal
    std::unordered_set<pid_t> seen;
    std::vector<Victim> victims;  // signalled, not reported yet
    int rounds = 0;
    bool done = false;
  };

  // ProcCensus::Subject.
  pid_t pgid() const override { return pgid_; }
  const std::string& token() const override { return token_; }
  unsigned long long start_ticks() const override { return start_ticks_; }
  const std::unordered_set<pid_t>& groups() const override { return member_groups_; }
  void OnCensus(ProcCensus::Result result) override;
  void AfterCensus() override;

  // The signal to the main process's group and its descendants, now, without the census. True
  // when the walk and the look at the runner's children both ran in full: the census can only
  // find what escaped both.
  bool SignalTreeNow(Request& r);
  // One census round of a request: signal every member it has not seen.
  void Round(Request& r, const std::vector<Found>& members, bool complete);
  // Pins and signals the members of `members` that `r` has not seen; returns how many.
  size_t Signal(Request& r, const std::vector<Found>& members);
  void Report(Request& r);
  // True when the tree cannot have a live member (known empty, or the runner has no child).
  bool ProvablyEmpty();
  // kill(-pgid) is atomic against fork, but once the leader is reaped the id could in theory be
  // recycled; use it only while something still holds it.
  bool GroupUsable() const { return !main_reaped_ || group_seen_; }

  pid_t pgid_;
  std::string token_;
  unsigned long long start_ticks_;
  std::shared_ptr<ProcCensus> census_;
  bool registered_ = true;
  bool main_reaped_ = false;
  bool group_seen_ = true;    // the last round found a live process in our group
  bool known_empty_ = false;  // a round found nothing alive: final
  bool last_complete_ = true;  // the last round read all of /proc
  // Process groups members were seen in: a setsid'd member's children share its new group, so
  // they are found without reading their environment. (A group id is only recycled after the
  // group is empty and the pid counter wrapped; rounds also only look at young processes.)
  std::unordered_set<pid_t> member_groups_;
  std::vector<pid_t> last_members_;  // the last round's answer, for List()
  std::vector<Request> requests_;
  bool asked_ = false;          // PopulatedSoon() waits for the next round
  bool answer_ready_ = false;   // that round has answered: call on_answer_ after reporting
  std::optional<bool> answer_;  // its answer, until PopulatedSoon() takes it
  std::function<void()> on_answer_;
};

}  // namespace sr
