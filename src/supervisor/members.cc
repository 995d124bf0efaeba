#include "supervisor/members.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <unordered_map>
#include <unordered_set>

#include "supervisor/proc_scan.h"
#include "supervisor/supervisor.h"
#include "util/time.h"

namespace sr {
namespace {

// Rounds per SignalAll. A forker can create a child between a read of the leaf and its own
// death; the next round finds that child. (The fallback's rounds: group_members.cc.)
constexpr int kLeafSignalRounds = 8;
// The first signal is best effort against a forker that ignores it (SIGKILL is the guarantee),
// so its rounds stop after this much time: the grace is running meanwhile.
constexpr auto kSignalBudget = std::chrono::milliseconds(10);

}  // namespace

void CgroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  // No freeze: a frozen leaf is only reported frozen once every member has been scheduled, which
  // on a busy machine takes longer than the whole round below. Each round reads the member list
  // and pins every new pid with a pidfd (so that a member that dies of the signal and is reaped
  // by its own parent at once is still in the record); getpgid, a syscall rather than a /proc
  // read, says which of them are in the main process's group. The members outside the group
  // get their own signal if the leaf still has them alive (a pid gone between the read and the
  // open may already belong to a process outside the leaf; asked through the pidfd, or by
  // reading the leaf again on a kernel without PIDFD_GET_INFO), and then, in the first round,
  // the group gets the signal with one kill(-pgid): atomic, so on a loaded machine the first
  // member to run its handler cannot delay the others' signal. A group member that left the
  // group around the group signal may have left before it: it gets a signal of its own, lest it
  // get none.
  // A child forked while a round runs is listed by the next one. Before the signals only the
  // task name is read (the one /proc read, the cheapest): the record keeps it for a member
  // reaped by its own parent before its command line is read. The main process's is not.
  // A runner at its fd limit (EMFILE) lets its spare fds go and tries again; a member it still
  // cannot pin or name is signalled by pid and recorded as unread, and a leaf it cannot read
  // still gets the group signal.
  const auto give_up = Clock::now() + kSignalBudget;
  std::unordered_set<pid_t> seen;
  struct Victim {
    pid_t pid;
    UniqueFd fd;
    std::string comm;
  };
  std::vector<Victim> victims;
  bool group_signalled = false;
  for (int round = 0; round < kLeafSignalRounds; ++round) {
    if (round > 0 && Clock::now() >= give_up) break;
    const bool grouped = round == 0 && !main_reaped_;
    std::optional<std::vector<pid_t>> procs = ReadProcs();
    if (!procs) {
      if (grouped) ::kill(-pgid_, signo);
      break;
    }
    std::vector<Victim> in_group, own;
    bool any = false;
    for (pid_t pid : *procs) {
      if (!seen.insert(pid).second) continue;
      Pin pin = PinMember(pid);
      if (!pin.ok()) continue;  // exited meanwhile
      const pid_t group = ::getpgid(pid);
      if (group < 0) continue;  // reaped meanwhile
      // The main process is ours to reap, and its record takes the command it was started with:
      // its name is not read (a /proc open each tree, on every Cancel of a burst).
      const bool main = pid == pgid_ && !main_reaped_;
      std::string comm = main ? std::string() : NameMember(pid);
      if (comm.empty() && !main) continue;  // reaped meanwhile
      any = true;
      if (group != pgid_) {
        own.push_back({pid, std::move(pin.fd), std::move(comm)});
      } else if (grouped) {
        in_group.push_back({pid, std::move(pin.fd), std::move(comm)});
      } else if (!group_signalled) {
        own.push_back({pid, std::move(pin.fd), std::move(comm)});
      }
      // Else a group member that shows up only after the group signal was born after it (the
      // group signal is atomic against fork): a trap handler's cleanup, which must not be
      // stopped.
    }
    if (!any) break;
    if (!own.empty()) {
      // Asked through each pidfd when the kernel can say (two syscalls, not a re-read).
      std::optional<std::unordered_set<pid_t>> still;
      for (auto& v : own) {
        std::optional<bool> listed = v.fd.valid() ? leaf_->HasLive(v.fd.get()) : std::nullopt;
        if (!listed) {
          if (!still) {
            const std::vector<pid_t> now = ReadProcs().value_or(*procs);
            still.emplace(now.begin(), now.end());
          }
          listed = still->count(v.pid) > 0;
        }
        if (!*listed) continue;
        SignalPinned(v.pid, v.fd, signo);
        victims.push_back(std::move(v));
      }
    }
    if (!grouped) continue;
    ::kill(-pgid_, signo);
    group_signalled = true;
    for (auto& v : in_group) {
      const pid_t after = ::getpgid(v.pid);
      if (after >= 0 && after != pgid_) SignalPinned(v.pid, v.fd, signo);
      victims.push_back(std::move(v));
    }
  }
  // Records last: reading a command line can wait on a process that is busy forking.
  for (auto& v : victims) on_victim(v.pid, v.fd, v.comm);
}

std::optional<ProcStat> Members::StatMember(pid_t pid, bool& short_of_fds) const {
  return WithRelief([pid](bool& refused) { return ReadProcStat(pid, refused); }, short_of_fds);
}

std::optional<std::vector<pid_t>> Members::ChildrenOf(pid_t pid, long threads,
                                                      bool& short_of_fds) const {
  return WithRelief([=](bool& refused) { return ReadChildren(pid, threads, refused); },
                    short_of_fds);
}

std::string Members::NameMember(pid_t pid) const {
  std::string comm;
  const bool read = Attempt([&] {
    errno = 0;
    comm = ReadComm(pid);
    return !comm.empty() || !OutOfFds(errno);
  });
  return read ? comm : ProcessRecord::kNameUnread;
}

std::optional<std::vector<pid_t>> CgroupMembers::ReadProcs() const {
  std::optional<std::vector<pid_t>> procs;
  Attempt([&] {
    procs = leaf_->ReadProcs();
    return procs || !OutOfFds(errno);
  });
  return procs;
}

void CgroupMembers::Release(bool clean) {
  if (!leaf_) return;
  // A clean end was seen `populated 0` in this same turn (Progress), and the supervisor looks
  // at a recycled leaf again before it serves another tree (it may have been frozen meanwhile),
  // so that is not read a third time here; what a step may have changed in its leaf is.
  if (clean && recycle_ && leaf_->AsCreated()) {
    recycle_(std::move(leaf_));
  } else {
    leaf_->Remove();
  }
}

void CgroupMembers::KillAll(const VictimFn& on_victim) {
  // pidfds first (cheap, and they pin who was there), the kill next, the record last: reading
  // a command line can wait on a busy process, and the kill must not.
  std::vector<std::pair<pid_t, UniqueFd>> victims;
  for (pid_t pid : ReadProcs().value_or(std::vector<pid_t>{})) {
    Pin pin = PinMember(pid);
    if (pin.ok()) victims.emplace_back(pid, std::move(pin.fd));
  }
  Status killed = Ok();
  Attempt([&] {  // cgroup.kill is opened for each write
    killed = leaf_->Kill();
    return killed.ok() || !OutOfFds(errno);
  });
  if (!killed.ok()) {
    // cgroup.kill failed (it should not once probed): kill each member we know of directly.
    for (auto& [pid, fd] : victims) SignalPinned(pid, fd, SIGKILL);
  }
  for (auto& [pid, fd] : victims) on_victim(pid, fd, "");
}

}  // namespace sr
