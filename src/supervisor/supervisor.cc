#include "supervisor/supervisor.h"

#include <fcntl.h>
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

#include "supervisor/cgroup.h"
#include "supervisor/guardian.h"
#include "supervisor/members.h"
#include "supervisor/proc_census.h"
#include "supervisor/proc_scan.h"
#include "supervisor/spawn.h"
#include "supervisor/tree.h"
#include "util/signals.h"

namespace sr {
namespace {

// KillAll waits at most this long for SIGKILLed processes to be reaped; a process stuck in
// uninterruptible sleep must not hang the runner's shutdown forever.
constexpr auto kKillAllLimit = std::chrono::seconds(5);
constexpr auto kKillAllPipeWait = std::chrono::milliseconds(100);
// Idle leaves kept for reuse: about the number of trees that start and end together.
constexpr size_t kIdleLeaves = 16;

// A random number per Supervisor, part of every marker and leaf name: a marker or leaf left by an
// earlier Supervisor in the same process must never match a new tree, and tree ids alone
// restart with each Supervisor.
uint64_t InstanceNonce() {
  uint64_t n = 0;
  if (::getrandom(&n, sizeof n, 0) != sizeof n) {
    n = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  }
  return n & 0xffffffffffff;
}

std::string JoinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
    if (out.size() >= 256) break;
  }
  if (out.size() > 256) out.resize(256);
  return out;
}

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

class SupervisorImpl final : public Supervisor, public TreeOwner {
 public:
  SupervisorImpl(EventLoop& loop, Options options)
      : loop_(loop),
        options_(std::move(options)),
        spawner_(options_.clone3),
        census_(ProcCensus::Create(&loop)) {}
  ~SupervisorImpl() override;

  Status Init();
  Result<std::shared_ptr<ProcessTree>> Spawn(const ProcessSpec& spec, OutputCallback on_output,
                                             ExitCallback on_exit) override;
  std::string mechanism() const override;
  Controllers& controllers() override { return *controllers_; }
  size_t live_trees() const override { return trees_.size(); }
  void KillAll() override;

  void ReapNow() override;
  void Reap(bool always);
  void TreeDelivered(uint64_t id) override {
    trees_.erase(id);
    rusage_.erase(id);
  }
  void ReleaseSpareFds() override {
    close_later_.clear();
    spare_pipes_.clear();
    for (auto& leaf : idle_leaves_) leaf->CloseStateFds();
  }
  void CloseLater(UniqueFd fd) override {
    close_later_.push_back(std::move(fd));
    // A busy `serve` ends trees faster than it starts them: never hold more than a few.
    if (close_later_.size() > kCloseLaterMax) close_later_.clear();
    // Nor for long when no spawn follows: an idle server keeps no fd of an ended tree (the
    // soak compares an idle server's fds before and after). The timer is left armed across the
    // flushes after spawns (arming and cancelling one per step costs more than it saves): what
    // is put off is closed by the next spawn or within kCloseLaterFor, whichever comes first.
    if (close_timer_ == 0) {
      close_timer_ = loop_.At(Clock::now() + kCloseLaterFor, [this] {
        close_timer_ = 0;
        close_later_.clear();
      });
    }
  }

 private:
  std::vector<std::shared_ptr<TreeImpl>> Snapshot() const;
  void KillOrphans();
  /// A pipe for a child's output: one made ahead if there is one, else a new one.
  Status TakePipe(UniqueFd& read_end, UniqueFd& write_end, CgroupLeaf* leaf);
  /// Runs `attempt`; when it is refused for lack of fds (kExhausted), the fds kept only for speed
  /// give way (ReleaseSpareFds, and the state files of `leaf`, the tree's own leaf) and it runs
  /// once more: what a step needs is never refused for them.
  template <class Attempt>
  auto WithFdsToSpare(CgroupLeaf* leaf, const Attempt& attempt) {
    auto result = attempt();
    if (result.ok() || result.error().kind != Error::Kind::kExhausted) return result;
    ReleaseSpareFds();
    if (leaf) leaf->CloseStateFds();
    return attempt();
  }
  /// After a spawn, while its child runs: the next spawn's pipes, and the closes put off.
  void WorkAfterSpawn(size_t pipes);
  void DebugLog(const std::string& message) const {
    if (options_.debug_log) options_.debug_log(message);
  }

  EventLoop& loop_;
  Options options_;
  Spawner spawner_;
  // The fallback's one look at /proc per round, shared by every tree (proc_census.h). Shared:
  // a tree's members may outlive the supervisor in a caller's handle.
  std::shared_ptr<ProcCensus> census_;
  const uint64_t instance_ = InstanceNonce();
  const std::string self_ = std::to_string(::getpid());  // the runner's pid, in every marker
  uint64_t next_tree_id_ = 1;
  UniqueFd sigchld_fd_;
  EventLoop::WatchId sigchld_watch_ = 0;
  std::unique_ptr<CgroupRoot> cgroup_;
  // Leaves of trees that ended cleanly, empty, for the next trees: a leaf's mkdir and rmdir
  // cost more than the rest of the runner's work for a trivial step (docs/performance.md).
  // Only while the runner's directory gives its leaves no controller (nothing a step could set
  // on its own leaf, like memory.max, can then reach the next tree).
  std::vector<std::unique_ptr<CgroupLeaf>> idle_leaves_;
  bool leaf_reuse_ = false;
  std::unique_ptr<Controllers> controllers_;
  std::map<uint64_t, std::shared_ptr<TreeImpl>> trees_;
  std::map<uint64_t, std::shared_ptr<ResourceUsage>> rusage_;  // wait4 totals per live tree
  // Work kept off the path between one tree's end and the next tree's start, done after the
  // next spawn instead (docs/performance.md, issue 17 round 3): pipes made ahead, each pair
  // (read, write) close-on-exec, and the read ends of ended trees' pipes, closed then.
  static constexpr size_t kSparePipes = 2;
  static constexpr size_t kCloseLaterMax = 8;
  static constexpr auto kCloseLaterFor = std::chrono::milliseconds(100);
  EventLoop::TimerId close_timer_ = 0;  // closes what is put off, at most kCloseLaterFor after
  std::vector<std::pair<UniqueFd, UniqueFd>> spare_pipes_;
  std::vector<UniqueFd> close_later_;
  bool reaping_ = false;
  bool reaped_once_ = false;  // the first reap looks even without a SIGCHLD (see Reap)
  bool initialized_ = false;
};

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
  if (sigchld_watch_) loop_.Unwatch(sigchld_watch_);
  if (close_timer_) loop_.CancelTimer(close_timer_);
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

Result<std::shared_ptr<ProcessTree>> SupervisorImpl::Spawn(const ProcessSpec& spec,
                                                           OutputCallback on_output,
                                                           ExitCallback on_exit) {
  if (spec.argv.empty()) return InvalidError("spawn: empty argv");
  const uint64_t id = next_tree_id_++;
  const std::string tree_name = std::to_string(instance_) + "-" + std::to_string(id);
  const std::string token = self_ + "." + tree_name;
  TreeImpl::Config config;
  config.loop = &loop_;
  config.owner = this;
  config.id = id;
  config.command = JoinArgv(spec.argv);
  config.leftovers = spec.leftovers.value_or(StopPolicy{SIGTERM, options_.leftover_grace});
  config.leftover_grace = options_.leftover_grace;
  config.on_output = spec.capture_output ? std::move(on_output) : nullptr;
  if (config.on_output) {
    config.move_output = spec.move_output;
    if (spec.output_paused && spec.when_output_room) {
      config.output_paused = spec.output_paused;
      config.when_output_room = spec.when_output_room;
    }
  }
  auto usage = std::make_shared<ResourceUsage>();
  config.on_exit = [usage, on_exit = std::move(on_exit)](TreeExit e) {
    e.rusage = *usage;
    if (on_exit) on_exit(std::move(e));
  };
  auto tree = std::make_shared<TreeImpl>(std::move(config));

  const std::vector<std::string>& env = spec.environment();
  auto path = LookPath(spec.argv[0], EnvValue(env, "PATH").value_or(""));
  if (!path.ok()) {
    trees_[id] = tree;
    rusage_[id] = usage;
    tree->FailToStart(path.error());
    return std::shared_ptr<ProcessTree>(tree);
  }

  std::unique_ptr<CgroupLeaf> leaf;
  bool recyclable = false;
  if (cgroup_) {
    const std::string in = spec.resources ? spec.resources->v2_dir() : "";
    // Only leaves directly in the runner's directory are recycled: one inside a resource group
    // belongs to that group, which goes away with its step.
    recyclable = in.empty() && leaf_reuse_;
    while (recyclable && !leaf && !idle_leaves_.empty()) {
      // Looked at again as it is taken: something of the same user may have frozen it meanwhile.
      if (idle_leaves_.back()->Idle()) leaf = std::move(idle_leaves_.back());
      idle_leaves_.pop_back();
    }
    if (!leaf) {
      auto created = cgroup_->CreateLeaf("tree-" + tree_name, in);
      if (created.ok()) {
        leaf = std::move(created).value();
      } else {
        DebugLog("supervisor: " + created.error().message + "; tree " + std::to_string(id) +
                 " uses its process group");
      }
    }
  }

  // The child's stdout and stderr. One write end serves both when they are merged (or go to
  // /dev/null): the child's dup2 onto 1 and 2 makes the two descriptors it needs.
  UniqueFd out_read, out_write, err_read, err_write;
  if (spec.capture_output) {
    SR_RETURN_IF_ERROR(TakePipe(out_read, out_write, leaf.get()));
    if (!spec.merge_stderr) SR_RETURN_IF_ERROR(TakePipe(err_read, err_write, leaf.get()));
  } else {
    out_write.Reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (!out_write.valid()) return ErrnoError("open /dev/null", errno);
  }

  ExecRequest request;
  request.path = *path;
  request.argv = spec.argv;
  AddTreeMarker(env, token, request);
  request.work_dir = spec.work_dir;
  request.stdout_fd = out_write.get();
  request.stderr_fd = err_write.valid() ? err_write.get() : out_write.get();
  request.cgroup_procs_fd = leaf ? leaf->procs_fd() : -1;
  request.cgroup_dir_fd = leaf ? leaf->dir_fd() : -1;
  if (spec.resources) request.join_fds = spec.resources->join_fds();
  // The spawn's own fds too: its copies of the child's ends, the sanitizer builds' error pipe.
  SR_ASSIGN_OR_RETURN(Started started,
                      WithFdsToSpare(leaf.get(), [&] { return spawner_.ForkExec(request); }));
  // From here on the child exists: every path must hand it to a tree so it gets reaped.
  // Besides the child, only the tree holds the pipes' write ends, until the main process is
  // reaped (TreeImpl::Pipe::held_write): EOF then means "all writers gone".
  if (!spec.capture_output) out_write.Reset();
  // A leaf that may serve again keeps its fds for the next child; the others never need them.
  if (leaf && !recyclable) leaf->CloseProcsFd();
  WorkAfterSpawn(!spec.capture_output ? 0 : spec.merge_stderr ? 1 : 2);

  // No pidfd for the main process: until we reap it, its pid cannot name another process.
  UniqueFd pidfd;
  std::unique_ptr<Members> members;
  if (leaf) {
    CgroupMembers::Recycler recycle;
    if (recyclable) {
      recycle = [this](std::unique_ptr<CgroupLeaf> idle) {
        if (idle_leaves_.size() < kIdleLeaves) idle_leaves_.push_back(std::move(idle));
      };
    }
    members = std::make_unique<CgroupMembers>(std::move(leaf), started.pid, std::move(recycle));
  } else {
    auto st = ReadProcStat(started.pid);
    members = std::make_unique<GroupMembers>(started.pid, token, st ? st->start_ticks : 0, census_);
  }
  trees_[id] = tree;
  rusage_[id] = usage;
  Status ok = tree->Start(started.pid, std::move(pidfd), std::move(members), std::move(out_read),
                          std::move(err_read), std::move(started.exec_error),
                          std::move(out_write), std::move(err_write));
  if (!ok.ok()) {
    tree->Abandon();  // killed and reaped quietly; the caller gets the error instead of on_exit
    return ok.error().Wrap("spawn");
  }
  return std::shared_ptr<ProcessTree>(tree);
}

// A close-on-exec pipe for a child's output.
static Status MakePipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  read_end.Reset(fds[0]);
  write_end.Reset(fds[1]);
  return Ok();
}

Status SupervisorImpl::TakePipe(UniqueFd& read_end, UniqueFd& write_end, CgroupLeaf* leaf) {
  if (spare_pipes_.empty()) {
    return WithFdsToSpare(leaf, [&] { return MakePipe(read_end, write_end); });
  }
  read_end = std::move(spare_pipes_.back().first);
  write_end = std::move(spare_pipes_.back().second);
  spare_pipes_.pop_back();
  return Ok();
}

void SupervisorImpl::WorkAfterSpawn(size_t pipes) {
  close_later_.clear();
  // As many as this spawn took: a run of alike steps finds its pipes made. Failing here costs
  // nothing; TakePipe makes them then.
  while (spare_pipes_.size() < std::min(pipes, kSparePipes)) {
    UniqueFd read_end, write_end;
    if (!MakePipe(read_end, write_end).ok()) break;
    spare_pipes_.emplace_back(std::move(read_end), std::move(write_end));
  }
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

}  // namespace

Result<std::unique_ptr<Supervisor>> Supervisor::Create(EventLoop& loop, Options options) {
  auto sup = std::make_unique<SupervisorImpl>(loop, options);
  SR_RETURN_IF_ERROR(sup->Init());
  return std::unique_ptr<Supervisor>(std::move(sup));
}

}  // namespace sr
