// cgroup v2 support: one directory per runner (`step-runner-<pid>` inside the runner's own
// cgroup) holding one leaf per process tree. A leaf is the authoritative member list of a tree:
// nothing inside can leave it (short of writing to cgroup.procs as root), `cgroup.kill` kills them
// all atomically, fork races included, and
// `cgroup.events` tells, through EPOLLPRI, when the last one has gone.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace sr {

class CgroupLeaf {
 public:
  ~CgroupLeaf();
  CgroupLeaf(const CgroupLeaf&) = delete;
  CgroupLeaf& operator=(const CgroupLeaf&) = delete;

  const std::string& path() const { return path_; }
  /// cgroup.procs opened for writing; the child writes "0" to it to join before exec.
  int procs_fd() const { return procs_fd_.get(); }
  /// The leaf directory (O_PATH), for clone3's CLONE_INTO_CGROUP.
  int dir_fd() const { return dir_fd_.get(); }
  /// Closes procs_fd and dir_fd once the child is in (the parent never needs them again).
  void CloseProcsFd() {
    procs_fd_.Reset();
    dir_fd_.Reset();
  }
  /// cgroup.events, read-only: watch it with EPOLLPRI; read it (Populated) to re-arm.
  int events_fd() const { return events_fd_.get(); }

  /// Live members (zombies are not listed by the kernel); nullopt when cgroup.procs cannot be
  /// opened (the runner is out of fds, or the leaf is gone).
  std::optional<std::vector<pid_t>> ReadProcs() const;
  /// The same, with "cannot read" as "nobody".
  std::vector<pid_t> Procs() const { return ReadProcs().value_or(std::vector<pid_t>{}); }
  /// Whether the process a pidfd pins is a live member, asked through the pidfd (its cgroup id
  /// from PIDFD_GET_INFO, Linux 6.13; its liveness from poll): no read of cgroup.procs.
  /// nullopt when the kernel cannot say (then read Procs()).
  std::optional<bool> HasLive(int pidfd);
  /// "populated 1" in cgroup.events. Also re-arms the EPOLLPRI notification.
  bool Populated();
  /// Writes "1" to cgroup.kill: SIGKILL to every member, fork races included.
  Status Kill();
  /// Empty and not frozen: a new tree can be born into it as into a new leaf.
  bool Idle();
  /// No sub-cgroup, and the limits and type a step could have changed are as mkdir made them
  /// (checked once before a leaf is kept for another step: none of it may carry over). The four
  /// files stay open from the first check on: a leaf that is kept is checked after every step.
  bool AsCreated();
  /// Closes AsCreated's four files (the next check opens them again): for a runner short of fds.
  void CloseStateFds() {
    for (UniqueFd& fd : state_fds_) fd.Reset();
  }
  /// rmdir; fails while populated. Idempotent.
  void Remove();

 private:
  friend class CgroupRoot;
  explicit CgroupLeaf(std::string path) : path_(std::move(path)) {}
  std::string ReadEvents();
  std::string path_;
  UniqueFd procs_fd_;
  UniqueFd dir_fd_;
  UniqueFd events_fd_;
  std::array<UniqueFd, 4> state_fds_;  // AsCreated's files, opened at its first call
  bool removed_ = false;
  uint64_t id_ = 0;  // the leaf's cgroup id (its inode number), once HasLive needed it
  bool no_pidfd_info_ = false;  // the kernel has no PIDFD_GET_INFO (or no cgroup id in it)
};

class CgroupRoot {
 public:
  /// Finds the cgroup2 mount (/proc/self/mountinfo) and the runner's cgroup (the "0::" line of
  /// /proc/self/cgroup), creates `step-runner-<pid>` there and checks that a child can join a
  /// leaf and that cgroup.kill exists. The error says why cgroups cannot be used.
  /// `record_dir`: where the owner record of the runner's cgroup goes (its $TMPDIR; "" = none).
  /// A record that cannot be written (a full TMPDIR) is no error: the runner works without it,
  /// and says so in one line on stderr naming the file and the error.
  static Result<std::unique_ptr<CgroupRoot>> Create(const std::string& record_dir = "");
  /// Removes the per-runner directory (and any empty leaf left in it).
  ~CgroupRoot();
  CgroupRoot(const CgroupRoot&) = delete;
  CgroupRoot& operator=(const CgroupRoot&) = delete;

  const std::string& path() const { return path_; }
  /// A new empty leaf named `name`, with its procs and events files open; inside `dir` (a
  /// resource group's directory below this root) when it is not empty.
  Result<std::unique_ptr<CgroupLeaf>> CreateLeaf(const std::string& name,
                                                 const std::string& dir = "");

 private:
  explicit CgroupRoot(std::string path) : path_(std::move(path)) {}
  Status Probe();
  std::string path_;
  std::string record_;  // the owner record in $TMPDIR, removed with the directory
};

/// `$TMPDIR/.step-runner-cgroup-<pid>`: "<pid> <start ticks>\n<cgroup dir>\n", the owner mark of
/// a runner's cgroup directory. Written as `<record>.new` and renamed into place, so a record
/// is whole or absent; a `.new` (its writer killed) is removed by the sweep once its pid is gone.
inline constexpr char kCgroupRecordPrefix[] = ".step-runner-cgroup-";
inline constexpr char kCgroupRecordTempSuffix[] = ".new";
std::string CgroupRecordPath(const std::string& base, pid_t runner);

/// The cgroup2 mount point, or an error when none is mounted.
Result<std::string> FindCgroup2Mount();
/// `<mount><this process's cgroup>/step-runner-<runner>`: where runner `runner` (a process in the
/// same cgroup as the caller) keeps its trees.
Result<std::string> RunnerCgroupDir(pid_t runner);
/// For a dead runner's subtree: `cgroup.kill` (every process below `dir`, fork races included),
/// wait at most `wait` until it is empty, then remove the leaves and `dir`. True if `dir` is gone.
bool KillCgroupTree(const std::string& dir, std::chrono::milliseconds wait);

}  // namespace sr
