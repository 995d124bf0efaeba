#include "support/kill_points.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace sr::test {
namespace {

// One line of a trace (see TracedCall).
TracedCall Parse(const std::string& line) {
  TracedCall c{0, "", line, line};
  const size_t digits = line.find_first_not_of("0123456789");
  if (digits != 0 && digits != std::string::npos && line[digits] == ' ') {
    c.tid = std::stol(line);
    c.text = line.substr(line.find_first_not_of(' ', digits));
  }
  const size_t end = c.text.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_");
  if (end > 0 && end != std::string::npos && (c.text[end] == '(' || c.text[end] == ' ')) {
    c.name = c.text.substr(0, end);
  }
  return c;
}

// Where a call of kPathCalls has its paths: argument indexes of (dirfd, path) pairs, -1 for none.
struct PathArgs {
  long nr;
  const char* name;
  int dirfd1, path1, dirfd2, path2;
};
const PathArgs kCalls[] = {
#ifdef SYS_mkdir  // the calls of old, not on every architecture
    {SYS_open, "open", -1, 0, -1, -1},         {SYS_creat, "creat", -1, 0, -1, -1},
    {SYS_mkdir, "mkdir", -1, 0, -1, -1},       {SYS_mknod, "mknod", -1, 0, -1, -1},
    {SYS_rename, "rename", -1, 0, -1, 1},      {SYS_link, "link", -1, 0, -1, 1},
    {SYS_symlink, "symlink", -1, 0, -1, 1},    {SYS_unlink, "unlink", -1, 0, -1, -1},
    {SYS_rmdir, "rmdir", -1, 0, -1, -1},
#endif
#ifdef SYS_openat2
    {SYS_openat2, "openat2", 0, 1, -1, -1},
#endif
    {SYS_openat, "openat", 0, 1, -1, -1},      {SYS_mkdirat, "mkdirat", 0, 1, -1, -1},
    {SYS_mknodat, "mknodat", 0, 1, -1, -1},    {SYS_renameat, "renameat", 0, 1, 2, 3},
    {SYS_renameat2, "renameat2", 0, 1, 2, 3},  {SYS_linkat, "linkat", 0, 1, 2, 3},
    {SYS_symlinkat, "symlinkat", -1, 0, 1, 2}, {SYS_unlinkat, "unlinkat", 0, 1, -1, -1},
};

// The NUL-terminated string at `addr` in the tracee.
std::string ReadString(pid_t pid, uint64_t addr) {
  std::string s;
  while (s.size() < 4096) {
    errno = 0;
    const long word =
        ::ptrace(PTRACE_PEEKDATA, pid, reinterpret_cast<void*>(addr + s.size()), nullptr);
    if (errno != 0) break;
    for (size_t i = 0; i < sizeof word; ++i) {
      const char c = reinterpret_cast<const char*>(&word)[i];
      if (c == '\0') return s;
      s += c;
    }
  }
  return s;
}

// `path` as the kernel resolves it: relative to `dirfd` (-1: no dirfd, the working directory).
std::string Absolute(pid_t pid, int dirfd, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::error_code ec;
  const auto base = std::filesystem::read_symlink(
      dirfd == -1 || dirfd == AT_FDCWD ? proc + "/cwd" : proc + "/fd/" + std::to_string(dirfd), ec);
  return ec ? path : base.string() + "/" + path;
}

// The call the tracee is entering, `<name> "<path>"[ "<path>"]`, if it is one of kPathCalls naming
// a path under `dir`; "" otherwise.
std::string PathCallUnder(pid_t pid, const std::string& dir) {
  __ptrace_syscall_info info{};
  if (::ptrace(PTRACE_GET_SYSCALL_INFO, pid, reinterpret_cast<void*>(sizeof info), &info) <= 0 ||
      info.op != PTRACE_SYSCALL_INFO_ENTRY) {
    return "";
  }
  for (const PathArgs& c : kCalls) {
    if (static_cast<long>(info.entry.nr) != c.nr) continue;
    std::string call = c.name;
    bool under = false;
    for (auto [dirfd, path] : {std::pair{c.dirfd1, c.path1}, std::pair{c.dirfd2, c.path2}}) {
      if (path < 0) continue;
      const std::string arg = ReadString(pid, info.entry.args[path]);
      const int fd = dirfd < 0 ? -1 : static_cast<int>(info.entry.args[dirfd]);
      under = under || Absolute(pid, fd, arg).rfind(dir + "/", 0) == 0;
      call += " \"" + arg + "\"";
    }
    return under ? call : "";
  }
  return "";
}

}  // namespace

// The calls in a trace file, each at its first line (an interrupted call resumes on a later one).
std::vector<TracedCall> CallsIn(const std::string& trace) {
  std::vector<TracedCall> calls;
  std::ifstream in(trace);
  for (std::string line; std::getline(in, line);) calls.push_back(Parse(line));
  std::erase_if(calls, [](const TracedCall& c) { return c.name.empty(); });
  return calls;
}

// The calls of thread `tid` whose arguments name a path under `dir` (or a descriptor's under it).
std::vector<TracedCall> PathCallsUnder(std::vector<TracedCall> calls, long tid,
                                       const std::string& dir) {
  std::erase_if(calls, [&](const TracedCall& c) {
    const std::string args = c.line.substr(0, c.line.rfind(") = "));
    return c.tid != tid ||
           (args.find('"' + dir + '/') == args.npos && args.find('<' + dir + '/') == args.npos);
  });
  return calls;
}

// The name and the paths of a call, without what differs from run to run: the random part of
// transit and temp dir names, and numbers (pids, start times).
std::string Shape(const std::string& line) {
  const TracedCall c = Parse(line);
  std::string shape = c.name, path;
  std::istringstream quoted(c.text);
  for (std::getline(quoted, path, '"'); std::getline(quoted, path, '"');
       std::getline(quoted, path, '"')) {
    std::istringstream parts(path);
    shape += " ";
    for (std::string part; std::getline(parts, part, '/'); shape += part + "/") {
      if (part.starts_with(".step-runner-owned-") ||
          (part.starts_with("step-runner-") && part.size() == 18)) {
        part.replace(part.rfind('-') + 1, std::string::npos, "*");
      }
    }
  }
  std::replace_if(
      shape.begin(), shape.end(), [](unsigned char ch) { return std::isdigit(ch); }, '#');
  shape.erase(
      std::unique(shape.begin(), shape.end(), [](char a, char b) { return a == '#' && b == '#'; }),
      shape.end());
  return shape;
}

// The threads of process `main` in a `strace -f` trace of clone and clone3: main and every thread
// (CLONE_THREAD) one of them made. A clone's result can come on a later line than its flags.
std::set<long> ThreadsIn(const std::string& trace, long main) {
  std::vector<std::pair<long, long>> made;  // (thread, the thread it made)
  std::set<long> cloning, threads{main};
  std::ifstream in(trace);
  for (std::string line; std::getline(in, line);) {
    const TracedCall c = Parse(line);
    const bool resumed = c.text.starts_with("<... clone");
    if (c.tid == 0 || (!resumed && !c.name.starts_with("clone"))) continue;
    if (!resumed && line.find("CLONE_THREAD") != std::string::npos) cloning.insert(c.tid);
    const size_t result = line.rfind(") = ");
    if (result != std::string::npos && cloning.erase(c.tid)) {
      made.emplace_back(c.tid, std::atol(line.c_str() + result + 4));
    }
  }
  for (bool grew = true; grew;) {
    grew = false;
    for (auto [parent, child] : made) grew |= threads.count(parent) && threads.insert(child).second;
  }
  return threads;
}

void Tracee::Signal(int signo) const { ::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0); }

bool KilledAt::killed() const { return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL; }

KilledAt KillEntering(const std::vector<std::string>& argv, const Options& options,
                      const std::string& dir, int nth,
                      const std::function<void(const Tracee&)>& meanwhile) {
  // Everything the child needs is made before the fork: after it, only async-signal-safe calls.
  std::vector<std::string> env_strings = ChildEnvironment(options), argv_strings = argv;
  std::vector<char*> envp = ExecVector(env_strings), args = ExecVector(argv_strings);
  char err_path[] = "/tmp/sr-traced-XXXXXX";
  const int err = ::mkstemp(err_path);

  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(err, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!options.cwd.empty() && ::chdir(options.cwd.c_str()) != 0) ::_exit(126);
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);  // it stops at the execve, for the options below
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  ::close(err);
  KilledAt result;
  Tracee tracee;
  tracee.pid = pid;
  tracee.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  std::thread side;
  int status = 0;
  if (::waitpid(pid, &status, 0) == pid && WIFSTOPPED(status)) {
    ::ptrace(PTRACE_SETOPTIONS, pid, nullptr,
             reinterpret_cast<void*>(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL));
    if (meanwhile) side = std::thread([&] { meanwhile(tracee); });
    int seen = 0, deliver = 0;
    for (;;) {
      ::ptrace(PTRACE_SYSCALL, pid, nullptr,
               reinterpret_cast<void*>(static_cast<intptr_t>(deliver)));
      deliver = 0;
      if (::waitpid(pid, &status, __WALL) != pid) {
        if (errno == EINTR) continue;
        break;
      }
      if (!WIFSTOPPED(status)) break;  // ended
      if (WSTOPSIG(status) != (SIGTRAP | 0x80)) {
        if (WSTOPSIG(status) != SIGTRAP) deliver = WSTOPSIG(status);  // a signal for it: delivered
        continue;
      }
      if (nth <= 0 || seen >= nth) continue;
      std::string call = PathCallUnder(pid, dir);
      if (!call.empty() && ++seen == nth) {
        // Entering: the kernel sees the SIGKILL before it runs the call.
        result.call = std::move(call);
        ::kill(pid, SIGKILL);
      }
    }
  }
  tracee.ended = true;
  if (side.joinable()) side.join();
  ::close(tracee.pidfd);
  result.status = status;
  std::ifstream in(err_path);
  std::stringstream text;
  text << in.rdbuf();
  result.err = text.str();
  ::unlink(err_path);
  return result;
}

}  // namespace sr::test
