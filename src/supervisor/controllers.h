// Resource controllers (contract section 8): limits and accounting for a step or a sequence,
// through whichever cgroup controllers the host lets the runner write.
//
// Two back ends, found from /proc/self/mountinfo and /proc/self/cgroup, never from fixed paths:
//  - cgroup v2, when the runner's v2 directory (`step-runner-<pid>`) offers the memory, pids, cpu
//    or io controller: a group is a directory there (`memory.max`, `memory.oom.group`,
//    `memory.swap.max`, `pids.max`, `cpu.max`), and the supervisor creates the tree's leaf inside
//    it. Usage: cpu.stat, memory.peak, pids.peak, io.stat, memory.events.
//  - cgroup v1, for each of the memory, pids, cpu, cpuacct and blkio hierarchies that is mounted
//    and writable: a group is a directory below the runner's own cgroup in each of them
//    (`memory.limit_in_bytes` + `memory.memsw.limit_in_bytes`, `pids.max`, `cpu.cfs_quota_us`);
//    the child joins every one before exec by writing to their cgroup.procs. Usage:
//    cpuacct.usage_user/_sys, memory.max_usage_in_bytes, pids.peak, blkio service bytes,
//    memory.oom_control.
// A v2 controller wins over its v1 twin (a controller is in one hierarchy at a time anyway).
// Groups nest: a sequence's group holds its steps' groups, so its limit covers them all and the
// kernel applies the smallest enclosing one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace sr {

/// 0 = no limit at this level.
struct ResourceLimits {
  int64_t memory_bytes = 0;
  int64_t pids = 0;
  double cpus = 0;
  bool any() const { return memory_bytes > 0 || pids > 0 || cpus > 0; }
};

/// What a group used. A field the host cannot measure stays unset, never a guess.
struct ResourceUsage {
  std::optional<int64_t> cpu_user_usec, cpu_system_usec, memory_peak_bytes, pids_peak,
      io_read_bytes, io_write_bytes, oom_kills;
};

class ResourceGroup {
 public:
  ~ResourceGroup();
  ResourceGroup(const ResourceGroup&) = delete;
  ResourceGroup& operator=(const ResourceGroup&) = delete;

  /// Reads every counter now (call before the group goes away).
  ResourceUsage Read() const;
  /// v1: cgroup.procs of each hierarchy, for the child to write "0" to before exec.
  const std::vector<int>& join_fds() const { return join_fds_; }
  /// v2: the directory the tree's leaf goes in; "" when the v2 back end is not used.
  const std::string& v2_dir() const { return v2_dir_; }
  /// The v1 and v2 directories, for messages and tests.
  std::vector<std::string> dirs() const;
  /// Whether the group has a memory controller of its own (peak and OOM kills come from it).
  bool accounts_memory() const;

 private:
  friend class Controllers;
  ResourceGroup() = default;
  struct V1Dir {
    std::string path;
    unsigned kinds = 0;  // the controllers of this hierarchy (Controllers::Kind bits)
  };
  std::shared_ptr<ResourceGroup> parent_;  // removed after its children
  std::vector<V1Dir> v1_;
  std::vector<UniqueFd> join_fds_owned_;
  std::vector<int> join_fds_;
  std::string v2_dir_;
  unsigned v2_kinds_ = 0;
};

class Controllers {
 public:
  enum Kind : unsigned { kMemory = 1, kPids = 2, kCpu = 4, kCpuAcct = 8, kIo = 16 };

  /// Looks for writable controllers. `v2_runner_dir` is the supervisor's `step-runner-<pid>`
  /// directory ("" when it has none). Never fails: what is missing is recorded with its reason.
  static std::unique_ptr<Controllers> Discover(const std::string& v2_runner_dir,
                                               bool full_accounting = false);
  /// With no controller at all (cgroups switched off, or none writable).
  static std::unique_ptr<Controllers> None(std::string reason);
  ~Controllers();
  Controllers(const Controllers&) = delete;
  Controllers& operator=(const Controllers&) = delete;

  /// Whether every limit that is set can be enforced; the error says which and why not.
  Status CanEnforce(const ResourceLimits& limits) const;
  /// A new group below `parent` (or below the runner's own directories) with `limits`.
  /// With no controller at all, a group with nothing in it (Read() gives an empty usage).
  Result<std::shared_ptr<ResourceGroup>> Create(std::shared_ptr<ResourceGroup> parent,
                                                const ResourceLimits& limits);
  /// The OOM-kill counter of the memory cgroup the runner itself lives in, if readable. Each
  /// read is remembered: LastOwnOomKills() gives it without a syscall (a step's "before" is
  /// the previous step's "after").
  std::optional<int64_t> OwnOomKills() const;
  std::optional<int64_t> LastOwnOomKills() const { return last_own_oom_; }
  /// Whether any controller accounts for groups (false: usage comes from wait4 rusage).
  bool accounting() const { return kinds_ != 0; }
  /// Joining a cgroup v1 hierarchy costs the child one RCU grace period (cgroup v1 has no
  /// CLONE_INTO_CGROUP), several milliseconds per step. So a group with no limit of its own and
  /// none around it gets no directory (usage from wait4, OOM kills from the runner's own memory
  /// cgroup), unless STEP_RUNNER_ACCOUNTING=full asks for the counters of every step.
  bool full_accounting() const { return full_accounting_; }
  /// "cgroup v1 (memory, pids, cpu, cpuacct, blkio)" and the like, for debug lines and docs.
  std::string Describe() const;

  /// Tests of the v2 back end (these hosts have no v2 controllers): treat `dir` as the runner's
  /// v2 directory with `kinds` available, without probing the kernel.
  static std::unique_ptr<Controllers> ForV2Dir(const std::string& dir, unsigned kinds);

 private:
  Controllers() = default;
  struct Hierarchy {
    std::string runner_dir;  // step-runner-<pid> below the runner's own cgroup
    unsigned kinds = 0;
  };
  Status WriteLimitsV1(const std::string& dir, unsigned kinds, const ResourceLimits& l) const;
  Status WriteLimitsV2(const std::string& dir, const ResourceLimits& l) const;

  std::vector<Hierarchy> v1_;
  std::string v2_dir_;
  unsigned v2_kinds_ = 0;
  unsigned kinds_ = 0;  // union of both
  std::string missing_reason_;  // why a controller we looked for is not there
  std::string own_memory_dir_;  // the runner's own memory cgroup (v1 or v2), for OwnOomKills
  bool own_memory_v2_ = false;
  bool owns_dirs_ = false;  // Discover created the v1 runner dirs: remove them at the end
  bool full_accounting_ = false;
  mutable std::optional<int64_t> last_own_oom_;
  mutable UniqueFd own_oom_fd_;  // memory.events / memory.oom_control of own_memory_dir_
};

}  // namespace sr
