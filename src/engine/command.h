// Runs a helper command (git) under the supervisor and collects its output; cancel-aware.
#pragma once

#include <string>

#include "loop/task.h"
#include "engine/cancel.h"
#include "supervisor/supervisor.h"

namespace sr::engine {

struct CommandResult {
  TreeExit exit;
  std::string output;  // stdout and stderr interleaved
};

/// Spawns `spec` and waits for its tree to finish. A cancel on `cancel` kills it at once (helper
/// commands have nothing to clean up). Errors only for failures of the runner itself.
Task<Result<CommandResult>> RunCommand(Supervisor& sup, ProcessSpec spec, CancelSource* cancel);

}  // namespace sr::engine
