// The termination record of a tree: who was signalled, how each one ended, and the TreeExit.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include <csignal>

#include "supervisor/proc_scan.h"
#include "supervisor/tree.h"

namespace sr {
namespace {

// A fork bomb must not turn the record into unbounded memory and fds; members past this are
// still signalled and killed, just not listed.
constexpr size_t kMaxRecords = 256;

}  // namespace

TreeImpl::Member* TreeImpl::Find(pid_t pid) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end() || it->second->gone) return nullptr;
  return it->second;
}

TreeImpl::Member* TreeImpl::OnVictim(pid_t pid, UniqueFd& pidfd, int signo, bool stop,
                                     const std::string& seen_as) {
  const bool kill = stop && signo == SIGKILL;
  if (kill) any_killed_ = true;
  Member* m = Find(pid);
  if (!m) {
    if (records_.size() >= kMaxRecords) return nullptr;
    auto fresh = std::make_unique<Member>();
    fresh->rec.pid = pid;
    // Read for the main process too: it may have exec'd another program since it was started
    // (`exec sleep 1000` in a step's script), and the record names what got the signal. Read
    // after the signals (the report comes after them), so it costs them nothing. A main process
    // already exiting (its command line reads empty) keeps the command it was started with, not
    // its bare task name; a member the name it was seen as.
    if (pid == pid_) {
      fresh->rec.command = ReadCmdline(pid);
      if (fresh->rec.command.empty()) fresh->rec.command = command_;
    } else {
      fresh->rec.command = ReadCommand(pid);
      if (fresh->rec.command.empty()) fresh->rec.command = seen_as;
    }
    fresh->pidfd = std::move(pidfd);  // the pin taken before the signal, not a copy of it
    m = fresh.get();
    by_pid_[pid] = m;  // replaces a gone record whose pid was recycled
    records_.push_back(std::move(fresh));
  }
  if (stop && m->rec.signal_sent == 0) {
    m->rec.signal_sent = signo;
    m->rec.signal_time = WallNow();
  }
  if (kill) m->killed = true;
  return m;
}

// A signalled member's end is dated when it comes, whoever reaps it: a shell's child that obeyed
// at once was dated when the tree next looked, often the SIGKILL at the grace's end. Watched
// once every member has its signal (an epoll_ctl each would hold up the later ones' signals).
void TreeImpl::WatchEnd(Member& m) {
  if (!loop_ || m.gone || m.exit_watch || !m.pidfd.valid()) return;
  Member* raw = &m;
  auto w = loop_->Watch(m.pidfd.get(), EPOLLIN, [this, raw](uint32_t) {
    loop_->Unwatch(raw->exit_watch);
    raw->exit_watch = 0;
    if (raw->rec.end_time == std::chrono::system_clock::time_point{}) raw->rec.end_time = WallNow();
    Progress();
  });
  if (w.ok()) m.exit_watch = *w;
}

bool TreeImpl::AwaitingAnEnd() const {
  for (const auto& m : records_) {
    if (m->exit_watch) return true;  // unwatched when it ends (or is found gone)
  }
  return false;
}

std::vector<ProcessRecord> TreeImpl::StopRecords() const {
  std::vector<ProcessRecord> out;
  for (const auto& m : records_) {
    if (m->rec.signal_sent == 0) continue;
    ProcessRecord r = m->rec;
    const bool ended = m->gone || r.end_time != std::chrono::system_clock::time_point{};  // WatchEnd
    if (!ended && m->killed) {
      r.ending = kill_ending_;  // SIGKILL sent: it ends that way, reaped or not yet
    } else if (!ended) {
      r.ending = ProcessRecord::Ending::kStillRunning;
    } else if (!m->status_known) {
      r.ending = m->killed ? kill_ending_ : ProcessRecord::Ending::kEndedBySignal;  // as BuildExit
    }
    out.push_back(std::move(r));
  }
  return out;
}

size_t TreeImpl::signalled() const {
  size_t n = 0;
  for (const auto& m : records_) n += m->rec.signal_sent != 0;
  return n;
}

void TreeImpl::ApplyStatus(Member& m, int status) {
  SetStatus(m, status);
  MarkGone(m);
}

void TreeImpl::SetStatus(Member& m, int status) {
  m.status_known = true;
  if (WIFEXITED(status)) {
    m.rec.ending = ProcessRecord::Ending::kExited;
    m.rec.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    m.rec.end_signal = WTERMSIG(status);
    // SIGKILL from someone else (the OOM killer) before our escalation is not "killed by us".
    m.rec.ending = m.rec.end_signal == SIGKILL && m.killed ? kill_ending_
                                                            : ProcessRecord::Ending::kEndedBySignal;
  }
}

void TreeImpl::LearnReapedStatus(Member& m) {
  if (m.status_known || !m.pidfd.valid()) return;
  // A member its own parent reaped: the kernel keeps its wait status for pidfd holders (Linux
  // 6.15), so a shell's child that exited from its trap is recorded as exited, not guessed.
  if (auto status = QueryPidfd(m.pidfd.get()).reaped_status) SetStatus(m, *status);
}

void TreeImpl::MarkGone(Member& m) {
  if (m.gone) return;
  m.gone = true;
  if (m.rec.end_time == std::chrono::system_clock::time_point{}) m.rec.end_time = WallNow();
  if (m.exit_watch && loop_) loop_->Unwatch(m.exit_watch);
  m.exit_watch = 0;
  LearnReapedStatus(m);
  // A zombie waiting for its own parent keeps its pidfd: BuildExit asks again once it is reaped.
  if (m.status_known) m.pidfd.Reset();
}

TreeExit TreeImpl::BuildExit() {
  TreeExit e;
  e.spawn_error = spawn_error_;
  e.stop_requested = stop_requested_;
  e.killed = any_killed_;
  if (stop_) e.stop = stop_facts_;
  const int main_status = main_status_.value_or(0);
  if (!spawn_error_ && main_status_) {
    if (WIFEXITED(main_status)) {
      e.exit_code = WEXITSTATUS(main_status);
    } else if (WIFSIGNALED(main_status)) {
      e.term_signal = WTERMSIG(main_status);
    }
  }
  if (records_.empty()) return e;
  // Members whose status we never saw (their own parent reaped them) are judged by what we did:
  // SIGKILLed while alive = killed, gone before that = ended by the stop signal.
  for (auto& m : records_) {
    MarkGone(*m);
    LearnReapedStatus(*m);
    m->pidfd.Reset();
    if (!m->status_known) {
      m->rec.ending = m->killed ? kill_ending_ : ProcessRecord::Ending::kEndedBySignal;
    }
  }
  // The main process comes first; it is listed even when only its leftovers were signalled.
  const Member* main = nullptr;
  for (const auto& m : records_) {
    if (m->rec.pid == pid_) {
      main = m.get();
      break;
    }
  }
  if (main) {
    e.records.push_back(main->rec);
  } else {
    ProcessRecord r;
    r.pid = pid_;
    r.end_time = WallNow();
    if (WIFEXITED(main_status)) {
      r.ending = ProcessRecord::Ending::kExited;
      r.exit_code = WEXITSTATUS(main_status);
    } else if (WIFSIGNALED(main_status)) {
      r.ending = ProcessRecord::Ending::kEndedBySignal;
      r.end_signal = WTERMSIG(main_status);
    }
    e.records.push_back(std::move(r));
  }
  if (e.records.front().command.empty()) e.records.front().command = command_;
  for (auto& r : e.records) {
    if (r.command.empty()) r.command = ProcessRecord::kNeverSeen;
  }
  for (const auto& m : records_) {
    if (m.get() != main) e.records.push_back(m->rec);
  }
  return e;
}

}  // namespace sr
