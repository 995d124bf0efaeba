// What every runner (`run`, `ci`, `serve`) does first, on the main thread before any other
// thread exists (contract section 7 items 1 and 3).
#pragma once

#include <sys/resource.h>

#include <string>

#include "util/result.h"

namespace sr {

/// 1. Raises the soft limit on open files to the hard limit (systemd starts services with 1024,
///    a busy server needs more: each step costs pipes, pidfds and cgroup files).
/// 2. Starts the guardian (guardian.h), unless `guardian` is false.
/// 3. Removes what dead runners left in $TMPDIR (leftovers.h), with one line on stderr when
///    there was something.
/// `temp_base` is the runner's $TMPDIR and `guardian` false is STEP_RUNNER_GUARDIAN=off (both
/// read by the CLI, cli/switches.h).
Status PrepareRunner(const std::string& temp_base, bool guardian);

/// The open-files limit before PrepareRunner raised it (steps are started with it), or null.
const rlimit* OriginalFileLimit();

}  // namespace sr
