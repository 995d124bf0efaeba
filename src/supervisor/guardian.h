// The guardian: what kills a runner's processes when the runner itself dies without cleaning up
// (SIGKILL, a crash, the OOM killer). Contract section 7 item 1.
//
// StartGuardian() forks a tiny process (twice, so it is nobody's child the runner would reap or
// kill) before the runner has any thread, cgroup or step. The guardian
//   - runs in its own session, ignores SIGINT/SIGTERM/SIGHUP/SIGQUIT (a closed terminal or a
//     Ctrl-C must not take it with the runner), has / as its cwd and /dev/null as stdio, and keeps
//     no other descriptor than a pidfd of the runner: it never holds a step's pipe or a mount;
//   - blocks until the pidfd is readable (the runner has exited, however);
//   - then kills what the runner left: with cgroups, `cgroup.kill` of the runner's whole
//     `step-runner-<pid>` subtree, wait until it is empty, remove it; always (it costs one /proc
//     pass when there is nothing), SIGKILL to every process that carries the runner's marker
//     `STEP_RUNNER_TREE=<runner pid>.<tree>`, to the process groups they lead, and to the
//     children of those, repeated until a pass finds nobody.
// A runner that exited cleanly has left nothing, so the guardian exits at once.
#pragma once

#include <sys/types.h>

#include <string>

#include "util/result.h"

namespace sr {

/// Starts the guardian of this process. Call it before any thread exists. (PrepareRunner skips it
/// under `STEP_RUNNER_GUARDIAN=off`, which the tests use to leave leftovers for the next start.)
Status StartGuardian();

/// SIGKILL to every process of dead runner `runner` (started at `start_ticks`) that carries its
/// marker, the groups they lead and their children, as the guardian does; for the next start,
/// when the guardian itself was killed too. Returns how many were killed.
int KillRunnerProcesses(pid_t runner, unsigned long long start_ticks);

/// The environment variable that carries a tree's marker (`<runner pid>.<tree id>`).
inline constexpr char kTreeMarkerKey[] = "STEP_RUNNER_TREE";

/// Whether an environment block ("K=V\0...") carries a marker of runner `runner`
/// (a `<runner>.` token in STEP_RUNNER_TREE).
bool EnvironHasRunnerMarker(const std::string& environ, pid_t runner);

}  // namespace sr
