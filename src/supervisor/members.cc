#include "supervisor/members.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>
#include <unordered_map>
#include <unordered_set>

#include "supervisor/proc_scan.h"

namespace sr {
namespace {

// Freezing is asynchronous: each member stops when it next leaves the kernel. Re-read the member
// list until a pass adds nobody and the kernel reports the whole leaf frozen; bounded because a
// member stuck in uninterruptible sleep never freezes.
constexpr int kFreezeRounds = 200;
// Scan rounds per SignalAll/KillAll in the fallback. A forker can create a child between a scan
// and its own death; the next round finds that child. The tree's timer re-runs KillAll for
// anything that still races past these.
constexpr int kSignalRounds = 8;
constexpr int kKillRounds = 64;
constexpr char kMarkerKey[] = "STEP_RUNNER_TREE";

}  // namespace

void CgroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  bool frozen = leaf_->Freeze(true).ok();
  std::unordered_set<pid_t> seen;
  for (int round = 0; round < kFreezeRounds; ++round) {
    size_t fresh = 0;
    for (pid_t pid : leaf_->Procs()) {
      if (!seen.insert(pid).second) continue;
      ++fresh;
      UniqueFd fd = OpenPidfd(pid);
      if (!fd.valid()) continue;  // exited between the read and the open
      on_victim(pid, fd.get());
      PidfdSignal(fd.get(), signo);
    }
    // A fork in flight when we froze completes into a frozen child that appears in cgroup.procs
    // only then; "frozen 1" means no such fork is left.
    if (fresh == 0 && (!frozen || leaf_->Frozen())) break;
  }
  if (frozen) (void)leaf_->Freeze(false);
}

void CgroupMembers::KillAll(const VictimFn& on_victim) {
  std::vector<UniqueFd> fds;
  for (pid_t pid : leaf_->Procs()) {
    UniqueFd fd = OpenPidfd(pid);
    if (!fd.valid()) continue;
    on_victim(pid, fd.get());
    fds.push_back(std::move(fd));
  }
  if (leaf_->Kill().ok()) return;
  // cgroup.kill failed (it should not once probed): kill each member we know of directly.
  for (auto& fd : fds) PidfdSignal(fd.get(), SIGKILL);
}

std::vector<GroupMembers::Found> GroupMembers::Scan() {
  // Once nothing of the tree is alive nothing can come back: no member is left to fork.
  if (known_empty_) return {};
  const pid_t self = ::getpid();
  // Pass 1: every process that started no earlier than the main process. Their parent links
  // let pass 2 skip processes that do not descend from the runner (other users' work) without
  // reading their environment, which is the expensive part of a scan.
  struct Young {
    ProcStat st;
    bool candidate;
  };
  std::unordered_map<pid_t, Young> young;
  std::unordered_set<pid_t> old;
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (!st) continue;  // gone: absent from both maps, so a link through it counts as unknown
    if (st->start_ticks < start_ticks_ || pid == self) {
      old.insert(pid);
      continue;
    }
    // Zombies and exiting tasks are dead already, but still links in the parent chain.
    young[pid] = {*st, !st->ending()};
  }
  auto descends_from_us = [&](pid_t pid) {
    pid_t cur = young.at(pid).st.ppid;
    for (int depth = 0; depth < 256; ++depth) {
      if (cur == self) return true;
      auto it = young.find(cur);
      if (it == young.end()) return !old.count(cur) && cur > 1;  // vanished: stay on the safe side
      cur = it->second.st.ppid;
    }
    return true;
  };
  std::vector<Found> found;
  bool group_seen = false;
  for (const auto& [pid, y] : young) {
    if (!y.candidate) continue;
    bool member = y.st.pgrp == pgid_;
    group_seen = group_seen || member;
    if (!member && descends_from_us(pid)) {
      member = EnvironHasToken(ReadEnviron(pid), kMarkerKey, token_);
    }
    if (member) found.push_back({pid, y.st.pgrp, y.st.start_ticks});
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

size_t GroupMembers::Round(int signo, bool group_kill, std::unordered_set<pid_t>& seen,
                           const VictimFn& on_victim) {
  std::vector<std::pair<Found, UniqueFd>> fresh;
  for (const Found& f : Scan()) {
    if (!seen.insert(f.pid).second) continue;
    UniqueFd fd = OpenVerifiedPidfd(f.pid, f.start_ticks);
    if (!fd.valid()) continue;
    on_victim(f.pid, fd.get());
    fresh.emplace_back(f, std::move(fd));
  }
  const bool grouped = group_kill && GroupUsable();
  if (grouped) ::kill(-pgid_, signo);
  for (auto& [f, fd] : fresh) {
    if (grouped && f.pgrp == pgid_) continue;  // the group signal reached it
    PidfdSignal(fd.get(), signo);
  }
  return fresh.size();
}

void GroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  std::unordered_set<pid_t> seen;
  // The group signal goes out once: a trap handler must not run twice for one stop.
  for (int round = 0; round < kSignalRounds; ++round) {
    if (Round(signo, round == 0, seen, on_victim) == 0) break;
  }
}

void GroupMembers::KillAll(const VictimFn& on_victim) {
  std::unordered_set<pid_t> seen;
  for (int round = 0; round < kKillRounds; ++round) {
    if (Round(SIGKILL, true, seen, on_victim) == 0) break;
  }
}

}  // namespace sr
