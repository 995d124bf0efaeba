// GroupMembers: a tree's members without cgroups (members.h), found through the shared census.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <deque>

#include "supervisor/members.h"
#include "supervisor/proc_scan.h"
#include "util/owner.h"

namespace sr {
namespace {

// Census rounds per SignalAll and KillAll. A forker can create a child between a round and its
// own death; the next round finds that child. The tree's timer re-runs KillAll for anything
// that still races past these.
constexpr int kGroupSignalRounds = 8;
constexpr int kKillRounds = 64;
// A walk from the main process stops here (a fork bomb is killed by its group, not walked).
constexpr size_t kMaxWalk = 4096;
// When the walk and that quick look have signalled every member they could see, the census's
// first round is only a safety net, and waits this long: the signalled processes' handlers run
// first instead of sharing the two cores with a pass over /proc (on a slow machine, 21 handlers
// take ~5 ms of CPU, and the pass up to a few ms).
constexpr auto kSafetyNetDelay = std::chrono::milliseconds(5);
// A round that could not read /proc for lack of fds is taken again after this.
constexpr auto kShortOfFdsRetry = std::chrono::milliseconds(10);

// Signals the whole group and returns the clock tick that decides which of its re-parented
// members got that signal: only one that started in an earlier tick did. The tick is read before
// the signal, never after: a runner preempted between the two (the signal has just woken every
// handler of the group) would read a later tick, and a trap handler's `( … ) &` that started
// meanwhile would be recorded as signalled.
unsigned long long SignalGroup(pid_t pgid, int signo) {
  const unsigned long long ticks = TicksSinceBoot();
  ::kill(-pgid, signo);
  return ticks;
}

}  // namespace

// Every live descendant of the runner has a live ancestor that is the runner's own child
// (orphans are re-parented to the runner, their subreaper). With no child at all (the usual end
// of a step in `run`) a census would find nothing: the tree is known empty without one.
bool GroupMembers::ProvablyEmpty() {
  if (known_empty_ || !registered_) return true;
  if (HasChildren()) return false;
  group_seen_ = false;
  known_empty_ = true;
  return true;
}

GroupMembers::GroupMembers(pid_t pgid, std::string marker_token, unsigned long long start_ticks,
                           std::shared_ptr<ProcCensus> census)
    : pgid_(pgid),
      token_(std::move(marker_token)),
      start_ticks_(start_ticks),
      census_(std::move(census)) {
  member_groups_.insert(pgid);
  census_->Add(this);
}

GroupMembers::~GroupMembers() { Release(false); }

void GroupMembers::Release(bool /*clean*/) {
  if (!registered_) return;
  registered_ = false;
  census_->Remove(this);
  requests_.clear();
}

std::vector<pid_t> GroupMembers::List() {
  if (ProvablyEmpty()) return {};
  census_->RunNow(this);
  return last_members_;
}

bool GroupMembers::Populated() {
  if (ProvablyEmpty()) return false;
  census_->RunNow(this);
  return !known_empty_;
}

std::optional<bool> GroupMembers::PopulatedSoon() {
  // Once nothing of the tree is alive nothing can come back: no member is left to fork.
  if (ProvablyEmpty()) return false;
  if (answer_) {
    const bool populated = *answer_;
    answer_.reset();
    return populated;
  }
  asked_ = true;
  census_->Want(this);
  return std::nullopt;
}

void GroupMembers::MainReaped() {
  main_reaped_ = true;
  // A round from before counted the main process: its "populated" says nothing about leftovers.
  if (answer_ && *answer_) answer_.reset();
}

void GroupMembers::SignalAll(int signo, const VictimFn& on_victim) {
  if (!registered_) return;
  Request r{signo, on_victim};
  const bool walked = SignalTreeNow(r);
  requests_.push_back(std::move(r));
  if (walked) {
    census_->WantLater(this, kSafetyNetDelay);
  } else {
    census_->Want(this);
  }
}

void GroupMembers::KillAll(const VictimFn& on_victim) {
  if (!registered_) return;
  Request r{SIGKILL, on_victim};
  SignalTreeNow(r);
  // The tree's timer calls KillAll again and again until nothing is left: one request carried
  // over the rounds is enough; the group SIGKILL went out above or goes out in the pending one.
  for (auto& pending : requests_) {
    if (pending.signo == SIGKILL && !pending.done) {
      census_->Want(this);
      return Report(r);
    }
  }
  // Not urgent: everything the walk and the records know has its SIGKILL already; the round is
  // the safety net for members nobody has seen yet, and must not crowd out other trees' timers.
  requests_.push_back(std::move(r));
  census_->Want(this);
}

bool GroupMembers::SignalTreeNow(Request& r) {
  // While the main process is unreaped its pid names our group and roots the tree: walk its
  // descendants (cost: the tree, not the machine), pin each with a pidfd before the signal so
  // that one which dies of it and is reaped by its own parent at once is still in the record,
  // then one kill(-pgid) — atomic against fork — and a signal of its own to each descendant
  // outside the group. What the walk cannot see (members re-parented to us: daemons) the
  // census finds in its next rounds.
  if (main_reaped_) return false;
  std::vector<std::pair<Found, UniqueFd>> pinned;
  // (pid, the parent it was listed under): a pid read from a children file and opened a moment
  // later is the same process if its parent still is (a recycled pid has another parent).
  std::deque<std::pair<pid_t, pid_t>> queue{{pgid_, 0}};
  std::unordered_set<pid_t> walked;
  bool short_of_fds = false;  // a read was refused: the census must look for what it missed
  while (!queue.empty() && walked.size() < kMaxWalk) {
    const auto [pid, parent] = queue.front();
    queue.pop_front();
    if (!walked.insert(pid).second) continue;
    Pin pin = PinMember(pid);
    if (pin.no_fd) short_of_fds = true;
    auto st = pin.ok() ? StatMember(pid, short_of_fds) : std::nullopt;
    // A main process that is exiting has handed (or is handing) its children to us: the walk
    // would miss group members that the group signal reaches. The census sees them.
    if (pid == pgid_ && (!st || st->ending())) return false;
    if (!st || (parent != 0 && st->ppid != parent) || st->start_ticks < start_ticks_) continue;
    // The main process's children unread (no children files, CONFIG_PROC_CHILDREN, or no fd
    // even after the relief): the census walks instead.
    auto children = ChildrenOf(pid, st->threads, short_of_fds);
    if (!children && pid == pgid_) return false;
    if (children) {
      for (pid_t c : *children) queue.emplace_back(c, pid);
    }
    if (st->ending()) continue;
    pinned.emplace_back(Found{pid, st->ppid, st->pgrp, st->start_ticks, std::move(st->comm)},
                        std::move(pin.fd));
  }
  // The record lists the walk's members first (the main process first of all).
  r.group = GroupSignal::kSent;
  std::vector<bool> outside;
  for (auto& [f, fd] : pinned) {
    r.seen.insert(f.pid);
    member_groups_.insert(f.pgrp);
    outside.push_back(f.pgrp != pgid_);
    r.victims.push_back({f.pid, std::move(fd), std::move(f.comm)});
  }
  // Daemons that left the group (setsid + double fork) are the runner's own children now (it is
  // their subreaper): they are found among them at once and signalled just before the group,
  // without waiting for the census's pass over /proc (which still runs, for anything this
  // misses). A group member among them is left to the group signal below.
  auto orphans = census_->Orphans(this);
  if (orphans) Signal(r, *orphans);
  r.group_ticks = SignalGroup(pgid_, r.signo);
  for (size_t i = 0; i < outside.size(); ++i) {
    if (outside[i]) SignalPinned(r.victims[i].pid, r.victims[i].fd, r.signo);
  }
  // Reported now: the caller counts what it signalled (the cancel's log line) right after.
  Report(r);
  return orphans.has_value() && walked.size() < kMaxWalk && !short_of_fds;
}

void GroupMembers::OnCensus(ProcCensus::Result result) {
  group_seen_ = result.group_seen;
  last_members_.clear();
  for (const Found& f : result.members) {
    last_members_.push_back(f.pid);
    member_groups_.insert(f.pgrp);
  }
  // A round that could not read all of /proc proves nothing is left only of what it read.
  last_complete_ = result.complete;
  if (result.members.empty() && result.complete) known_empty_ = true;
  if (asked_) {
    asked_ = false;
    answer_ = !result.members.empty() || !result.complete;
    answer_ready_ = true;
  }
  for (auto& r : requests_) {
    if (!r.done) Round(r, result.members, result.complete);
  }
}

void GroupMembers::Round(Request& r, const std::vector<Found>& members, bool complete) {
  const size_t fresh = Signal(r, members);
  // One group SIGKILL is enough: nothing can join the group after it.
  if (r.signo == SIGKILL) r.group = GroupSignal::kNone;
  const int limit = r.signo == SIGKILL ? kKillRounds : kGroupSignalRounds;
  // An incomplete round counts as none: what it could not read may still need the signal.
  if (!complete) return;
  r.done = fresh == 0 || ++r.rounds >= limit;
}

size_t GroupMembers::Signal(Request& r, const std::vector<Found>& members) {
  std::vector<std::pair<const Found*, UniqueFd>> fresh;
  // After a group signal, a newcomer to the group was born after it (the group signal is atomic
  // against fork): a trap handler's cleanup, which must not be stopped.
  const bool after_group_signal = r.group == GroupSignal::kSent;
  const pid_t self = ::getpid();
  // A pidfd that names the process the round saw (a recycled pid started at another time). When
  // the runner is out of fds the round's own read, a moment ago, has to do.
  auto pin_seen = [&](const Found& f) {
    Pin p = PinMember(f.pid);
    if (!p.fd.valid()) return p;
    bool short_of_fds = false;
    auto st = StatMember(f.pid, short_of_fds);
    if ((st && st->start_ticks == f.start_ticks) || short_of_fds) return p;
    return Pin{};
  };
  auto pin = [&](const Found& f) {
    if (!r.seen.insert(f.pid).second) return;
    if (after_group_signal && f.pgrp == pgid_) {
      // Except a group member re-parented to the runner (`(cmd &)`: its parent exited before
      // the stop), which the walk from the main process could not see: it got the group signal
      // and belongs in the record, but must not get the signal twice. Only if it started before
      // the group signal, though: a trap handler's `( … ) &` whose shell has exited since looks
      // the same, and never got it. (Start times are in 10 ms ticks: one that started in the
      // tick of the clock read just before the signal is left out, which the walk and the quick
      // look make rare.)
      if (f.ppid != self || r.signo == SIGKILL) return;
      if (r.group_ticks != 0 && f.start_ticks >= r.group_ticks) return;
      Pin p = pin_seen(f);
      if (p.ok()) r.victims.push_back({f.pid, std::move(p.fd), f.comm});
      return;
    }
    Pin p = pin_seen(f);
    if (p.ok()) fresh.emplace_back(&f, std::move(p.fd));
  };
  // The group signal, when the walk could not send it (the main process was reaped already):
  // the round's view of the group, taken before it, pins its members.
  const bool grouped = r.group == GroupSignal::kSend && GroupUsable();
  if (r.group == GroupSignal::kSend) r.group = grouped ? GroupSignal::kSent : GroupSignal::kNone;
  if (grouped) {
    for (const Found& f : members) {
      if (f.pgrp == pgid_) pin(f);
    }
    r.group_ticks = SignalGroup(pgid_, r.signo);
  }
  for (const Found& f : members) pin(f);
  for (auto& [f, fd] : fresh) {
    // The group signal reached group members; any other signal must not arrive twice (a trap
    // handler would run twice).
    if (grouped && f->pgrp == pgid_) continue;
    SignalPinned(f->pid, fd, r.signo);
  }
  for (auto& [f, fd] : fresh) r.victims.push_back({f->pid, std::move(fd), f->comm});
  return fresh.size();
}

void GroupMembers::Report(Request& r) {
  // Records last: reading a command line can wait on a process that is busy forking.
  auto victims = std::move(r.victims);
  r.victims.clear();
  for (auto& v : victims) r.on_victim(v.pid, v.fd, v.comm);
}

void GroupMembers::AfterCensus() {
  // Reports may start new requests (a tree that ends stops its leftovers): take the current
  // ones out first.
  auto requests = std::move(requests_);
  requests_.clear();
  std::vector<Request> pending;
  for (auto& r : requests) {
    Report(r);
    if (!r.done) pending.push_back(std::move(r));
  }
  if (!registered_) return;
  for (auto& r : requests_) pending.push_back(std::move(r));
  requests_ = std::move(pending);
  bool again = false;
  for (auto& r : requests_) again = again || !r.done;
  // Short of fds: the next round after a pause, not on the next loop turn (fds come back as
  // trees end; a round now would fail the same way).
  if (again && !last_complete_) {
    census_->WantLater(this, kShortOfFdsRetry);
  } else if (again) {
    census_->Want(this);
  }
  if (answer_ready_) {
    answer_ready_ = false;
    if (on_answer_) on_answer_();
  }
}

}  // namespace sr
