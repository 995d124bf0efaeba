// Starts one tree's main process, with a close-on-exec error pipe so that a failure between the
// clone and exec (missing program, bad work dir, no permission) comes back to the parent as an
// Error instead of an anonymous exit status 127. The child shares the runner's memory until it
// execs (clone with CLONE_VM | CLONE_VFORK, as posix_spawn does): copying the page tables of the
// whole runner per step, as fork does, cost more than the step itself (docs/performance.md).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace sr {

struct ExecRequest {
  std::string path;                // resolved program (LookPath)
  std::vector<std::string> argv;   // argv[0] is passed unchanged
  std::vector<std::string> env;    // exactly the child's environment...
  // ...unless `env_list` (not owned) is set: then that list with `env_extra` in place of its
  // entry `env_extra_at`, or before its first entry when that is -1. The supervisor adds its
  // marker this way without copying the environment.
  const std::vector<std::string>* env_list = nullptr;
  std::string env_extra;
  long env_extra_at = -1;
  std::string work_dir;            // "" = inherit
  int stdout_fd = -1;              // child ends (pipe write ends or /dev/null)
  int stderr_fd = -1;
  int cgroup_procs_fd = -1;        // leaf cgroup.procs to join before exec, or -1
  int cgroup_dir_fd = -1;          // the same leaf's directory: born into it where clone3 allows
  std::vector<int> join_fds;       // cgroup v1 cgroup.procs files to join before exec (limits)
};

struct Started {
  pid_t pid = -1;
  /// Set when the child could not exec; it has exited (status 127) and still has to be reaped.
  std::optional<Error> exec_error;
};

/// Starts processes, and remembers whether the kernel lets it use clone3 (one Spawner per
/// Supervisor: the probe's result belongs to it, not to the process).
class Spawner {
 public:
  /// With `clone3` false, spawns as on a kernel without clone3 (the child joins its cgroup by
  /// writing cgroup.procs). No effect in sanitizer builds, which always fork.
  explicit Spawner(bool clone3 = true) : clone3_works_(clone3) {}
  /// Clones and execs. The child leads a new process group, has default signal dispositions
  /// and an empty signal mask, stdin from /dev/null, and no fd beyond 0-2. Returns an error
  /// only when the runner itself failed (clone, pipe); exec failures are in
  /// Started::exec_error.
  Result<Started> ForkExec(const ExecRequest& request);

 private:
  bool clone3_works_;  // cleared once the kernel (or a seccomp filter) turns clone3 down
  pid_t self_ = -1;    // our pid (the children's parent), looked up at the first spawn
  UniqueFd dev_null_;  // every child's stdin, opened once
};

/// Sets `r`'s environment to `env` (not copied: ExecRequest::env_list) plus the tree's marker
/// STEP_RUNNER_TREE=`token`, first. A marker already there (a runner started by another runner's
/// step) is kept and the token appended, so both runners can find the process.
void AddTreeMarker(const std::vector<std::string>& env, const std::string& token, ExecRequest& r);

/// The value of `key` in a "K=V" list (first match), or nullopt.
std::optional<std::string> EnvValue(const std::vector<std::string>& env, const std::string& key);

/// strerror(err) with a lower-case first letter, as Go prints syscall errors.
std::string ErrnoText(int err);

}  // namespace sr
