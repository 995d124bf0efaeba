// The process's environment switches, read once here at the edge and passed inward as options:
// no library reads the environment.
//   TMPDIR                 where temp dirs, job dirs, the git cache and the default socket go
//   STEP_RUNNER_CGROUP=off the supervisor uses process groups even where cgroup v2 is writable
//   STEP_RUNNER_CONTROLLERS=off  no per-step resource groups: limits refused, usage from wait4
//   STEP_RUNNER_ACCOUNTING=full  accounting groups for every step, not only those with limits
//   STEP_RUNNER_GUARDIAN=off  no guardian (the tests use it to leave leftovers for the next start)
//   STEP_RUNNER_DEBUG      the supervisor says which mechanism it chose, and why, on stderr;
//                          `serve` logs every event-loop turn over 20 ms (wall and CPU time)
#pragma once

#include <map>
#include <string>

#include "supervisor/supervisor.h"

namespace sr::cli {

struct Switches {
  std::map<std::string, std::string> env;  // the whole process environment
  std::string temp_base = "/tmp";          // $TMPDIR, or /tmp when unset or empty
  bool cgroup_off = false;
  bool controllers_off = false;   // STEP_RUNNER_CONTROLLERS=off: no per-step resource groups
  bool full_accounting = false;   // STEP_RUNNER_ACCOUNTING=full: accounting groups for every step
  bool guardian_off = false;      // STEP_RUNNER_GUARDIAN=off: no guardian process
  bool debug = false;
};

/// The process environment as a map.
std::map<std::string, std::string> ProcessEnv();
/// The switches `env` sets.
Switches ReadSwitches(std::map<std::string, std::string> env);
/// TMPDIR as an absolute path: a relative `value` joined to `cwd` (unchanged if absolute, empty,
/// or `cwd` is unknown).
std::string AbsoluteTempBase(const std::string& value, const std::string& cwd);
/// Makes a relative TMPDIR in the process environment absolute, against the working directory
/// at start (where a relative TMPDIR was meant). Called first in main, before anything reads
/// the environment: the runner builds every path below TMPDIR from it (temp dirs, job dirs,
/// scripts, output files), and steps run in other directories (`work_dir`, a job's build dir),
/// where `tmp/step-runner-…/step-1.sh` named nothing. Steps see the absolute value too.
void MakeTempBaseAbsolute();
/// Refuses a temp base (TMPDIR) that is not a directory this user can write: every job keeps
/// its files there, so a runner started with one would fail every job. The error names TMPDIR.
Status CheckTempBase(const Switches& switches);
/// The supervisor's options under `switches`.
Supervisor::Options SupervisorOptionsFor(const Switches& switches);

}  // namespace sr::cli
