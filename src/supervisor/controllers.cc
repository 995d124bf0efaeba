#include "supervisor/controllers.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

#include "supervisor/cgroupfs.h"

namespace sr {
namespace {

std::atomic<uint64_t> g_next_group{1};

struct Named {
  const char* name;
  unsigned kind;
};
constexpr Named kV1Names[] = {{"memory", Controllers::kMemory},
                              {"pids", Controllers::kPids},
                              {"cpu", Controllers::kCpu},
                              {"cpuacct", Controllers::kCpuAcct},
                              {"blkio", Controllers::kIo}};
constexpr Named kV2Names[] = {{"memory", Controllers::kMemory},
                              {"pids", Controllers::kPids},
                              {"cpu", Controllers::kCpu},
                              {"io", Controllers::kIo}};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

// Tests of the v2 back end write into a plain directory, where the files must be created.
bool g_create_files = false;

Status Write(const std::string& path, const std::string& value) {
  const int flags = O_WRONLY | O_CLOEXEC | (g_create_files ? O_CREAT | O_TRUNC : 0);
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd.valid()) return ErrnoError("open " + path, errno);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    return ErrnoError("write " + value + " to " + path, errno);
  }
  return Ok();
}

bool Exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Removes the empty step-runner-<pid> trees of runners that are gone.
void RemoveDeadRunners(const std::string& own_dir) {
  DIR* d = ::opendir(own_dir.c_str());
  if (!d) return;
  std::vector<std::string> dead;
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, "step-runner-", 12) != 0) continue;
    pid_t pid = static_cast<pid_t>(std::atol(e->d_name + 12));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) dead.push_back(own_dir + "/" + e->d_name);
  }
  ::closedir(d);
  for (const auto& dir : dead) RemoveEmptyCgroupTree(dir);
}

std::string KindNames(unsigned kinds, bool v2) {
  std::string out;
  const Named* begin = v2 ? std::begin(kV2Names) : std::begin(kV1Names);
  const Named* stop = v2 ? std::end(kV2Names) : std::end(kV1Names);
  for (const Named* n = begin; n != stop; ++n) {
    if (kinds & n->kind) out += std::string(out.empty() ? "" : ", ") + n->name;
  }
  return out;
}

}  // namespace

ResourceGroup::~ResourceGroup() {
  join_fds_.clear();
  join_fds_owned_.clear();
  // The v2 leaf inside has gone with its tree; a failed rmdir (something still inside) is left
  // for the runner's exit, which removes its whole directory.
  if (!v2_dir_.empty()) ::rmdir(v2_dir_.c_str());
  for (const auto& d : v1_) ::rmdir(d.path.c_str());
}

bool ResourceGroup::accounts_memory() const {
  if (v2_kinds_ & Controllers::kMemory) return true;
  for (const auto& d : v1_) {
    if (d.kinds & Controllers::kMemory) return true;
  }
  return false;
}

std::vector<std::string> ResourceGroup::dirs() const {
  std::vector<std::string> out;
  for (const auto& d : v1_) out.push_back(d.path);
  if (!v2_dir_.empty()) out.push_back(v2_dir_);
  return out;
}

Controllers::~Controllers() {
  if (!owns_dirs_) return;
  for (const auto& h : v1_) RemoveEmptyCgroupTree(h.runner_dir);
}

std::unique_ptr<Controllers> Controllers::None(std::string reason) {
  std::unique_ptr<Controllers> c(new Controllers());
  c->missing_reason_ = std::move(reason);
  return c;
}

std::unique_ptr<Controllers> Controllers::ForV2Dir(const std::string& dir, unsigned kinds) {
  std::unique_ptr<Controllers> c(new Controllers());
  c->v2_dir_ = dir;
  c->v2_kinds_ = c->kinds_ = kinds;
  g_create_files = true;
  return c;
}

std::unique_ptr<Controllers> Controllers::Discover(const std::string& v2_runner_dir,
                                                   bool full_accounting) {
  g_create_files = false;
  std::unique_ptr<Controllers> c(new Controllers());
  c->full_accounting_ = full_accounting;
  auto mountinfo = ReadFile("/proc/self/mountinfo");
  auto self = ReadFile("/proc/self/cgroup");
  if (!mountinfo.ok() || !self.ok()) {
    c->missing_reason_ = "cannot read /proc/self/mountinfo or /proc/self/cgroup";
    return c;
  }
  // hierarchy id line of /proc/self/cgroup: "4:memory:/process_api/…", "0::/…" for v2.
  std::vector<std::pair<std::vector<std::string>, std::string>> own;
  std::string own_v2;
  for (const auto& line : Split(*self, '\n')) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string list = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (list.empty()) own_v2 = path;
    else own.push_back({Split(list, ','), path});
  }

  // v2 first: a controller enabled there is not available to any v1 hierarchy.
  if (!v2_runner_dir.empty()) {
    c->v2_dir_ = v2_runner_dir;
    auto avail = ReadFile(v2_runner_dir + "/cgroup.controllers");
    for (const auto& name : avail.ok() ? Split(*avail, ' ') : std::vector<std::string>{}) {
      std::string n = name;
      while (!n.empty() && (n.back() == '\n' || n.back() == ' ')) n.pop_back();
      for (const auto& k : kV2Names) {
        if (n == k.name && Write(v2_runner_dir + "/cgroup.subtree_control", "+" + n).ok()) {
          c->v2_kinds_ |= k.kind;
        }
      }
    }
  }
  unsigned v1_taken = c->v2_kinds_ | ((c->v2_kinds_ & kCpu) ? kCpuAcct : 0u);
  std::string missing;
  for (const auto& [root, mount, fstype, options] : ParseMountinfo(*mountinfo)) {
    if (fstype == "cgroup2" && !own_v2.empty() && c->own_memory_dir_.empty()) {
      std::string dir = mount + (own_v2 == "/" ? "" : own_v2);
      if (Exists(dir + "/memory.events")) {
        c->own_memory_dir_ = dir;
        c->own_memory_v2_ = true;
      }
    }
    if (fstype != "cgroup") continue;
    unsigned kinds = 0;
    for (const auto& opt : Split(options, ',')) {
      for (const auto& k : kV1Names) {
        if (opt == k.name) kinds |= k.kind;
      }
    }
    if (kinds == 0) continue;
    // The runner's place in this hierarchy, relative to the mount's root.
    std::string path;
    bool found = false;
    for (const auto& [list, p] : own) {
      for (const auto& name : list) {
        for (const auto& k : kV1Names) {
          if (name == k.name && (kinds & k.kind)) found = true;
        }
      }
      if (found) {
        path = p;
        break;
      }
    }
    if (!found) continue;
    if (root != "/" && path.rfind(root, 0) == 0) path = path.substr(root.size());
    std::string own_dir = mount + (path == "/" ? "" : path);
    if (kinds & kMemory) {
      c->own_memory_dir_ = own_dir;
      c->own_memory_v2_ = false;
    }
    kinds &= ~v1_taken;
    if (kinds == 0) continue;
    RemoveDeadRunners(own_dir);
    std::string runner_dir = own_dir + "/step-runner-" + std::to_string(::getpid());
    if (::mkdir(runner_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      missing += (missing.empty() ? "" : "; ") + ErrnoError("mkdir " + runner_dir, errno).message;
      continue;
    }
    if (::access((runner_dir + "/cgroup.procs").c_str(), W_OK) != 0) {
      missing += (missing.empty() ? "" : "; ") + runner_dir + "/cgroup.procs is not writable";
      ::rmdir(runner_dir.c_str());
      continue;
    }
    c->v1_.push_back({runner_dir, kinds});
    c->kinds_ |= kinds;
    c->owns_dirs_ = true;
  }
  c->kinds_ |= c->v2_kinds_;
  (void)c->OwnOomKills();  // the first step's "before"
  c->missing_reason_ = missing.empty() ? "the host has none the runner can write" : missing;
  return c;
}

std::string Controllers::Describe() const {
  std::string out;
  if (v2_kinds_) out = "cgroup v2 (" + KindNames(v2_kinds_, true) + ")";
  unsigned v1 = 0;
  for (const auto& h : v1_) v1 |= h.kinds;
  if (v1) out += std::string(out.empty() ? "" : " + ") + "cgroup v1 (" + KindNames(v1, false) + ")";
  return out.empty() ? "none: " + missing_reason_ : out;
}

Status Controllers::CanEnforce(const ResourceLimits& l) const {
  auto need = [&](bool wanted, unsigned kind, const char* what) -> Status {
    if (!wanted || (kinds_ & kind)) return Ok();
    return FailedError(std::string(what) + " limit needs a writable " + KindNames(kind, false) +
                       " cgroup controller, and " + missing_reason_);
  };
  SR_RETURN_IF_ERROR(need(l.memory_bytes > 0, kMemory, "a memory"));
  SR_RETURN_IF_ERROR(need(l.pids > 0, kPids, "a pids"));
  SR_RETURN_IF_ERROR(need(l.cpus > 0, kCpu, "a cpus"));
  return Ok();
}

Status Controllers::WriteLimitsV1(const std::string& dir, unsigned kinds,
                                  const ResourceLimits& l) const {
  if ((kinds & kMemory) && l.memory_bytes > 0) {
    const std::string bytes = std::to_string(l.memory_bytes);
    SR_RETURN_IF_ERROR(Write(dir + "/memory.limit_in_bytes", bytes));
    // With swap accounting on, the same number for memory + swap: no spilling into swap.
    if (Exists(dir + "/memory.memsw.limit_in_bytes")) {
      SR_RETURN_IF_ERROR(Write(dir + "/memory.memsw.limit_in_bytes", bytes));
    }
  }
  if ((kinds & kPids) && l.pids > 0) SR_RETURN_IF_ERROR(Write(dir + "/pids.max", std::to_string(l.pids)));
  if ((kinds & kCpu) && l.cpus > 0) {
    constexpr int64_t kPeriod = 100000;
    const auto quota = std::max<int64_t>(1000, std::llround(l.cpus * kPeriod));
    SR_RETURN_IF_ERROR(Write(dir + "/cpu.cfs_period_us", std::to_string(kPeriod)));
    SR_RETURN_IF_ERROR(Write(dir + "/cpu.cfs_quota_us", std::to_string(quota)));
  }
  return Ok();
}

Status Controllers::WriteLimitsV2(const std::string& dir, const ResourceLimits& l) const {
  // Nested groups need the controllers handed down; the group itself never holds a process.
  for (const auto& k : kV2Names) {
    if (v2_kinds_ & k.kind) SR_RETURN_IF_ERROR(Write(dir + "/cgroup.subtree_control", std::string("+") + k.name));
  }
  if ((v2_kinds_ & kMemory) && l.memory_bytes > 0) {
    SR_RETURN_IF_ERROR(Write(dir + "/memory.max", std::to_string(l.memory_bytes)));
    // One OOM kill takes the whole group: a step is not left half-dead.
    SR_RETURN_IF_ERROR(Write(dir + "/memory.oom.group", "1"));
    if (Exists(dir + "/memory.swap.max")) SR_RETURN_IF_ERROR(Write(dir + "/memory.swap.max", "0"));
  }
  if ((v2_kinds_ & kPids) && l.pids > 0) SR_RETURN_IF_ERROR(Write(dir + "/pids.max", std::to_string(l.pids)));
  if ((v2_kinds_ & kCpu) && l.cpus > 0) {
    constexpr int64_t kPeriod = 100000;
    const auto quota = std::max<int64_t>(1000, std::llround(l.cpus * kPeriod));
    SR_RETURN_IF_ERROR(Write(dir + "/cpu.max", std::to_string(quota) + " " + std::to_string(kPeriod)));
  }
  return Ok();
}

Result<std::shared_ptr<ResourceGroup>> Controllers::Create(std::shared_ptr<ResourceGroup> parent,
                                                           const ResourceLimits& limits) {
  SR_RETURN_IF_ERROR(CanEnforce(limits));
  std::shared_ptr<ResourceGroup> g(new ResourceGroup());  // private constructor
  const std::string name = "/g-" + std::to_string(g_next_group++);
  // Inside a limited group the step must join the v1 hierarchies too, or the limit misses it.
  const bool join_v1 = full_accounting_ || parent || limits.any();
  for (size_t i = 0; join_v1 && i < v1_.size(); ++i) {
    const std::string base = parent && i < parent->v1_.size() ? parent->v1_[i].path : v1_[i].runner_dir;
    const std::string dir = base + name;
    if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoError("mkdir " + dir, errno);
    g->v1_.push_back({dir, v1_[i].kinds});
    SR_RETURN_IF_ERROR(WriteLimitsV1(dir, v1_[i].kinds, limits));
    UniqueFd procs(::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC));
    if (!procs.valid()) return ErrnoError("open " + dir + "/cgroup.procs", errno);
    g->join_fds_.push_back(procs.get());
    g->join_fds_owned_.push_back(std::move(procs));
  }
  if (!v2_dir_.empty() && (join_v1 || v2_kinds_)) {
    // Even with no v2 controller: the leaf goes inside, and cpu.stat counts its CPU time.
    const std::string dir = (parent && !parent->v2_dir_.empty() ? parent->v2_dir_ : v2_dir_) + name;
    if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoError("mkdir " + dir, errno);
    g->v2_dir_ = dir;
    g->v2_kinds_ = v2_kinds_;
    SR_RETURN_IF_ERROR(WriteLimitsV2(dir, limits));
  }
  g->parent_ = std::move(parent);
  return g;
}

}  // namespace sr
