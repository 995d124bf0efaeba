#include "supervisor/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "supervisor/supervisor.h"

namespace sr {
namespace {

// What the child reports through the error pipe: which step failed, and errno.
enum class Stage : int { kSetup = 1, kCgroup, kChdir, kExec };
struct ChildError {
  Stage stage;
  int err;
};

// Everything the child touches, prepared before fork: after fork it may only make
// async-signal-safe calls, so no allocation happens there.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* work_dir;  // nullptr = inherit
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  int cgroup_procs_fd;
  int error_fd;
};

[[noreturn]] void ChildFail(int error_fd, Stage stage, int err) {
  ChildError e{stage, err};
  [[maybe_unused]] ssize_t n = ::write(error_fd, &e, sizeof e);
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
  if (::setpgid(0, 0) != 0) ChildFail(p.error_fd, Stage::kSetup, errno);
  // Join the leaf before exec: nothing the program does can then escape the cgroup.
  if (p.cgroup_procs_fd >= 0 && ::write(p.cgroup_procs_fd, "0", 1) != 1) {
    ChildFail(p.error_fd, Stage::kCgroup, errno);
  }
  // Ignored signals survive exec (the runner ignores SIGPIPE, for one); handlers do not, but
  // reset them before unblocking so a pending signal cannot run runner code in the child.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (!MoveTo(p.stdin_fd, 0) || !MoveTo(p.stdout_fd, 1) || !MoveTo(p.stderr_fd, 2)) {
    ChildFail(p.error_fd, Stage::kSetup, errno);
  }
  // No other descriptor of the runner may leak into the step: another tree's pipe held open
  // here would keep that tree from ever seeing EOF.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (p.work_dir && ::chdir(p.work_dir) != 0) ChildFail(p.error_fd, Stage::kChdir, errno);
  ::execve(p.path, p.argv, p.envp);
  ChildFail(p.error_fd, Stage::kExec, errno);
}

// A close-on-exec copy of `fd` numbered above 2: the child's fds must not sit on 0-2, or moving
// one into place could clobber another.
Result<UniqueFd> AboveStdio(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return ErrnoError("fcntl F_DUPFD_CLOEXEC", errno);
  return UniqueFd(copy);
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

Result<Started> ForkExec(const ExecRequest& r) {
  UniqueFd dev_null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!dev_null.valid()) return ErrnoError("open /dev/null", errno);
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write_low(err_pipe[1]);
  SR_ASSIGN_OR_RETURN(UniqueFd err_write, AboveStdio(err_write_low.get()));
  err_write_low.Reset();
  SR_ASSIGN_OR_RETURN(UniqueFd in, AboveStdio(dev_null.get()));
  SR_ASSIGN_OR_RETURN(UniqueFd out, AboveStdio(r.stdout_fd));
  SR_ASSIGN_OR_RETURN(UniqueFd err, AboveStdio(r.stderr_fd));

  std::vector<char*> argv = CStrings(r.argv);
  std::vector<char*> envp = CStrings(r.env);
  ChildPlan plan{r.path.c_str(), argv.data(),    envp.data(),         nullptr,       in.get(),
                 out.get(),      err.get(),      r.cgroup_procs_fd,   err_write.get()};
  if (!r.work_dir.empty()) plan.work_dir = r.work_dir.c_str();

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", errno);
  if (pid == 0) RunChild(plan);

  err_write.Reset();  // our copy: EOF on the read end now means "exec succeeded"
  Started started;
  started.pid = pid;
  ChildError e{};
  size_t got = 0;
  while (got < sizeof e) {
    ssize_t n = ::read(err_read.get(), reinterpret_cast<char*>(&e) + got, sizeof e - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got == sizeof e) started.exec_error = ChildErrorToError(e, r);
  return started;
}

}  // namespace sr
