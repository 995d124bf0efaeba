// The supervisor's start, reaping and shutdown (supervisor_spawn.cc: a tree's start).
#include "supervisor/supervisor_impl.h"

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "supervisor/proc_scan.h"
#include "util/signals.h"

namespace sr {
namespace {

// KillAll waits at most this long for SIGKILLed processes to be reaped; a process stuck in
// uninterruptible sleep must not hang the runner's shutdown forever.
constexpr auto kKillAllLimit = std::chrono::seconds(5);
constexpr auto kKillAllPipeWait = std::chrono::milliseconds(100);

// wait4's figures for one reaped process, added to a tree's totals. A process the runner started
// itself shared the runner's memory until its exec (CLONE_VM | CLONE_VFORK), and the kernel
// counts that memory's high-water mark into the process's own maxrss at the exec: its ru_maxrss is
// at least the runner's. Up to the runner's own mark (`own_peak_kib`, read now: it only grows)
// it says nothing about the step, and no peak is taken from it; above, it is the step's.
void AddRusage(const struct rusage& ru, ResourceUsage& u, long own_peak_kib) {
  auto usec = [](const timeval& tv) { return int64_t{tv.tv_sec} * 1000000 + tv.tv_usec; };
  u.cpu_user_usec = u.cpu_user_usec.value_or(0) + usec(ru.ru_utime);
  u.cpu_system_usec = u.cpu_system_usec.value_or(0) + usec(ru.ru_stime);
  if (ru.ru_maxrss > own_peak_kib) {
    u.memory_peak_bytes = std::max<int64_t>(u.memory_peak_bytes.value_or(0), int64_t{ru.ru_maxrss} * 1024);
  }
  u.io_read_bytes = u.io_read_bytes.value_or(0) + int64_t{ru.ru_inblock} * 512;
  u.io_write_bytes = u.io_write_bytes.value_or(0) + int64_t{ru.ru_oublock} * 512;
}

}  // namespace

uint64_t InstanceNonce() {
  uint64_t n = 0;
  if (::getrandom(&n, sizeof n, 0) != sizeof n) {
    n = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  return n & 0xffffffffffff;
}

Status SupervisorImpl::Init() {
  // SIGCHLD is consumed in one place, synchronously, through a signalfd on the loop. It must be
  // blocked before any other thread exists so that none of them takes it.
  sigset_t chld;
  ::sigemptyset(&chld);
  ::sigaddset(&chld, SIGCHLD);
  if (int err = ::pthread_sigmask(SIG_BLOCK, &chld, nullptr); err != 0) {
    return ErrnoError("pthread_sigmask", err);
  }
  // SIG_IGN or SA_NOCLDWAIT would make the kernel reap for us and lose every exit status.
  SetSignalDisposition(SIGCHLD, SIG_DFL);
  // Orphans (daemons, children of killed members) are re-parented to us instead of init, so
  // they stay reachable and we reap them.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return ErrnoError("PR_SET_CHILD_SUBREAPER", errno);
  sigchld_fd_.Reset(::signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigchld_fd_.valid()) return ErrnoError("signalfd", errno);

  if (options_.mechanism != Options::Mechanism::kProcessGroup) {
    auto root = CgroupRoot::Create(options_.temp_base);
    if (root.ok()) {
      cgroup_ = std::move(root).value();
    } else if (options_.mechanism == Options::Mechanism::kCgroup) {
      return root.error().Wrap("cgroup v2");
    } else {
      DebugLog("supervisor: cgroup v2 unavailable (" + root.error().message +
               "), using process group + subreaper");
    }
  }
  if (!options_.controllers) {
    // Per-step accounting groups off (limits refused, usage from wait4); the v2 leaf stays.
    controllers_ = Controllers::None("resource controllers are switched off (STEP_RUNNER_CONTROLLERS=off)");
  } else if (options_.mechanism == Options::Mechanism::kProcessGroup) {
    controllers_ = Controllers::None("cgroups are switched off (STEP_RUNNER_CGROUP=off)");
  } else {
    controllers_ = Controllers::Discover(cgroup_ ? cgroup_->path() : "", options_.full_accounting);
  }
  DebugLog("supervisor: resource controllers: " + controllers_->Describe());
  if (cgroup_) {
    auto enabled = ReadFile(cgroup_->path() + "/cgroup.subtree_control");
    leaf_reuse_ = enabled.ok() && enabled->find_first_not_of(" \n") == std::string::npos;
  }
  auto w = loop_.Watch(sigchld_fd_.get(), EPOLLIN, [this](uint32_t) { ReapNow(); });
  if (!w.ok()) return w.error();
  sigchld_watch_ = *w;
  initialized_ = true;
  return Ok();
}

SupervisorImpl::~SupervisorImpl() {
  // A Supervisor that failed to start has nothing to kill, and must not touch the process's
  // other children.
  if (initialized_) KillAll();
  fd_relief_->Detach();  // the census and members may outlive this supervisor
  if (sigchld_watch_) loop_.Unwatch(sigchld_watch_);
  if (close_timer_) loop_.CancelTimer(close_timer_);
  if (leaves_timer_) loop_.CancelTimer(leaves_timer_);
  // on_exit callbacks not delivered yet are dropped: the caller is shutting down.
  for (auto& t : Snapshot()) t->Detach();
  trees_.clear();
  idle_leaves_.clear();  // rmdir each
  cgroup_.reset();  // removes step-runner-<pid>
}

std::string SupervisorImpl::mechanism() const {
  return cgroup_ ? "cgroup v2 (" + cgroup_->path() + ")" : "process group + subreaper";
}

std::vector<std::shared_ptr<TreeImpl>> SupervisorImpl::Snapshot() const {
  std::vector<std::shared_ptr<TreeImpl>> out;
  for (const auto& [id, t] : trees_) out.push_back(t);
  return out;
}

void SupervisorImpl::ReapNow() { Reap(/*always=*/false); }

void SupervisorImpl::Reap(bool always) {
  if (reaping_) return;
  reaping_ = true;
  // SIGCHLD is blocked everywhere and consumed only here, and every read of it is followed by
  // wait4 until nothing is waitable. A child that becomes waitable raises it, so when none is
  // pending nothing became waitable since the last read and there is nothing to wait for
  // (SIGCHLD is a standard signal: one read takes it). The first reap and KillAll look anyway.
  signalfd_siginfo info[16];
  const bool signalled = ::read(sigchld_fd_.get(), info, sizeof info) > 0;
  if (!signalled && !always && reaped_once_) {
    reaping_ = false;
    return;
  }
  reaped_once_ = true;
  auto trees = Snapshot();  // a tree may finish below; keep them alive meanwhile
  std::vector<TreeImpl*> touched;
  for (;;) {
    int status = 0;
    struct rusage ru {};
    pid_t pid = ::wait4(-1, &status, WNOHANG | __WALL, &ru);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) break;  // 0: none waitable now; ECHILD: no children at all
    census_->Reaped(pid);
    for (auto& t : trees) {
      if (!t->done() && t->Owns(pid)) {
        if (auto it = rusage_.find(t->id()); it != rusage_.end()) {
          long own_peak_kib = 0;  // only the main process was started by the runner
          if (pid == t->pid()) {
            struct rusage self {};
            if (::getrusage(RUSAGE_SELF, &self) == 0) own_peak_kib = self.ru_maxrss;
          }
          AddRusage(ru, *it->second, own_peak_kib);
        }
        t->OnReaped(pid, status);
        if (std::find(touched.begin(), touched.end(), t.get()) == touched.end()) {
          touched.push_back(t.get());
        }
        break;
      }
    }
    // A pid no tree claims is an orphan re-parented to us: reaping it is all there is to do.
  }
  reaping_ = false;
  // Once per tree and batch: a killed fan-out reaps dozens of members at once, and in the
  // fallback each look at the tree is a /proc scan.
  for (TreeImpl* t : touched) t->Progress();
}

void SupervisorImpl::KillOrphans() {
  // Includes the main processes of live trees (already SIGKILLed) and anything a tree could not
  // claim, such as a fallback-mode daemon that cleared its environment.
  for (const ProcStat& child : LiveChildren()) {
    UniqueFd fd = OpenVerifiedPidfd(child.pid, child.start_ticks);
    if (fd.valid()) PidfdSignal(fd.get(), SIGKILL);
  }
}

void SupervisorImpl::KillAll() {
  auto trees = Snapshot();
  // The usual shutdown: every tree finished and reaped. Nothing to look for in /proc.
  if (trees.empty() && !HasChildren()) return;
  for (auto& t : trees) t->Kill();
  KillOrphans();
  // The shutdown path cannot wait for the loop: wait here, on SIGCHLD, for everything to end.
  const auto start = Clock::now();
  const auto deadline = start + kKillAllLimit;
  for (;;) {
    Reap(/*always=*/true);
    census_->RunNow();  // the loop is not running: the fallback's rounds are taken here
    // Shutdown does not wait leftover_grace for a pipe that someone outside the tree holds.
    const bool close_pipes = Clock::now() - start > kKillAllPipeWait;
    bool pending = false;
    for (auto& t : trees) {
      t->Tick(close_pipes);
      pending = pending || !t->done();
    }
    // Done when every tree has finished and no child is left, not even a zombie to reap.
    if (!pending && !HasChildren()) break;
    if (Clock::now() >= deadline) {
      DebugLog("supervisor: KillAll gave up waiting for processes to end");
      break;
    }
    KillOrphans();
    pollfd p{sigchld_fd_.get(), POLLIN, 0};
    ::poll(&p, 1, 10);  // bounded so cgroup.events and rescans get looked at too
  }
}

Result<std::unique_ptr<Supervisor>> Supervisor::Create(EventLoop& loop, Options options) {
  auto sup = std::make_unique<SupervisorImpl>(loop, options);
  SR_RETURN_IF_ERROR(sup->Init());
  return std::unique_ptr<Supervisor>(std::move(sup));
}

}  // namespace sr
