#include "supervisor/proc_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace sr {
namespace {

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// Reads up to `limit` bytes of a /proc file; "" when it cannot be opened.
std::string ReadProcFile(const std::string& path, size_t limit) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
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

std::string ProcPath(pid_t pid, const char* leaf) {
  return "/proc/" + std::to_string(pid) + "/" + leaf;
}

}  // namespace

std::vector<pid_t> ListPids() {
  std::vector<pid_t> pids;
  DirPtr dir(::opendir("/proc"));
  if (!dir) return pids;
  while (dirent* e = ::readdir(dir.get())) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || v <= 0) continue;
    pids.push_back(static_cast<pid_t>(v));
  }
  return pids;
}

std::optional<ProcStat> ReadProcStat(pid_t pid) {
  std::string text = ReadProcFile(ProcPath(pid, "stat"), 4096);
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos || close + 2 >= text.size()) return std::nullopt;
  ProcStat st;
  st.pid = pid;
  if (size_t open = text.find('('); open != std::string::npos && open < close) {
    st.comm = text.substr(open + 1, close - open - 1);
  }
  const char* p = text.c_str() + close + 2;
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

namespace {

// Appends the pids listed in one task's children file; false when it cannot be opened.
bool AppendChildren(const std::string& path, std::vector<pid_t>& out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
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

std::optional<std::vector<pid_t>> ReadChildren(pid_t pid, long threads) {
  const std::string task = ProcPath(pid, "task");
  std::vector<pid_t> out;
  if (threads == 1) {
    const std::string self = task + "/" + std::to_string(pid) + "/children";
    if (AppendChildren(self, out)) return out;
  }
  DirPtr dir(::opendir(task.c_str()));
  if (!dir) return std::nullopt;
  bool any = false;
  while (dirent* e = ::readdir(dir.get())) {
    if (e->d_name[0] == '.') continue;
    // A thread that just ended has no file any more; a kernel without them has none at all.
    any = AppendChildren(task + "/" + e->d_name + "/children", out) || any;
  }
  if (!any) return std::nullopt;
  return out;
}

std::string ReadCmdline(pid_t pid, size_t limit) {
  std::string raw = ReadProcFile(ProcPath(pid, "cmdline"), limit + 1);
  while (!raw.empty() && raw.back() == '\0') raw.pop_back();
  for (char& c : raw) {
    if (c == '\0') c = ' ';
  }
  if (raw.size() > limit) raw.resize(limit);
  return raw;
}

std::string ReadComm(pid_t pid) {
  std::string comm = ReadProcFile(ProcPath(pid, "comm"), 64);
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return comm;
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
  return ReadProcFile(ProcPath(pid, "environ"), 1 << 20);
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

UniqueFd OpenVerifiedPidfd(pid_t pid, unsigned long long start_ticks) {
  UniqueFd fd = OpenPidfd(pid);
  if (!fd.valid()) return fd;
  // The pidfd pins the identity from here on; if the pid was recycled before we opened it, the
  // process it names now started at a different time.
  auto st = ReadProcStat(pid);
  if (!st || st->start_ticks != start_ticks) return UniqueFd();
  return fd;
}

}  // namespace sr
