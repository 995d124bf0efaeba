#include "supervisor/guardian.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include "supervisor/cgroup.h"
#include "supervisor/proc_scan.h"
#include "util/fd.h"
#include "util/owner.h"

namespace sr {
namespace {

// Passes of the marker scan; a forker outside every group can race one pass, not 200 of them.
constexpr int kScanRounds = 200;
constexpr auto kRoundPause = std::chrono::milliseconds(5);
// How long the guardian waits for a killed cgroup to report empty before removing it.
constexpr auto kGuardianCgroupWait = std::chrono::seconds(5);

struct Runner {
  pid_t pid = 0;
  unsigned long long start_ticks = 0;
  pid_t pgrp = 0;
  std::string cgroup_dir;  // "" when cgroups are not available
};

void KillCgroup(const std::string& dir) {
  if (dir.empty() || ::access(dir.c_str(), F_OK) != 0) return;  // cleaned up, or never made
  KillCgroupTree(dir, kGuardianCgroupWait);
}

// One pass: SIGKILL to every process started since the runner that carries its marker, that
// is in a group such a process leads, or whose parent is such a process. Returns how many.
int KillMarkedOnce(const Runner& r) {
  const pid_t self = ::getpid();
  std::set<pid_t> marked;
  std::vector<ProcStat> candidates;
  for (pid_t pid : ListPids()) {
    if (pid == self || pid == r.pid) continue;
    auto st = ReadProcStat(pid);
    if (!st || st->dead() || st->start_ticks < r.start_ticks) continue;
    candidates.push_back(*st);
    if (EnvironHasRunnerMarker(ReadEnviron(pid), r.pid)) marked.insert(pid);
  }
  // Groups led by a marked process (a tree's group), and children of marked processes (which
  // may have cleared their environment), until nothing new joins.
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& st : candidates) {
      if (marked.count(st.pid)) continue;
      if (marked.count(st.ppid) || (st.pgrp != r.pgrp && marked.count(st.pgrp))) {
        marked.insert(st.pid);
        grew = true;
      }
    }
  }
  int killed = 0;
  for (const auto& st : candidates) {
    if (!marked.count(st.pid)) continue;
    UniqueFd fd = OpenVerifiedPidfd(st.pid, st.start_ticks);
    if (fd.valid() && PidfdSignal(fd.get(), SIGKILL)) ++killed;
    // The group as well, atomically against fork, when the process leads its group.
    if (st.pgrp == st.pid && st.pgrp != r.pgrp && fd.valid()) ::kill(-st.pgrp, SIGKILL);
  }
  return killed;
}

// `pkill -9 -f "step-runner serve"` — the way an operator kills a runner by its command line —
// must not take the guardian with the runner it guards: the guardian is a fork, so its
// /proc/<pid>/cmdline is the runner's. That text lives in our own memory (the stack's top, from
// arg_start to arg_end, fields 48 and 49 of /proc/self/stat) and is overwritten in place, as
// setproctitle does; the rest of the area is zeroed. (PR_SET_NAME only renames `comm`.)
void ReplaceCommandLine(std::string_view name) {
  auto stat = ReadFile("/proc/self/stat");
  if (!stat.ok()) return;
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return;
  std::istringstream fields(stat->substr(close + 1));
  std::string field;
  unsigned long long start = 0, end = 0;
  for (int i = 3; i <= 49 && fields >> field; ++i) {
    if (i == 48) start = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 49) end = std::strtoull(field.c_str(), nullptr, 10);
  }
  if (start == 0 || end <= start) return;
  char* area = reinterpret_cast<char*>(static_cast<uintptr_t>(start));
  const size_t size = static_cast<size_t>(end - start);
  std::memset(area, 0, size);
  std::memcpy(area, name.data(), std::min(size - 1, name.size()));
}

[[noreturn]] void GuardianMain(int runner_fd, const Runner& r) {
  ::setsid();
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTTOU, SIGTTIN, SIGTSTP}) {
    ::signal(sig, SIG_IGN);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::prctl(PR_SET_NAME, "sr-guardian");
  ReplaceCommandLine("sr-guardian");
  if (::chdir("/") != 0) ::_exit(1);
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0) ::_exit(1);
  for (int fd = 0; fd < 3; ++fd) ::dup2(null_fd, fd);
  // The pidfd on 3, everything else closed: no pipe, socket or file of the runner stays open.
  if (::dup2(runner_fd, 3) != 3) ::_exit(1);
  ::close_range(4, ~0U, 0);

  pollfd p{3, POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
  KillCgroup(r.cgroup_dir);
  for (int round = 0; round < kScanRounds; ++round) {
    if (KillMarkedOnce(r) == 0) break;
    std::this_thread::sleep_for(kRoundPause);
  }
  ::_exit(0);
}

}  // namespace

int KillRunnerProcesses(pid_t runner, unsigned long long start_ticks) {
  Runner r;
  r.pid = runner;
  r.start_ticks = start_ticks;
  r.pgrp = ::getpgrp();  // never our own group
  int total = 0;
  for (int round = 0; round < kScanRounds; ++round) {
    int killed = KillMarkedOnce(r);
    if (killed == 0) break;
    total += killed;
    std::this_thread::sleep_for(kRoundPause);
  }
  return total;
}

bool EnvironHasRunnerMarker(const std::string& environ, pid_t runner) {
  const std::string key = std::string(kTreeMarkerKey) + "=";
  const std::string prefix = std::to_string(runner) + ".";
  size_t pos = 0;
  while (pos < environ.size()) {
    size_t end = environ.find('\0', pos);
    if (end == std::string::npos) end = environ.size();
    if (environ.compare(pos, key.size(), key) == 0) {
      size_t token = pos + key.size();
      while (token < end) {
        size_t comma = environ.find(',', token);
        if (comma == std::string::npos || comma > end) comma = end;
        if (environ.compare(token, prefix.size(), prefix) == 0 && comma - token > prefix.size()) {
          return true;
        }
        token = comma + 1;
      }
    }
    pos = end + 1;
  }
  return false;
}

Status StartGuardian() {
  Runner r;
  r.pid = ::getpid();
  r.start_ticks = ProcessStartTicks(r.pid);
  r.pgrp = ::getpgrp();
  if (auto dir = RunnerCgroupDir(r.pid); dir.ok()) r.cgroup_dir = *dir;
  UniqueFd runner_fd = OpenPidfd(r.pid);
  if (!runner_fd.valid()) return ErrnoError("pidfd_open (guardian)", errno);
  pid_t middle = ::fork();
  if (middle < 0) return ErrnoError("fork (guardian)", errno);
  if (middle == 0) {
    // The middle process exits at once, so the guardian is re-parented away from the runner:
    // the runner reaps and kills its own children, and must never count the guardian among them.
    pid_t guardian = ::fork();
    if (guardian == 0) GuardianMain(runner_fd.get(), r);
    ::_exit(guardian < 0 ? 1 : 0);
  }
  int status = 0;
  while (::waitpid(middle, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return InternalError("fork (guardian) failed");
  return Ok();
}

}  // namespace sr
