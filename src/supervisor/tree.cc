#include "supervisor/tree.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "supervisor/proc_scan.h"

namespace sr {
namespace {

// The fallback has no event for "a process that is not our child died": while it waits for
// leftover members it looks again this often (cgroup mode uses cgroup.events instead).
constexpr auto kRescanInterval = std::chrono::milliseconds(10);

}  // namespace

TreeImpl::TreeImpl(Config c)
    : loop_(c.loop),
      owner_(c.owner),
      id_(c.id),
      command_(std::move(c.command)),
      leftovers_(c.leftovers),
      leftover_grace_(c.leftover_grace),
      on_output_(std::move(c.on_output)),
      move_output_(std::move(c.move_output)),
      output_paused_(std::move(c.output_paused)),
      when_output_room_(std::move(c.when_output_room)),
      on_exit_(std::move(c.on_exit)) {}

TreeImpl::~TreeImpl() { Disarm(); }

void TreeImpl::Enter(Phase next) {
  if (next == phase_) return;
  // A phase's deadline belongs to it: the grace ends with kStopping, the pipe wait with
  // kSettling.
  if (phase_timer_ && loop_) loop_->CancelTimer(phase_timer_);
  phase_timer_ = 0;
  phase_ = next;
}

void TreeImpl::FailToStart(Error error) {
  spawn_error_ = std::move(error);
  main_status_ = 0;
  // Through Finish so on_exit still comes from the loop, never from inside Spawn().
  Finish();
}

Status TreeImpl::Start(pid_t pid, UniqueFd pidfd, std::unique_ptr<sr::Members> members,
                       UniqueFd out, UniqueFd err, std::optional<Error> exec_error,
                       UniqueFd out_write, UniqueFd err_write) {
  pid_ = pid;
  main_pidfd_ = std::move(pidfd);
  members_ = std::move(members);
  spawn_error_ = std::move(exec_error);
  out_.fd = std::move(out);
  err_.fd = std::move(err);
  out_.held_write = std::move(out_write);
  err_.held_write = std::move(err_write);
  Enter(Phase::kRunning);
  SR_RETURN_IF_ERROR(WatchPipe(out_));
  SR_RETURN_IF_ERROR(WatchPipe(err_));
  // The fallback's answer to "anyone left?" can come on a later loop turn.
  members_->OnAnswer([this] { Progress(); });
  return Ok();
}

void TreeImpl::WatchEvents() {
  // Watched only once the main process has ended and left members behind: until then nothing
  // waits for the leaf to empty. Progress read cgroup.events just before (which re-arms its
  // notification), so a change since that read is reported as soon as the watch is added.
  if (events_watch_ || members_->event_fd() < 0) return;
  auto w = loop_->Watch(members_->event_fd(), EPOLLPRI, [this](uint32_t) {
    // Reading re-arms the notification even when Progress has nothing to do yet.
    members_->Populated();
    Progress();
  });
  if (w.ok()) {
    events_watch_ = *w;
  } else {
    ArmPoll(/*even_with_events=*/true);  // cannot watch (out of memory): look again on a timer
  }
}

void TreeImpl::Abandon() {
  on_exit_ = nullptr;
  on_output_ = nullptr;
  move_output_ = nullptr;
  output_paused_ = nullptr;
  when_output_room_ = nullptr;
  KillNow(ProcessRecord::Ending::kKilledForced);
}

bool TreeImpl::Owns(pid_t pid) const {
  if (pid == pid_ && !main_reaped()) return true;
  auto it = by_pid_.find(pid);
  return it != by_pid_.end() && !it->second->gone;
}

void TreeImpl::OnReaped(pid_t pid, int status) {
  if (pid == pid_ && !main_reaped()) {
    main_status_ = status;
    main_pidfd_.Reset();
    // The pipes may end now; Progress (after this batch of reaps) drains them and finds out.
    out_.held_write.Reset();
    err_.held_write.Reset();
    if (members_) members_->MainReaped();
  }
  if (Member* m = Find(pid)) ApplyStatus(*m, status);
}

void TreeImpl::Tick(bool close_pipes) {
  if (!live()) return;
  if (phase_ == Phase::kKilling) KillNow(kill_ending_);
  DrainPipes();
  if (close_pipes && main_reaped() && members_->PopulatedSoon() == false) {
    ClosePipe(out_);
    ClosePipe(err_);
  }
  Progress();
}

std::vector<pid_t> TreeImpl::Members() const {
  if (!live()) return {};
  return members_->List();
}

void TreeImpl::Signal(int signo) {
  if (!live()) return;
  // By value: the fallback reports members it finds later from its census rounds.
  members_->SignalAll(signo, [this, signo](pid_t p, UniqueFd& fd, const std::string& seen) {
    OnVictim(p, fd, signo, false, seen);
  });
}

void TreeImpl::Warn(int signo) {
  if (!live()) return;
  members_->SignalAll(signo, [this, signo](pid_t p, UniqueFd& fd, const std::string& seen) {
    Member* m = OnVictim(p, fd, signo, false, seen);
    if (m && m->rec.warning_signal == 0) {
      m->rec.warning_signal = signo;
      m->rec.warning_time = WallNow();
    }
  });
}

void TreeImpl::Stop(StopOrder order) {
  if (!live()) return;
  if (!main_reaped()) stop_requested_ = true;
  BeginStop(order, false);
}

void TreeImpl::BeginStop(const StopOrder& order, bool leftovers) {
  if (phase_ != Phase::kRunning && phase_ != Phase::kStopping) return;
  const auto now = Clock::now();
  if (stop_) {
    // A later order only tightens the deadline; its signal is not sent again.
    if (!stop_->kill.Tighten(order.kill)) return;
  } else {
    stop_ = order;
    stop_facts_.leftovers = leftovers;
    stop_facts_.started = WallNow();
    stop_facts_.signal = order.kill.forced || order.kill.at <= now ? SIGKILL : order.signal;
  }
  stop_facts_.forced = stop_->kill.forced;
  const auto kill_at = stop_->kill.forced ? std::min(stop_->kill.at, now) : stop_->kill.at;
  stop_facts_.grace =
      std::max(Duration(0), std::chrono::duration_cast<Duration>(kill_at - stop_->issued_at));
  if (stop_->kill.forced) return KillNow(ProcessRecord::Ending::kKilledForced);
  if (stop_->kill.at <= now) return KillNow(ProcessRecord::Ending::kKilledAfterGrace);
  if (phase_ == Phase::kRunning) {
    Enter(Phase::kStopping);
    const int signo = order.signal > 0 ? order.signal : SIGTERM;
    members_->SignalAll(signo, [this, signo](pid_t p, UniqueFd& fd, const std::string& seen) {
      OnVictim(p, fd, signo, true, seen);
    });
    for (auto& m : records_) {
      if (m->rec.signal_sent != 0) WatchEnd(*m);
    }
    if (main_reaped()) ArmPoll();
  }
  ArmPhaseTimer(stop_->kill.at, &TreeImpl::GraceRanOut);
}

void TreeImpl::ArmPhaseTimer(Clock::time_point deadline, void (TreeImpl::*on_due)()) {
  if (phase_timer_) loop_->CancelTimer(phase_timer_);
  phase_timer_ = loop_->At(deadline, [this, on_due] {
    phase_timer_ = 0;
    (this->*on_due)();
  });
}

void TreeImpl::GraceRanOut() {
  KillNow(ProcessRecord::Ending::kKilledAfterGrace);
  Progress();
}

void TreeImpl::PipesWaitedEnough() {
  DrainPipes();
  ClosePipe(out_);
  ClosePipe(err_);
  Progress();
}

void TreeImpl::KillNow(ProcessRecord::Ending ending) {
  if (phase_ == Phase::kRunning || phase_ == Phase::kStopping) {
    kill_ending_ = ending;
    Enter(Phase::kKilling);
  }
  auto kill_members = [this] {
    members_->KillAll([this](pid_t p, UniqueFd& fd, const std::string& seen) {
      OnVictim(p, fd, SIGKILL, true, seen);
    });
  };
  // Members known by pidfd: this also gets one the mechanism no longer sees (fallback: it
  // replaced its environment after it was signalled): it is still ours, its pidfd says so.
  // Whether each is alive, and not already on its way out, is read before any kill: one that
  // is ended by our kill is killed by us, whichever of our kills reaches it first.
  // Our unreaped child: its pid cannot name another process, so a pidfd opened now pins it.
  if (!main_pidfd_.valid() && !main_reaped()) main_pidfd_ = OpenPidfd(pid_);
  bool main_alive = false;
  if (main_pidfd_.valid() && !main_reaped()) {
    auto st = ReadProcStat(pid_);
    main_alive = st && !st->ending();
  }
  std::vector<Member*> alive;
  for (auto& m : records_) {
    if (m->gone || m->killed || !m->pidfd.valid()) continue;
    auto st = ReadProcStat(m->rec.pid);
    if (st && !st->ending()) alive.push_back(m.get());  // else on its way out: not killed by us
  }
  // The fallback's kill comes first: its walk over the main process's descendants must find
  // them before the main process dies and hands them to us (and its group SIGKILL may end some
  // of the members above before their own SIGKILL). With a cgroup leaf, members we know die
  // first, through their pidfds, before the leaf is read.
  const bool walk_first = members_->event_fd() < 0;
  if (walk_first) kill_members();
  if (main_alive && PidfdSignal(main_pidfd_.get(), SIGKILL)) {
    // No /proc read for the main process. A record made now takes a copy of its pidfd
    // (main_pidfd_ stays); one made at the stop signal has its own already.
    UniqueFd pin;
    if (!Find(pid_)) pin.Reset(::fcntl(main_pidfd_.get(), F_DUPFD_CLOEXEC, 3));
    OnVictim(pid_, pin, SIGKILL, true, "");
  }
  for (Member* m : alive) {
    if (m->killed) continue;  // reported by the walk
    if (PidfdSignal(m->pidfd.get(), SIGKILL) || walk_first) {
      m->killed = true;
      any_killed_ = true;
    }
  }
  if (!walk_first) kill_members();
  // The fallback keeps killing on a timer until a scan finds nothing: a forker can race a round.
  if (members_->event_fd() < 0) ArmPoll();
}

void TreeImpl::ArmPoll(bool even_with_events) {
  if (poll_timer_ || !live() || (members_->event_fd() >= 0 && !even_with_events)) return;
  poll_timer_ = loop_->After(kRescanInterval, [this] {
    poll_timer_ = 0;
    if (phase_ == Phase::kKilling) KillNow(kill_ending_);
    Progress();
  });
}

void TreeImpl::Progress() {
  if (!live() || !main_reaped()) return;
  std::optional<bool> populated;
  if (phase_ != Phase::kSettling) {
    // A signalled member whose end is being watched for is alive, so the tree is populated:
    // no need to ask the mechanism, whose answer in the fallback is a census round (a pass over
    // /proc on the loop, among the handlers of the signal just sent, and again on every rescan
    // of the grace). The question is asked once the last of them has ended.
    populated = AwaitingAnEnd() ? std::optional<bool>(true) : members_->PopulatedSoon();
    if (!populated) return;  // the members call Progress again with the answer
  }
  if (phase_ != Phase::kSettling && *populated) {
    // The main process ended by itself but left members behind (a background job, a daemon):
    // they get the leftovers' stop. A tree never outlives its main process.
    WatchEvents();
    if (phase_ == Phase::kRunning) BeginStop(StopOrder::From(leftovers_), true);
    ArmPoll();
    return;
  }
  // Nobody is left, and nobody can come back: no member is left to fork.
  if (phase_ != Phase::kSettling) Enter(Phase::kSettling);
  // Every member has closed its files by now, so whatever is in the pipes is final.
  DrainPipes();
  if (!PipesClosed()) {
    // Someone outside the tree holds a write end; do not wait for it forever.
    if (!phase_timer_) {
      ArmPhaseTimer(Clock::now() + leftover_grace_, &TreeImpl::PipesWaitedEnough);
    }
    return;
  }
  // Settled() reaps, which can re-enter Progress and finish the tree from there.
  if (!Settled() || done()) return;
  Finish();
}

bool TreeImpl::Settled() {
  // A member can leave the cgroup (and close its pipes) a moment before it becomes a zombie and
  // is re-parented to us. Finish only when every recorded member is reaped, so that once
  // on_exit runs none of their pids exists any more.
  if (records_.empty()) return true;  // nothing recorded: nothing to wait for
  if (owner_) owner_->ReapNow();
  if (done()) return true;  // the reap finished the tree already
  bool settled = true;
  for (auto& m : records_) {
    if (m->gone || !m->pidfd.valid()) continue;
    if (!PidfdSignal(m->pidfd.get(), 0) && errno == ESRCH) {
      MarkGone(*m);
      continue;
    }
    auto st = ReadProcStat(m->rec.pid);
    if (!st) {
      MarkGone(*m);
      continue;
    }
    if (st->dead()) {
      int status = 0;
      if (st->ppid == ::getpid() &&
          ::waitpid(m->rec.pid, &status, WNOHANG | __WALL) == m->rec.pid) {
        ApplyStatus(*m, status);
        continue;
      }
      if (st->ppid != ::getpid()) {
        MarkGone(*m);  // dead, waiting for a parent that is not ours to reap it
        continue;
      }
    }
    settled = false;
    if (!m->exit_watch) {
      Member* raw = m.get();
      auto w = loop_->Watch(m->pidfd.get(), EPOLLIN, [this, raw](uint32_t) {
        loop_->Unwatch(raw->exit_watch);
        raw->exit_watch = 0;
        Progress();
      });
      if (w.ok()) m->exit_watch = *w;
    }
  }
  return settled;
}

void TreeImpl::Finish() {
  if (done()) return;
  Enter(Phase::kFinished);
  TreeExit exit = BuildExit();
  Disarm();
  if (members_) members_->Release(/*clean=*/!stop_.has_value());
  if (!loop_) return;
  // on_exit always comes on a later loop turn than the call that finished the tree.
  loop_->Post([self = shared_from_this(), exit]() mutable { self->Deliver(std::move(exit)); });
}

void TreeImpl::Deliver(TreeExit exit) {
  if (phase_ != Phase::kFinished) return;  // detached meanwhile: the callback is dropped
  Enter(Phase::kDelivered);
  auto cb = std::move(on_exit_);
  on_exit_ = nullptr;
  on_output_ = nullptr;
  move_output_ = nullptr;
  output_paused_ = nullptr;
  when_output_room_ = nullptr;
  if (owner_) owner_->TreeDelivered(id_);  // live_trees() drops before the callback runs
  owner_ = nullptr;
  loop_ = nullptr;
  if (cb) cb(std::move(exit));
}

void TreeImpl::Disarm() {
  if (!loop_) return;
  for (auto* t : {&phase_timer_, &poll_timer_}) {
    if (*t) loop_->CancelTimer(*t);
    *t = 0;
  }
  if (events_watch_) loop_->Unwatch(events_watch_);
  events_watch_ = 0;
  for (auto& m : records_) {
    if (m->exit_watch) loop_->Unwatch(m->exit_watch);
    m->exit_watch = 0;
  }
  ClosePipe(out_);
  ClosePipe(err_);
}

void TreeImpl::Detach() {
  Disarm();
  if (members_) members_->Release(/*clean=*/false);
  phase_ = Phase::kDelivered;
  on_exit_ = nullptr;
  on_output_ = nullptr;
  move_output_ = nullptr;
  output_paused_ = nullptr;
  when_output_room_ = nullptr;
  owner_ = nullptr;
  loop_ = nullptr;
}

}  // namespace sr
