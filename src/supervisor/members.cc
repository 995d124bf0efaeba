#include "supervisor/members.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <unordered_map>
#include <unordered_set>

#include "supervisor/proc_scan.h"
#include "util/time.h"

namespace sr {
namespace {

// Rounds per SignalAll. A forker can create a child between a read of the leaf and its own
// death; the next round finds that child. (The fallback's rounds: group_members.cc.)
constexpr int kSignalRounds = 8;
// The first signal is best effort against a forker that ignores it (SIGKILL is the guarantee),
// so its rounds stop after this much time: the grace is running meanwhile.
constexpr auto kSignalBudget = std::chrono::milliseconds(10);

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
  if (clean && recycle_ && leaf_->Idle() && leaf_->AsCreated()) {
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

}  // namespace sr
