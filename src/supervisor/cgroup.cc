#include "supervisor/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

#include "supervisor/cgroupfs.h"
#include "supervisor/proc_scan.h"
#include "util/owner.h"
#include "util/tempdir.h"

namespace sr {
namespace {

Status WriteControl(const std::string& path, const char* value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError("open " + path, errno);
  size_t len = std::strlen(value);
  if (::write(fd.get(), value, len) != static_cast<ssize_t>(len)) {
    return ErrnoError("write " + path, errno);
  }
  return Ok();
}

bool EventFlag(const std::string& events, const std::string& key) {
  size_t pos = events.find(key + " ");
  return pos != std::string::npos && pos + key.size() + 1 < events.size() &&
         events[pos + key.size() + 1] == '1';
}

}  // namespace

Result<std::string> FindCgroup2Mount() {
  SR_ASSIGN_OR_RETURN(std::string info, ReadFile("/proc/self/mountinfo"));
  for (auto& m : ParseMountinfo(info)) {
    if (m.fstype == "cgroup2") return std::move(m.mount_point);
  }
  return InternalError("no cgroup2 filesystem is mounted");
}

CgroupLeaf::~CgroupLeaf() { Remove(); }

std::optional<std::vector<pid_t>> CgroupLeaf::ReadProcs() const {
  // On the stop's critical path (read before the first signal): no fstat, no stream parsing.
  std::vector<pid_t> pids;
  UniqueFd fd(::open((path_ + "/cgroup.procs").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  char buf[16384];
  size_t kept = 0;  // the start of a pid cut by the end of the last read
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf + kept, sizeof buf - kept);
    if (n < 0 && errno == EINTR) continue;
    const size_t end = kept + static_cast<size_t>(std::max<ssize_t>(n, 0));
    const char* p = buf;
    const char* stop = buf + end;
    for (;;) {
      while (p < stop && (*p < '0' || *p > '9')) ++p;
      const char* digits = p;
      while (p < stop && *p >= '0' && *p <= '9') ++p;
      if (digits == p) break;
      if (p == stop && n > 0) {  // maybe cut: parse it with the next read
        p = digits;
        break;
      }
      long v = 0;
      std::from_chars(digits, p, v);
      if (v > 0) pids.push_back(static_cast<pid_t>(v));
    }
    if (n <= 0) break;
    kept = static_cast<size_t>(stop - p);
    std::memmove(buf, p, kept);
  }
  return pids;
}

std::optional<bool> CgroupLeaf::HasLive(int pidfd) {
  if (no_pidfd_info_) return std::nullopt;
  if (id_ == 0) {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return std::nullopt;
    id_ = st.st_ino;
  }
  const PidfdInfo info = QueryPidfd(pidfd);
  if (info.answer == PidfdInfo::Answer::kReaped) return false;
  if (!info.cgroup_id) {
    no_pidfd_info_ = true;  // no PIDFD_GET_INFO, or no cgroup id in it
    return std::nullopt;
  }
  if (*info.cgroup_id != id_) return false;
  // A pidfd polls readable once its process has exited: a zombie, which cgroup.procs omits.
  pollfd p{pidfd, POLLIN, 0};
  const int r = ::poll(&p, 1, 0);
  if (r < 0) return std::nullopt;
  return r == 0;
}

std::string CgroupLeaf::ReadEvents() {
  // Reading through the watched fd (from offset 0) is what re-arms its EPOLLPRI notification.
  char buf[256];
  ssize_t n = ::pread(events_fd_.get(), buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

bool CgroupLeaf::Populated() {
  std::string events = ReadEvents();
  // If the file cannot be read the leaf is gone, and with it every member.
  return !events.empty() && EventFlag(events, "populated");
}

bool CgroupLeaf::Idle() {
  std::string events = ReadEvents();
  return !events.empty() && !EventFlag(events, "populated") && !EventFlag(events, "frozen");
}

bool CgroupLeaf::AsCreated() {
  // What a step may change in its own leaf (its files are the runner's user's, as the step is):
  // the limits on sub-cgroups, the type, and sub-cgroups themselves. A leaf whose every one is
  // as mkdir made it is as good as a new one; a leaf that cannot be read is not.
  static constexpr std::pair<const char*, std::string_view> kAsMade[] = {
      {"cgroup.max.descendants", "max"},
      {"cgroup.max.depth", "max"},
      {"cgroup.type", "domain"},
      {"cgroup.stat", "nr_descendants 0"},
  };
  static_assert(std::size(kAsMade) == std::tuple_size_v<decltype(state_fds_)>);
  for (size_t i = 0; i < std::size(kAsMade); ++i) {
    UniqueFd& fd = state_fds_[i];
    if (!fd.valid()) {
      fd.Reset(dir_fd_.valid() ? ::openat(dir_fd_.get(), kAsMade[i].first, O_RDONLY | O_CLOEXEC)
                               : ::open((path_ + "/" + kAsMade[i].first).c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return false;
    }
    // From offset 0 every time: the file as it is now (a kernfs file is rendered per read).
    char buf[128];
    ssize_t n = ::pread(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) return false;
    std::string_view text(buf, static_cast<size_t>(n));
    if (text.substr(0, text.find('\n')) != kAsMade[i].second) return false;
  }
  return true;
}

Status CgroupLeaf::Kill() { return WriteControl(path_ + "/cgroup.kill", "1"); }

void CgroupLeaf::Remove() {
  if (removed_) return;
  procs_fd_.Reset();
  events_fd_.Reset();
  for (UniqueFd& fd : state_fds_) fd.Reset();
  if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) {
    removed_ = true;
  } else if (errno == EBUSY && RemoveEmptyCgroupTree(path_)) {
    removed_ = true;  // the step had made sub-cgroups (empty now, as the leaf is)
  }
  // A removed leaf serves nobody: its directory's fd goes too, not when the tree that owned it
  // is freed (a runner at its fd limit needs it for the next step's leaf).
  if (removed_) dir_fd_.Reset();
}

Result<std::string> RunnerCgroupDir(pid_t runner) {
  SR_ASSIGN_OR_RETURN(std::string mount, FindCgroup2Mount());
  SR_ASSIGN_OR_RETURN(std::string self, ReadFile("/proc/self/cgroup"));
  std::string own;
  bool found = false;
  std::istringstream lines(self);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("0::", 0) == 0) {
      own = line.substr(3);
      found = true;
    }
  }
  if (!found) return InternalError("no cgroup v2 entry (0::) in /proc/self/cgroup");
  if (own == "/") own.clear();
  return mount + own + "/step-runner-" + std::to_string(runner);
}

bool KillCgroupTree(const std::string& dir, std::chrono::milliseconds wait) {
  (void)WriteControl(dir + "/cgroup.kill", "1");
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto events = ReadFile(dir + "/cgroup.events");
    if (!events.ok() || !EventFlag(*events, "populated")) break;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::usleep(2000);
  }
  return RemoveEmptyCgroupTree(dir) || errno == ENOENT;
}

Result<std::unique_ptr<CgroupRoot>> CgroupRoot::Create(const std::string& record_dir) {
  SR_ASSIGN_OR_RETURN(std::string dir, RunnerCgroupDir(::getpid()));
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir " + dir, errno);
  }
  std::unique_ptr<CgroupRoot> root(new CgroupRoot(dir));  // private constructor
  SR_RETURN_IF_ERROR(root->Probe());
  // A cgroup directory cannot hold a file: its owner mark lives in $TMPDIR, where the next
  // runner started with the same TMPDIR looks for what a dead one left (leftovers.h).
  // Written under a temporary name and renamed into place: a runner killed while writing it (a
  // SIGKILL during start-up) left an empty record that no sweep could read, for good.
  if (!record_dir.empty()) {
    const std::string record = CgroupRecordPath(record_dir, ::getpid());
    Status written = WriteFileReplacing(record, SelfOwnerMark() + dir + "\n", 0600, kCgroupRecordTempSuffix);
    if (written.ok()) {
      root->record_ = record;
    } else {
      // Said whatever the debug switch: without its record, a SIGKILL of this runner leaves its
      // cgroup to the by-name sweep (leftovers.h), and a full TMPDIR went unnoticed.
      std::fprintf(stderr, "step-runner: %s: not written (%s); without it, a killed runner's cgroup %s "
                   "is found by name only\n", record.c_str(), written.error().message.c_str(), dir.c_str());
    }
  }
  return root;
}

namespace {
// Waits for `pid` and turns its exit into the errno it reported (0 = it could join).
int ProbeChildErrno(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status)) return EIO;
  return WEXITSTATUS(status);
}

// A child born in the leaf (clone3 CLONE_INTO_CGROUP, as every step is) that exits at once:
// 0 when the kernel let it in, else errno. Birth into a cgroup checks the same permissions as a
// move but skips the cgroup.procs write, whose global lock waits for an RCU grace period
// (~11 ms of every runner's start here). Fork-like (no CLONE_VM): the child only exits.
int ProbeByBirth(int leaf_dir_fd) {
#ifdef SYS_clone3
  clone_args args{};
  args.flags = CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(leaf_dir_fd);
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  // The raw exit: a sanitizer's _exit interceptor (leak check) must not run in a copy made
  // behind its fork interceptor's back.
  if (pid == 0) ::syscall(SYS_exit_group, 0);
  if (pid < 0) return errno;
  return ProbeChildErrno(static_cast<pid_t>(pid));
#else
  (void)leaf_dir_fd;
  return ENOSYS;
#endif
}
}  // namespace

Status CgroupRoot::Probe() {
  SR_ASSIGN_OR_RETURN(auto leaf, CreateLeaf("probe"));
  // cgroup.kill came with Linux 5.14; without it a leaf cannot end its tree atomically.
  if (const std::string kill = leaf->path() + "/cgroup.kill"; ::access(kill.c_str(), W_OK) != 0) {
    return ErrnoError(kill, errno);
  }
  // Moving a process needs write access to the common ancestor's cgroup.procs too, which only a
  // real move shows. A birth into the leaf is one (steps are born there where clone3 works);
  // where it is refused for any reason (no clone3, a seccomp filter, the cgroup), the classic
  // move decides: a child joins the leaf and reports errno as its exit status.
  if (ProbeByBirth(leaf->dir_fd()) == 0) return Ok();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", errno);
  if (pid == 0) {
    ssize_t n = ::write(leaf->procs_fd(), "0", 1);
    ::_exit(n == 1 ? 0 : (errno & 0xff ? errno & 0xff : 1));
  }
  if (int err = ProbeChildErrno(pid); err != 0) return ErrnoError("join " + leaf->path(), err);
  return Ok();
}

CgroupRoot::~CgroupRoot() {
  // Leaves of finished trees are gone already; this catches any left by a tree that could not
  // finish (rmdir fails harmlessly while a leaf is still populated).
  if (RemoveEmptyCgroupTree(path_) && !record_.empty()) ::unlink(record_.c_str());
}

std::string CgroupRecordPath(const std::string& base, pid_t runner) {
  return base + "/" + kCgroupRecordPrefix + std::to_string(runner);
}

Result<std::unique_ptr<CgroupLeaf>> CgroupRoot::CreateLeaf(const std::string& name,
                                                           const std::string& in) {
  std::string dir = (in.empty() ? path_ : in) + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0) {
    // A leftover from a crashed runner that had our pid: reuse it only if it is empty.
    if (errno != EEXIST || ::rmdir(dir.c_str()) != 0 || ::mkdir(dir.c_str(), 0755) != 0) {
      return ErrnoError("mkdir " + dir, errno);
    }
  }
  std::unique_ptr<CgroupLeaf> leaf(new CgroupLeaf(dir));  // private constructor
  leaf->procs_fd_.Reset(::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
  if (!leaf->procs_fd_.valid()) return ErrnoError("open " + dir + "/cgroup.procs", errno);
  leaf->dir_fd_.Reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!leaf->dir_fd_.valid()) return ErrnoError("open " + dir, errno);
  leaf->events_fd_.Reset(::open((dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
  if (!leaf->events_fd_.valid()) return ErrnoError("open " + dir + "/cgroup.events", errno);
  return leaf;
}

}  // namespace sr
