#include "supervisor/members.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <unordered_map>
#include <unordered_set>

#include "supervisor/proc_scan.h"
#include "util/time.h"

namespace sr {
namespace {

// Rounds per SignalAll (both mechanisms) and KillAll (fallback). A forker can create a child between a scan
// and its own death; the next round finds that child. The tree's timer re-runs KillAll for
// anything that still races past these.
constexpr int kSignalRounds = 8;
constexpr int kKillRounds = 64;
// The first signal is best effort against a forker that ignores it (SIGKILL is the guarantee),
// so its rounds stop after this much time: the grace is running meanwhile.
constexpr auto kSignalBudget = std::chrono::milliseconds(10);
constexpr char kMarkerKey[] = "STEP_RUNNER_TREE";

}  // namespace

void CgroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  // No freeze: a frozen leaf is only reported frozen once every member has been scheduled, which
  // on a busy machine takes longer than the whole round below. Each round reads the member list
  // and pins every new pid with a pidfd. In the first round the main process's group then gets
  // the signal with one kill(-pgid): atomic, so on a loaded machine the first member to run its
  // handler cannot delay the others' signal. The list is read again, and each member outside
  // the group that is still listed gets its own signal (a pid gone between the read and the
  // open may already belong to a process outside the leaf). A child forked while a round runs
  // is listed by the next one.
  const auto give_up = Clock::now() + kSignalBudget;
  std::unordered_set<pid_t> seen;
  struct Victim {
    pid_t pid;
    UniqueFd fd;
    std::string comm;
  };
  std::vector<Victim> victims;
  bool group_signalled = false;
  for (int round = 0; round < kSignalRounds; ++round) {
    if (round > 0 && Clock::now() >= give_up) break;
    struct Fresh {
      pid_t pid;
      UniqueFd fd;
      bool in_group;
      std::string comm;
    };
    std::vector<Fresh> fresh;
    for (pid_t pid : leaf_->Procs()) {
      if (!seen.insert(pid).second) continue;
      UniqueFd fd = OpenPidfd(pid);
      if (!fd.valid()) continue;  // exited meanwhile
      // One stat read gives the group and the name the record keeps if the member is gone
      // before its command line is read.
      auto st = ReadProcStat(pid);
      if (!st) continue;
      fresh.push_back({pid, std::move(fd), st->pgrp == pgid_, std::move(st->comm)});
    }
    if (fresh.empty()) break;
    const bool grouped = round == 0 && !main_reaped_;
    if (grouped) {
      ::kill(-pgid_, signo);
      group_signalled = true;
    }
    const std::vector<pid_t> listed = leaf_->Procs();
    const std::unordered_set<pid_t> still(listed.begin(), listed.end());
    for (auto& f : fresh) {
      if (grouped && f.in_group) {
        victims.push_back({f.pid, std::move(f.fd), std::move(f.comm)});  // got the group kill
        continue;
      }
      // A group member that shows up only after the group signal was born after it (the group
      // signal is atomic against fork): a trap handler's cleanup, which must not be stopped.
      if (group_signalled && f.in_group) continue;
      if (!still.count(f.pid)) continue;
      PidfdSignal(f.fd.get(), signo);
      victims.push_back({f.pid, std::move(f.fd), std::move(f.comm)});
    }
  }
  // Records last: reading a command line can wait on a process that is busy forking.
  for (auto& v : victims) on_victim(v.pid, v.fd.get(), v.comm);
}

void CgroupMembers::Release(bool clean) {
  if (!leaf_) return;
  if (clean && recycle_ && leaf_->Idle()) {
    recycle_(std::move(leaf_));
  } else {
    leaf_->Remove();
  }
}

void CgroupMembers::KillAll(const VictimFn& on_victim) {
  // pidfds first (cheap, and they pin who was there), the kill next, the record last: reading
  // a command line can wait on a busy process, and the kill must not.
  std::vector<std::pair<pid_t, UniqueFd>> victims;
  for (pid_t pid : leaf_->Procs()) {
    UniqueFd fd = OpenPidfd(pid);
    if (fd.valid()) victims.emplace_back(pid, std::move(fd));
  }
  if (!leaf_->Kill().ok()) {
    // cgroup.kill failed (it should not once probed): kill each member we know of directly.
    for (auto& [pid, fd] : victims) PidfdSignal(fd.get(), SIGKILL);
  }
  for (auto& [pid, fd] : victims) on_victim(pid, fd.get(), "");
}

// Whether the runner has any child at all, running or a zombie: one waitid, no /proc scan.
bool HasChildren() {
  siginfo_t info{};
  const int r = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
  return !(r == -1 && errno == ECHILD);
}

std::vector<GroupMembers::Found> GroupMembers::Scan() {
  // Once nothing of the tree is alive nothing can come back: no member is left to fork.
  if (known_empty_) return {};
  // A scan only counts the runner's descendants, and every live descendant has a live ancestor
  // that is the runner's child (orphans are re-parented to the runner, its subreaper). With no
  // child at all (the usual end of a step in `run`) the scan would find nothing: skip it.
  if (!HasChildren()) {
    group_seen_ = false;
    known_empty_ = true;
    return {};
  }
  const pid_t self = ::getpid();
  // Pass 1: every process that started no earlier than the main process (no member can be
  // older). Zombies and exiting tasks are dead already, but still links in the parent chain.
  enum class Mark : char { kUnknown, kMember, kOurs, kForeign };
  struct Young {
    ProcStat st;
    Mark mark = Mark::kUnknown;
  };
  std::unordered_map<pid_t, Young> young;
  std::unordered_set<pid_t> old;
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (!st) continue;  // gone: in neither map, so a link through it counts as unknown
    if (st->start_ticks < start_ticks_ || pid == self) {
      old.insert(pid);
    } else {
      young[pid] = {std::move(*st)};
    }
  }
  // Pass 2: a process belongs to the tree if its parent does (children of members are members,
  // whatever their environment), if it is in a process group a member was seen in (ours, or
  // one a member created with setsid), or if it carries our marker (members re-parented to us
  // after setsid). The marker means reading the environment, the expensive part, so it is read
  // only for live descendants of the runner (kOurs) that nothing cheaper decided: never for
  // other users' processes (kForeign), and not for the hundreds of children of a forker.
  auto decide = [&](const Young& y, Mark parent) {
    if (parent == Mark::kForeign) return Mark::kForeign;
    if (parent == Mark::kMember || member_groups_.count(y.st.pgrp)) return Mark::kMember;
    if (!y.st.ending() && EnvironHasToken(ReadEnviron(y.st.pid), kMarkerKey, token_)) {
      return Mark::kMember;
    }
    return Mark::kOurs;
  };
  auto mark_of = [&](pid_t pid) {
    std::vector<Young*> path;
    Mark top = Mark::kOurs;
    pid_t cur = pid;
    for (int depth = 0; depth < 256; ++depth) {
      if (cur == self) break;
      auto it = young.find(cur);
      if (it == young.end()) {
        // Older than the tree (or init): not ours. Vanished mid-scan: stay on the safe side.
        top = old.count(cur) || cur <= 1 ? Mark::kForeign : Mark::kOurs;
        break;
      }
      if (it->second.mark != Mark::kUnknown) {
        top = it->second.mark;
        break;
      }
      path.push_back(&it->second);
      cur = it->second.st.ppid;
    }
    for (auto r = path.rbegin(); r != path.rend(); ++r) top = (*r)->mark = decide(**r, top);
    return top;
  };
  std::vector<Found> found;
  bool group_seen = false;
  for (const auto& [pid, y] : young) {
    if (y.st.ending()) continue;
    group_seen = group_seen || y.st.pgrp == pgid_;
    if (mark_of(pid) == Mark::kMember) {
      found.push_back({pid, y.st.pgrp, y.st.start_ticks, y.st.comm});
      member_groups_.insert(y.st.pgrp);
    }
  }
  group_seen_ = group_seen;
  if (found.empty()) known_empty_ = true;
  return found;
}

bool GroupMembers::GroupUsable() { return !main_reaped_ || group_seen_; }

std::vector<pid_t> GroupMembers::List() {
  std::vector<pid_t> pids;
  for (const Found& f : Scan()) pids.push_back(f.pid);
  return pids;
}

std::vector<GroupMembers::Found> GroupMembers::ScanGroup() const {
  std::vector<Found> found;
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (st && st->pgrp == pgid_ && st->start_ticks >= start_ticks_ && !st->ending()) {
      found.push_back({pid, st->pgrp, st->start_ticks, std::move(st->comm)});
    }
  }
  return found;
}

size_t GroupMembers::Round(int signo, GroupSignal& group, std::unordered_set<pid_t>& seen,
                           const VictimFn& on_victim) {
  std::vector<std::pair<Found, UniqueFd>> fresh;
  // After a group signal, a newcomer to the group was born after it (the group signal is atomic
  // against fork): a trap handler's cleanup, which must not be stopped.
  const bool after_group_signal = group == GroupSignal::kSent;
  auto pin = [&](const Found& f) {
    if (!seen.insert(f.pid).second) return;
    if (after_group_signal && f.pgrp == pgid_) return;
    UniqueFd fd = OpenVerifiedPidfd(f.pid, f.start_ticks);
    if (fd.valid()) fresh.emplace_back(f, std::move(fd));
  };
  // The group gets its signal first, with one kill(-pgid): atomic against fork, and not delayed
  // by the full scan, whose environment reads are the slow part. A quick look at the group just
  // before (stat files only) pins its members, so that one which dies of the signal and is
  // reaped by its own parent at once is still in the termination record.
  const bool grouped = group == GroupSignal::kSend && GroupUsable();
  if (group == GroupSignal::kSend) group = grouped ? GroupSignal::kSent : GroupSignal::kNone;
  if (grouped) {
    for (const Found& f : ScanGroup()) pin(f);
    ::kill(-pgid_, signo);
  }
  for (const Found& f : Scan()) pin(f);
  for (auto& [f, fd] : fresh) {
    // The group signal reached group members; SIGKILL goes to them again anyway (harmless),
    // while any other signal must not arrive twice (a trap handler would run twice).
    if (grouped && signo != SIGKILL && f.pgrp == pgid_) continue;
    PidfdSignal(fd.get(), signo);
  }
  // Records last: reading a command line can wait on a process that is busy forking.
  for (auto& [f, fd] : fresh) on_victim(f.pid, fd.get(), f.comm);
  return fresh.size();
}

void GroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  const auto give_up = Clock::now() + kSignalBudget;
  std::unordered_set<pid_t> seen;
  // The group signal goes out once, in the first round: a trap handler must not run twice for
  // one stop. Later rounds signal only members outside the group.
  GroupSignal group = GroupSignal::kSend;
  for (int round = 0; round < kSignalRounds; ++round) {
    if (round > 0 && Clock::now() >= give_up) break;
    if (Round(signo, group, seen, on_victim) == 0) break;
  }
}

void GroupMembers::KillAll(const VictimFn& on_victim) {
  std::unordered_set<pid_t> seen;
  // One group SIGKILL, in the first round: it is atomic against fork, so nothing can join the
  // group after it, and a second one (with its pass over /proc/*/stat) would find no one new.
  // Later rounds look for members outside the group and kill every one they find.
  GroupSignal group = GroupSignal::kSend;
  for (int round = 0; round < kKillRounds; ++round) {
    if (Round(SIGKILL, group, seen, on_victim) == 0) break;
    group = GroupSignal::kNone;
  }
}

}  // namespace sr
