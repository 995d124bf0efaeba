// What a dead runner left behind, removed by the next runner started with the same TMPDIR
// (contract section 7 item 1).
//
// Every runner marks what it owns (util/owner.h): its job directories `step-runner-output-<id>`
// and temp directories `step-runner-XXXXXX` — and the temporary clones and checkouts of git
// steps in the git cache — carry a `.step-runner-owner` file (while one is made or removed, its
// transit name `.step-runner-owned-<pid>-<start ticks>-XXXXXX` says the same), its cgroup
// directory a record `.step-runner-cgroup-<pid>` in TMPDIR. At start, `run`, `ci` and `serve`
// call RemoveDeadLeftovers(): whatever is marked by a process that no longer runs (pid and start
// time, so a recycled pid is no owner) is removed — a cgroup after `cgroup.kill` and once empty.
// Half-downloaded OCI blobs go once their digest's download lock is free (its holder is dead).
// Anything unmarked, marked by a live process, or not owned by this user is never touched.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <set>
#include <string>

namespace sr {

/// The git cache in TMPDIR, and the prefixes of the temporary directories a git step makes in
/// it (engine/git_cache.cc), marked like job dirs.
inline constexpr char kGitCacheDir[] = "step-runner-cache";
inline constexpr char kGitCloneTemp[] = ".clone-";
inline constexpr char kGitTreeTemp[] = ".tree-";
/// The OCI blob cache inside the git cache's directory, and what names a blob being downloaded
/// in it: `.<hex>.tmp-<pid>-<n>`, written while its download holds the flock of `<hex>.lock`
/// (oci/cache.cc).
inline constexpr char kOciBlobDir[] = "oci/blobs/sha256";
inline constexpr char kBlobTempInfix[] = ".tmp-";

struct LeftoverReport {
  int job_dirs = 0, temp_dirs = 0, cgroups = 0, processes = 0, git_temps = 0, downloads = 0;
  int unrecorded_cgroups = 0;     // found by name in unrecorded_parent (RemoveDeadRunnerCgroups)
  std::string unrecorded_parent;
  std::set<pid_t> owners;
  std::map<pid_t, unsigned long long> dead;  // dead owners seen: pid -> start ticks
  bool empty() const {
    return job_dirs + temp_dirs + cgroups + processes + git_temps + downloads + unrecorded_cgroups == 0;
  }
  /// One log line naming what was removed and whose it was.
  std::string Line(const std::string& base) const;
};

/// Removes what dead runners left in `base` (TMPDIR), then the unrecorded cgroups beside this
/// runner's own (below). Never fails: what cannot be removed stays for the next start.
LeftoverReport RemoveDeadLeftovers(const std::string& base);

/// A dead runner's cgroup whose record went with its TMPDIR (a per-job TMPDIR deleted after the
/// runner and its guardian were both killed) is found by its name in `parent`:
/// `step-runner-<pid>`, of this user, of a pid that no longer runs, unchanged for `min_age`
/// (a runner that got the same pid since made its directory after; a live runner's changes with
/// every step). Its processes are killed and it is removed, counted in `report`.
void RemoveDeadRunnerCgroups(const std::string& parent, std::chrono::seconds min_age,
                             LeftoverReport& report);

}  // namespace sr
