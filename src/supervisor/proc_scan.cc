#include "supervisor/proc_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace sr {
namespace {

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// /proc, opened once per process: a file is opened relative to it (no lookup of "/proc" each
// time) under a path formatted on the stack, not in a string. -1 when /proc cannot be opened.
int ProcDir() {
  static const int fd = ::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  return fd;
}

// "<pid>/<leaf>" into `out` (NUL-terminated).
void FormatProcPath(pid_t pid, std::string_view leaf, char (&out)[96]) {
  auto [end, ec] = std::to_chars(out, out + 16, pid);
  (void)ec;
  *end++ = '/';
  const size_t n = std::min(leaf.size(), static_cast<size_t>(out + sizeof out - 1 - end));
  std::memcpy(end, leaf.data(), n);
  end[n] = '\0';
}

// Opens /proc/<pid>/<leaf> (leaf may itself contain slashes: "task/12/children").
UniqueFd OpenProcFile(pid_t pid, std::string_view leaf) {
  char path[96];
  FormatProcPath(pid, leaf, path);
  const int dir = ProcDir();
  if (dir >= 0) return UniqueFd(::openat(dir, path, O_RDONLY | O_CLOEXEC));
  return UniqueFd(::open(("/proc/" + std::string(path)).c_str(), O_RDONLY | O_CLOEXEC));
}

// One read of up to `size` bytes of /proc/<pid>/<leaf> into `buf`: the byte count, or -1 when it
// cannot be opened or read.
ssize_t ReadProcOnce(pid_t pid, std::string_view leaf, char* buf, size_t size) {
  UniqueFd fd = OpenProcFile(pid, leaf);
  if (!fd.valid()) return -1;
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, size);
  } while (n < 0 && errno == EINTR);
  return n;
}

// Reads a small /proc file (stat, comm: generated whole at the first read) with one read into
// `buf`; the byte count, or -1 when it cannot be opened or read. A file that fills the buffer is
// reported as unreadable rather than truncated.
ssize_t ReadSmallProcFile(pid_t pid, std::string_view leaf, char* buf, size_t size) {
  const ssize_t n = ReadProcOnce(pid, leaf, buf, size);
  if (n < 0 || static_cast<size_t>(n) >= size) return -1;
  return n;
}

// Reads up to `limit` bytes of /proc/<pid>/<leaf>; "" when it cannot be opened.
std::string ReadProcFile(pid_t pid, std::string_view leaf, size_t limit) {
  UniqueFd fd = OpenProcFile(pid, leaf);
  if (!fd.valid()) return "";
  std::string out;
  char buf[16384];
  while (out.size() < limit) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace

std::vector<pid_t> ListPids() { return TryListPids().value_or(std::vector<pid_t>{}); }

std::optional<std::vector<pid_t>> TryListPids() {
  std::vector<pid_t> pids;
  DirPtr dir(::opendir("/proc"));
  if (!dir) return std::nullopt;
  while (dirent* e = ::readdir(dir.get())) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || v <= 0) continue;
    pids.push_back(static_cast<pid_t>(v));
  }
  return pids;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  // One read: the census reads this file for every process on the machine.
  char buf[4096];
  const ssize_t len = ReadSmallProcFile(pid, "stat", buf, sizeof buf);
  if (len <= 0) return std::nullopt;
  buf[len] = '\0';
  const std::string_view text(buf, static_cast<size_t>(len));
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string_view::npos || close + 2 >= text.size()) return std::nullopt;
  ProcStat st;
  st.pid = pid;
  if (size_t open = text.find('('); open != std::string_view::npos && open < close) {
    st.comm.assign(text.substr(open + 1, close - open - 1));
  }
  const char* p = buf + close + 2;
  st.state = *p;
  ++p;
  // Fields after the state, counted from 1: ppid pgrp session ... starttime is the 19th.
  unsigned long long fields[19] = {};
  for (int i = 0; i < 19; ++i) {
    char* end = nullptr;
    fields[i] = std::strtoull(p, &end, 10);
    if (end == p) return std::nullopt;
    p = end;
  }
  st.ppid = static_cast<pid_t>(fields[0]);
  st.pgrp = static_cast<pid_t>(fields[1]);
  st.session = static_cast<pid_t>(fields[2]);
  st.flags = static_cast<unsigned long>(fields[5]);
  st.threads = static_cast<long>(fields[16]);
  st.start_ticks = fields[18];
  return st;
}

std::optional<ProcStat> ReadProcStat(pid_t pid, bool& out_of_fds) {
  errno = 0;
  auto st = ReadProcStat(pid);
  if (!st && OutOfFds(errno)) out_of_fds = true;
  return st;
}

namespace {

// Appends the pids listed in one task's children file; false when it cannot be opened.
bool AppendChildren(pid_t pid, std::string_view leaf, std::vector<pid_t>& out,
                    bool& out_of_fds) {
  UniqueFd fd = OpenProcFile(pid, leaf);
  if (!fd.valid()) {
    out_of_fds = out_of_fds || OutOfFds(errno);
    return false;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  const char* p = text.c_str();
  for (;;) {
    char* end = nullptr;
    long v = std::strtol(p, &end, 10);
    if (end == p) break;
    if (v > 0) out.push_back(static_cast<pid_t>(v));
    p = end;
  }
  return true;
}

}  // namespace

std::optional<std::vector<pid_t>> ReadChildren(pid_t pid, long threads, bool& out_of_fds) {
  std::vector<pid_t> out;
  char leaf[64] = "task/";
  if (threads == 1) {
    auto [end, ec] = std::to_chars(leaf + 5, leaf + 21, pid);
    (void)ec;
    std::memcpy(end, "/children", sizeof "/children");
    if (AppendChildren(pid, leaf, out, out_of_fds)) return out;
  }
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DirPtr dir(::opendir(task.c_str()));
  if (!dir) {
    out_of_fds = out_of_fds || OutOfFds(errno);
    return std::nullopt;
  }
  bool any = false;
  while (dirent* e = ::readdir(dir.get())) {
    if (e->d_name[0] == '.') continue;
    // A thread that just ended has no file any more; a kernel without them has none at all.
    any = AppendChildren(pid, "task/" + std::string(e->d_name) + "/children", out, out_of_fds) ||
          any;
  }
  if (!any) return std::nullopt;
  return out;
}

std::string ReadCmdline(pid_t pid, size_t limit) {
  // One read of limit + 1 bytes: the kernel copies as much of the command line as is asked in
  // a single call, and no more is kept, so a second read for the end of the file would only
  // cost a syscall per member (the record reads these just after a stop signal).
  std::string raw(limit + 1, '\0');
  const ssize_t n = ReadProcOnce(pid, "cmdline", raw.data(), raw.size());
  raw.resize(n > 0 ? static_cast<size_t>(n) : 0);
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (char& c : raw) {
    if (c == '\0') c = ' ';
  }
  if (raw.size() > limit) raw.resize(limit);
  return raw;
}

std::string ReadComm(pid_t pid) {
  // The task name is at most 15 bytes and a newline: one read.
  char buf[64];
  ssize_t n = ReadSmallProcFile(pid, "comm", buf, sizeof buf);
  while (n > 0 && buf[n - 1] == '\n') --n;
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

std::string ReadCommand(pid_t pid, size_t limit) {
  std::string cmd = ReadCmdline(pid, limit);
  if (!cmd.empty()) return cmd;
  std::string comm = ReadComm(pid);
  if (comm.size() > limit) comm.resize(limit);
  return comm;
}

std::string ReadEnviron(pid_t pid) {
  // Bounded so a process with a huge environment cannot make a scan slow without limit.
  return ReadProcFile(pid, "environ", 1 << 20);
}

std::string ReadEnviron(pid_t pid, bool& out_of_fds) {
  errno = 0;
  std::string environ = ReadEnviron(pid);
  if (environ.empty() && OutOfFds(errno)) out_of_fds = true;
  return environ;
}

std::vector<std::string_view> EnvironTokens(std::string_view environ, std::string_view key) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < environ.size()) {
    size_t end = environ.find('\0', pos);
    if (end == std::string_view::npos) end = environ.size();
    std::string_view entry = environ.substr(pos, end - pos);
    pos = end + 1;
    if (entry.size() <= key.size() || entry.substr(0, key.size()) != key ||
        entry[key.size()] != '=') {
      continue;
    }
    std::string_view value = entry.substr(key.size() + 1);
    while (!value.empty()) {
      size_t comma = value.find(',');
      out.push_back(value.substr(0, comma));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  return out;
}

bool EnvironHasToken(std::string_view environ, std::string_view key, std::string_view token) {
  for (std::string_view t : EnvironTokens(environ, key)) {
    if (t == token) return true;
  }
  return false;
}

// Raw syscalls: glibc 2.36's <sys/pidfd.h> lacks C++ linkage guards.
UniqueFd OpenPidfd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

bool PidfdSignal(int pidfd, int signo) {
  return ::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0) == 0;
}

namespace {
constexpr size_t kReserveFds = 2;  // a pass over /proc holds its directory and one file
}  // namespace

FdRelief::FdRelief(std::function<void()> release_spare) : release_(std::move(release_spare)) {
  TakeReserve();
}

void FdRelief::TakeReserve() const {
  while (reserve_.size() < kReserveFds) {
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return;  // taken again after the next lend
    reserve_.push_back(std::move(fd));
  }
}

bool FdRelief::ReleaseSpare() const {
  if (!release_) return false;
  release_();
  return true;
}

bool FdRelief::Attempt(const std::function<bool()>& attempt) const {
  if (attempt()) return true;
  if (ReleaseSpare() && attempt()) return true;
  if (reserve_.empty()) return false;
  reserve_.clear();
  const bool done = attempt();
  TakeReserve();
  return done;
}

Pin PinProcess(pid_t pid, const FdRelief* relief) {
  Pin pin{OpenPidfd(pid)};
  if (pin.fd.valid() || !OutOfFds(errno)) return pin;
  if (relief && relief->ReleaseSpare()) {
    pin.fd = OpenPidfd(pid);
    if (pin.fd.valid() || !OutOfFds(errno)) return pin;
  }
  pin.no_fd = true;
  return pin;
}

bool SignalPinned(pid_t pid, const UniqueFd& pin, int signo) {
  return pin.valid() ? PidfdSignal(pin.get(), signo) : ::kill(pid, signo) == 0;
}

PidfdInfo QueryPidfd(int pidfd) {
  // struct pidfd_info of <linux/pidfd.h> (Linux 6.15), whose header glibc 2.36 does not have.
  struct Raw {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask, spare;
  };
  constexpr uint64_t kCgroupId = 1u << 2;  // PIDFD_INFO_CGROUPID: sent whenever known
  constexpr uint64_t kExit = 1u << 3;      // PIDFD_INFO_EXIT: sent only when asked, once reaped
  constexpr unsigned long kGetInfo = _IOWR(0xFF, 11, Raw);  // PIDFD_GET_INFO
  PidfdInfo out;
  Raw raw{};
  raw.mask = kCgroupId | kExit;
  if (::ioctl(pidfd, kGetInfo, &raw) != 0) {
    // ESRCH: reaped, on a kernel that keeps no exit status (6.13, 6.14).
    out.answer = errno == ESRCH ? PidfdInfo::Answer::kReaped : PidfdInfo::Answer::kUnsupported;
    return out;
  }
  if (raw.mask & kExit) {
    out.answer = PidfdInfo::Answer::kReaped;
    out.reaped_status = raw.exit_code;
    return out;
  }
  out.answer = PidfdInfo::Answer::kAnswered;
  if (raw.mask & kCgroupId) out.cgroup_id = raw.cgroupid;
  return out;
}

UniqueFd OpenVerifiedPidfd(pid_t pid, unsigned long long start_ticks) {
  UniqueFd fd = OpenPidfd(pid);
  if (!fd.valid()) return fd;
  // The pidfd pins the identity from here on; if the pid was recycled before we opened it, the
  // process it names now started at a different time.
  auto st = ReadProcStat(pid);
  if (!st || st->start_ticks != start_ticks) return UniqueFd();
  return fd;
}

std::vector<ProcStat> LiveChildren() {
  std::vector<ProcStat> out;
  const pid_t self = ::getpid();
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (st && st->ppid == self && !st->dead()) out.push_back(*st);
  }
  return out;
}

bool HasChildren() {
  siginfo_t info{};
  const int r = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
  return !(r == -1 && errno == ECHILD);
}

}  // namespace sr
