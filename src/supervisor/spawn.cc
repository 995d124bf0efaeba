#include "supervisor/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>

#include "supervisor/guardian.h"
#include "supervisor/runner_start.h"
#include "supervisor/supervisor.h"
#include "util/clone3.h"
#include "util/signals.h"

// Sanitizer runtimes keep per-thread state (shadow stacks, intercepted signal tables) that a
// child sharing our memory would corrupt, so sanitized builds spawn with a plain fork.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SR_SPAWN_FORK_ONLY 1
#endif

namespace sr {
namespace {

// What the child reports through the error pipe: which step failed, and errno.
enum class Stage : int { kSetup = 1, kCgroup, kChdir, kExec };
struct ChildError {
  Stage stage;
  int err;
};

// Everything the child touches, prepared before the clone: the child shares the runner's memory
// until it execs (vfork semantics), so it may only make async-signal-safe calls and must not
// allocate or write anything the runner owns.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* work_dir;  // nullptr = inherit
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  int cgroup_procs_fd;  // -1 when the child was born in its cgroup (or has none)
  int error_fd;           // a forked child's error pipe (-1 when it shares our memory)
  ChildError* error;      // where a child that shares our memory reports (nullptr when forked)
  const int* join_fds;  // cgroup v1 hierarchies' cgroup.procs (resource limits and accounting)
  size_t join_count;
  pid_t parent = 0;        // the runner: the child dies with it (PR_SET_PDEATHSIG)
  rlimit files{};          // the open-files limit the runner was started with
  bool restore_files = false;
  uint64_t reset_signals = 0;  // bit (signo - 1): set back to SIG_DFL (SignalsToReset)
};

[[noreturn]] void ChildFail(const ChildPlan& p, Stage stage, int err) {
  ChildError e{stage, err != 0 ? err : EIO};
  if (p.error) {
    *p.error = e;
  } else {
    [[maybe_unused]] ssize_t n = ::write(p.error_fd, &e, sizeof e);
  }
  ::_exit(127);
}

bool MoveTo(int fd, int target) {
  if (fd == target) {
    // dup2 onto itself keeps FD_CLOEXEC; clear it by hand.
    return ::fcntl(fd, F_SETFD, 0) == 0;
  }
  return ::dup2(fd, target) == target;
}

[[noreturn]] void RunChild(const ChildPlan& p) {
  // A group of its own first, so a stop can signal it and everything it starts with one kill().
  if (::setpgid(0, 0) != 0) ChildFail(p, Stage::kSetup, errno);
  // If the runner dies uncleanly, its direct children die with it at once; the guardian takes
  // care of the rest (guardian.h). The check closes the race with a runner that died already.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != p.parent) {
    ChildFail(p, Stage::kSetup, ESRCH);
  }
  // The runner raised its soft open-files limit for itself; the step gets the one it had.
  if (p.restore_files) ::setrlimit(RLIMIT_NOFILE, &p.files);
  // Join the leaf before exec: nothing the program does can then escape the cgroup.
  if (p.cgroup_procs_fd >= 0 && ::write(p.cgroup_procs_fd, "0", 1) != 1) {
    ChildFail(p, Stage::kCgroup, errno);
  }
  // cgroup v1 has no CLONE_INTO_CGROUP: "0" moves the writer, before it can allocate or fork.
  for (size_t i = 0; i < p.join_count; ++i) {
    if (::write(p.join_fds[i], "0", 1) != 1) ChildFail(p, Stage::kCgroup, errno);
  }
  // Ignored signals survive exec (the runner ignores SIGPIPE, for one); handlers do not, but
  // reset them before unblocking (the spawner blocked every signal) so that a pending signal
  // cannot run runner code in the child — with shared memory that would corrupt the runner.
  // Only the signals that are not at SIG_DFL (SignalsToReset: the runner's own changes, what it
  // inherited, what a library loaded later may set): one call each instead of 62, while the
  // runner waits for the exec (docs/performance.md, issue 17 round 3).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (uint64_t left = p.reset_signals; left != 0; left &= left - 1) {
    ::sigaction(__builtin_ctzll(left) + 1, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (!MoveTo(p.stdin_fd, 0) || !MoveTo(p.stdout_fd, 1) || !MoveTo(p.stderr_fd, 2)) {
    ChildFail(p, Stage::kSetup, errno);
  }
  // No other descriptor of the runner may leak into the step: another tree's pipe held open
  // here would keep that tree from ever seeing EOF.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (p.work_dir && ::chdir(p.work_dir) != 0) ChildFail(p, Stage::kChdir, errno);
  ::execve(p.path, p.argv, p.envp);
  ChildFail(p, Stage::kExec, errno);
}

#ifndef SR_SPAWN_FORK_ONLY
int ChildMain(void* plan) { RunChild(*static_cast<const ChildPlan*>(plan)); }

// The child's stack while it shares our memory (the runner is suspended until it execs). One per
// thread, allocated once; the child needs a few KiB (lazy symbol binding saves the vector
// registers on it), 64 KiB leaves a wide margin.
constexpr size_t kChildStack = 64 * 1024;

char* ChildStackTop() {
  thread_local std::unique_ptr<char[]> stack(new char[kChildStack]);
  // The ABI wants a 16-byte aligned stack pointer before the call that enters ChildMain.
  auto top = reinterpret_cast<uintptr_t>(stack.get() + kChildStack);
  return reinterpret_cast<char*>(top & ~uintptr_t{15});
}

#endif  // SR_SPAWN_FORK_ONLY

// Blocks every signal for the lifetime of the object (restoring the previous mask), so that no
// handler can run in a child that shares our memory before it has reset its dispositions.
class BlockAllSignals {
 public:
  BlockAllSignals() {
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~BlockAllSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;

 private:
  sigset_t old_;
};

// Starts the child running RunChild(plan). `cgroup_dir_fd` >= 0 asks for the child to be born in
// that cgroup (clone3 CLONE_INTO_CGROUP); when that is not available the child joins it through
// plan.cgroup_procs_fd instead. `clone3_works` is cleared when the kernel refuses clone3.
pid_t StartChild(ChildPlan& plan, int cgroup_dir_fd, bool& clone3_works) {
  // The child runs with the parent's mask; it clears it after resetting the handlers.
  BlockAllSignals blocked;
#ifdef SR_SPAWN_FORK_ONLY
  (void)cgroup_dir_fd;
  (void)clone3_works;
  pid_t pid = ::fork();
  if (pid == 0) RunChild(plan);
  return pid;
#else
  char* stack_top = ChildStackTop();
#ifdef SR_HAVE_CLONE3
  if (clone3_works) {
    // CLONE_VM | CLONE_VFORK: no copy of our page tables (they grow with the runner's memory)
    // and we sleep until the child has exec'd or failed. CLONE_INTO_CGROUP: born in the leaf,
    // without the cgroup.procs write (a global write lock with an RCU grace period).
    const int procs_fd = plan.cgroup_procs_fd;
    if (cgroup_dir_fd >= 0) plan.cgroup_procs_fd = -1;
    clone_args args{};
    args.flags = CLONE_VM | CLONE_VFORK | (cgroup_dir_fd >= 0 ? CLONE_INTO_CGROUP : 0);
    args.exit_signal = SIGCHLD;
    args.stack = reinterpret_cast<uintptr_t>(stack_top - kChildStack + 16);
    args.stack_size = kChildStack - 16;
    args.cgroup = cgroup_dir_fd >= 0 ? static_cast<uint64_t>(cgroup_dir_fd) : 0;
    pid_t pid = Clone3(&args, ChildMain, &plan);
    plan.cgroup_procs_fd = procs_fd;
    if (pid >= 0) return pid;
    // Not there (ENOSYS, E2BIG: old kernel; EPERM/ENOSYS from a seccomp filter), or the cgroup
    // refused a birth into it: the classic path below reports the cgroup error, if any.
    if (errno == ENOSYS || errno == E2BIG || errno == EPERM) {
      clone3_works = false;
    } else if (errno == EAGAIN || errno == ENOMEM) {
      return -1;
    }
  }
#endif
  (void)cgroup_dir_fd;
  (void)clone3_works;
  return ::clone(ChildMain, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
#endif
}

// A close-on-exec copy of `fd` numbered above 2: the child's fds must not sit on 0-2, or moving
// one into place could clobber another.
Result<UniqueFd> AboveStdio(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return ErrnoError("fcntl F_DUPFD_CLOEXEC", errno);
  return UniqueFd(copy);
}

// `fd` itself when it is above 2 already (the usual case: 0-2 are open), else a copy kept in
// `copy`.
Result<int> AboveStdio(int fd, UniqueFd& copy) {
  if (fd > 2) return fd;
  SR_ASSIGN_OR_RETURN(copy, AboveStdio(fd));
  return copy.get();
}
std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Error ChildErrorToError(const ChildError& e, const ExecRequest& r) {
  switch (e.stage) {
    case Stage::kChdir:
      return FailedError("chdir " + r.work_dir + ": " + ErrnoText(e.err));
    case Stage::kExec:
      return FailedError("fork/exec " + r.path + ": " + ErrnoText(e.err));
    case Stage::kCgroup:
      return ErrnoError("join cgroup", e.err);
    case Stage::kSetup:
      break;
  }
  return ErrnoError("child setup", e.err);
}

}  // namespace


std::string ErrnoText(int err) {
  std::string s = std::strerror(err);
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

std::optional<std::string> EnvValue(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& kv : env) {
    if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=') {
      return kv.substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

Result<std::string> LookPath(const std::string& program, const std::string& path_value) {
  if (program.find('/') != std::string::npos) return program;
  const std::string prefix = "exec: \"" + program + "\": ";
  if (!program.empty()) {
    size_t start = 0;
    // Like Go's filepath.SplitList, an empty PATH has no entries; an empty entry means ".".
    while (!path_value.empty() && start <= path_value.size()) {
      size_t colon = path_value.find(':', start);
      if (colon == std::string::npos) colon = path_value.size();
      std::string dir = path_value.substr(start, colon - start);
      start = colon + 1;
      if (dir.empty()) dir = ".";
      std::string candidate = dir.back() == '/' ? dir + program : dir + "/" + program;
      struct stat st {};
      if (::stat(candidate.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
      if (::faccessat(AT_FDCWD, candidate.c_str(), X_OK, AT_EACCESS) != 0) continue;
      if (candidate[0] != '/') {
        // Go refuses these (exec.ErrDot): the step would run a program picked by its cwd.
        return FailedError(prefix + "cannot run executable found relative to current directory");
      }
      return candidate;
    }
  }
  return FailedError(prefix + "executable file not found in $PATH");
}

void AddTreeMarker(const std::vector<std::string>& env, const std::string& token, ExecRequest& r) {
  const std::string prefix = std::string(kTreeMarkerKey) + "=";
  r.env_list = &env;
  r.env_extra = prefix + token;
  r.env_extra_at = -1;
  for (size_t i = 0; i < env.size(); ++i) {
    const std::string& kv = env[i];
    if (kv.compare(0, prefix.size(), prefix) == 0) {
      r.env_extra = kv + (kv.size() > prefix.size() ? "," : "") + token;
      r.env_extra_at = static_cast<long>(i);
      return;
    }
  }
}

Result<Started> Spawner::ForkExec(const ExecRequest& r) {
  if (!dev_null_.valid()) {
    dev_null_.Reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null_.valid()) return ErrnoError("open /dev/null", errno);
  }
  // The child reports a failure before exec through memory it shares with us (vfork semantics:
  // we run again only once it has exec'd or exited), as glibc's posix_spawn does; a forked child
  // (sanitizer builds) through a close-on-exec pipe instead.
  ChildError shared{};
#ifdef SR_SPAWN_FORK_ONLY
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write_low(err_pipe[1]);
  SR_ASSIGN_OR_RETURN(UniqueFd err_write, AboveStdio(err_write_low.get()));
  err_write_low.Reset();
  const int error_fd = err_write.get();
  ChildError* const shared_error = nullptr;
#else
  const int error_fd = -1;
  ChildError* const shared_error = &shared;
#endif
  UniqueFd in_copy, out_copy, err_copy;
  SR_ASSIGN_OR_RETURN(const int in, AboveStdio(dev_null_.get(), in_copy));
  SR_ASSIGN_OR_RETURN(const int out, AboveStdio(r.stdout_fd, out_copy));
  SR_ASSIGN_OR_RETURN(const int err, AboveStdio(r.stderr_fd, err_copy));

  std::vector<char*> argv = CStrings(r.argv);
  std::vector<char*> envp;
  if (r.env_list) {
    envp.reserve(r.env_list->size() + 2);
    char* const extra = const_cast<char*>(r.env_extra.c_str());
    if (r.env_extra_at < 0) envp.push_back(extra);
    for (size_t i = 0; i < r.env_list->size(); ++i) {
      const bool replaced = static_cast<long>(i) == r.env_extra_at;
      envp.push_back(replaced ? extra : const_cast<char*>((*r.env_list)[i].c_str()));
    }
    envp.push_back(nullptr);
  } else {
    envp = CStrings(r.env);
  }
  ChildPlan plan{r.path.c_str(), argv.data(),       envp.data(),       nullptr, in, out, err,
                 r.cgroup_procs_fd, error_fd,       shared_error,      r.join_fds.data(),
                 r.join_fds.size()};
  if (!r.work_dir.empty()) plan.work_dir = r.work_dir.c_str();
  if (self_ < 0) self_ = ::getpid();
  plan.parent = self_;
  plan.reset_signals = SignalsToReset();
  if (const rlimit* files = OriginalFileLimit()) {
    plan.files = *files;
    plan.restore_files = true;
  }

  pid_t pid = StartChild(plan, r.cgroup_dir_fd, clone3_works_);
  if (pid < 0) return ErrnoError("clone", errno);

  Started started;
  started.pid = pid;
#ifdef SR_SPAWN_FORK_ONLY
  // Our copy: EOF on the read end now means "exec succeeded".
  err_write.Reset();
  size_t got = 0;
  while (got < sizeof shared) {
    ssize_t n = ::read(err_read.get(), reinterpret_cast<char*>(&shared) + got, sizeof shared - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != sizeof shared) shared = {};
#endif
  if (shared.err != 0) started.exec_error = ChildErrorToError(shared, r);
  return started;
}

}  // namespace sr
